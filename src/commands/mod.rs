//! The runners of the subcommands (binary only): each turns its parsed arguments into the
//! library's configuration, runs it, reports on stderr, and returns the exit code.
use std::path::PathBuf;

use anyhow::{Context, Result};

/// How a command ended; `main` alone turns it into the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, and no input judged fake.
    Clean,
    /// Some input judged fake ("uncertain" and "no_face" are not).
    FakesFound,
    /// Some input could not be read, decoded or scored (its line says why).
    Failures,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

pub mod attribution;
pub mod cv;
pub mod lrnet;
pub mod measure;
pub mod prepare;
pub mod results;
pub mod scan;
pub mod submit;
pub mod train;
pub mod worker;

/// How a run that printed scan lines ended, from its printer's summary: `dfscan scan | head`
/// closing stdout is no failure, and `failed` counts errors the printer never saw (jobs that
/// gave no line). Like a virus scanner: failures first, then fakes.
pub fn outcome_of(stopping: bool, stdout_closed: bool, summary: &dfscan::output::Summary, failed: usize) -> Outcome {
    if stopping {
        Outcome::Interrupted
    } else if stdout_closed {
        Outcome::Clean
    } else if summary.errors + failed > 0 {
        Outcome::Failures
    } else if summary.fakes > 0 {
        Outcome::FakesFound
    } else {
        Outcome::Clean
    }
}

/// Where the shipped models, public weights and detector files are: `$DFSCAN_MODELS`, else
/// the models/ folder of the source tree. Read here, once per command; the library is given it.
pub fn models_dir() -> PathBuf {
    std::env::var_os("DFSCAN_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(dfscan::models::BUILT_IN_DIR))
}

/// The default scan model, made by `dfscan train` (see models/default.md).
pub fn default_model() -> PathBuf {
    models_dir().join("default.safetensors")
}

/// The Python with torch that reads PyTorch checkpoints: `$DFSCAN_PYTHON`, else the set-up's.
pub fn python() -> PathBuf {
    std::env::var_os("DFSCAN_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(dfscan::models::import::BUILT_IN_PYTHON))
}

/// The queue of `--queue`: its password from `--password-file`, else `$DFSCAN_REDIS_PASSWORD`
/// (read here, once; never printed), its TLS roots from `--tls-ca`.
pub fn queue(args: &crate::cli::QueueArgs) -> Result<dfscan::queue::Queue> {
    let password = match &args.password_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading --password-file {}", file.display()))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        None => std::env::var("DFSCAN_REDIS_PASSWORD").ok().filter(|p| !p.is_empty()),
    };
    let tls_ca = match &args.tls_ca {
        Some(file) => Some(std::fs::read(file).with_context(|| format!("reading --tls-ca {}", file.display()))?),
        None => None,
    };
    let queue = dfscan::queue::Queue::new(&args.queue, password, tls_ca, &args.stream)?;
    if queue.url_has_password() {
        eprintln!("dfscan: warning: the password in --queue {} shows in `ps`; give it with --password-file or $DFSCAN_REDIS_PASSWORD", queue.shown());
    }
    Ok(queue)
}
