//! `dfscan scan --models lrnet`: LRNet as a member of the scan, on clips made here by the real
//! ffmpeg from samples/astronaut.jpg with a slow zoom and pan (the face moves a little every
//! frame): a clip long enough for LRNet's blocks gets a finite score and a verdict, a 20-frame
//! clip gets "too short for lrnet" and no score, and `--per-frame --landmarks` shows 68 points
//! per face inside its box. Every line is checked against the schema (`common::json_lines`).
mod common;

use std::path::PathBuf;

use common::*;

/// A 25 fps clip of `frames` frames, made once per length.
fn zoom_clip(frames: usize) -> PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lrnet-zoom-{frames}.mp4"));
    if !path.is_file() {
        let filter = "scale=640:-2,zoompan=z='1+0.002*on':x='iw/2-(iw/zoom/2)+on':y='ih/2-(ih/zoom/2)':d=1:s=480x480:fps=25";
        // Tests run at once: each writes its own, then renames.
        let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let partial = path.with_extension(format!("partial-{thread}.mp4"));
        let n = frames.to_string();
        ffmpeg(&["-loop", "1", "-i", samples().join("astronaut.jpg").to_str().unwrap(), "-vf", filter, "-frames:v", &n, "-pix_fmt", "yuv420p", partial.to_str().unwrap()]);
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

fn scan(args: &[&str]) -> Vec<serde_json::Value> {
    let out = dfscan(&[&["scan", "--no-state", "-q"], args].concat());
    let lines = json_lines(&out);
    assert!(!lines.is_empty(), "no line: {}", String::from_utf8_lossy(&out.stderr));
    lines
}

#[test]
fn a_long_enough_track_gets_a_finite_lrnet_score_and_a_short_one_a_note() {
    if venv_python("lrnet scan (imports the public weights)").is_none() {
        return;
    }
    let (long, short) = (zoom_clip(75), zoom_clip(20));
    let lines = scan(&["--models", "lrnet-dfo", long.to_str().unwrap(), short.to_str().unwrap()]);
    let (l, s) = (line_for(&lines, "lrnet-zoom-75.mp4"), line_for(&lines, "lrnet-zoom-20.mp4"));
    // 75 frames, 2 clips of 61 wanted: they overlap, so one clip of 61 consecutive frames, 2 blocks.
    assert_eq!(l["status"], "ok", "{l}");
    let score = l["score"].as_f64().expect("a score");
    assert!(score.is_finite() && (0.0..=1.0).contains(&score));
    assert!(["fake", "real"].contains(&l["verdict"].as_str().unwrap()), "{l}");
    assert_eq!(l["models"][0]["weights"], "lrnet-dfo.safetensors");
    assert_eq!(l["models"][0]["score"], l["score"]);
    let share = l["models"][0]["share_fake"].as_f64().unwrap();
    assert!([0.0, 0.5, 1.0].contains(&share), "two blocks: {share}");
    assert_eq!(l["frames_sampled"], 61);
    assert_eq!(l["tracks"][0]["frames"], 61);
    // 20 frames: no block, no score, the reason said.
    assert_eq!(s["status"], "error");
    assert!(s["score"].is_null() && s["verdict"].is_null() && s["models"][0]["score"].is_null());
    assert!(s["error"].as_str().unwrap().contains("too short for lrnet: 20 consecutive frames"), "{s}");
    assert!(s["models"][0]["note"].as_str().unwrap().contains("too short for lrnet"));
}

#[test]
fn with_a_frame_model_a_short_clip_is_judged_by_the_frame_model_alone() {
    if venv_python("lrnet scan (imports the public weights)").is_none() {
        return;
    }
    let short = zoom_clip(20);
    let lines = scan(&["--models", "mesoinception4,lrnet", "--frames", "4", short.to_str().unwrap()]);
    let l = &lines[0];
    assert_eq!(l["status"], "ok", "{l}");
    assert!(l["models"][1]["score"].is_null() && l["models"][1]["note"].as_str().unwrap().contains("too short for lrnet"));
    assert_eq!(l["score"], l["models"][0]["score"], "the frame model decides alone");
    assert!(l["tracks"][0]["models"][1].is_null());
}

#[test]
fn per_frame_landmarks_are_68_points_inside_each_face_box() {
    if venv_python("lrnet scan (imports the public weights)").is_none() {
        return;
    }
    let long = zoom_clip(75);
    let lines = scan(&["--models", "mesoinception4,lrnet", "--frames", "4", "--per-frame", "--landmarks", long.to_str().unwrap()]);
    let l = &lines[0];
    assert_eq!(l["status"], "ok", "{l}");
    let frames = l["frames"].as_array().unwrap();
    // The 4 spread frames and the 61 of the clip, frames in both kept once.
    assert!(frames.len() > 61 && frames.len() <= 65, "{}", frames.len());
    let in_clip = frames.iter().filter(|f| f.get("clip").is_some()).count();
    assert_eq!(in_clip, 61);
    for frame in frames {
        for face in frame["faces"].as_array().unwrap() {
            let b: Vec<f64> = face["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let points = face["landmarks"].as_array().expect("--landmarks: every face has them");
            assert_eq!(points.len(), 68);
            for (i, p) in points.iter().enumerate() {
                let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                // Jaw and brows may reach a little past a detector's box; eyes, nose and mouth not.
                let slack = if i <= 26 { 0.15 } else { 0.0 };
                let inside = x >= b[0] - slack * b[2] && x <= b[0] + b[2] * (1.0 + slack) && y >= b[1] - slack * b[3] && y <= b[1] + b[3] * (1.0 + slack);
                assert!(inside, "frame {} point {i} at ({x}, {y}) outside box {b:?}", frame["index"]);
            }
            // A frame kept only for the clip has no frame model score.
            if frame.get("clip").is_some() && face["models"][0].is_null() {
                assert!(face["score"].is_null());
            }
        }
    }
}
