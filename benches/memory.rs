//! Bounded memory: scans 1000 small generated inputs (half 1 s clips, half stills) in one run
//! of the real binary and prints its peak RSS (VmHWM) after 10, 100 and 1000 results. The
//! pipeline's queues are bounded and finished inputs leave nothing behind, so the peak must
//! stay flat once the model is loaded.
//!
//! `cargo bench --bench memory` (or `-- N` for another count; `-- --shipped` scans with the
//! shipped default model, as the plain scan does, instead of an untrained MesoInception4). Not
//! a test: it asserts nothing and takes about 6 minutes on a busy 2-core machine.
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A field of /proc/PID/status in kB, e.g. "VmHWM".
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let count: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let shipped = std::env::args().any(|a| a == "--shipped");
    let tmp = tempfile::tempdir().unwrap();
    let untrained = untrained_weights(tmp.path());
    let model: Vec<&str> = if shipped { Vec::new() } else { vec!["--model", s(&untrained)] };
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    let clip = tmp.path().join("clip.mp4");
    ffmpeg(&["-i", s(&samples().join("astronaut_pan.mp4")), "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", s(&clip)]);
    for i in 0..count {
        let (source, ext) = if i % 2 == 0 { (clip.clone(), "mp4") } else { (samples().join("astronaut.jpg"), "jpg") };
        std::fs::copy(source, dir.join(format!("input_{i:05}.{ext}"))).unwrap();
    }

    let started = Instant::now();
    let mut child = dfscan_command()
        .args(["scan", "-q", "--frames", "4", "--state", s(&tmp.path().join("state.sqlite3"))])
        .args(&model)
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut checkpoints: Vec<usize> = [10, 100, 1000, count].into_iter().filter(|&c| c <= count).collect();
    checkpoints.sort();
    checkpoints.dedup();
    let which = if shipped { "the shipped default model" } else { "an untrained MesoInception4" };
    println!("dfscan scan of {count} inputs ({} 1 s clips, {} stills), --frames 4, yunet320 faces, {which}", count.div_ceil(2), count / 2);
    println!("{:>8} {:>12} {:>12} {:>10}", "results", "peak RSS MB", "RSS MB", "elapsed s");
    let mut seen = 0;
    let mut errors = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        errors += (line["status"] != "ok") as usize;
        seen += 1;
        if checkpoints.contains(&seen) {
            let (hwm, rss) = (status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS"));
            println!("{seen:>8} {:>12.1} {:>12.1} {:>10.1}", hwm as f64 / 1024.0, rss as f64 / 1024.0, started.elapsed().as_secs_f64());
        }
    }
    let status = child.wait().unwrap();
    println!("{seen} lines, {errors} errors, exit {status}");
}
