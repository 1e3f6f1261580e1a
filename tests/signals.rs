//! SIGINT/SIGTERM on the real binary: the first lets the inputs in flight (one per decode
//! thread, two by default) finish and takes no other, the second abandons them; either way
//! every printed line is whole and the exit is 130.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Far above a normal run of these tests: only a hang gets there.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two copies of two minutes of the pan (3075 frames), copied without re-encoding: one for
/// each of the two decode threads.
fn long_clips(dir: &Path) -> [PathBuf; 2] {
    let long = dir.join("long.mp4");
    ffmpeg(&["-stream_loop", "40", "-i", s(&samples().join("astronaut_pan.mp4")), "-c", "copy", s(&long)]);
    let again = dir.join("long-again.mp4");
    std::fs::copy(&long, &again).unwrap();
    [long, again]
}

fn spawn(args: &[&str]) -> Child {
    // --no-state: only decode opens the input then, which is what `wait_until_open` looks for.
    dfscan_command().arg("scan").arg("--no-state").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the child has `file` open: decode has started on it, so it is in flight.
fn wait_until_open(child: &mut Child, file: &Path) {
    let started = Instant::now();
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    loop {
        let open = std::fs::read_dir(&fds).map(|d| d.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == file))).unwrap_or(false);
        if open {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "dfscan ended before opening {}", file.display());
        assert!(started.elapsed() < HANG_GUARD, "dfscan never opened {}", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success());
}

fn finish(child: Child) -> std::process::Output {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > HANG_GUARD {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("dfscan did not stop after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

#[test]
fn first_signal_lets_the_inputs_in_flight_finish_and_takes_no_more() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let long = long_clips(tmp.path());
    // Decoding all 3075 frames to reach the last of 8 targets takes seconds: time to signal.
    let mut child = spawn(&["-q", "--frames", "8", "--model", s(&model), s(&long[0]), s(&long[1]), s(&samples().join("astronaut.jpg"))]);
    long.iter().for_each(|clip| wait_until_open(&mut child, clip));
    signal(&child, "TERM");
    let out = finish(child);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "only the inputs in flight: {lines:#?}");
    for (line, clip) in lines.iter().zip(&long) {
        assert_eq!((line["path"].as_str(), &line["status"]), (Some(s(clip)), &serde_json::json!("ok")), "it finished normally: {line}");
        assert_eq!(line["frames_sampled"], 8);
    }
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn second_signal_abandons_the_inputs_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let long = long_clips(tmp.path());
    // Every frame through the face detector: minutes, unless abandoned.
    let mut child = spawn(&["-q", "--fps", "25", "--model", s(&model), s(&long[0]), s(&long[1]), s(&samples().join("astronaut.jpg"))]);
    long.iter().for_each(|clip| wait_until_open(&mut child, clip));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "INT");
    let out = finish(child);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, clip) in lines.iter().zip(&long) {
        assert_eq!(line["path"], s(clip));
        assert_eq!(line["status"], "error");
        assert_eq!(line["error"], "interrupted", "{line}");
    }
    assert_eq!(out.status.code(), Some(130));
}
