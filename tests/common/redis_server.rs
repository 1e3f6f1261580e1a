//! A private redis-server for one test: a free loopback port, a random password (in a config
//! file, not on its command line), no persistence, a temporary folder; stopped on drop.
//! Debian's redis-server is installed by scripts/setup.sh; without it the queue tests fail
//! and say so (they do not skip).
#![allow(dead_code)]
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub password: String,
    /// PEM of the CA that signed the server's certificate, for a TLS server.
    pub ca: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 from a CA made here
    /// (`ca`, for `--tls-ca`).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "redis-server is not installed: the queue tests need a real one (scripts/setup.sh installs Debian's redis-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let password = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let ca = tls.then(|| certificates(dir.path()));
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let d = dir.path().display();
            let mut conf = format!("bind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass {password}\ndir {d}\nlogfile {d}/redis.log\n");
            conf += &if tls {
                format!("port 0\ntls-port {port}\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\ntls-ca-cert-file {d}/ca.crt\ntls-auth-clients no\n")
            } else {
                format!("port {port}\n")
            };
            let conf_file = dir.path().join("redis.conf");
            std::fs::write(&conf_file, conf).unwrap();
            let mut child = Command::new("redis-server").arg(&conf_file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server starts");
            if wait_ready(&mut child, port, &password, ca.as_deref()) {
                return Self { child, port, password, ca, dir };
            }
            // The port was taken in between: another one.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start: {}", std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default());
    }

    /// The queue URL, without the password.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// A file holding the password, for `--password-file`.
    pub fn password_file(&self) -> PathBuf {
        let path = self.dir.path().join("password");
        std::fs::write(&path, format!("{}\n", self.password)).unwrap();
        path
    }

    /// A connection of the test's own.
    pub fn conn(&self) -> redis::Connection {
        connect(self.port, &self.password, self.ca.as_deref()).expect("the test connects to its redis-server")
    }

    /// Every entry of `stream`: (id, fields).
    pub fn entries(&self, stream: &str) -> Vec<(String, HashMap<String, String>)> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut self.conn()).unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                let fields = e.map.iter().map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap())).collect();
                (e.id, fields)
            })
            .collect()
    }

    /// Jobs pending on `consumer` in `group` of `stream`.
    pub fn pending_on(&self, stream: &str, group: &str, consumer: &str) -> usize {
        let reply: redis::Value = redis::cmd("XPENDING").arg(stream).arg(group).arg("-").arg("+").arg(1000).arg(consumer).query(&mut self.conn()).unwrap();
        match reply {
            redis::Value::Array(items) => items.len(),
            _ => 0,
        }
    }

    /// Everything the server holds, as text (to look for a password in it).
    pub fn dump_streams(&self, streams: &[&str]) -> String {
        streams.iter().map(|s| format!("{:?}", self.entries(s))).collect::<Vec<_>>().join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

fn wait_ready(child: &mut Child, port: u16, password: &str, ca: Option<&Path>) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(mut conn) = connect(port, password, ca) {
            if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn connect(port: u16, password: &str, ca: Option<&Path>) -> redis::RedisResult<redis::Connection> {
    let scheme = if ca.is_some() { "rediss" } else { "redis" };
    let url = format!("{scheme}://:{password}@127.0.0.1:{port}/0");
    let client = match ca {
        Some(ca) => redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(ca).unwrap()) })?,
        None => redis::Client::open(url)?,
    };
    client.get_connection_with_timeout(Duration::from_secs(2))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 (openssl, installed with the set-up); returns
/// the CA's PEM.
fn certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs (scripts/setup.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=dfscan test CA"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"]);
    dir.join("ca.crt")
}

/// Far above a normal run: only a hang gets there.
pub const HANG_GUARD: Duration = Duration::from_secs(300);

impl RedisServer {
    /// `--queue URL --password-file FILE` (and `--tls-ca CA` for a TLS server).
    pub fn queue_args(&self) -> Vec<String> {
        let mut args = vec!["--queue".to_string(), self.url(), "--password-file".into(), self.password_file().display().to_string()];
        if let Some(ca) = &self.ca {
            args.extend(["--tls-ca".to_string(), ca.display().to_string()]);
        }
        args
    }

    /// `dfscan COMMAND` with the queue's flags and `args`, to its end.
    pub fn dfscan(&self, command: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec![command.to_string()];
        all.extend(self.queue_args());
        all.extend(args.iter().map(|a| a.to_string()));
        crate::common::dfscan_guarded(&all, HANG_GUARD)
    }

    /// Submits `args` (paths and settings); returns the job ids in order.
    pub fn submit(&self, args: &[&str]) -> Vec<String> {
        let out = self.dfscan("submit", args);
        assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
        crate::common::plain_json_lines(&out).iter().map(|l| l["job"].as_str().unwrap().to_string()).collect()
    }

    /// A worker in the background, its stderr in `log`.
    pub fn spawn_worker(&self, consumer: &str, args: &[&str], log: &Path) -> Child {
        crate::common::dfscan_command()
            .arg("worker")
            .args(self.queue_args())
            .args(["--consumer", consumer])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    /// The results stream's entries by job: (job id -> every entry's fields).
    pub fn results_by_job(&self, stream: &str) -> HashMap<String, Vec<HashMap<String, String>>> {
        let mut by_job: HashMap<String, Vec<HashMap<String, String>>> = HashMap::new();
        for (_, fields) in self.entries(&format!("{stream}:results")) {
            by_job.entry(fields["job"].clone()).or_default().push(fields);
        }
        by_job
    }
}

/// Waits for a worker to exit on its own; kills it and fails past the guard.
pub fn wait_exit(child: &mut Child, what: &str, log: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            panic!("{what} did not exit; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done`, failing past the guard with `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < HANG_GUARD, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` short distinct clips (0.5 s of FFmpeg's test pattern each, 96x72, 5 frames) in `dir`.
pub fn clips(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let duration = format!("testsrc2=size=96x72:rate=10:duration={}", n as f64 * 0.5);
    let pattern = dir.join("clip_%03d.mp4");
    crate::common::ffmpeg(&["-f", "lavfi", "-i", &duration, "-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-keyint_min", "5", "-sc_threshold", "0", "-f", "segment", "-segment_time", "0.5", "-reset_timestamps", "1", pattern.to_str().unwrap()]);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert_eq!(paths.len(), n, "FFmpeg cut {} clips", paths.len());
    paths
}
