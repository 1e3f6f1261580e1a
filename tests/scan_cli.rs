//! The scan contract, end to end on the real binary: JSON fields, exit codes, bad inputs among
//! good ones, sampling, rotation, detectors.
mod common;

use common::*;
use serde_json::Value;

const REQUIRED: &[&str] = &[
    "schema_version", "path", "status", "verdict", "score", "model", "frames_sampled", "frames_with_faces", "faces", "elapsed_ms",
];

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_sample_gets_one_complete_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let out = dfscan(&["scan", "-q", "--frames", "6", "--model", s(&model), s(&samples())]);
    let lines = json_lines(&out);
    let media = std::fs::read_dir(samples()).unwrap().filter(|e| dfscan::inputs::is_media(&e.as_ref().unwrap().path())).count();
    assert_eq!(lines.len(), media, "one line per sample: {lines:#?}");
    for line in &lines {
        for key in REQUIRED {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        assert_eq!(line["model"]["name"], "mesoinception4");
        assert_eq!(line["model"]["blake3"].as_str().unwrap().len(), 16);
    }
    let pan = line_for(&lines, "astronaut_pan.mp4");
    assert_eq!(pan["status"], "ok", "{pan}");
    assert_eq!(pan["frames_sampled"], 6);
    assert!(pan["frames_with_faces"].as_u64().unwrap() >= 5, "res10 finds the astronaut: {pan}");
    let score = pan["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    assert_eq!(pan["verdict"], if score >= 0.5 { "fake" } else { "real" });
    // No face is a verdict without a score, not an error: it leaves the exit code alone.
    let no_face = line_for(&lines, "no_face.mp4");
    assert_eq!(no_face["status"], "ok", "{no_face}");
    assert_eq!(no_face["verdict"], "no_face");
    assert_eq!(no_face["score"], Value::Null);
    assert_eq!((no_face["faces"].as_u64(), no_face.get("error")), (Some(0), None));
    assert_eq!(out.status.code(), Some(if lines.iter().any(|l| l["verdict"] == "fake") { 1 } else { 0 }));
}

#[test]
fn exit_codes_follow_the_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let pan = samples().join("astronaut_pan.mp4");
    let run = |threshold: &str| dfscan(&["scan", "-q", "--frames", "3", "--model", s(&model), "--threshold", threshold, s(&pan)]);
    let all_fake = run("0");
    assert_eq!(json_lines(&all_fake)[0]["verdict"], "fake");
    assert_eq!(all_fake.status.code(), Some(1));
    let all_real = run("1.01");
    assert_eq!(json_lines(&all_real)[0]["verdict"], "real");
    assert_eq!(all_real.status.code(), Some(0));
}

#[test]
fn bad_inputs_get_error_lines_and_the_scan_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.mp4"), b"this is not a video at all").unwrap();
    std::fs::write(dir.join("empty.mp4"), b"").unwrap();
    let good = dir.join("good.mp4");
    std::fs::copy(samples().join("astronaut_pan.mp4"), &good).unwrap();
    // A clip whose data stops at half of what its header promises.
    let whole = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("truncated.mp4"), &whole[..whole.len() / 2]).unwrap();
    let missing = tmp.path().join("does-not-exist.mp4");

    let out = dfscan(&["scan", "-q", "--frames", "4", "--model", s(&model), s(&dir), s(&missing)]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(line_for(&lines, "good.mp4")["status"], "ok");
    for bad in ["notes.mp4", "empty.mp4", "truncated.mp4", "does-not-exist.mp4"] {
        let line = line_for(&lines, bad);
        assert_eq!(line["status"], "error", "{line}");
        assert!(!line["error"].as_str().unwrap().is_empty());
        assert_eq!(line["score"], Value::Null);
    }
    assert!(line_for(&lines, "does-not-exist.mp4")["error"].as_str().unwrap().contains("No such file"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn paths_can_come_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let list = format!("{}\n{}\n", s(&samples().join("astronaut.jpg")), s(&samples().join("astronaut_pan.mp4")));
    let out = dfscan_with_stdin(&["scan", "-q", "--frames", "2", "--model", s(&model), "-"], &list);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:#?}");
    // A still image is a one-frame video.
    assert_eq!(line_for(&lines, "astronaut.jpg")["frames_sampled"], 1);
}

#[test]
fn fps_sampling_and_per_frame_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let out = dfscan(&["scan", "-q", "--fps", "2", "--per-frame", "--model", s(&model), s(&samples().join("astronaut_pan.mp4"))]);
    let line = &json_lines(&out)[0];
    // 3 s at 2 fps: frames at 0, 0.5, ..., 2.5 s.
    assert_eq!(line["frames_sampled"], 6, "{line}");
    let frames = line["frames"].as_array().unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f["pts_s"].as_f64().unwrap()).collect();
    assert_eq!(times, vec![0.0, 0.52, 1.0, 1.52, 2.0, 2.52].into_iter().map(|t: f64| (t * 25.0).floor() / 25.0).collect::<Vec<_>>());
    let face = &frames[0]["faces"][0];
    let (logit, score) = (face["logit"].as_f64().unwrap(), face["score"].as_f64().unwrap());
    assert!((score - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-5);
    assert_eq!(face["box"].as_array().unwrap().len(), 4);
}

#[test]
fn rotated_video_is_scanned_upright() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let scan = |name: &str| {
        let out = dfscan(&["scan", "-q", "--frames", "3", "--per-frame", "--model", s(&model), s(&samples().join(name))]);
        json_lines(&out).remove(0)
    };
    let (upright, rotated) = (scan("astronaut_pan.mp4"), scan("astronaut_rotated.mp4"));
    assert_eq!(rotated["video"]["rotation"], 90);
    assert_eq!((rotated["video"]["width"].clone(), rotated["video"]["height"].clone()), (384.into(), 288.into()));
    // The same faces, in the same places (within encoding noise).
    for (a, b) in upright["frames"].as_array().unwrap().iter().zip(rotated["frames"].as_array().unwrap()) {
        let (ba, bb) = (&a["faces"][0]["box"], &b["faces"][0]["box"]);
        for i in 0..4 {
            assert!((ba[i].as_f64().unwrap() - bb[i].as_f64().unwrap()).abs() < 4.0, "{ba} vs {bb}");
        }
    }
}

#[test]
fn haar_detector_finds_the_face_too() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let out = dfscan(&["scan", "-q", "--frames", "4", "--detector", "haar", "--model", s(&model), s(&samples().join("astronaut_pan.mp4"))]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    assert!(line["frames_with_faces"].as_u64().unwrap() >= 3);
}

#[test]
fn generated_clip_without_faces_is_no_face_not_a_guess() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let clip = tmp.path().join("bars.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "smptebars=duration=1:size=320x240:rate=10", s(&clip)]);
    let out = dfscan(&["scan", "-q", "--model", s(&model), s(&clip)]);
    let line = &json_lines(&out)[0];
    assert_eq!((&line["status"], &line["verdict"], &line["score"]), (&serde_json::json!("ok"), &serde_json::json!("no_face"), &Value::Null), "{line}");
    assert_eq!(out.status.code(), Some(0), "no face is no failure");
    assert_eq!(line["frames_sampled"], 10, "a 10-frame clip gives 10 frames, not 32: {line}");
    assert_eq!(line["faces"], 0);
}

#[test]
fn missing_weights_name_the_commands_that_make_them() {
    let out = dfscan(&["scan", "--model", "/nonexistent/weights.safetensors", s(&samples())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no made-up results");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dfscan train") && err.contains("dfscan import"), "{err}");
}

#[test]
fn closed_stdout_ends_the_scan_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let mut child = dfscan_command()
        .args(["scan", "-q", "--frames", "2", "--model", s(&model)])
        .args(std::iter::repeat(s(&samples().join("astronaut.jpg"))).take(20))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn each_person_is_one_track_and_the_most_fake_decides() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    // Two people moving smoothly side by side: the astronaut pan, and its mirror beside it.
    let pan = samples().join("astronaut_pan.mp4");
    let two = tmp.path().join("two_people.mp4");
    ffmpeg(&["-i", s(&pan), "-filter_complex", "[0:v]split[a][b];[b]hflip[m];[a][m]hstack", "-c:v", "libx264", s(&two)]);
    let scan = |path: &std::path::Path, across: &str| {
        let out = dfscan(&["scan", "-q", "--frames", "6", "--per-frame", "--aggregate", "mean", "--across-tracks", across, "--model", s(&model), s(path)]);
        json_lines(&out).remove(0)
    };
    // One moving face is one track, not many.
    let single = scan(&pan, "max");
    let tracks = single["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 1, "{single}");
    assert_eq!(tracks[0]["frames"], 6);

    let line = scan(&two, "max");
    let tracks = line["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{line}");
    assert!(tracks.iter().all(|t| t["frames"] == 6), "{line}");
    for frame in line["frames"].as_array().unwrap() {
        let mut ids: Vec<u64> = frame["faces"].as_array().unwrap().iter().map(|f| f["track"].as_u64().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, [0, 1], "each frame has one face of each person: {frame}");
    }
    let track_scores: Vec<f64> = tracks.iter().map(|t| t["score"].as_f64().unwrap()).collect();
    let most_fake = track_scores.iter().cloned().fold(f64::MIN, f64::max);
    assert!((line["score"].as_f64().unwrap() - most_fake).abs() < 1e-6);
    // Pooled: the mean of all twelve faces, which lies between the two tracks.
    let pooled = scan(&two, "pooled");
    assert_eq!(pooled["across_tracks"], "pooled");
    let mean = track_scores.iter().sum::<f64>() / 2.0;
    assert!((pooled["score"].as_f64().unwrap() - mean).abs() < 1e-4, "{pooled}");
}

/// The shipped default, calibrated by its shipped stacker, on the samples: the real astronaut
/// clips real, the self-blended one (a fake made by `dfscan self-blend`) fake. Margins are
/// small (models/default.md), so a weaker default fails here.
#[test]
fn the_plain_scan_calls_the_self_blended_sample_fake_and_the_real_clips_real() {
    let out = dfscan(&["scan", "-q", "--no-state", s(&samples())]);
    let lines = json_lines(&out);
    for name in ["astronaut_pan.mp4", "astronaut_rotated.mp4"] {
        assert_eq!(line_for(&lines, name)["verdict"], "real", "{}", line_for(&lines, name));
    }
    let blend = line_for(&lines, "astronaut_selfblend.mp4");
    assert_eq!(blend["verdict"], "fake", "{blend}");
    // The stacker is in force: the line's score is not the member's raw one, and its identity covers both.
    assert_ne!(blend["score"], blend["models"][0]["score"]);
    assert_ne!(blend["model"]["blake3"], blend["models"][0]["blake3"]);
    // The shipped attribution model says how the fake was made, and nothing for a real clip.
    assert!(blend["attribution"]["family"].is_string() && blend["attribution_model"].is_object(), "{blend}");
    assert!(line_for(&lines, "astronaut_pan.mp4")["attribution"].is_null());
    // The README's main command: no sample fails (the no-face one says so), a fake is found.
    assert_eq!(line_for(&lines, "no_face.mp4")["verdict"], "no_face");
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:#?}");
    assert_eq!(out.status.code(), Some(1), "exit 1: fakes found, nothing failed");
}

/// The attribution model runs on its own thread and a fake's line waits for it while later
/// inputs are scored: lines still come in input order, with the numbers a scan of the fake
/// alone gives.
#[test]
fn lines_keep_input_order_while_a_fake_waits_for_its_attribution() {
    let tmp = tempfile::tempdir().unwrap();
    let blend = samples().join("astronaut_selfblend.mp4");
    let again = tmp.path().join("blend-again.mp4");
    std::fs::copy(&blend, &again).unwrap();
    // The still right after the fake is ready long before the fake's attribution (one face
    // against eight): a line sent when ready would overtake it.
    let inputs = [blend.clone(), samples().join("astronaut.jpg"), again, samples().join("astronaut_rotated.mp4")];
    let mut args = vec!["scan", "-q", "--no-state", "--frames", "8"];
    args.extend(inputs.iter().map(|p| s(p)));
    let lines = json_lines(&dfscan(&args));
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, inputs.iter().map(|p| s(p)).collect::<Vec<_>>());
    let alone = json_lines(&dfscan(&["scan", "-q", "--no-state", "--frames", "8", s(&blend)])).remove(0);
    assert!(alone["attribution"]["family"].is_string(), "{alone}");
    for i in [0, 2] {
        assert_eq!(lines[i]["verdict"], "fake", "{}", lines[i]);
        assert_eq!(lines[i]["attribution"], alone["attribution"], "{}", lines[i]);
    }
    assert!(lines[1]["attribution"].is_null() && lines[3]["attribution"].is_null());
}

/// Inputs are decoded side by side (`--decode-inputs`): a long video first and stills after
/// it finish in the other order, and the lines still come in input order, each as a scan
/// decoding one input at a time gives it.
#[test]
fn inputs_decoded_side_by_side_keep_their_order_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let still = samples().join("astronaut.jpg");
    let again = tmp.path().join("still-again.jpg");
    std::fs::copy(&still, &again).unwrap();
    let inputs = [samples().join("astronaut_pan.mp4"), still, samples().join("no_face.mp4"), again, tmp.path().join("missing.mp4")];
    let run = |open: &str| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "16", "--decode-inputs", open];
        args.extend(inputs.iter().map(|p| s(p)));
        json_lines(&dfscan(&args))
    };
    let without_time = |mut line: Value| {
        line.as_object_mut().unwrap().remove("elapsed_ms");
        line
    };
    let (one, three) = (run("1"), run("3"));
    let paths: Vec<&str> = three.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, inputs.iter().map(|p| s(p)).collect::<Vec<_>>());
    assert_eq!(one[0]["faces"], 16, "{}", one[0]);
    assert_eq!(three[4]["status"], "error", "{}", three[4]);
    assert_eq!(one.into_iter().map(without_time).collect::<Vec<_>>(), three.into_iter().map(without_time).collect::<Vec<_>>());
}

/// The attribution model names a fake's family and method and nothing for a real verdict: one
/// input judged both ways by the threshold. It is off for a scan with `--model` unless asked for.
#[test]
fn a_fake_line_is_attributed_and_a_real_one_is_not() {
    let shipped = repo().join("models/attribution.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let pan = samples().join("astronaut_pan.mp4");
    let run = |threshold: &str, extra: &[&str]| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "3", "--model", s(&model), "--threshold", threshold];
        args.extend(extra);
        args.push(s(&pan));
        json_lines(&dfscan(&args))[0].clone()
    };
    let fake = run("0", &["--attribution", s(&shipped)]);
    assert_eq!(fake["verdict"], "fake", "{fake}");
    let a = &fake["attribution"];
    assert!(a["family"].is_string() && a["method"].is_string(), "{fake}");
    assert!((0.0..=1.0).contains(&a["family_p"].as_f64().unwrap()), "{fake}");
    assert_eq!(fake["attribution_model"]["weights"], "attribution.safetensors");
    // At a floor of 1, only a unanimous forest names a family.
    let unsure = run("0", &["--attribution", s(&shipped), "--attribution-floor", "1"]);
    let u = &unsure["attribution"];
    assert_eq!(u["family"] == "unknown", u["family_p"].as_f64().unwrap() < 1.0, "{unsure}");
    let real = run("1.01", &["--attribution", s(&shipped)]);
    assert_eq!(real["verdict"], "real");
    assert!(real.get("attribution").is_some_and(Value::is_null) && real["attribution_model"].is_object(), "{real}");
    let off = run("0", &[]);
    assert!(off.get("attribution").is_none() && off.get("attribution_model").is_none(), "{off}");
}

/// Threads and batch size say how a scan computes, not what it finds: the plain scan (model
/// with its own risk, attribution, stacker) on one thread per library and one crop per pass, and on two
/// threads each and 16 crops per pass, gives the same scores.
#[test]
fn threads_and_batch_size_change_no_score() {
    let inputs = [samples().join("astronaut_pan.mp4"), samples().join("astronaut_selfblend.mp4")];
    let run = |threads: &str, batch: &str| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "8", "--threads", threads, "--decode-threads", threads, "--batch-size", batch];
        args.extend(inputs.iter().map(|p| s(p)));
        json_lines(&dfscan(&args))
    };
    let (one, two) = (run("1", "1"), run("2", "16"));
    assert_eq!(one.len(), 2);
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-4,
        _ => a == b,
    };
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a["status"], "ok", "{a}");
        assert_eq!((&a["faces"], &a["verdict"]), (&b["faces"], &b["verdict"]), "{a}\n{b}");
        assert!(close(&a["score"], &b["score"]) && close(&a["ood_risk"], &b["ood_risk"]), "{a}\n{b}");
        for (ma, mb) in a["models"].as_array().unwrap().iter().zip(b["models"].as_array().unwrap()) {
            assert!(close(&ma["score"], &mb["score"]), "{ma} vs {mb}");
        }
    }
}
