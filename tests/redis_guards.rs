//! Who may do what on the queue, on a real redis-server: a job outside the worker's roots
//! (named directly or through a symlink) gets an error line and nothing is read; a malformed
//! entry goes to the dead letters and the worker goes on; the password is required and never
//! shown; TLS (`rediss://`) works with a private CA; the same content is answered once.
mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::path::Path;

use common::*;
use redis_server::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

const CHEAP: [&str; 4] = ["--faces", "none", "--frames", "2"];

#[test]
fn outside_the_roots_and_malformed_jobs_never_reach_the_scan() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let (root, elsewhere) = (tmp.path().join("root"), tmp.path().join("elsewhere"));
    let inside = clips(&root, 1).remove(0);
    let outside = clips(&elsewhere, 1).remove(0);
    std::os::unix::fs::symlink(&outside, root.join("link.mp4")).unwrap();
    // Garbage first: the worker must go on to the jobs after it.
    let garbage: String = redis::cmd("XADD").arg("dfscan:jobs").arg("*").arg("rm -rf").arg(b"\xff\x00junk".as_slice()).query(&mut server.conn()).unwrap();
    let settings_garbage: String = redis::cmd("XADD")
        .arg("dfscan:jobs")
        .arg("*")
        .arg(&[("v", "1"), ("path", s(&inside)), ("blake3", &"0".repeat(64)), ("size", "1"), ("settings", r#"{"frames":2,"model":"/etc/shadow"}"#)])
        .query(&mut server.conn())
        .unwrap();
    let jobs = server.submit(&[&CHEAP[..], &[s(&outside), s(&root.join("link.mp4")), &format!("{}/../elsewhere/clip_000.mp4", root.display()), s(&inside)]].concat());
    let log = tmp.path().join("w.log");
    let mut worker = server.spawn_worker("w1", &["--root", s(&root), "--model", s(&model), "--idle-exit", "2", "--claim-after", "5"], &log);
    let status = wait_exit(&mut worker, "the worker", &log);
    assert!(status.success(), "{}", log_of(&log));

    let dead = server.entries("dfscan:jobs:dead");
    assert_eq!(dead.iter().map(|(_, f)| f["job"].as_str()).collect::<Vec<_>>(), [garbage.as_str(), settings_garbage.as_str()]);
    assert!(dead[0].1["error"].contains("malformed job: unknown field"), "{dead:?}");
    assert!(dead[1].1["error"].contains("unknown field `model`"), "{dead:?}");
    let by_job = server.results_by_job("dfscan:jobs");
    for job in &jobs[..3] {
        let line: serde_json::Value = serde_json::from_str(&by_job[job][0]["line"]).unwrap();
        assert_eq!(line["status"], "error");
        assert_eq!(line["error"], "outside the worker's roots (--root)", "{line}");
        assert_eq!(line["frames_sampled"], 0, "nothing was read");
    }
    let ok: serde_json::Value = serde_json::from_str(&by_job[&jobs[3]][0]["line"]).unwrap();
    assert_eq!(ok["status"], "ok", "{ok}");
    // `results --wait` ends: the garbage has dead letters, and says so.
    let waited = server.dfscan("results", &["--wait"]);
    assert_eq!(waited.status.code(), Some(2));
    assert_eq!(json_lines(&waited).len(), 4);
    assert_eq!(String::from_utf8_lossy(&waited.stderr).matches("has no line").count(), 2);

    // The same bytes again (another name): answered from the kept answer, not scanned again.
    let copy = root.join("copy.mp4");
    std::fs::copy(&inside, &copy).unwrap();
    let again = server.submit(&[&CHEAP[..], &[s(&copy)]].concat());
    let mut worker = server.spawn_worker("w2", &["--root", s(&root), "--model", s(&model), "--idle-exit", "1"], &log);
    assert!(wait_exit(&mut worker, "the second worker", &log).success(), "{}", log_of(&log));
    let reused = &server.results_by_job("dfscan:jobs")[&again[0]][0];
    assert_eq!(reused["answered"], "reused");
    let line: serde_json::Value = serde_json::from_str(&reused["line"]).unwrap();
    assert_eq!(line["path"], s(&copy));
    assert_eq!(line["score"], ok["score"]);
}

#[test]
fn the_password_is_required_and_never_shown() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("in");
    let clip = clips(&dir, 1).remove(0);
    let bare = |args: &[&str]| dfscan_guarded(args, HANG_GUARD);
    let url = server.url();

    let refused = bare(&["submit", "--queue", &url, s(&clip)]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("NOAUTH") || said.contains("uthentication"), "{said}");
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let refused = bare(&["submit", "--queue", &url, "--password-file", s(&wrong), s(&clip)]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("authentication failed") && !said.contains("not-it"), "{said}");

    let mut said = String::new();
    // A password in the URL works, with a warning that shows it masked.
    let in_url = format!("redis://:{}@127.0.0.1:{}/0", server.password, server.port);
    let out = bare(&["submit", "--queue", &in_url, "--stream", "other", "--faces", "none", s(&clip)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("redis://:***@127.0.0.1:{}/0", server.port)), "{}", String::from_utf8_lossy(&out.stderr));
    said += &format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // From the environment.
    let out = dfscan_command().args(["submit", "--queue", &url, "--faces", "none", "--frames", "2", s(&clip)]).env("DFSCAN_REDIS_PASSWORD", &server.password).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    said += &format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // From a file, for the worker: not on its command line.
    let log = tmp.path().join("w.log");
    let mut worker = server.spawn_worker("w1", &["--root", s(&dir), "--model", s(&model), "--idle-exit", "2"], &log);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.id())).unwrap_or_default();
    assert!(wait_exit(&mut worker, "the worker", &log).success(), "{}", log_of(&log));
    let results = server.dfscan("results", &["--wait"]);
    // 0 or 1: an untrained model calls what it likes.
    assert!(matches!(results.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&results.stderr));
    said += &format!("{}{}{}", log_of(&log), String::from_utf8_lossy(&results.stdout), String::from_utf8_lossy(&results.stderr));
    said += &String::from_utf8_lossy(&cmdline);
    said += &server.dump_streams(&["dfscan:jobs", "dfscan:jobs:results", "dfscan:jobs:dead", "other"]);
    assert!(said.contains("\"status\":\"ok\""), "the run worked: {said}");
    assert!(!said.contains(&server.password), "the password shows: {said}");
}

#[test]
fn rediss_with_a_private_ca() {
    let server = RedisServer::start_tls();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("in");
    let clip = clips(&dir, 1).remove(0);
    let jobs = server.submit(&[&CHEAP[..], &[s(&clip)]].concat());
    assert_eq!(jobs.len(), 1);
    let log = tmp.path().join("w.log");
    let mut worker = server.spawn_worker("w1", &["--root", s(&dir), "--model", s(&model), "--idle-exit", "1"], &log);
    assert!(wait_exit(&mut worker, "the worker", &log).success(), "{}", log_of(&log));
    let waited = server.dfscan("results", &["--wait"]);
    assert!(matches!(waited.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&waited.stderr));
    assert_eq!(json_lines(&waited)[0]["status"], "ok");
    // Not without TLS, and not without trusting the CA.
    let password = server.password_file();
    let plain = format!("redis://127.0.0.1:{}/0", server.port);
    let refused = dfscan_guarded(&["results", "--queue", &plain, "--password-file", s(&password)], HANG_GUARD);
    assert_eq!(refused.status.code(), Some(2));
    let untrusted = dfscan_guarded(&["results", "--queue", &server.url(), "--password-file", s(&password)], HANG_GUARD);
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&untrusted.stderr).to_lowercase().contains("certificate"), "{}", String::from_utf8_lossy(&untrusted.stderr));
}
