//! The state database on the real binary: `--resume` skips what was scanned (same path,
//! content, model and settings), rescans what changed, `--rescan` forces; a kill -9 at any
//! moment loses no printed result and leaves the database whole.
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

const HANG_GUARD: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copies of the portrait, each made unique by bytes after its end (JPEG decoders stop at
/// the end-of-image marker), so each has its own content hash.
fn unique_jpegs(dir: &Path, ids: std::ops::Range<usize>) -> Vec<PathBuf> {
    let jpg = std::fs::read(samples().join("astronaut.jpg")).unwrap();
    ids.map(|i| {
            let path = dir.join(format!("face_{i:04}.jpg"));
            let mut bytes = jpg.clone();
            bytes.extend_from_slice(format!("copy {i}").as_bytes());
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn names(lines: &[serde_json::Value]) -> Vec<String> {
    let mut names: Vec<String> = lines.iter().map(|l| l["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).collect();
    names.sort();
    names
}

#[test]
fn resume_skips_what_was_scanned_and_rescans_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let other_model = untrained_weights_seeded(tmp.path(), 1);
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    unique_jpegs(&dir, 0..2);
    std::fs::copy(samples().join("no_face.mp4"), dir.join("no_face.mp4")).unwrap();
    let db = tmp.path().join("state.sqlite3");
    let scan = |extra: &[&str], model: &Path| {
        let mut args = vec!["scan", "--frames", "2", "--state", s(&db), "--model", s(model)];
        args.extend_from_slice(extra);
        args.push(s(&dir));
        dfscan_guarded(&args, HANG_GUARD)
    };

    let first = scan(&[], &model);
    assert_eq!(names(&json_lines(&first)), ["face_0000.jpg", "face_0001.jpg", "no_face.mp4"]);
    // Without --resume everything is scanned again (and recorded again).
    assert_eq!(json_lines(&scan(&[], &model)).len(), 3);

    let resumed = scan(&["--resume"], &model);
    assert!(json_lines(&resumed).is_empty(), "all three were scanned: errors too, they are results");
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("skipped 3 inputs"), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(resumed.status.code(), Some(0), "skipped inputs do not count");

    // A changed file, a new one, and a copy of a scanned one under a new name.
    let mut changed = std::fs::read(dir.join("face_0001.jpg")).unwrap();
    changed.extend_from_slice(b"changed");
    std::fs::write(dir.join("face_0001.jpg"), changed).unwrap();
    unique_jpegs(&dir, 2..3);
    std::fs::copy(dir.join("face_0000.jpg"), dir.join("same_bytes.jpg")).unwrap();
    let resumed = scan(&["--resume"], &model);
    assert_eq!(names(&json_lines(&resumed)), ["face_0001.jpg", "face_0002.jpg", "same_bytes.jpg"]);

    assert_eq!(json_lines(&scan(&["--resume", "--rescan"], &model)).len(), 5, "--rescan forces");
    assert_eq!(json_lines(&scan(&["--resume", "--threshold", "0.7"], &model)).len(), 5, "another threshold is another result");
    assert_eq!(json_lines(&scan(&["--resume"], &other_model)).len(), 5, "another model is another result");
    assert!(json_lines(&scan(&["--resume", "-q"], &other_model)).is_empty());
}

#[test]
fn an_input_that_timed_out_is_not_recorded_so_resume_retries_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let long = tmp.path().join("long.mp4");
    ffmpeg(&["-stream_loop", "40", "-i", s(&samples().join("astronaut_pan.mp4")), "-c", "copy", s(&long)]);
    let db = tmp.path().join("state.sqlite3");
    let args = ["scan", "-q", "--resume", "--fps", "25", "--timeout", "1", "--state", s(&db), "--model", s(&model), s(&long)];
    for _ in 0..2 {
        let lines = json_lines(&dfscan_guarded(&args, HANG_GUARD));
        assert_eq!(lines.len(), 1, "scanned (again): {lines:#?}");
        assert!(lines[0]["error"].as_str().unwrap().contains("timed out"));
    }
}

#[test]
fn kill_9_loses_no_printed_result_and_leaves_the_database_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    let files = unique_jpegs(&dir, 0..120);
    let db = tmp.path().join("state.sqlite3");
    let args = ["scan", "--resume", "--faces", "none", "--frames", "1", "--state", s(&db), "--model", s(&model), s(&dir)];

    let mut child = dfscan_command().args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first_run = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        first_run.push(line.unwrap());
        if first_run.len() == 40 {
            child.kill().unwrap(); // SIGKILL, while later inputs are in flight
            break;
        }
    }
    child.wait().unwrap();
    let first_run = parse_lines(&first_run.join("\n"));

    // A row only ever follows its printed line: every row's path was printed, and every printed
    // path has its row, except perhaps the very last line, printed just before the kill.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let rows: HashSet<PathBuf> = conn
        .prepare("SELECT path FROM scans")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|p| PathBuf::from(String::from_utf8(p.unwrap()).unwrap()))
        .collect();
    let printed: Vec<PathBuf> = first_run.iter().map(|l| std::fs::canonicalize(l["path"].as_str().unwrap()).unwrap()).collect();
    assert!(rows.iter().all(|r| printed.contains(r)), "a row without its line");
    let unrecorded: Vec<&PathBuf> = printed.iter().filter(|p| !rows.contains(*p)).collect();
    assert!(unrecorded.len() <= 1 && unrecorded.iter().all(|p| *p == printed.last().unwrap()), "printed but not recorded: {unrecorded:?}");

    let second_run = json_lines(&dfscan_guarded(&args, HANG_GUARD));
    let first: HashSet<String> = names(&first_run).into_iter().collect();
    let second: Vec<String> = names(&second_run);
    assert_eq!(second.iter().collect::<HashSet<_>>().len(), second.len(), "no input twice in one run");
    let again: Vec<&String> = second.iter().filter(|n| first.contains(*n)).collect();
    assert!(again.len() <= unrecorded.len(), "rescanned although recorded: {again:?}");
    let all: HashSet<&String> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), files.len(), "none lost");
}
