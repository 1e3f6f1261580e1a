//! The scan on many machines: jobs in a Redis stream, workers in a consumer group.
//!
//! ```text
//! submit --XADD--> NAME --XREADGROUP / XAUTOCLAIM--> worker (the scan's pipeline)
//!                                                     | one script: XADD result, XACK
//!                      NAME:results <----------------+ (and NAME:dead after N failures)
//! results --XRANGE / XREAD--> JSON lines on stdout, as `scan` prints them
//! ```
//!
//! Redis does the queueing: at-least-once delivery, redelivery of a dead worker's jobs
//! (XAUTOCLAIM after `claim_after`) and acknowledgement (XACK). dfscan adds what makes that
//! safe for a scanner: a job's result is written and the job acknowledged in one server-side
//! script ([`ops`]), which writes no second result for a job that has one, so a redelivered
//! job (its worker died after the result, or was only slow) never gets two answers; answers
//! are also kept by (content BLAKE3, model, settings), so the same bytes submitted again are
//! answered without a rescan. Jobs are checked before anything reads them ([`job`]): fields,
//! sizes and settings, then the worker's roots (`--root`, symlinks resolved) and the file's
//! size and BLAKE3 against the job's.
//!
//! Keys, for a job stream NAME ([`Names`]): NAME (jobs), NAME:results, NAME:dead (dead
//! letters), NAME:attempts (a hash: tries and last error per job), NAME:done (a hash: job id ->
//! result id, or "dead"), NAME:answers (a hash: answer key -> the JSON line).
//!
//! [`worker`] runs the pipeline on jobs, [`submit`] adds them, [`results`] reads the answers.
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use redis::IntoConnectionInfo;

pub mod job;
pub mod ops;
pub mod results;
mod source;
pub mod submit;
pub mod worker;

/// The default job stream.
pub const DEFAULT_STREAM: &str = "dfscan:jobs";
/// The default consumer group.
pub const DEFAULT_GROUP: &str = "dfscan";

/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply that takes longer than this is a lost connection (blocking reads wait at most
/// [`ops::BLOCK`], far less).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A lost connection is retried for about this long before the command fails.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Where the queue is, and the key names of one job stream.
#[derive(Clone)]
pub struct Queue {
    info: redis::ConnectionInfo,
    /// The URL with any password replaced by `***`: the only form ever printed.
    shown: String,
    /// PEM roots to trust for `rediss://` instead of the system's (`--tls-ca`).
    tls_ca: Option<Vec<u8>>,
    /// The URL itself carries a password.
    url_password: bool,
    pub names: Names,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("url", &self.shown).field("names", &self.names).finish()
    }
}

impl Queue {
    /// `url`: `redis://[USER@]HOST[:PORT][/DB]` or `rediss://` (TLS). `password`: from a file or
    /// the environment (the binary reads them); a URL that carries one too is refused.
    pub fn new(url: &str, password: Option<String>, tls_ca: Option<Vec<u8>>, stream: &str) -> Result<Self> {
        let shown = redact(url);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bail!("{shown}: the queue is a redis:// or rediss:// URL");
        }
        // The crate's message names the part that failed, never the password.
        let mut info = url.into_connection_info().map_err(|e| anyhow!("{shown}: not a Redis URL ({:?})", e.kind()))?;
        let url_password = info.redis_settings().password().is_some();
        if let Some(password) = password {
            if info.redis_settings().password().is_some() {
                bail!("{shown}: the password is given twice (in the URL and by file or environment)");
            }
            let settings = info.redis_settings().clone().set_password(password.trim_end_matches(['\r', '\n']));
            info = info.set_redis_settings(settings);
        }
        if tls_ca.is_some() && !url.starts_with("rediss://") {
            bail!("--tls-ca is for rediss:// URLs (TLS)");
        }
        Ok(Self { info, shown, tls_ca, url_password, names: Names::new(stream)? })
    }

    /// Whether the URL itself carries a password (visible to other users in `ps`).
    pub fn url_has_password(&self) -> bool {
        self.url_password
    }

    /// The URL as it may be printed: without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A connection, made now: a wrong address or password fails here, with the address.
    pub fn connect(&self) -> Result<Link> {
        let client = match &self.tls_ca {
            Some(pem) => redis::Client::build_with_tls(self.info.clone(), redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) }),
            None => redis::Client::open(self.info.clone()),
        }
        .with_context(|| format!("connecting to {}", self.shown))?;
        let mut link = Link { client, conn: None, shown: self.shown.clone() };
        link.reconnect().with_context(|| format!("connecting to {}", self.shown))?;
        Ok(link)
    }
}

/// `url` with the password of its user part replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_string() };
    let user = &authority[..at];
    let shown_user = match user.find(':') {
        Some(colon) => format!("{}:***", &user[..colon]),
        None => user.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end], shown_user, &url[scheme_end + at..])
}

/// The keys of one job stream.
#[derive(Clone, Debug)]
pub struct Names {
    pub jobs: String,
    pub results: String,
    pub dead: String,
    pub attempts: String,
    pub done: String,
    pub answers: String,
}

impl Names {
    pub fn new(stream: &str) -> Result<Self> {
        if stream.is_empty() || stream.len() > 200 || stream.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("--stream: 1 to 200 characters without spaces, got {stream:?}");
        }
        let key = |suffix: &str| format!("{stream}:{suffix}");
        Ok(Self { jobs: stream.to_string(), results: key("results"), dead: key("dead"), attempts: key("attempts"), done: key("done"), answers: key("answers") })
    }
}

/// One connection that reconnects: a dropped connection or a restarted server is retried for
/// [`RECONNECT_FOR`] before a command fails. Open one per thread.
pub struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
    shown: String,
}

impl Link {
    fn reconnect(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        let mut conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
        // A missing or wrong password fails here, plainly ("NOAUTH"), not at the first command.
        redis::cmd("PING").query::<()>(&mut conn)?;
        Ok(self.conn.insert(conn))
    }

    /// Runs `f` on the connection. Only for commands that may run twice: after a lost
    /// connection, `f` runs again on a new one (its first run may have reached the server).
    pub fn run<T>(&mut self, mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let result = match self.conn.as_mut() {
                Some(conn) => f(conn),
                None => self.reconnect().and_then(&mut f),
            };
            match result {
                Err(e) if is_lost_connection(&e) && started.elapsed() < RECONNECT_FOR => {
                    self.conn = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("redis at {}", self.shown))),
                Ok(value) => return Ok(value),
            }
        }
    }

    /// Runs `f` once: for commands that must not run twice (adding a job). A connection lost
    /// before is made again first.
    pub fn run_once<T>(&mut self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let shown = self.shown.clone();
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.reconnect().with_context(|| format!("connecting to {shown}"))?,
        };
        let result = f(conn);
        if result.as_ref().is_err_and(is_lost_connection) {
            self.conn = None;
        }
        result.with_context(|| format!("redis at {}", self.shown))
    }
}

fn is_lost_connection(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("redis://:s3cret@db:6379/0"), "redis://:***@db:6379/0");
        assert_eq!(redact("rediss://scanner:p@ss:w@rd@db.example/2"), "rediss://scanner:***@db.example/2");
        assert_eq!(redact("redis://db:6379/0"), "redis://db:6379/0");
        assert_eq!(redact("redis://user@db"), "redis://user@db");
        let err = Queue::new("redis://:s3cret@db:notaport/0", None, None, DEFAULT_STREAM).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = Queue::new("redis://:s3cret@db/0", Some("other".into()), None, DEFAULT_STREAM).unwrap_err().to_string();
        assert!(err.contains("twice") && !err.contains("s3cret") && !err.contains("other"), "{err}");
        assert!(Queue::new("redis://:s3cret@db/0", None, None, DEFAULT_STREAM).unwrap().url_has_password());
        assert!(!format!("{:?}", Queue::new("redis://db/0", Some("s3cret".into()), None, DEFAULT_STREAM).unwrap()).contains("s3cret"));
    }

    #[test]
    fn keys_follow_the_stream_name() {
        let names = Names::new("scans").unwrap();
        assert_eq!((names.results.as_str(), names.dead.as_str(), names.done.as_str()), ("scans:results", "scans:dead", "scans:done"));
        assert!(Names::new("two words").is_err() && Names::new("").is_err());
    }
}
