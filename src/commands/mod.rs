//! The runners of the subcommands (binary only): each turns its parsed arguments into the
//! library's configuration, runs it, reports on stderr, and returns the exit code.
use std::path::PathBuf;

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

pub mod cv;
pub mod lrnet;
pub mod measure;
pub mod prepare;
pub mod scan;
pub mod train;

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
