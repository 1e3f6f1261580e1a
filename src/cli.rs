//! Command-line arguments (clap). Turned into library configuration once, in main.rs.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dfscan::aggregate::Strategy;
use dfscan::faces::DetectorKind;
use dfscan::models::{Arch, DeviceChoice};

#[derive(Parser, Debug)]
#[command(name = "dfscan", version, about = "Streaming video deepfake scanner: one JSON line per input on stdout")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan videos and images; exit 0 clean, 1 fakes found, 2 errors, 130 interrupted.
    Scan(ScanArgs),
    /// Scan files as they appear in directories, until SIGINT/SIGTERM (exit 130).
    #[command(mut_arg("paths", |a| a.help("Directories to watch, with their subdirectories").value_name("DIR")))]
    #[command(mut_arg("resume", |a| a.hide(true)))]
    Watch(WatchArgs),
    /// Convert a public checkpoint (PyTorch .pth or Keras .h5) into dfscan weights.
    Import(ImportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FacesMode {
    /// Detect faces with --detector.
    Auto,
    /// Take the whole frame as one face (for pre-cropped face images).
    None,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files, directories (recursive) or `-` to read paths from stdin, one per line.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Weights file (default: models/default.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Frames sampled evenly over each video.
    #[arg(long, default_value_t = 32, conflicts_with = "fps")]
    pub frames: usize,
    /// Sample this many frames per second instead of --frames.
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, value_enum, default_value_t = DetectorKind::Res10)]
    pub detector: DetectorKind,
    #[arg(long, value_enum, default_value_t = FacesMode::Auto)]
    pub faces: FacesMode,
    /// Faces below this detector confidence are ignored (res10 only).
    #[arg(long, default_value_t = 0.5)]
    pub min_face_confidence: f32,
    /// Fraction of the face box added on each side of the square crop.
    #[arg(long, default_value_t = 0.3)]
    pub margin: f32,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[arg(long, value_enum, default_value_t = Strategy::Confident)]
    pub aggregate: Strategy,
    /// Videos scoring at or above this P(fake) are "fake".
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Most face crops per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Add per-frame, per-face evidence to each JSON line.
    #[arg(long)]
    pub per_frame: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Abandon an input still in progress after SECS seconds: it gets an error line, the others go on.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// State database of finished scans (default: $XDG_STATE_HOME/dfscan/state.sqlite3).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Neither read nor write the state database.
    #[arg(long, conflicts_with_all = ["state", "resume"])]
    pub no_state: bool,
    /// Skip inputs already scanned at the same path, with the same content, model and settings: they print nothing.
    #[arg(long)]
    pub resume: bool,
    /// Scan every input, even those the state database has (overrides --resume); results are still recorded.
    #[arg(long)]
    pub rescan: bool,
}

/// `scan`'s settings, plus where the lines go. A watcher always resumes (unless --rescan).
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Append the JSON lines to FILE instead of writing them to stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// fsync each line and each state row: a printed result survives a power cut, not just a crash.
    #[arg(long)]
    pub fsync: bool,
    /// A file is scanned once its size and modification time have not changed for MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub settle_ms: u64,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long, value_enum)]
    pub arch: Arch,
    /// PyTorch state_dict (.pth/.pt, legacy or zip), Keras .h5, or safetensors.
    pub input: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Python with torch and h5py, used to read pickles and HDF5 (default: the set-up's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
}
