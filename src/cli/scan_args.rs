//! `dfscan scan`'s arguments (and `watch`'s, which adds its own), in three groups that the
//! queue's commands share: [`SettingsArgs`] (what changes a result; `submit` puts them into
//! each job), [`EngineArgs`] (models, device, threads; a `worker`'s own) and the rest.
use std::path::PathBuf;

use clap::Args;
use dfscan::aggregate::{AcrossTracks, Strategy};
use dfscan::faces::calibrate::Calibration;
use dfscan::faces::DetectorKind;
use dfscan::models::{DeviceChoice, PrecisionChoice};
use dfscan::pipeline::ScanSettings;

use super::FacesMode;

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files, directories (recursive) or `-` to read paths from stdin, one per line.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Write a PNG per face with the ViT's attention over the crop into DIR (needs a ViT: the
    /// OOD model or a member); each JSON line names its folder and files.
    #[arg(long, value_name = "DIR")]
    pub explain: Option<PathBuf>,
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

/// The models and how they run: nothing here changes a result (except which models score).
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Weights file (default: models/default.safetensors, with models/vit.safetensors for the
    /// out-of-distribution risk).
    #[arg(long, conflicts_with = "models")]
    pub model: Option<PathBuf>,
    /// Several models in one pass over the frames, e.g. `mesoinception4,resnet-lstm`: names of
    /// shipped models (models/NAME.safetensors) or paths. Their scores are combined by a
    /// weighted mean and each is reported.
    #[arg(long, value_delimiter = ',', value_name = "NAME|PATH,...")]
    pub models: Vec<String>,
    /// Ensemble weights, one per model of --models (default: equal).
    #[arg(long, value_delimiter = ',', requires = "models")]
    pub model_weights: Vec<f32>,
    /// A learned, calibrated ensemble made by `dfscan fit-ensemble`: its members are the
    /// models, combined by its weights instead of a mean.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "models"])]
    pub ensemble: Option<PathBuf>,
    /// The model whose abnormality module gives `ood_risk`: a ViT (attention path), a U-Net
    /// (reconstruction path) or an EfficientNet (its own features) made by `dfscan train-ood`,
    /// as a shipped name or a path; or `none`. Default: a model of the set that has one (the
    /// shipped default model does: one network gives score and risk); for the plain scan
    /// whose model has none, models/vit.safetensors.
    #[arg(long, value_name = "NAME|PATH|none")]
    pub ood_model: Option<String>,
    /// The attribution model that names a fake's family and method (made by `dfscan
    /// fit-attribution`), or `none`. Default: models/attribution.safetensors for the plain scan
    /// (neither --model, --models nor --ensemble), when it is there.
    #[arg(long, value_name = "PATH|none")]
    pub attribution: Option<String>,
    /// FFmpeg decoder threads (default: half the cores, at most 8; see `pipeline::ThreadSplit`).
    #[arg(long, value_name = "N")]
    pub decode_threads: Option<usize>,
    /// Inputs decoded at once, each on its own thread: one input's decoding overlaps the
    /// next one's (default: 2; results still come out in input order).
    #[arg(long, value_name = "N")]
    pub decode_inputs: Option<usize>,
    /// Decode every frame: no discarding of non-reference frames before a sampled frame, no
    /// seeking to the keyframe before it. The same frames are kept either way; for comparison.
    #[arg(long)]
    pub no_decode_shortcuts: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// What the EfficientNets (the default model, the attribution encoder) compute in: bf16
    /// is about 1.5x faster on a CPU with AVX512-BF16 and moves a score by about 0.001
    /// (README, "Speed"). Default: bf16 on such a CPU, else f32.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
    /// Most face crops per forward pass (default: on CPU 4 for models that compute in bf16
    /// and 2 for the others, where larger batches cost more than they save; 32 on a GPU).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Threads of OpenCV's pool (face detection) and of libtorch's (models), each (default:
    /// half the cores; the stages already run side by side).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The settings that change a result (`pipeline::ScanSettings`); their defaults are its own.
#[derive(Args, Debug)]
pub struct SettingsArgs {
    /// Inputs whose out-of-distribution risk reaches this are "uncertain" instead of fake or real.
    #[arg(long, default_value_t = dfscan::aggregate::DEFAULT_OOD_THRESHOLD)]
    pub ood_threshold: f32,
    /// The OOD model, when it is no member of the set, reads every Nth face of each track
    /// (1: every face). The risk is a mean over the input's faces, so a subset gives nearly
    /// the same risk for a fraction of the cost (README, "Speed").
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub ood_every: usize,
    /// A family or method of the attribution whose averaged probability is below this is
    /// "unknown".
    #[arg(long, default_value_t = dfscan::attribution::DEFAULT_FLOOR)]
    pub attribution_floor: f32,
    /// Faces of each track the attribution model reads (the first ones): its cost is one
    /// encoder pass per face read, paid only by inputs judged fake.
    #[arg(long, value_name = "N", default_value_t = dfscan::attribution::DEFAULT_FACES)]
    pub attribution_faces: usize,
    /// Frames sampled evenly over each video.
    #[arg(long, default_value_t = 32, conflicts_with = "fps")]
    pub frames: usize,
    /// Sample this many frames per second instead of --frames.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Runs of consecutive frames, spread evenly over each video, for the models that read
    /// motion (LRNet); decoded in the same pass as --frames/--fps, which the other models keep
    /// reading. Default: 2 when a landmark model (lrnet) is in the set, else none.
    #[arg(long, value_name = "M")]
    pub clips: Option<usize>,
    /// Consecutive frames per clip. Default: 61, LRNet's two blocks of 30 frames (it reads
    /// blocks k with 30k < n - 30, so 61 frames make 2 blocks and 31 the fewest that make one).
    #[arg(long, value_name = "T", default_value_t = 61)]
    pub clip_len: usize,
    /// Run the face landmarker (MediaPipe FaceMesh) on every face and show its 68 iBUG points
    /// in --per-frame output.
    #[arg(long)]
    pub landmarks: bool,
    /// What LRNet reads: the landmarks calibrated as its source did (stable box, Lucas-Kanade
    /// forward and back, Kalman merge), or `off`: the landmarker's raw points in the same box.
    #[arg(long, value_enum, value_name = "on|off", default_value_t = Calibration::On)]
    pub landmark_calibration: Calibration,
    /// Face detector. yunet320 by default: it finds faces in more frames than res10 at a
    /// sixth of its cost, and its boxes are mapped to res10's, whose crops the shipped models
    /// were trained on (README, "Speed").
    #[arg(long, value_enum, default_value_t = DetectorKind::Yunet320)]
    pub detector: DetectorKind,
    #[arg(long, value_enum, default_value_t = FacesMode::Auto)]
    pub faces: FacesMode,
    /// Faces below this detector confidence are ignored (res10 and yunet).
    #[arg(long, default_value_t = 0.5)]
    pub min_face_confidence: f32,
    /// Fraction of the face box added on each side of the square crop, for every model.
    /// Default: each model's own crop contract (recorded at training), else 0.3.
    #[arg(long)]
    pub margin: Option<f32>,
    #[arg(long, value_enum, default_value_t = Strategy::Confident)]
    pub aggregate: Strategy,
    /// How face tracks (one per person) make the video score: the most fake track, or all
    /// faces pooled.
    #[arg(long, value_enum, default_value_t = AcrossTracks::Max)]
    pub across_tracks: AcrossTracks,
    /// Videos scoring at or above this P(fake) are "fake".
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Add per-frame, per-face evidence to each JSON line.
    #[arg(long)]
    pub per_frame: bool,
}

impl SettingsArgs {
    pub fn settings(&self) -> ScanSettings {
        ScanSettings {
            frames: self.frames,
            fps: self.fps,
            clips: self.clips,
            clip_len: self.clip_len,
            landmarks: self.landmarks,
            landmark_calibration: self.landmark_calibration,
            faces: self.faces,
            detector: self.detector,
            min_face_confidence: self.min_face_confidence,
            margin: self.margin,
            aggregate: self.aggregate,
            across_tracks: self.across_tracks,
            threshold: self.threshold,
            ood_threshold: self.ood_threshold,
            ood_every: self.ood_every,
            attribution_floor: self.attribution_floor,
            attribution_faces: self.attribution_faces,
            per_frame: self.per_frame,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use dfscan::pipeline::ScanSettings;

    #[test]
    fn the_flags_defaults_are_the_settings_defaults() {
        let Command::Scan(args) = Cli::parse_from(["dfscan", "scan", "clip.mp4"]).command else { panic!("a scan") };
        assert_eq!(args.settings.settings(), ScanSettings::default());
    }
}
