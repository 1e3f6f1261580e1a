//! The queue's commands: `submit`, `worker`, `results` (Redis Streams; see docs/distributed.md).
use std::path::PathBuf;

use clap::Args;
use dfscan::queue::{DEFAULT_GROUP, DEFAULT_STREAM};

use super::{EngineArgs, SettingsArgs};

/// Where the queue is.
#[derive(Args, Debug)]
pub struct QueueArgs {
    /// The Redis server: redis://HOST[:PORT][/DB], or rediss://... for TLS; an ACL user goes
    /// before the host (redis://USER@HOST). Give the password with --password-file or
    /// $DFSCAN_REDIS_PASSWORD: one in the URL shows in `ps`.
    #[arg(long, value_name = "URL")]
    pub queue: String,
    /// The job stream; results go to NAME:results, dead letters to NAME:dead.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_STREAM)]
    pub stream: String,
    /// A file whose first line is the Redis password (else $DFSCAN_REDIS_PASSWORD, if set).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM certificates to trust for rediss:// (a private CA) instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Files, directories (recursive) or `-` to read paths from stdin, one per line, as the
    /// workers see them (shared storage).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The settings the workers scan each input with (`scan`'s).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// No closing note on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Read only inputs under DIR (repeatable; symlinks resolved before the check). A job
    /// naming any other path gets an error line.
    #[arg(long = "root", value_name = "DIR", required = true)]
    pub roots: Vec<PathBuf>,
    /// The consumer group: workers of one group share the jobs.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_GROUP)]
    pub group: String,
    /// This worker's name in the group (default: HOSTNAME-PID). A worker restarted with the
    /// same name takes back its own unfinished jobs first.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// Claim jobs that a worker took and stopped renewing this long ago (it died or was cut
    /// off). Live workers renew their jobs every third of it, however long a scan takes.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub claim_after: f64,
    /// A job tried this many times (its workers died, or its input could not be read as
    /// submitted) goes to the dead-letter stream; its line says why.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_attempts: u32,
    /// Exit (0) once no job has come for SECS seconds and none is pending on any worker.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<f64>,
    /// Abandon an input still in progress after SECS seconds: it gets an error line.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// No progress bars and no line per job on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Keep printing results as they come, until SIGINT/SIGTERM.
    #[arg(long)]
    pub follow: bool,
    /// Print results as they come until every submitted job has one (or a dead letter), then
    /// exit as `scan` would: 0 clean, 1 fakes found, 2 errors.
    #[arg(long)]
    pub wait: bool,
    /// Only jobs from this one on (a job id that `submit` printed).
    #[arg(long, value_name = "JOB_ID")]
    pub since: Option<String>,
}
