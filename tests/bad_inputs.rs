//! No input can hurt the batch: each of the worst files we could make gets exactly one line,
//! ok or an error with a reason, in one scan among good inputs whose results do not change.
mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Far above a normal run of these tests (seconds): only a hang gets there.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Bytes that look like nothing (xorshift, so the file is the same every run).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What one input must produce.
enum Want {
    Ok,
    /// A line with the verdict "no_face".
    NoFace,
    /// An error line whose reason contains this.
    Error(&'static str),
}

struct Case {
    path: PathBuf,
    /// How its line's path ends (the JSON path is lossy for non-UTF-8 names).
    ends_with: String,
    want: Want,
}

fn case(path: PathBuf, want: Want) -> Case {
    let ends_with = path.file_name().unwrap().to_string_lossy().into_owned();
    Case { path, ends_with, want }
}

fn the_line<'a>(lines: &'a [Value], ends_with: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["path"].as_str().unwrap().ends_with(ends_with)).collect();
    assert_eq!(found.len(), 1, "exactly one line for {ends_with:?}: {found:#?}");
    found[0]
}

#[test]
fn every_bad_input_gets_one_line_and_the_good_ones_are_unaffected() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    let pan = samples().join("astronaut_pan.mp4");
    let jpg = samples().join("astronaut.jpg");
    let mut cases = Vec::new();

    let good = dir.join("good.mp4");
    std::fs::copy(&pan, &good).unwrap();
    cases.push(case(good.clone(), Want::Ok));

    std::fs::write(dir.join("zero_bytes.mp4"), b"").unwrap();
    cases.push(case(dir.join("zero_bytes.mp4"), Want::Error("not a readable video or image")));
    std::fs::write(dir.join("random_bytes.mp4"), noise(64 * 1024)).unwrap();
    cases.push(case(dir.join("random_bytes.mp4"), Want::Error("not a readable video or image")));

    // Cut short in both MP4 layouts: index (moov) at the end, as the sample is, or at the front.
    let faststart = tmp.path().join("faststart.mp4");
    ffmpeg(&["-i", s(&pan), "-c", "copy", "-movflags", "+faststart", s(&faststart)]);
    // Without its index nothing can be read; with it, what is left is decoded: too little is an
    // error, and 90% of the clip still holds the 4 frames asked for (declared 3 s, data to 2.7 s).
    let unreadable = "not a readable video or image";
    let cuts = [
        ("index_last", &pan, [(10, Want::Error(unreadable)), (50, Want::Error(unreadable)), (90, Want::Error(unreadable))]),
        ("index_first", &faststart, [(10, Want::Error("no decodable video frame")), (50, Want::Error("truncated: video data ends")), (90, Want::Ok)]),
    ];
    for (layout, source, wants) in cuts {
        let whole = std::fs::read(source).unwrap();
        for (percent, want) in wants {
            let path = dir.join(format!("truncated_{layout}_{percent}.mp4"));
            std::fs::write(&path, &whole[..whole.len() * percent / 100]).unwrap();
            cases.push(case(path, want));
        }
    }

    let audio = dir.join("audio_only.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", s(&audio)]);
    cases.push(case(audio, Want::Error("no video stream")));

    let still = dir.join("still.jpg");
    std::fs::copy(&jpg, &still).unwrap();
    cases.push(case(still, Want::Ok));

    // The portrait upscaled into a 4K frame, three frames of H.264 at 1 fps.
    let uhd = dir.join("frame_4k.mp4");
    ffmpeg(&["-loop", "1", "-i", s(&jpg), "-vf", "scale=2160:2160,pad=3840:2160:840:0", "-frames:v", "3", "-r", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", s(&uhd)]);
    cases.push(case(uhd.clone(), Want::Ok));

    // Variable frame rate: 3 frames of every 10 kept, with their original timestamps.
    let vfr = dir.join("variable_rate.mp4");
    ffmpeg(&["-i", s(&pan), "-vf", "select='lt(mod(n\\,10)\\,3)'", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", s(&vfr)]);
    cases.push(case(vfr, Want::Ok));

    let rotated = dir.join("rotated.mp4");
    std::fs::copy(samples().join("astronaut_rotated.mp4"), &rotated).unwrap();
    cases.push(case(rotated, Want::Ok));

    let no_face = dir.join("no_face.mp4");
    std::fs::copy(samples().join("no_face.mp4"), &no_face).unwrap();
    cases.push(case(no_face, Want::NoFace));

    // Six astronauts in a 3x2 grid.
    let crowd = dir.join("many_faces.jpg");
    ffmpeg(&["-loop", "1", "-i", s(&jpg), "-vf", "tile=3x2", "-frames:v", "1", s(&crowd)]);
    cases.push(case(crowd, Want::Ok));

    let locked = dir.join("unreadable.mp4");
    std::fs::copy(&pan, &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_ok() {
        eprintln!("skipping the unreadable-file case: running as root, where chmod 000 does not stop reads");
        std::fs::remove_file(&locked).unwrap();
    } else {
        cases.push(case(locked, Want::Error("Permission denied")));
    }

    // Two links pointing at each other, named explicitly.
    std::os::unix::fs::symlink(dir.join("loop_b.mp4"), dir.join("loop_a.mp4")).unwrap();
    std::os::unix::fs::symlink(dir.join("loop_a.mp4"), dir.join("loop_b.mp4")).unwrap();
    cases.push(case(dir.join("loop_a.mp4"), Want::Error("Too many levels of symbolic links")));
    // A folder whose link points back to itself, walked: its file once, the loop once.
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::copy(&jpg, tree.join("inside.jpg")).unwrap();
    std::os::unix::fs::symlink(&tree, tree.join("back")).unwrap();
    cases.push(case(tree.join("inside.jpg"), Want::Ok));
    cases.push(case(tree.join("back"), Want::Error("loop")));
    // A FIFO met while walking is reported, not skipped (and never opened: it would block).
    assert!(std::process::Command::new("mkfifo").arg(tree.join("pipe")).status().unwrap().success());
    cases.push(case(tree.join("pipe"), Want::Error("not a regular file (a FIFO)")));

    for name in [&b"with spaces.jpg"[..], b"new\nline.jpg", b"not utf8 \xff\xfe.jpg"] {
        let path = dir.join(OsStr::from_bytes(name));
        std::fs::copy(&jpg, &path).unwrap();
        cases.push(case(path, Want::Ok));
    }

    // Not regular files: a FIFO would block the open, /dev/zero would never end.
    let fifo = dir.join("fifo.mp4");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    cases.push(case(fifo, Want::Error("not a regular file (a FIFO)")));
    cases.push(case(PathBuf::from("/dev/zero"), Want::Error("not a regular file (a device)")));
    cases.push(case(tmp.path().join("missing.mp4"), Want::Error("No such file")));

    let mut args: Vec<OsString> = ["scan", "-q", "--frames", "4", "--timeout", "120", "--model", s(&model)].map(OsString::from).into();
    args.extend(cases.iter().filter(|c| !c.path.starts_with(&tree)).map(|c| c.path.clone().into_os_string()));
    args.push(tree.clone().into_os_string());
    let out = dfscan_guarded(&args, HANG_GUARD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = json_lines(&out);
    // What each input produced, for the record (shown with --nocapture or on failure).
    for l in &lines {
        eprintln!("{:>40} {:>5} faces={} {}", l["path"].as_str().unwrap().rsplit('/').next().unwrap().escape_debug().to_string(), l["status"].as_str().unwrap(), l["faces"], l["error"].as_str().unwrap_or(""));
    }
    assert_eq!(lines.len(), cases.len(), "one line per input: {lines:#?}");
    for c in &cases {
        let line = the_line(&lines, &c.ends_with);
        match c.want {
            Want::Ok => assert_eq!(line["status"], "ok", "{}: {line}", c.ends_with),
            // No face is an outcome, not a failure: no score, no error.
            Want::NoFace => {
                assert_eq!((&line["status"], &line["verdict"], &line["score"]), (&json!("ok"), &json!("no_face"), &Value::Null), "{line}");
                assert!(line.get("error").is_none(), "{line}");
            }
            Want::Error(reason) => {
                assert_eq!(line["status"], "error", "{}: {line}", c.ends_with);
                let error = line["error"].as_str().unwrap();
                assert!(error.contains(reason), "{}: wanted {reason:?} in {error:?}", c.ends_with);
                assert_eq!(line["score"], Value::Null);
            }
        }
    }
    assert!(the_line(&lines, "many_faces.jpg")["faces"].as_u64().unwrap() >= 4, "a crowd is several faces");
    assert_eq!(the_line(&lines, "frame_4k.mp4")["video"]["width"], 3840);
    assert_eq!(the_line(&lines, "rotated.mp4")["video"]["rotation"], 90);
    assert!(the_line(&lines, "not utf8 \u{FFFD}\u{FFFD}.jpg")["path"].is_string());
    assert_eq!(out.status.code(), Some(2), "errors make exit code 2");

    // The good clip scores the same alone as among the bad ones.
    let alone = json_lines(&dfscan_guarded(&["scan", "-q", "--frames", "4", "--model", s(&model), s(&good)], HANG_GUARD));
    let (a, b) = (alone[0]["score"].as_f64().unwrap(), the_line(&lines, "good.mp4")["score"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-6, "{a} alone vs {b} in the batch");
}

#[test]
fn an_input_past_its_timeout_is_abandoned_and_the_next_one_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    // Two minutes of the pan (3000 frames), copied without re-encoding; scanning every frame
    // takes far longer than the 2 s allowed.
    let long = tmp.path().join("long.mp4");
    ffmpeg(&["-stream_loop", "40", "-i", s(&samples().join("astronaut_pan.mp4")), "-c", "copy", s(&long)]);
    let jpg = samples().join("astronaut.jpg");
    let out = dfscan_guarded(&["scan", "-q", "--fps", "25", "--timeout", "2", "--model", s(&model), s(&long), s(&jpg)], HANG_GUARD);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let long_line = line_for(&lines, "long.mp4");
    assert_eq!(long_line["status"], "error", "{long_line}");
    assert!(long_line["error"].as_str().unwrap().contains("timed out after 2 s"), "{long_line}");
    assert_eq!(long_line["score"], Value::Null);
    assert_eq!(line_for(&lines, "astronaut.jpg")["status"], "ok");
    assert_eq!(out.status.code(), Some(2));
}
