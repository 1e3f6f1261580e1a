//! `dfscan train`: fits a face classifier on a crop cache (cifar-example loop shape: shuffle,
//! augment, forward, backward_step; evaluate per epoch; keep the best).
//!
//! An example is one crop for a frame model; for a sequence model (ResNet-LSTM) it is a window
//! of T crops of one source input in frame order ([`CropSet::examples`]), short ones padded by
//! repeating the last crop. Each example draws one self-blend and one augmentation, applied
//! alike to all its frames, so a sequence never flickers in ways real footage does not.
//!
//! - Loss: BCE on the "fake" logit, weighted so both classes count equally.
//! - AdamW with a cosine learning-rate schedule ([`learning_rate`], a pure function).
//! - Self-blended fakes (`sbi_ratio`) turn that share of real crops into synthetic fakes.
//! - Early stopping on validation video-level AUC (crops averaged per source input).
//! - `<output>` holds the best weights; `<output>.last.safetensors` and
//!   `<output>.train-state.json` let `--resume` continue after the last finished epoch
//!   (AdamW's moments restart, which tch cannot save).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::augment::{AugmentConfig, AugmentPlan};
use super::dataset::{CropSet, Split, SplitPlan};
use super::sbi::SbiPlan;
use crate::eval::metrics::roc_auc;
use crate::models::weights::{self, Header, Preprocess, Storage};
use crate::models::{self, Arch, NetworkConfig};

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub arch: Arch,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation AUC before stopping.
    pub patience: usize,
    pub seed: u64,
    pub split: SplitPlan,
    /// Share of real training crops replaced by their self-blended fake.
    pub sbi_ratio: f64,
    pub augment: AugmentConfig,
    pub device: Device,
    pub output: PathBuf,
    pub resume: bool,
    /// Use at most this many training crops per epoch (quick runs and tests).
    pub max_steps_per_epoch: Option<usize>,
    /// The command that started training, recorded in the weights' provenance.
    pub command_line: String,
    /// Pretrained weights to start from (e.g. the ImageNet backbone of EfficientNet-Lite0);
    /// the variables they lack (the new head) keep their initialisation.
    pub pretrained: Option<PathBuf>,
    /// T, crops per sequence, for a sequence model (None: [`DEFAULT_SEQUENCE_FRAMES`]); stored
    /// in the weights' header so that scans cut tracks the same way.
    pub sequence_frames: Option<usize>,
    /// Precision of the best weights (`<output>`); the resume checkpoint stays f32.
    pub storage: Storage,
    /// The crop contract of the cache (recorded in the weights, so the scan cuts alike).
    pub crop: Option<crate::faces::crop::CropSpec>,
    /// Use only crops of these origins, in training and validation (empty: all).
    pub origins: Vec<String>,
    /// Train on the real crops alone (with `sbi_ratio` 1, the SBI paper's setting: every fake
    /// seen is self-blended); validation keeps both labels.
    pub reals_only: bool,
}

/// T when `--sequence-frames` is not given: `dfscan extract` keeps 16 frames per video, so
/// a video gives two windows, and a batch of 4 sequences fits in a few GB on CPU.
pub const DEFAULT_SEQUENCE_FRAMES: usize = 8;

/// Cosine decay from `base` to 0 over `total` steps.
pub fn learning_rate(step: usize, total: usize, base: f64) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_frame_auc: Option<f64>,
    pub val_video_auc: Option<f64>,
    pub learning_rate: f64,
    pub seconds: f64,
    pub best: bool,
}

pub enum TrainEvent<'a> {
    /// `example` names the unit of the counts: "crops", or "sequences of T crops".
    Start { train_examples: usize, val_examples: usize, example: String, steps_per_epoch: usize, start_epoch: usize },
    /// Started from pretrained weights; these variables were not in them.
    Pretrained { path: &'a Path, missing: &'a [String] },
    Step { epoch: usize, loss: f64 },
    Epoch(&'a EpochReport),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    best_video_auc: Option<f64>,
    epochs_since_best: usize,
    history: Vec<EpochReport>,
}

fn sidecar(output: &Path, suffix: &str) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Labelled examples of one split, their crops loaded once at the model's input size.
struct Examples {
    crops: Vec<Vec<u8>>,
    /// Each example's crops, as indices into `crops`, in frame order.
    members: Vec<Vec<usize>>,
    fake: Vec<bool>,
    source: Vec<String>,
}

impl Examples {
    fn load(set: &CropSet, idx: &[usize], size: i32, frames: Option<usize>) -> Result<Self> {
        let crops = idx.iter().map(|&i| set.load_rgb(i, size)).collect::<Result<Vec<_>>>()?;
        let members = set.examples(idx, frames);
        // A source input has one label, so an example's first crop speaks for all.
        let record = |m: &Vec<usize>| &set.records[idx[m[0]]];
        let fake = members.iter().map(|m| record(m).label.is_fake()).collect();
        let source = members.iter().map(|m| record(m).source.clone()).collect();
        Ok(Self { crops, members, fake, source })
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    /// The crops of example `i`.
    fn frames(&self, i: usize) -> impl Iterator<Item = &Vec<u8>> {
        self.members[i].iter().map(|&c| &self.crops[c])
    }
}

/// The network to train, with T set for a sequence model.
fn network_of(cfg: &TrainConfig) -> Result<(NetworkConfig, models::Preprocess)> {
    let (mut network, preprocess) = models::training_spec(cfg.arch);
    match &mut network {
        NetworkConfig::ResnetLstm(seq) => {
            let t = cfg.sequence_frames.unwrap_or(DEFAULT_SEQUENCE_FRAMES);
            ensure!(t >= 1, "--sequence-frames must be at least 1");
            seq.frames = t as i64;
        }
        _ => ensure!(cfg.sequence_frames.is_none(), "--sequence-frames applies to sequence models, not {}", cfg.arch.name()),
    }
    Ok((network, preprocess))
}

/// T of a sequence network; None for a frame network.
fn sequence_frames(network: &NetworkConfig) -> Option<i64> {
    match network {
        NetworkConfig::ResnetLstm(cfg) => Some(cfg.frames),
        _ => None,
    }
}

pub fn train(set: &CropSet, cfg: &TrainConfig, mut on_event: impl FnMut(TrainEvent)) -> Result<Vec<EpochReport>> {
    tch::manual_seed(cfg.seed as i64);
    let (network, preprocess) = network_of(cfg)?;
    let frames = sequence_frames(&network);
    let size = preprocess.input_size as i32;
    let per_example = frames.map(|t| t as usize);
    let wanted = |i: &usize| cfg.origins.is_empty() || cfg.origins.contains(&set.records[*i].origin);
    let train_idx: Vec<usize> = set.split(Split::Train, &cfg.split).into_iter().filter(wanted).filter(|&i| !cfg.reals_only || !set.records[i].label.is_fake()).collect();
    let val_idx: Vec<usize> = set.split(Split::Val, &cfg.split).into_iter().filter(wanted).collect();
    let train_set = Examples::load(set, &train_idx, size, per_example)?;
    let val_set = Examples::load(set, &val_idx, size, per_example)?;
    ensure!(train_set.len() > 0, "the train split is empty");
    let mut vs = nn::VarStore::new(cfg.device);
    let net = models::build_network(&vs.root(), &network);
    let state_path = sidecar(&cfg.output, ".train-state.json");
    let last_path = sidecar(&cfg.output, ".last.safetensors");
    let mut state = TrainState::default();
    if cfg.resume && state_path.is_file() {
        state = serde_json::from_str(&std::fs::read_to_string(&state_path)?).context("reading the training state")?;
        vs.load(&last_path).with_context(|| format!("resuming from {}", last_path.display()))?;
    } else if let Some(path) = &cfg.pretrained {
        let missing = models::init_from_pretrained(&mut vs, path)?;
        on_event(TrainEvent::Pretrained { path, missing: &missing });
    }
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.learning_rate)?;

    // Expected class balance after self-blending; the loss weighs fakes to match reals.
    let n_fake = train_set.fake.iter().filter(|&&f| f).count() as f64;
    let n_real = train_set.fake.len() as f64 - n_fake;
    let fakes = n_fake + cfg.sbi_ratio * n_real;
    let pos_weight = Tensor::from_slice(&[((n_real - cfg.sbi_ratio * n_real) / fakes.max(1.0)) as f32]).to_device(cfg.device);

    let per_epoch = cfg.max_steps_per_epoch.map_or(train_set.len(), |s| (s * cfg.batch_size).min(train_set.len()));
    let steps_per_epoch = per_epoch.div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    on_event(TrainEvent::Start {
        train_examples: train_set.len(),
        val_examples: val_set.len(),
        example: frames.map_or("crops".into(), |t| format!("sequences of {t} crops")),
        steps_per_epoch,
        start_epoch: state.epochs_done,
    });

    for epoch in state.epochs_done..cfg.epochs {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64 * 7919));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        order.truncate(per_epoch);
        let (mut loss_sum, mut batches) = (0.0, 0);
        let mut lr = cfg.learning_rate;
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let (batch, targets) = training_batch(&train_set, chunk, frames, cfg, size, &mut rng)?;
            let input = models::to_example_input(&batch, &preprocess, cfg.device, frames);
            let logits = net.forward_t(&input, true);
            let y = Tensor::from_slice(&targets).to_device(cfg.device);
            let loss = logits.binary_cross_entropy_with_logits::<&Tensor>(&y, None, Some(&pos_weight), Reduction::Mean);
            lr = learning_rate(epoch * steps_per_epoch + step, total_steps, cfg.learning_rate);
            opt.set_lr(lr);
            opt.backward_step(&loss);
            let loss = loss.double_value(&[]);
            loss_sum += loss;
            batches += 1;
            on_event(TrainEvent::Step { epoch, loss });
        }
        let (val_loss, val_frame_auc, val_video_auc) = validate(net.as_ref(), &val_set, frames, &preprocess, cfg)?;
        let improved = match (val_video_auc, state.best_video_auc) {
            (Some(auc), Some(best)) => auc > best,
            (Some(_), None) => true,
            // Without a usable validation split, the latest epoch is the best we know.
            (None, _) => true,
        };
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            val_loss,
            val_frame_auc,
            val_video_auc,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
            best: improved,
        };
        if improved {
            state.best_video_auc = val_video_auc;
            state.epochs_since_best = 0;
            save(&vs, &cfg.output, network.clone(), preprocess.clone(), cfg, &report, cfg.storage)?;
        } else {
            state.epochs_since_best += 1;
        }
        on_event(TrainEvent::Epoch(&report));
        state.history.push(report);
        state.epochs_done = epoch + 1;
        save(&vs, &last_path, network.clone(), preprocess.clone(), cfg, state.history.last().expect("pushed"), Storage::F32)?;
        std::fs::write(&state_path, serde_json::to_string_pretty(&state)?)?;
        if state.epochs_since_best >= cfg.patience {
            break;
        }
    }
    Ok(state.history)
}

/// Pixels and targets of one batch: self-blend some real examples into fakes, then augment
/// all, one draw per example ([`perturb_example`]).
fn training_batch(set: &Examples, chunk: &[usize], frames: Option<i64>, cfg: &TrainConfig, size: i32, rng: &mut StdRng) -> Result<(Tensor, Vec<f32>)> {
    let mut examples = Vec::with_capacity(chunk.len());
    let mut targets = Vec::with_capacity(chunk.len());
    for &i in chunk {
        let (crops, fake) = perturb_example(set.frames(i), set.fake[i], cfg, size, rng)?;
        examples.push(crops);
        targets.push(if fake { 1.0 } else { 0.0 });
    }
    Ok((models::example_batch(&examples, size as i64, frames), targets))
}

/// One example's crops after one random self-blend (a real turned fake, with probability
/// `sbi_ratio`) and one random augmentation, each plan drawn once and applied to every crop:
/// the frames of a sequence change alike. Returns the crops and whether the example is fake.
fn perturb_example<'a>(crops: impl Iterator<Item = &'a Vec<u8>>, fake: bool, cfg: &TrainConfig, size: i32, rng: &mut StdRng) -> Result<(Vec<Vec<u8>>, bool)> {
    let blend = (!fake && rng.random::<f64>() < cfg.sbi_ratio).then(|| SbiPlan::sample(rng));
    let augment = AugmentPlan::sample(&cfg.augment, rng);
    let crops = crops
        .map(|rgb| {
            let blended = match &blend {
                Some(plan) => plan.apply(rgb, size)?.0,
                None => rgb.clone(),
            };
            augment.apply(&blended, size)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((crops, fake || blend.is_some()))
}

/// Fake logits of `n` examples in batches of `batch_size`, in eval mode; `input(range)` makes
/// the network input of the examples in `range`.
fn batched_logits(net: &dyn ModuleT, n: usize, batch_size: usize, input: impl Fn(std::ops::Range<usize>) -> Tensor) -> Result<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch_size.max(1)) {
        let logits = net.forward_t(&input(start..(start + batch_size).min(n)), false).to_device(Device::Cpu).to_kind(Kind::Float);
        out.extend(Vec::<f32>::try_from(logits)?);
    }
    Ok(out)
}

/// Fake logits of every crop, in batches, in eval mode (a frame network).
pub fn logits_of(net: &dyn ModuleT, pixels: &[Vec<u8>], pre: &models::Preprocess, device: Device, batch_size: usize) -> Result<Vec<f32>> {
    batched_logits(net, pixels.len(), batch_size, |r| models::to_network_input(&models::crop_batch(&pixels[r], pre.input_size), pre, device))
}

/// Validation loss and AUCs: per example (a crop, or a window for a sequence model), and per
/// source input (mean P(fake) of its examples).
fn validate(net: &dyn ModuleT, set: &Examples, frames: Option<i64>, pre: &models::Preprocess, cfg: &TrainConfig) -> Result<(f64, Option<f64>, Option<f64>)> {
    if set.len() == 0 {
        return Ok((f64::NAN, None, None));
    }
    let logits = batched_logits(net, set.len(), cfg.batch_size, |r| {
        let batch = models::example_batch(r.map(|i| set.frames(i)), pre.input_size, frames);
        models::to_example_input(&batch, pre, cfg.device, frames)
    })?;
    let probs: Vec<f32> = logits.iter().map(|&l| crate::aggregate::sigmoid(l)).collect();
    let loss = crate::eval::metrics::log_loss(&probs, &set.fake).unwrap_or(f64::NAN);
    let frame_auc = roc_auc(&probs, &set.fake);
    let sources: Vec<&str> = set.source.iter().map(String::as_str).collect();
    let (video_scores, video_labels) = crate::eval::evaluate::per_video(&probs, &set.fake, &sources, crate::aggregate::Strategy::Mean);
    Ok((loss, frame_auc, roc_auc(&video_scores, &video_labels)))
}

fn save(vs: &nn::VarStore, path: &Path, network: NetworkConfig, preprocess: models::Preprocess, cfg: &TrainConfig, report: &EpochReport, storage: Storage) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let header = Header {
        format: weights::FORMAT_VERSION,
        network,
        preprocess: Preprocess { crop: cfg.crop, ..preprocess },
        provenance: format!(
            "{} (epoch {}, val video AUC {}, val frame AUC {})",
            cfg.command_line,
            report.epoch + 1,
            report.val_video_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
            report.val_frame_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
        ),
        ood: None,
    };
    weights::save_as(path, &tensors, &header, storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sbi_ratio: f64) -> TrainConfig {
        TrainConfig {
            arch: Arch::ResnetLstm,
            epochs: 1,
            batch_size: 1,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 1,
            seed: 0,
            split: SplitPlan { seed: 0, val_fraction: 0.0, test_fraction: 0.0 },
            sbi_ratio,
            augment: AugmentConfig::default(),
            device: Device::Cpu,
            output: PathBuf::new(),
            resume: false,
            max_steps_per_epoch: None,
            command_line: String::new(),
            pretrained: None,
            sequence_frames: None,
            storage: Storage::F32,
            crop: None,
            origins: Vec::new(),
            reals_only: false,
        }
    }

    #[test]
    fn a_sequence_gets_one_blend_and_one_augmentation_for_all_its_frames() {
        const SIZE: i32 = 96;
        let face = crate::train::astronaut(SIZE);
        let other = crate::train::astronaut(SIZE).iter().map(|p| 255 - p).collect::<Vec<u8>>();
        let sequence = [face.clone(), other.clone(), face.clone()];
        for seed in 0..8 {
            // Every real sequence is blended (ratio 1); the augmentations are the defaults.
            let (out, fake) = perturb_example(sequence.iter(), false, &config(1.0), SIZE, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert!(fake, "seed {seed}: a blended real is a fake");
            assert_ne!(out[0], face, "seed {seed}: perturbed");
            // The same crop at two places in a sequence comes out the same: one plan, not two.
            assert_eq!(out[0], out[2], "seed {seed}");
            // And each frame is changed exactly as it would be alone under the same draws.
            let (alone, _) = perturb_example([&other].into_iter(), false, &config(1.0), SIZE, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(out[1], alone[0], "seed {seed}");
        }
        // Fakes are never blended, and keep their label.
        let (_, fake) = perturb_example(sequence.iter(), true, &config(1.0), SIZE, &mut StdRng::seed_from_u64(0)).unwrap();
        assert!(fake);
    }

    #[test]
    fn sequence_frames_belong_to_sequence_models() {
        let mut cfg = config(0.0);
        cfg.sequence_frames = Some(3);
        assert_eq!(sequence_frames(&network_of(&cfg).unwrap().0), Some(3));
        cfg.sequence_frames = None;
        assert_eq!(sequence_frames(&network_of(&cfg).unwrap().0), Some(DEFAULT_SEQUENCE_FRAMES as i64));
        cfg.arch = Arch::Mesoinception4;
        assert_eq!(sequence_frames(&network_of(&cfg).unwrap().0), None);
        cfg.sequence_frames = Some(3);
        assert!(network_of(&cfg).is_err());
    }

    #[test]
    fn cosine_schedule_starts_at_base_and_ends_at_zero() {
        assert!((learning_rate(0, 100, 1e-3) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(50, 100, 1e-3) - 5e-4).abs() < 1e-12);
        assert!(learning_rate(100, 100, 1e-3).abs() < 1e-12);
        assert!(learning_rate(25, 100, 1e-3) > learning_rate(75, 100, 1e-3));
    }
}
