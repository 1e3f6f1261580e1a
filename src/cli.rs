//! Command-line arguments (clap). Turned into library configuration once, in main.rs.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dfscan::aggregate::Strategy;
use dfscan::faces::calibrate::Calibration;
use dfscan::faces::DetectorKind;
use dfscan::models::weights::Storage;
use dfscan::models::spectrum::ClassifierKind;
use dfscan::models::{Arch, DeviceChoice, PrecisionChoice};
use dfscan::crops::augment::Perturbation;
use dfscan::train::cv::Recipe;
use dfscan::crops::dataset::Split;

mod attribution_args;
mod queue_args;
mod scan_args;
pub use attribution_args::FitAttributionArgs;
pub use dfscan::pipeline::FacesMode;
pub use queue_args::{QueueArgs, ResultsArgs, SubmitArgs, WorkerArgs};
pub use scan_args::{EngineArgs, ScanArgs, SettingsArgs};

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
    /// Convert a public checkpoint (PyTorch .pth or Keras .h5), or a TorchScript module with its contract, into dfscan weights.
    Import(ImportArgs),
    /// Cut labelled inputs into a face-crop cache for training and evaluation.
    Extract(ExtractArgs),
    /// Make a synthetic fake from a real still: its face self-blended (SBI), as PNG.
    SelfBlend(SelfBlendArgs),
    /// Train a face classifier on a crop cache.
    Train(TrainArgs),
    /// Add out-of-distribution heads to a trained ViT (attention VAE and abnormality module)
    /// or U-Net (abnormality module on its reconstruction).
    TrainOod(TrainOodArgs),
    /// Measure a model on a crop cache: AUC, AP, EER, accuracy, log loss, ROC plot.
    Eval(EvalArgs),
    /// Cross-source validation: for each origin of a crop cache, fit on the others and score
    /// it; one table of video AUC per held-out origin.
    Cv(CvArgs),
    /// Fit a calibrated stacker (logistic regression on the members' logits) on the held-out
    /// scores of a `dfscan cv --report`, for `scan --ensemble`.
    FitEnsemble(FitEnsembleArgs),
    /// Fit the attribution model (family and method of a fake; seed 002's embeddings ->
    /// autoencoder -> random forests) on a crop cache, after a grouped cross-validation.
    FitAttribution(FitAttributionArgs),
    /// Per-stage throughput (decode, detect, crop, infer) on one input, as JSON lines.
    Bench(BenchArgs),
    /// Queue a scan on Redis: one job per input (path, BLAKE3, size, settings) for `dfscan worker`s.
    Submit(SubmitArgs),
    /// Scan queued jobs with the scan's pipeline until SIGTERM (exit 130) or --idle-exit (0).
    Worker(WorkerArgs),
    /// Print the queue's results as `scan`'s JSON lines; with --wait, exit as `scan` would.
    Results(ResultsArgs),
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
    /// The architecture of a public checkpoint (INPUT).
    #[arg(long, value_enum, required_unless_present = "torchscript", conflicts_with = "torchscript")]
    pub arch: Option<Arch>,
    /// PyTorch state_dict (.pth/.pt, legacy or zip), Keras .h5, or safetensors (with --arch).
    #[arg(required_unless_present = "torchscript")]
    pub input: Option<PathBuf>,
    /// lrnet only: the second stream's state_dict (g2, after g1 in INPUT).
    pub second: Option<PathBuf>,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Python with torch and h5py, used to read pickles and HDF5 (default: the set-up's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// A TorchScript module (torch.jit.save; scripts/export_torchscript.py makes one), imported
    /// with the contract below into one file that scans like a shipped model.
    #[arg(long, value_name = "MODULE.pt", conflicts_with = "input")]
    pub torchscript: Option<PathBuf>,
    #[command(flatten)]
    pub contract: ContractArgs,
}

/// The contract of a `--torchscript` module: how it was trained (see models::torchscript::Contract).
#[derive(Args, Debug)]
pub struct ContractArgs {
    /// The contract as JSON (inline or a file) with the fields name, input_size, frames, margin,
    /// channels, pixel_max, mean, std, returns, fake_index; flags win over it.
    #[arg(long, value_name = "JSON|FILE", requires = "torchscript")]
    pub contract: Option<String>,
    /// The name JSON lines give it ("torchscript:NAME"; default: the output file's stem).
    #[arg(long, requires = "torchscript")]
    pub name: Option<String>,
    /// Side S of the square input, N x 3 x S x S (frame) or N x T x 3 x S x S (sequence).
    #[arg(long, value_name = "S", requires = "torchscript")]
    pub input_size: Option<i64>,
    /// T: a sequence module reading T crops of a face track (default: a frame module).
    #[arg(long, value_name = "T", requires = "torchscript")]
    pub frames: Option<i64>,
    /// Margin the module's faces were cut with (default: the scan's --margin).
    #[arg(long, requires = "torchscript")]
    pub margin: Option<f32>,
    /// Channel order of the input (default rgb).
    #[arg(long, value_enum, requires = "torchscript")]
    pub channels: Option<dfscan::models::ChannelOrder>,
    /// What a full-scale pixel becomes before mean/std: 1 (default) or 255.
    #[arg(long, requires = "torchscript")]
    pub pixel_max: Option<f64>,
    /// Per-channel mean, in the input's channel order (default 0,0,0).
    #[arg(long, value_delimiter = ',', value_name = "A,B,C", requires = "torchscript")]
    pub mean: Option<Vec<f64>>,
    /// Per-channel std (default 1,1,1).
    #[arg(long, value_delimiter = ',', value_name = "A,B,C", requires = "torchscript")]
    pub std: Option<Vec<f64>>,
    /// What the module returns.
    #[arg(long, value_enum, requires = "torchscript")]
    pub returns: Option<dfscan::models::torchscript::Returns>,
    /// With two-class: the index (0 or 1) of "fake".
    #[arg(long, requires = "torchscript")]
    pub fake_index: Option<i64>,
}

#[derive(Args, Debug)]
pub struct SelfBlendArgs {
    /// A still image (or the first frame of a video) with a face.
    pub input: PathBuf,
    /// The PNG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Seed of the blend's random choices (colour, frequency, warp, mask).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DetectorKind::Res10)]
    pub detector: DetectorKind,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// CSV manifest `path,label[,group][,faces]`, or a folder with real/ and fake/.
    pub manifest: PathBuf,
    /// Cache folder (created; an existing one is resumed).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Frames sampled evenly over each video.
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
    /// The scan's default, so a model trains on the faces a scan finds.
    #[arg(long, value_enum, default_value_t = DetectorKind::Yunet320)]
    pub detector: DetectorKind,
    #[arg(long, default_value_t = 0.5)]
    pub min_face_confidence: f32,
    #[arg(long, default_value_t = 0.3)]
    pub margin: f32,
    /// Side of the stored crops (the largest model input; efficientnet-lite2 reads 260).
    #[arg(long, default_value_t = 256)]
    pub size: i32,
    /// Faces kept per frame, most confident first.
    #[arg(long, default_value_t = 1)]
    pub faces_per_frame: usize,
    /// Instead of face crops, a landmark cache for `train --arch lrnet` and `cv --lrnet`: the
    /// videos of the manifest scanned as `scan --models lrnet` reads them (--clips runs of
    /// --clip-len frames, FaceMesh), each face track's runs kept, calibrated and raw.
    #[arg(long)]
    pub landmarks: bool,
    /// With --landmarks: clips per video (the scan's default for LRNet).
    #[arg(long, value_name = "M", default_value_t = 2, requires = "landmarks")]
    pub clips: usize,
    /// With --landmarks: consecutive frames per clip.
    #[arg(long, value_name = "T", default_value_t = 61, requires = "landmarks")]
    pub clip_len: usize,
}

/// The group-aware split, shared by train and eval so both see the same held-out groups.
#[derive(Args, Debug, Clone, Copy)]
pub struct SplitArgs {
    /// Seed of the group -> split assignment.
    #[arg(long, default_value_t = 1)]
    pub split_seed: u64,
    /// Share of groups held out for validation (early stopping).
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Share of groups held out for the final test.
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
}

impl SplitArgs {
    pub fn plan(self) -> dfscan::crops::dataset::SplitPlan {
        dfscan::crops::dataset::SplitPlan { seed: self.split_seed, val_fraction: self.val_fraction, test_fraction: self.test_fraction }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value_t = Arch::Mesoinception4)]
    pub arch: Arch,
    /// Crop cache made by `dfscan extract`.
    #[arg(long)]
    pub crops: PathBuf,
    /// Best weights go here; `<output>.last.safetensors`, `<output>.train-state.json` and
    /// `<output>.log.jsonl` beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Examples per step: crops, or sequences for a sequence model (keep it small on CPU).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Sequence models: T, crops per sequence (default 8); each input's crops in frame order
    /// are cut into windows of T, shorter ones padded by repeating the last crop.
    #[arg(long, value_name = "T")]
    pub sequence_frames: Option<usize>,
    /// Precision of the saved best weights (f16 halves the file; loading computes in f32).
    #[arg(long, value_enum, default_value_t = Storage::F32)]
    pub storage: Storage,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Epochs without a better validation AUC before stopping.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Share of real training crops replaced by self-blended fakes.
    #[arg(long, default_value_t = 0.3)]
    pub sbi: f64,
    /// Train without augmentations (they are on by default).
    #[arg(long, conflicts_with = "augment_config")]
    pub no_augment: bool,
    /// Augmentation probabilities and ranges as JSON (fields of `AugmentConfig`; missing
    /// fields keep their defaults).
    #[arg(long)]
    pub augment_config: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub split: SplitArgs,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Continue a previous run with the same --output at the step of its last checkpoint
    /// (same --seed, --batch-size, --max-steps-per-epoch and crop cache needed).
    #[arg(long)]
    pub resume: bool,
    /// Cap the steps per epoch (quick runs).
    #[arg(long)]
    pub max_steps_per_epoch: Option<usize>,
    /// Optimizer steps between checkpoints: validate, keep better weights, save the last
    /// weights and state for --resume, log a line to `<output>.log.jsonl` (0: epoch ends only).
    #[arg(long, value_name = "STEPS", default_value_t = 200)]
    pub checkpoint_every: usize,
    /// Skip validation at mid-epoch checkpoints (epoch ends still validate); for a large
    /// validation split.
    #[arg(long)]
    pub no_checkpoint_validation: bool,
    /// End this sitting after this many steps, with a checkpoint; --resume goes on.
    #[arg(long, value_name = "STEPS")]
    pub stop_after_steps: Option<usize>,
    /// Steps over which the learning rate ramps up linearly after --resume, while AdamW's
    /// moments (which cannot be saved) rebuild.
    #[arg(long, value_name = "STEPS", default_value_t = 20)]
    pub resume_warmup: usize,
    /// Use only crops of these origins (the manifest's origin column), in training and validation.
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN,...")]
    pub origins: Vec<String>,
    /// Train on the real crops alone; with `--sbi 1.0` every fake seen is self-blended (the SBI
    /// paper's setting). Validation keeps both labels.
    #[arg(long)]
    pub reals_only: bool,
    /// Keep the ImageNet backbone frozen and fit only the linear head on its cached features,
    /// from this recipe's data (EfficientNet-Lite only; see `dfscan cv`). The train split
    /// fits, the validation split is reported.
    #[arg(long, value_enum, value_name = "RECIPE")]
    pub probe: Option<Recipe>,
    #[command(flatten)]
    pub head: HeadArgs,
    /// `--arch spectrum`: the classifier fitted on the crops' spectra (smartcore).
    #[arg(long, value_enum, default_value_t = ClassifierKind::SvmPoly)]
    pub classifier: ClassifierKind,
    #[command(flatten)]
    pub spectrum: SpectrumArgs,
    /// `--arch lrnet`: the landmarks it trains on, calibrated (on) or raw (off).
    #[arg(long, value_enum, value_name = "on|off", default_value_t = Calibration::On)]
    pub landmark_calibration: Calibration,
    #[command(flatten)]
    pub lrnet: LrnetArgs,
}

/// LRNet's fine-tune (`train --arch lrnet`, `cv --lrnet`), on a landmark cache given as --crops
/// (made by `dfscan extract --landmarks`).
#[derive(Args, Debug, Clone)]
pub struct LrnetArgs {
    /// The weights the fine-tune starts from: `lrnet-dfo` (the DeeperForensics pair),
    /// `lrnet-ffpp` (the FF++ pair), another model name or a path, or `none` (train: the
    /// source's random initialisation; cv: no fine-tune rows).
    #[arg(long, value_name = "NAME|PATH|none", default_value = "lrnet-dfo")]
    pub lrnet_start: String,
    /// Frames between the starts of consecutive 30-frame training windows of a run.
    #[arg(long, value_name = "FRAMES", default_value_t = 5)]
    pub window_stride: usize,
}

/// The spectrum detector's classifier fit (`train --arch spectrum`, `cv --spectrum`).
#[derive(Args, Debug, Clone, Copy)]
pub struct SpectrumArgs {
    /// The SVM's C.
    #[arg(long, default_value_t = 1.0)]
    pub svm_c: f64,
    /// Most rows an SVM is fitted on, half of each class drawn at random (smartcore's solver
    /// grows with rows times support vectors); the logistic regression takes all.
    #[arg(long, default_value_t = 3000)]
    pub svm_max_rows: usize,
}

impl SpectrumArgs {
    pub fn fit(self, classifier: ClassifierKind, seed: u64) -> dfscan::train::spectrum::FitConfig {
        dfscan::train::spectrum::FitConfig { c: self.svm_c, max_rows: self.svm_max_rows, seed, ..dfscan::train::spectrum::FitConfig::new(classifier) }
    }
}

/// The linear probe's data and fit (`train --probe`, `cv`).
#[derive(Args, Debug, Clone, Copy)]
pub struct HeadArgs {
    /// Self-blended views featurised per real crop (the blended fakes of the probe recipes).
    #[arg(long, default_value_t = 2)]
    pub sbi_views: usize,
    /// L2 penalty of the probe's logistic regression (on standardised features).
    #[arg(long, default_value_t = 1e-2)]
    pub l2: f64,
    /// Full-batch Adam steps of the probe's fit.
    #[arg(long, default_value_t = 300)]
    pub head_steps: usize,
    /// The probe also reads the spatial mean and std of the last block of stages 2-6, not only
    /// the pooled head features (multi-level probe). `cv` then reports both kinds of probe.
    #[arg(long)]
    pub taps: bool,
}

impl HeadArgs {
    pub fn head(self) -> dfscan::train::probe::HeadConfig {
        dfscan::train::probe::HeadConfig { l2: self.l2, steps: self.head_steps, ..Default::default() }
    }
}

#[derive(Args, Debug)]
pub struct FitEnsembleArgs {
    /// The JSON report of `dfscan cv --report`.
    #[arg(long)]
    pub report: PathBuf,
    /// A member: the row of the cv table (from 0) whose held-out scores stand for it, and the
    /// model the scan will run for it (a shipped name or a path). Repeat per member.
    #[arg(long = "member", required = true, value_name = "ROW=NAME")]
    pub members: Vec<String>,
    /// L2 penalty on the members' weights.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f64,
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct CvArgs {
    /// Crop cache made by `dfscan extract` from a manifest with an origin column.
    #[arg(long)]
    pub crops: PathBuf,
    /// Backbone of the probes (EfficientNet-Lite, frozen ImageNet weights).
    #[arg(long, value_enum, default_value_t = Arch::EfficientnetLite0)]
    pub arch: Arch,
    /// Probe recipes, one row each.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Recipe::Labelled, Recipe::LabelledSbi, Recipe::SbiOnly])]
    pub recipes: Vec<Recipe>,
    #[command(flatten)]
    pub head: HeadArgs,
    /// Trained frame models scored as they are, one row each: names of shipped models or paths.
    #[arg(long, value_delimiter = ',', value_name = "NAME|PATH,...")]
    pub models: Vec<String>,
    /// Spectrum detector rows (seed 004), each classifier fitted per fold on the spectra of the
    /// training origins' crops (computed in memory).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CLASSIFIER,...")]
    pub spectrum: Vec<ClassifierKind>,
    /// With --spectrum: also rows whose classifier reads the spectrum beside the probe
    /// backbone's pooled ImageNet features (the seed's spectrum + ResNet-50 variant).
    #[arg(long, requires = "spectrum", conflicts_with = "no_probes")]
    pub spectrum_cnn: bool,
    #[command(flatten)]
    pub spectrum_fit: SpectrumArgs,
    /// Fit no probe: score only the --models and fit only the --spectrum rows.
    #[arg(long)]
    pub no_probes: bool,
    /// --crops is a landmark cache (`extract --landmarks`): LRNet's table instead, on calibrated
    /// and raw landmarks: the --models pairs as they are (default lrnet-dfo,lrnet-ffpp) and LRNet
    /// fine-tuned per fold from --lrnet-start with `train`'s defaults.
    #[arg(long, conflicts_with_all = ["spectrum", "taps"])]
    pub lrnet: bool,
    #[command(flatten)]
    pub lrnet_fit: LrnetArgs,
    /// Origins the --models trained on: their cells are marked in-sample.
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN,...")]
    pub seen: Vec<String>,
    /// Hold out only these origins (default: every origin of the cache).
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN,...")]
    pub origins: Vec<String>,
    #[arg(long, value_enum, default_value_t = Strategy::Confident)]
    pub aggregate: Strategy,
    /// Seed of the self-blended views.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the full report (folds, rows, reliability, every held-out video's scores) as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Weights to evaluate (default: models/default.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --ood or --ood-synthetic: several models with OOD heads (shipped names or paths),
    /// e.g. the ViT path and the U-Net path, compared on the same crops in one table.
    #[arg(long, value_delimiter = ',', value_name = "NAME|PATH,...", conflicts_with = "model")]
    pub models: Vec<String>,
    /// Crop cache made by `dfscan extract`.
    #[arg(long)]
    pub crops: PathBuf,
    /// Which split of the cache (omit to use every crop).
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    #[command(flatten)]
    pub split_args: SplitArgs,
    #[arg(long, value_enum, default_value_t = Strategy::Confident)]
    pub aggregate: Strategy,
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Repeat the evaluation under these perturbations (repeatable).
    #[arg(long, value_enum)]
    pub perturb: Vec<Perturbation>,
    /// Write the full report (metrics and ROC points) as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the video- and frame-level ROC curves as PNG here.
    #[arg(long, conflicts_with_all = ["ood", "ood_synthetic"])]
    pub roc: Option<PathBuf>,
    /// Out-of-distribution evaluation (a model with OOD heads) against this set: a crop cache
    /// or a folder of images taken whole (repeatable). The split's crops are in-distribution.
    #[arg(long, value_name = "DIR", conflicts_with = "perturb")]
    pub ood: Vec<PathBuf>,
    /// Out-of-distribution evaluation against the split's crops under each of the five
    /// synthetic corruptions (one set per corruption).
    #[arg(long, conflicts_with = "perturb")]
    pub ood_synthetic: bool,
    /// Use at most this many crops of the split and of each OOD set, evenly spaced (ODIN's
    /// input gradients make OOD evaluation cost about four forward passes per crop).
    #[arg(long, value_name = "N")]
    pub max_crops: Option<usize>,
    /// With --ood: the scan's threshold whose rate of "uncertain" in-distribution inputs
    /// (clean, JPEG 75, half size) is printed.
    #[arg(long, default_value_t = dfscan::aggregate::DEFAULT_OOD_THRESHOLD)]
    pub ood_threshold: f32,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// As the scan's --precision (default: what the scan uses here). OOD evaluation
    /// (--ood, --ood-synthetic) computes in f32: ODIN takes input gradients.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
}

/// The attention VAE's configuration (`models::vae::VaeConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VaeSize {
    Small,
    Seed,
}

/// The abnormality module's widths (`models::abnormality::AbnormalityConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AbnormalitySize {
    /// Hidden layers 512, 256, 128.
    Narrow,
    /// The seed's hidden layers, 1024, 512, 128 (2.1M parameters more: ~8.5 MB in f32).
    Seed,
}

#[derive(Args, Debug)]
pub struct TrainOodArgs {
    /// A trained ViT (`dfscan train --arch deit-tiny`), U-Net (`--arch unet`) or EfficientNet-Lite
    /// (`--arch efficientnet-lite0`, e.g. the shipped default); it stays frozen and its scores
    /// do not change (keep `--storage f32` for that).
    #[arg(long)]
    pub model: PathBuf,
    /// In-distribution crop cache: the train split fits, the val split validates.
    #[arg(long)]
    pub crops: PathBuf,
    /// The classifier with its heads, as one weights file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Real out-of-distribution images as extra training data: a crop cache or a folder of
    /// images taken whole (repeatable).
    #[arg(long, value_name = "DIR")]
    pub ood_crops: Vec<PathBuf>,
    /// A ViT's attention VAE (a U-Net has none): small (latent 64 from a 1x1-reduced bottleneck, ~6M parameters, ~24 MB
    /// in f32) or seed (the seed's exact configuration, latent 512 from the full flatten, ~44M
    /// parameters: ~150 MB more in f32).
    #[arg(long, value_enum, default_value_t = VaeSize::Small)]
    pub vae: VaeSize,
    #[arg(long, value_enum, default_value_t = AbnormalitySize::Narrow)]
    pub abnormality: AbnormalitySize,
    #[arg(long, default_value_t = 3)]
    pub vae_epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub vae_lr: f64,
    /// Cap the VAE's steps per epoch.
    #[arg(long)]
    pub vae_steps: Option<usize>,
    /// Weight of the VAE's KL term beside its L1 reconstruction loss.
    #[arg(long, default_value_t = 1e-3)]
    pub kl_weight: f64,
    #[arg(long, default_value_t = 10)]
    pub abnormality_epochs: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub abnormality_lr: f64,
    /// Cap the abnormality module's steps per epoch.
    #[arg(long)]
    pub abnormality_steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Use at most this many train crops, drawn at random.
    #[arg(long, value_name = "N")]
    pub max_train_crops: Option<usize>,
    /// Use only crops of these origins (the manifest's origin column), in training and
    /// validation: leave one out to see how the risk judges a source it never saw.
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN,...")]
    pub origins: Vec<String>,
    /// Fit an ordinary copy of each train crop (JPEG quality 60-90, or downscaled to 40-80% and
    /// back) as in-distribution too, so that everyday quality loss is not out of distribution.
    #[arg(long)]
    pub ordinary_copies: bool,
    #[arg(long, value_enum, default_value_t = Storage::F32)]
    pub storage: Storage,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub split: SplitArgs,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A video with faces.
    pub input: PathBuf,
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DetectorKind::Yunet320)]
    pub detector: DetectorKind,
    /// Crops per forward pass, or sequences for a sequence model (default: the scan's).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Threads of OpenCV's and of libtorch's pool, each (default: the scan's, half the cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// As the scan's --precision.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
}
