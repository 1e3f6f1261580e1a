//! Throughput of the queue on this machine, not a test: the same clips through 1, 2 and 3
//! workers, a fault run (3 workers, one killed with SIGKILL mid-job), and `submit` and
//! `results` alone. Prints a Markdown table.
//!
//! ```sh
//! cargo build --release && cargo run --release --example queue_bench -- [CLIPS] [FRAMES]
//! DFSCAN_BIN=target/debug/dfscan cargo run --example queue_bench -- 30 8   # the debug build
//! ```
//! CLIPS (30) copies of samples/astronaut_pan.mp4, each re-encoded at its own quality (distinct
//! bytes, same face), scanned with the default model at FRAMES (8) frames. Needs redis-server
//! and ffmpeg (scripts/setup.sh). Runs target/release/dfscan, or $DFSCAN_BIN.
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    url: String,
    password_file: PathBuf,
    conn: redis::Connection,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(dir: &Path) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let password = format!("{:016x}", rand::random::<u64>());
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, format!("port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass {password}\ndir {}\n", dir.display())).unwrap();
    let child = Command::new("redis-server").arg(&conf).stdout(Stdio::null()).spawn().expect("redis-server (scripts/setup.sh installs it)");
    let password_file = dir.join("password");
    std::fs::write(&password_file, &password).unwrap();
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/0")).unwrap();
    let started = Instant::now();
    let conn = loop {
        match client.get_connection() {
            Ok(conn) => break conn,
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("redis-server: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Redis { child, url: format!("redis://127.0.0.1:{port}/0"), password_file, conn }
}

fn dfscan(bin: &Path, redis: &Redis, command: &str, stream: &str) -> Command {
    let mut c = Command::new(bin);
    c.args([command, "--queue", &redis.url, "--password-file", redis.password_file.to_str().unwrap(), "--stream", stream]);
    c.env("OMP_NUM_THREADS", "1");
    c
}

fn results(redis: &mut Redis, stream: &str) -> Vec<HashMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE").arg(format!("{stream}:results")).arg("-").arg("+").query(&mut redis.conn).unwrap();
    reply.ids.into_iter().map(|e| e.map.iter().map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap())).collect()).collect()
}

fn submit(bin: &Path, redis: &Redis, stream: &str, args: &[&str]) -> (usize, Duration) {
    let started = Instant::now();
    let out = dfscan(bin, redis, "submit", stream).args(args).arg("-q").output().unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).lines().count(), started.elapsed())
}

fn workers(bin: &Path, redis: &Redis, stream: &str, root: &Path, n: usize, claim_after: &str, logs: &Path) -> Vec<Child> {
    (1..=n)
        .map(|i| {
            let log = std::fs::File::create(logs.join(format!("{stream}-w{i}.log"))).unwrap();
            dfscan(bin, redis, "worker", stream)
                .args(["--root", root.to_str().unwrap(), "--consumer", &format!("w{i}"), "--claim-after", claim_after, "--idle-exit", "3"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Waits until `stream` has `n` results; returns when the first and the last came.
fn wait_results(redis: &mut Redis, stream: &str, n: usize, start: Instant) -> (Duration, Duration) {
    let mut first = None;
    loop {
        let have = results(redis, stream).len();
        if have > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if have >= n {
            return (first.unwrap(), start.elapsed());
        }
        assert!(start.elapsed() < Duration::from_secs(3600), "no end");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clips: usize = args.get(1).map_or(30, |a| a.parse().unwrap());
    let frames: String = args.get(2).cloned().unwrap_or_else(|| "8".into());
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("DFSCAN_BIN").map(PathBuf::from).unwrap_or_else(|| repo.join("target/release/dfscan"));
    assert!(bin.is_file(), "no dfscan at {} (cargo build --release, or DFSCAN_BIN)", bin.display());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, logs) = (tmp.path().join("clips"), tmp.path().join("logs"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    for i in 0..clips {
        let out = dir.join(format!("clip_{i:03}.mp4"));
        let crf = (18 + i % 30).to_string();
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i", repo.join("samples/astronaut_pan.mp4").to_str().unwrap(), "-c:v", "libx264", "-preset", "ultrafast", "-crf", &crf])
            .args(["-metadata", &format!("comment=bench {i}"), out.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut redis = start_redis(tmp.path());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("dfscan queue benchmark: {clips} clips (astronaut_pan.mp4, 3 s 384x288, re-encoded), default model, --frames {frames}");
    println!("binary {}; {} cores; load average before: {}", bin.display(), std::thread::available_parallelism().map_or(0, |n| n.get()), load.trim());
    println!();
    println!("| workers | jobs | wall s (from start, models loading included) | jobs/s | jobs/s first to last result | speed-up |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut base = None;
    for n in 1..=3 {
        let stream = format!("bench{n}");
        let (jobs, _) = submit(&bin, &redis, &stream, &["--frames", &frames, dir.to_str().unwrap()]);
        let start = Instant::now();
        let mut children = workers(&bin, &redis, &stream, &dir, n, "30", &logs);
        let (first, last) = wait_results(&mut redis, &stream, jobs, start);
        for child in &mut children {
            child.wait().unwrap();
        }
        let steady = (jobs - 1) as f64 / (last - first).as_secs_f64();
        let speedup = steady / *base.get_or_insert(steady);
        println!("| {n} | {jobs} | {:.1} | {:.2} | {steady:.2} | {speedup:.2}x |", last.as_secs_f64(), jobs as f64 / last.as_secs_f64());
    }

    // Faults: 3 workers, one killed mid-job once it answered 2.
    let stream = "fault";
    let (jobs, _) = submit(&bin, &redis, stream, &["--frames", &frames, dir.to_str().unwrap()]);
    let start = Instant::now();
    let mut children = workers(&bin, &redis, stream, &dir, 3, "5", &logs);
    loop {
        let by_w1 = results(&mut redis, stream).iter().filter(|r| r["worker"] == "w1").count();
        // (No group yet until a worker made it.)
        let held: redis::RedisResult<redis::Value> = redis::cmd("XPENDING").arg(stream).arg("dfscan").arg("-").arg("+").arg(100).arg("w1").query(&mut redis.conn);
        if by_w1 >= 2 && matches!(&held, Ok(redis::Value::Array(a)) if !a.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children[0].kill().unwrap();
    children[0].wait().unwrap();
    let (_, last) = wait_results(&mut redis, stream, jobs, start);
    for child in &mut children[1..] {
        child.wait().unwrap();
    }
    let all = results(&mut redis, stream);
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    for r in &all {
        *per_job.entry(r["job"].as_str()).or_default() += 1;
    }
    let duplicates: usize = per_job.values().map(|n| n - 1).sum();
    let redelivered = all.iter().filter(|r| r["attempt"] != "1").count();
    println!();
    println!("fault run: jobs {jobs}, workers 3, kills 1 (SIGKILL mid-job), redeliveries {redelivered}, duplicates {duplicates}, lost {}, {:.1} s", jobs - per_job.len(), last.as_secs_f64());

    // Submit and results alone, on 2000 small files and 2000 result lines.
    let many = tmp.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..2000 {
        std::fs::write(many.join(format!("f{i:04}.jpg")), format!("not a picture {i}").repeat(64)).unwrap();
    }
    let (count, took) = submit(&bin, &redis, "alone", &[many.to_str().unwrap()]);
    println!("submit alone: {count} jobs in {:.2} s = {:.0} jobs/s (walk, BLAKE3, XADD; process start included)", took.as_secs_f64(), count as f64 / took.as_secs_f64());
    let line = results(&mut redis, "bench1")[0]["line"].clone();
    let ids: Vec<String> = redis::cmd("XRANGE").arg("alone").arg("-").arg("+").query::<redis::streams::StreamRangeReply>(&mut redis.conn).unwrap().ids.into_iter().map(|e| e.id).collect();
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("XADD").arg("alone:results").arg("*").arg("job").arg(id).arg("worker").arg("bench").arg("attempt").arg(1).arg("line").arg(&line).ignore();
        pipe.cmd("HSET").arg("alone:done").arg(id).arg("x").ignore();
    }
    pipe.query::<()>(&mut redis.conn).unwrap();
    let started = Instant::now();
    let out = dfscan(&bin, &redis, "results", "alone").arg("--wait").output().unwrap();
    let took = started.elapsed();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    println!("results alone: {lines} lines in {:.2} s = {:.0} lines/s (XRANGE pages, --wait bookkeeping; process start included)", took.as_secs_f64(), lines as f64 / took.as_secs_f64());
    println!("load average after: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}
