//! The queue on a real redis-server (started here, with a password; see common/redis_server.rs):
//! `submit` + workers + `results --wait` give `scan`'s lines; a worker killed mid-job loses no
//! job and none gets two results; a restarted worker takes its own jobs back; SIGTERM hands
//! unstarted jobs back without counting a try; an input that cannot be read goes to the
//! dead letters after its tries, and a worker started after the submit drains the backlog.
mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use redis_server::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The cheap settings of these tests: whole frames, 4 per clip.
const CHEAP: [&str; 4] = ["--faces", "none", "--frames", "4"];

#[test]
fn submit_two_workers_and_results_give_the_lines_of_scan() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let samples = std::fs::canonicalize(samples()).unwrap();
    let scan = dfscan(&["scan", "-q", "--no-state", "--frames", "4", "--model", s(&model), s(&samples)]);
    let scanned = json_lines(&scan);
    assert_eq!(scanned.len(), 5, "{}", String::from_utf8_lossy(&scan.stderr));

    let jobs = server.submit(&["--frames", "4", s(&samples)]);
    assert_eq!(jobs.len(), 5);
    let args = ["--root", s(&samples), "--model", s(&model), "--idle-exit", "2", "--claim-after", "10"];
    let logs = [tmp.path().join("w1.log"), tmp.path().join("w2.log")];
    let mut workers = [server.spawn_worker("w1", &args, &logs[0]), server.spawn_worker("w2", &args, &logs[1])];
    let waited = server.dfscan("results", &["--wait"]);
    for (worker, log) in workers.iter_mut().zip(&logs) {
        let status = wait_exit(worker, "a worker with --idle-exit", log);
        assert!(status.success(), "{status:?}: {}", log_of(log));
    }
    assert_eq!(waited.status.code(), scan.status.code(), "results --wait exits as scan does: {}", String::from_utf8_lossy(&waited.stderr));
    let clustered = json_lines(&waited);
    assert_eq!(clustered.len(), 5);
    for line in &scanned {
        let name = Path::new(line["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap();
        let other = line_for(&clustered, name);
        for field in ["status", "verdict", "frames_sampled", "frames_with_faces", "faces", "error"] {
            assert_eq!(line[field], other[field], "{name}: {field}");
        }
        match (line["score"].as_f64(), other["score"].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-5, "{name}: scan {a}, cluster {b}"),
            (a, b) => assert_eq!(a, b, "{name}"),
        }
        assert_eq!(line["tracks"].as_array().map(Vec::len), other["tracks"].as_array().map(Vec::len), "{name}: tracks");
    }
    // Both workers took part, or one was so quick the other found nothing: either way once each.
    let by_job = server.results_by_job("dfscan:jobs");
    assert_eq!(by_job.len(), 5);
    assert!(by_job.values().all(|r| r.len() == 1));
}

#[test]
fn fifty_jobs_three_workers_one_killed_mid_job_none_lost_none_twice() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("clips");
    clips(&dir, 50);
    let jobs = server.submit(&[&CHEAP[..], &[s(&dir)]].concat());
    assert_eq!(jobs.len(), 50);
    let args = ["--root", s(&dir), "--model", s(&model), "--claim-after", "2", "--idle-exit", "3"];
    let logs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("w{i}.log"))).collect();
    let mut workers: Vec<_> = (1..=3).map(|i| server.spawn_worker(&format!("w{i}"), &args, &logs[i - 1])).collect();

    // Kill w1 with SIGKILL while it holds jobs, after it has answered a few.
    let started = Instant::now();
    let answered_by = |who: &str| server.results_by_job("dfscan:jobs").values().filter(|r| r[0]["worker"] == who).count();
    wait_until("w1 to answer 2 jobs", || answered_by("w1") >= 2);
    wait_until("w1 to hold a job", || server.pending_on("dfscan:jobs", "dfscan", "w1") > 0);
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    let held_at_kill = server.pending_on("dfscan:jobs", "dfscan", "w1");
    assert!(held_at_kill > 0, "w1 was killed mid-job");
    for (worker, log) in workers[1..].iter_mut().zip(&logs[1..]) {
        let status = wait_exit(worker, "a worker with --idle-exit", log);
        assert!(status.success(), "{status:?}: {}", log_of(log));
    }
    let elapsed = started.elapsed();

    let by_job = server.results_by_job("dfscan:jobs");
    let lost: Vec<&String> = jobs.iter().filter(|j| !by_job.contains_key(*j)).collect();
    let duplicates: usize = by_job.values().map(|r| r.len() - 1).sum();
    let redelivered: Vec<&HashMap<String, String>> = by_job.values().map(|r| &r[0]).filter(|r| r["attempt"] != "1").collect();
    eprintln!(
        "fault figures: jobs {}, workers 3, kills 1 (SIGKILL, {held_at_kill} jobs held), redeliveries {}, duplicates {duplicates}, lost {}, {:.1} s",
        jobs.len(),
        redelivered.len(),
        lost.len(),
        elapsed.as_secs_f64()
    );
    assert!(lost.is_empty(), "lost jobs: {lost:?}");
    assert_eq!(duplicates, 0, "a job with two results");
    assert_eq!(by_job.len(), 50);
    // Only those: the live workers renew their jobs, so none of theirs was claimed.
    assert_eq!(redelivered.len(), held_at_kill, "the jobs w1 held, claimed by the others");
    assert!(redelivered.iter().all(|r| r["worker"] != "w1" && r["attempt"] == "2"), "{redelivered:?}");
    assert!(server.entries("dfscan:jobs:dead").is_empty());
    let waited = server.dfscan("results", &["--wait"]);
    // 0 or 1: an untrained model calls what it likes; no line is an error.
    assert!(matches!(waited.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&waited.stderr));
    let paths: HashSet<String> = json_lines(&waited).iter().map(|l| l["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths.len(), 50, "one line per clip");
}

#[test]
fn a_worker_restarted_with_its_name_takes_back_its_own_jobs() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("clips");
    clips(&dir, 12);
    let jobs = server.submit(&[&CHEAP[..], &[s(&dir)]].concat());
    // No other worker, and claiming far off: only its own name brings the jobs back.
    let args = ["--root", s(&dir), "--model", s(&model), "--claim-after", "600", "--idle-exit", "2"];
    let (log1, log2) = (tmp.path().join("first.log"), tmp.path().join("restarted.log"));
    let mut first = server.spawn_worker("w1", &args, &log1);
    wait_until("w1 to answer a job", || !server.results_by_job("dfscan:jobs").is_empty());
    wait_until("w1 to hold a job", || server.pending_on("dfscan:jobs", "dfscan", "w1") > 0);
    first.kill().unwrap();
    first.wait().unwrap();
    let held: usize = server.pending_on("dfscan:jobs", "dfscan", "w1");
    assert!(held > 0);
    let mut restarted = server.spawn_worker("w1", &args, &log2);
    let status = wait_exit(&mut restarted, "the restarted worker", &log2);
    assert!(status.success(), "{}", log_of(&log2));
    let by_job = server.results_by_job("dfscan:jobs");
    assert_eq!(by_job.len(), jobs.len(), "{}", log_of(&log2));
    assert!(by_job.values().all(|r| r.len() == 1));
    let second_tries = by_job.values().filter(|r| r[0]["attempt"] == "2").count();
    assert_eq!(second_tries, held, "the jobs held at the kill, taken back by the restarted w1");
    assert!(log_of(&log2).contains(&format!("{held} own resumed")), "{}", log_of(&log2));
}

#[test]
fn sigterm_finishes_or_hands_back_and_a_later_worker_drains_the_rest() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("clips");
    clips(&dir, 10);
    let jobs = server.submit(&[&CHEAP[..], &[s(&dir)]].concat());
    let args = ["--root", s(&dir), "--model", s(&model), "--claim-after", "5"];
    let (log1, log2) = (tmp.path().join("stopped.log"), tmp.path().join("late.log"));
    let mut stopped = server.spawn_worker("w1", &args, &log1);
    wait_until("w1 to answer a job", || !server.results_by_job("dfscan:jobs").is_empty());
    assert!(Command::new("kill").args(["-TERM", &stopped.id().to_string()]).status().unwrap().success());
    let status = wait_exit(&mut stopped, "a worker after SIGTERM", &log1);
    assert_eq!(status.code(), Some(130), "{}", log_of(&log1));
    let after_stop = server.results_by_job("dfscan:jobs").len();
    // Started after everything was submitted, with a claim time the handed-back jobs are far past.
    let mut late = server.spawn_worker("w2", &[&args[..], &["--idle-exit", "2"]].concat(), &log2);
    let status = wait_exit(&mut late, "the late worker", &log2);
    assert!(status.success(), "{}", log_of(&log2));
    let by_job = server.results_by_job("dfscan:jobs");
    assert_eq!(by_job.len(), jobs.len(), "w1 answered {after_stop} before SIGTERM; {}", log_of(&log2));
    assert!(by_job.values().all(|r| r.len() == 1));
    // Handed back is not a failed try.
    assert!(by_job.values().all(|r| r[0]["attempt"] == "1"), "{by_job:?}");
    assert!(by_job.values().any(|r| r[0]["worker"] == "w2"), "the late worker drained the rest");
}

#[test]
fn an_unreadable_input_goes_to_the_dead_letters_after_its_tries() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("in");
    let paths = clips(&dir, 2);
    let jobs = server.submit(&[&CHEAP[..], &[s(&paths[0]), s(&paths[1])]].concat());
    // Gone from the shared storage after it was submitted.
    std::fs::remove_file(&paths[1]).unwrap();
    let log = tmp.path().join("w.log");
    let started = Instant::now();
    let mut worker = server.spawn_worker("w1", &["--root", s(&dir), "--model", s(&model), "--claim-after", "1", "--max-attempts", "3", "--idle-exit", "2"], &log);
    let status = wait_exit(&mut worker, "the worker", &log);
    assert!(status.success(), "{}", log_of(&log));
    let dead = server.entries("dfscan:jobs:dead");
    assert_eq!(dead.len(), 1, "{}", log_of(&log));
    let letter = &dead[0].1;
    assert_eq!(letter["job"], jobs[1]);
    assert_eq!(letter["attempts"], "3");
    assert!(letter["error"].contains("cannot read") && letter["error"].contains("No such file"), "{letter:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "two waits of --claim-after between the tries");
    assert_eq!(log_of(&log).matches("tried again after --claim-after").count(), 2, "{}", log_of(&log));
    // Its line says why, and the run fails as `scan` fails on an unreadable input.
    let waited = server.dfscan("results", &["--wait"]);
    assert_eq!(waited.status.code(), Some(2));
    let lines = json_lines(&waited);
    let failed = line_for(&lines, "clip_001.mp4");
    assert_eq!(failed["status"], "error");
    assert!(failed["error"].as_str().unwrap().contains("(3 tries)"), "{failed}");
    assert_eq!(line_for(&lines, "clip_000.mp4")["status"], "ok");
    // Nothing is left pending or half-counted.
    let mut conn = server.conn();
    let tries: HashMap<String, String> = redis::cmd("HGETALL").arg("dfscan:jobs:attempts").query(&mut conn).unwrap();
    assert!(tries.is_empty(), "{tries:?}");
}

#[test]
fn each_job_is_scanned_with_its_own_settings_and_long_jobs_stay_with_their_worker() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let dir = tmp.path().join("clips");
    let paths = clips(&dir, 3);
    let long = dir.join("long.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-c:v", "libx264", "-preset", "ultrafast", s(&long)]);
    let list = |p: &[&Path]| p.iter().map(|p| format!("{}\n", p.display())).collect::<String>();
    let queue = server.queue_args();
    let submit = |settings: &[&str], stdin: String| {
        let args: Vec<&str> = [&["submit"][..], &queue.iter().map(String::as_str).collect::<Vec<_>>(), settings, &["-"]].concat();
        let out = dfscan_with_stdin(&args, &stdin);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        plain_json_lines(&out).iter().map(|l| l["job"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    // Three rounds of settings, a path submit could not read, and a job far longer than the
    // claim time: its worker renews it, so the other worker never takes it.
    let two = submit(&["--faces", "none", "--frames", "2"], list(&[&paths[0], &paths[1]]));
    let three = submit(&["--faces", "none", "--frames", "3"], list(&[&paths[2], &tmp.path().join("missing.mp4")]));
    let again = submit(&["--faces", "none", "--frames", "2", "--aggregate", "mean"], list(&[&paths[0]]));
    let slow = submit(&["--faces", "none", "--frames", "100"], list(&[&long]));
    let args = ["--root", s(tmp.path()), "--model", s(&model), "--claim-after", "1", "--idle-exit", "2", "--batch-size", "4"];
    let logs = [tmp.path().join("w1.log"), tmp.path().join("w2.log")];
    let mut workers = [server.spawn_worker("w1", &args, &logs[0]), server.spawn_worker("w2", &args, &logs[1])];
    for (worker, log) in workers.iter_mut().zip(&logs) {
        assert!(wait_exit(worker, "a worker", log).success(), "{}", log_of(log));
    }
    let by_job = server.results_by_job("dfscan:jobs");
    let line = |job: &String| -> serde_json::Value { serde_json::from_str(&by_job[job][0]["line"]).unwrap() };
    for job in &two {
        assert_eq!(line(job)["frames_sampled"], 2);
    }
    assert_eq!(line(&three[0])["frames_sampled"], 3);
    let missing = line(&three[1]);
    assert_eq!(missing["status"], "error");
    assert!(missing["error"].as_str().unwrap().starts_with("cannot open: No such file"), "{missing}");
    assert_eq!((line(&again[0])["frames_sampled"].clone(), line(&again[0])["aggregate"].clone()), (2.into(), "mean".into()));
    assert_eq!(line(&slow[0])["frames_sampled"], 100);
    assert!(by_job.values().all(|r| r.len() == 1 && r[0]["attempt"] == "1"), "no job was claimed from a live worker: {by_job:?}");
    let elapsed: u64 = line(&slow[0])["elapsed_ms"].as_u64().unwrap();
    eprintln!("the long job took {elapsed} ms against --claim-after 1 s");
}
