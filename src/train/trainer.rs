//! `dfscan train`: fits a face classifier on a crop cache (cifar-example loop shape: shuffle,
//! augment, forward, backward_step; validate; keep the best).
//!
//! An example is one crop for a frame model; for a sequence model (ResNet-LSTM) it is a window
//! of T crops of one source input in frame order ([`CropSet::examples`]), short ones padded by
//! repeating the last crop. Each example draws one self-blend and one augmentation, applied
//! alike to all its frames, so a sequence never flickers in ways real footage does not.
//!
//! - Loss: BCE on the "fake" logit, classes weighted equally (+ a U-Net's reconstruction: [`super::objective`]).
//! - AdamW with a cosine learning-rate schedule over all steps of all epochs ([`learning_rate`],
//!   a pure function of the global step).
//! - Self-blended fakes (`sbi_ratio`) turn that share of real crops into synthetic fakes.
//! - Early stopping on validation video-level AUC (crops averaged per source input): `patience`
//!   epochs without new best weights.
//!
//! Long runs span sittings ([`checkpoint`] has the files). Every `checkpoint_every` steps and at
//! each epoch's end the run validates (mid-epoch only with `checkpoint_validation`), keeps
//! better weights in `<output>`, writes the last weights and the state, and logs a line.
//! `stop_after_steps` ends a sitting with a checkpoint; `--resume` picks the run up at the
//! step it stopped: an epoch's order is a shuffle seeded by the epoch ([`epoch_order`]), every
//! other draw of a step (blends, augmentations, dropout) is seeded by the global step, and the
//! schedule goes on from the global step. What does not carry over is AdamW's moments: tch
//! 0.24's `nn::Optimizer` has no way to read or set them (only rates, momentum and weight
//! decay), so they restart from zero. A fresh Adam's first updates are full-size (each
//! parameter moves by about the rate, whatever its gradient's scale), so the first
//! `resume_warmup` steps after a resume scale the rate up linearly ([`resume_warmup`]).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::crops::augment::{AugmentConfig, AugmentPlan};
use super::checkpoint::{self, CheckpointReport, Paths, TrainState};
use super::objective::Objective;
pub use super::checkpoint::EpochReport;
use crate::crops::dataset::{CropSet, Split, SplitPlan};
use crate::crops::sbi::SbiPlan;
use crate::eval::metrics::roc_auc;
use crate::models::weights::{self, Header, Preprocess, Storage};
use crate::models::{self, Arch, NetworkConfig};

/// The optimisation schedule `dfscan train` gives every trainer (crop models and LRNet alike).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation AUC before stopping.
    pub patience: usize,
    pub seed: u64,
    /// At most this many optimiser steps per epoch (quick runs and tests).
    pub max_steps_per_epoch: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub arch: Arch,
    pub schedule: Schedule,
    pub split: SplitPlan,
    /// Share of real training crops replaced by their self-blended fake.
    pub sbi_ratio: f64,
    pub augment: AugmentConfig,
    pub device: Device,
    pub output: PathBuf,
    /// Continue the run whose state is beside `output`, at the step of its last checkpoint.
    pub resume: bool,
    /// Optimizer steps between checkpoints (0: at epoch ends only).
    pub checkpoint_every: usize,
    /// Validate at mid-epoch checkpoints too (epoch ends always validate).
    pub checkpoint_validation: bool,
    /// End this sitting after this many steps, with a checkpoint.
    pub stop_after_steps: Option<usize>,
    /// Steps of linear warm-up after a resume, while AdamW's restarted moments settle.
    pub resume_warmup: usize,
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

/// The factor on the scheduled rate `since_resume` steps after a resume (None: the run was
/// not resumed): 1/`warmup`, 2/`warmup`, ... up to 1.
pub fn resume_warmup(since_resume: Option<usize>, warmup: usize) -> f64 {
    match since_resume {
        Some(k) if k < warmup => (k + 1) as f64 / warmup as f64,
        _ => 1.0,
    }
}

pub enum TrainEvent<'a> {
    /// `example` names the unit of the counts: "crops", or "sequences of T crops". A resumed
    /// run starts at `step` of `epoch`, `global_step` of `total_steps` done.
    Start { train_examples: usize, val_examples: usize, example: String, steps_per_epoch: usize, total_steps: usize, epoch: usize, step: usize, global_step: usize },
    /// Started from pretrained weights; these variables were not in them.
    Pretrained { path: &'a Path, missing: &'a [String] },
    Step { epoch: usize, global_step: usize, loss: f64 },
    /// A checkpoint was written (and its line logged); at an epoch's end, before `Epoch`.
    Checkpoint(&'a CheckpointReport),
    Epoch(&'a EpochReport),
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub history: Vec<EpochReport>,
    /// The checkpoint whose weights are `<output>`.
    pub best: Option<CheckpointReport>,
    pub global_step: usize,
    pub total_steps: usize,
    pub crops_seen: u64,
    /// Stopped by `stop_after_steps` with steps left: `--resume` goes on.
    pub paused: bool,
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
        NetworkConfig::Lrnet(_) => anyhow::bail!("lrnet trains on landmark tracks, not on a crop cache (not supported yet)"),
        NetworkConfig::FaceMesh(_) => anyhow::bail!("facemesh is a landmarker with public weights, not trained here"),
        NetworkConfig::Spectrum(_) => anyhow::bail!("spectrum is fitted, not trained by gradient: `dfscan train --arch spectrum --classifier KIND` (train::spectrum)"),
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

/// The examples of `epoch`, in the order it trains on them: a shuffle drawn from the seed and
/// the epoch alone, so a resumed run finds the order it left.
fn epoch_order(examples: usize, per_epoch: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(epoch as u64 * 7919));
    let mut order: Vec<usize> = (0..examples).collect();
    order.shuffle(&mut rng);
    order.truncate(per_epoch);
    order
}

/// The seed of the random draws of global step `step` (blends, augmentations, dropout).
fn step_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What a checkpoint needs besides the state.
struct Run<'a> {
    cfg: &'a TrainConfig,
    vs: nn::VarStore,
    net: Objective,
    val_set: Examples,
    frames: Option<i64>,
    network: NetworkConfig,
    preprocess: models::Preprocess,
    paths: Paths,
}

/// Training loss of the steps since the last checkpoint.
#[derive(Default)]
struct Window {
    loss_sum: f64,
    steps: usize,
}

pub fn train(set: &CropSet, cfg: &TrainConfig, mut on_event: impl FnMut(TrainEvent)) -> Result<TrainSummary> {
    tch::manual_seed(cfg.schedule.seed as i64);
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
    let per_epoch = cfg.schedule.max_steps_per_epoch.map_or(train_set.len(), |s| (s * cfg.schedule.batch_size).min(train_set.len()));
    let steps_per_epoch = per_epoch.div_ceil(cfg.schedule.batch_size);
    let total_steps = steps_per_epoch * cfg.schedule.epochs;

    let mut vs = nn::VarStore::new(cfg.device);
    let net = Objective::build(&vs.root(), &network);
    let paths = Paths::of(&cfg.output);
    let mut state = TrainState::new(cfg.schedule.seed, cfg.schedule.batch_size, train_set.len(), steps_per_epoch);
    if cfg.resume && paths.state.is_file() {
        let stored = TrainState::read(&paths.state)?;
        stored.ensure_continues(&state)?;
        state = stored;
        vs.load(&paths.last).with_context(|| format!("resuming from {}", paths.last.display()))?;
    } else {
        // A fresh run: an earlier run's state and log must not be mistaken for this one's.
        for stale in [&paths.state, &paths.log] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).context(format!("removing {}", stale.display())),
                _ => {}
            }
        }
        if let Some(path) = &cfg.pretrained {
            let missing = models::init_from_pretrained(&mut vs, path)?;
            on_event(TrainEvent::Pretrained { path, missing: &missing });
        }
    }
    let mut opt = nn::AdamW { wd: cfg.schedule.weight_decay, ..Default::default() }.build(&vs, cfg.schedule.learning_rate)?;

    // Expected class balance after self-blending; the loss weighs fakes to match reals.
    let n_fake = train_set.fake.iter().filter(|&&f| f).count() as f64;
    let n_real = train_set.fake.len() as f64 - n_fake;
    // Reals only: each real stays and adds its blend with probability sbi_ratio (pairs);
    // otherwise a blend replaces the real.
    let reals = if cfg.reals_only { n_real } else { n_real - cfg.sbi_ratio * n_real };
    let fakes = n_fake + cfg.sbi_ratio * n_real;
    let pos_weight = Tensor::from_slice(&[(reals / fakes.max(1.0)) as f32]).to_device(cfg.device);

    on_event(TrainEvent::Start {
        train_examples: train_set.len(),
        val_examples: val_set.len(),
        example: frames.map_or("crops".into(), |t| format!("sequences of {t} crops")),
        steps_per_epoch,
        total_steps,
        epoch: state.epoch,
        step: state.step,
        global_step: state.global_step,
    });
    let run = Run { cfg, vs, net, val_set, frames, network, preprocess, paths };
    let crops_per_example = frames.unwrap_or(1) as u64;
    let resumed_at = (state.global_step > 0).then_some(state.global_step);
    let (sitting, seconds_before) = (Instant::now(), state.seconds);
    let mut window = Window::default();
    let mut lr = learning_rate(state.global_step, total_steps, cfg.schedule.learning_rate);
    let (mut sitting_steps, mut paused) = (0, false);
    while state.epoch < cfg.schedule.epochs && state.epochs_since_best < cfg.schedule.patience && !paused {
        let (epoch, epoch_started) = (state.epoch, Instant::now());
        let order = epoch_order(train_set.len(), per_epoch, cfg.schedule.seed, epoch);
        for chunk in order.chunks(cfg.schedule.batch_size).skip(state.step) {
            let g = state.global_step;
            let seed = step_seed(cfg.schedule.seed, g);
            tch::manual_seed(seed as i64);
            let mut rng = StdRng::seed_from_u64(seed);
            let (batch, targets) = training_batch(&train_set, chunk, frames, cfg, size, &mut rng)?;
            let input = models::to_example_input(&batch, &run.preprocess, cfg.device, frames);
            let y = Tensor::from_slice(&targets).to_device(cfg.device);
            let loss = run.net.loss(&input, &y, &pos_weight);
            lr = learning_rate(g, total_steps, cfg.schedule.learning_rate) * resume_warmup(resumed_at.map(|r| g - r), cfg.resume_warmup);
            opt.set_lr(lr);
            opt.backward_step(&loss);
            let loss = loss.double_value(&[]);
            state.step += 1;
            state.global_step += 1;
            state.crops_seen += targets.len() as u64 * crops_per_example;
            state.epoch_loss_sum += loss;
            window.loss_sum += loss;
            window.steps += 1;
            on_event(TrainEvent::Step { epoch, global_step: g, loss });
            sitting_steps += 1;
            paused = cfg.stop_after_steps.is_some_and(|n| sitting_steps >= n);
            let due = cfg.checkpoint_every > 0 && state.global_step % cfg.checkpoint_every == 0;
            // The epoch's end below is a checkpoint anyway.
            if (due || paused) && state.step < steps_per_epoch {
                state.seconds = seconds_before + sitting.elapsed().as_secs_f64();
                let report = run.validate(&mut state, &mut window, lr, cfg.checkpoint_validation)?;
                run.commit(&state, &report)?;
                on_event(TrainEvent::Checkpoint(&report));
            }
            if paused {
                break;
            }
        }
        if state.step < steps_per_epoch {
            break; // paused mid-epoch, its checkpoint written
        }
        state.seconds = seconds_before + sitting.elapsed().as_secs_f64();
        let report = run.validate(&mut state, &mut window, lr, true)?;
        let epoch_report = EpochReport {
            epoch,
            train_loss: state.epoch_loss_sum / state.step.max(1) as f64,
            val_loss: report.val_loss,
            val_frame_auc: report.val_frame_auc,
            val_video_auc: report.val_video_auc,
            learning_rate: lr,
            seconds: epoch_started.elapsed().as_secs_f64(),
            best: state.epoch_improved,
        };
        state.epochs_since_best = if state.epoch_improved { 0 } else { state.epochs_since_best + 1 };
        state.history.push(epoch_report);
        (state.epoch, state.step, state.epoch_loss_sum, state.epoch_improved) = (epoch + 1, 0, 0.0, false);
        run.commit(&state, &report)?;
        on_event(TrainEvent::Checkpoint(&report));
        on_event(TrainEvent::Epoch(state.history.last().expect("pushed")));
    }
    let paused = paused && state.epoch < cfg.schedule.epochs && state.epochs_since_best < cfg.schedule.patience;
    Ok(TrainSummary { history: state.history, best: state.best, global_step: state.global_step, total_steps, crops_seen: state.crops_seen, paused })
}

impl Run<'_> {
    /// The report of a checkpoint at the state's step: validates if `validate` (and keeps
    /// better weights as `<output>`), and takes the loss of the steps since the last one.
    fn validate(&self, state: &mut TrainState, window: &mut Window, lr: f64, validate: bool) -> Result<CheckpointReport> {
        let (val_loss, val_frame_auc, val_video_auc) = if validate { validate_on(self.net.module(), &self.val_set, self.frames, &self.preprocess, self.cfg)? } else { (None, None, None) };
        let improved = validate
            && match (val_video_auc, state.best.as_ref().and_then(|b| b.val_video_auc)) {
                (Some(auc), Some(best)) => auc > best,
                (Some(_), None) => true,
                // Without a usable validation split, the latest weights are the best we know.
                (None, _) => true,
            };
        let report = CheckpointReport {
            global_step: state.global_step,
            epoch: state.epoch,
            step: state.step,
            lr,
            train_loss: window.loss_sum / window.steps.max(1) as f64,
            val_loss,
            val_frame_auc,
            val_video_auc,
            crops_seen: state.crops_seen,
            seconds: state.seconds,
            best: improved,
        };
        *window = Window::default();
        if improved {
            self.save(&self.cfg.output, &report, self.cfg.storage)?;
            state.best = Some(report.clone());
            state.epoch_improved = true;
        }
        Ok(report)
    }

    /// Writes the checkpoint: the weights, then the state that points past them, then the log.
    fn commit(&self, state: &TrainState, report: &CheckpointReport) -> Result<()> {
        self.save(&self.paths.last, report, Storage::F32)?;
        state.write(&self.paths.state)?;
        checkpoint::append_log(&self.paths.log, report)
    }

    fn save(&self, path: &Path, report: &CheckpointReport, storage: Storage) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let auc = |a: Option<f64>| a.map_or("n/a".into(), |a| format!("{a:.4}"));
        let header = Header {
            format: weights::FORMAT_VERSION,
            network: self.network.clone(),
            preprocess: Preprocess { crop: self.cfg.crop, ..self.preprocess.clone() },
            provenance: format!(
                "{} (epoch {}, step {}, global step {}, val video AUC {}, val frame AUC {})",
                self.cfg.command_line,
                report.epoch + 1,
                report.step,
                report.global_step,
                auc(report.val_video_auc),
                auc(report.val_frame_auc),
            ),
            ood: None,
        };
        weights::save_as(path, &tensors, &header, storage)
    }
}

/// Pixels and targets of one batch: self-blend some real examples into fakes, then augment
/// all, one draw per example ([`perturb_example`]).
fn training_batch(set: &Examples, chunk: &[usize], frames: Option<i64>, cfg: &TrainConfig, size: i32, rng: &mut StdRng) -> Result<(Tensor, Vec<f32>)> {
    let mut examples = Vec::with_capacity(chunk.len());
    let mut targets = Vec::with_capacity(chunk.len());
    for &i in chunk {
        // Reals only (the SBI paper's pairs): the real as it is and, with probability
        // sbi_ratio, its self-blended fake beside it; else a blend replaces the real.
        let draws: &[f64] = if cfg.reals_only { &[0.0, cfg.sbi_ratio] } else { &[cfg.sbi_ratio] };
        for (k, &ratio) in draws.iter().enumerate() {
            if k > 0 && rng.random::<f64>() >= ratio {
                continue;
            }
            let (crops, fake) = perturb_example(set.frames(i), set.fake[i], if k > 0 { 1.0 } else { ratio }, cfg, size, rng)?;
            examples.push(crops);
            targets.push(if fake { 1.0 } else { 0.0 });
        }
    }
    Ok((models::example_batch(&examples, size as i64, frames), targets))
}

/// One example's crops after one random self-blend (a real turned fake, with probability
/// `sbi_ratio`) and one random augmentation, each plan drawn once and applied to every crop:
/// the frames of a sequence change alike. Returns the crops and whether the example is fake.
fn perturb_example<'a>(crops: impl Iterator<Item = &'a Vec<u8>>, fake: bool, sbi_ratio: f64, cfg: &TrainConfig, size: i32, rng: &mut StdRng) -> Result<(Vec<Vec<u8>>, bool)> {
    let blend = (!fake && rng.random::<f64>() < sbi_ratio).then(|| SbiPlan::sample(rng));
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

/// Validation loss and AUCs: per example (a crop, or a window for a sequence model), and per
/// source input (mean P(fake) of its examples).
fn validate_on(net: &dyn ModuleT, set: &Examples, frames: Option<i64>, pre: &models::Preprocess, cfg: &TrainConfig) -> Result<(Option<f64>, Option<f64>, Option<f64>)> {
    if set.len() == 0 {
        return Ok((None, None, None));
    }
    let logits = batched_logits(net, set.len(), cfg.schedule.batch_size, |r| {
        let batch = models::example_batch(r.map(|i| set.frames(i)), pre.input_size, frames);
        models::to_example_input(&batch, pre, cfg.device, frames)
    })?;
    let probs: Vec<f32> = logits.iter().map(|&l| crate::aggregate::sigmoid(l)).collect();
    let loss = crate::eval::metrics::log_loss(&probs, &set.fake);
    let frame_auc = roc_auc(&probs, &set.fake);
    let sources: Vec<&str> = set.source.iter().map(String::as_str).collect();
    let (video_scores, video_labels) = crate::eval::metrics::per_video(&probs, &set.fake, &sources, crate::aggregate::Strategy::Mean);
    Ok((loss, frame_auc, roc_auc(&video_scores, &video_labels)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sbi_ratio: f64) -> TrainConfig {
        TrainConfig {
            arch: Arch::ResnetLstm,
            schedule: Schedule { epochs: 1, batch_size: 1, learning_rate: 1e-3, weight_decay: 0.0, patience: 1, seed: 0, max_steps_per_epoch: None },
            split: SplitPlan { seed: 0, val_fraction: 0.0, test_fraction: 0.0 },
            sbi_ratio,
            augment: AugmentConfig::default(),
            device: Device::Cpu,
            output: PathBuf::new(),
            resume: false,
            checkpoint_every: 0,
            checkpoint_validation: true,
            stop_after_steps: None,
            resume_warmup: 0,
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
        let face = crate::crops::astronaut(SIZE);
        let other = crate::crops::astronaut(SIZE).iter().map(|p| 255 - p).collect::<Vec<u8>>();
        let sequence = [face.clone(), other.clone(), face.clone()];
        for seed in 0..8 {
            // Every real sequence is blended (ratio 1); the augmentations are the defaults.
            let (out, fake) = perturb_example(sequence.iter(), false, 1.0, &config(1.0), SIZE, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert!(fake, "seed {seed}: a blended real is a fake");
            assert_ne!(out[0], face, "seed {seed}: perturbed");
            // The same crop at two places in a sequence comes out the same: one plan, not two.
            assert_eq!(out[0], out[2], "seed {seed}");
            // And each frame is changed exactly as it would be alone under the same draws.
            let (alone, _) = perturb_example([&other].into_iter(), false, 1.0, &config(1.0), SIZE, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(out[1], alone[0], "seed {seed}");
        }
        // Fakes are never blended, and keep their label.
        let (_, fake) = perturb_example(sequence.iter(), true, 1.0, &config(1.0), SIZE, &mut StdRng::seed_from_u64(0)).unwrap();
        assert!(fake);
    }

    #[test]
    fn reals_only_training_pairs_each_real_with_its_blend() {
        const SIZE: i32 = 64;
        let face = crate::crops::astronaut(SIZE);
        let set = Examples { crops: vec![face.clone(), face], members: vec![vec![0], vec![1]], fake: vec![false, false], source: vec!["a".into(), "b".into()] };
        let mut cfg = config(1.0);
        cfg.arch = Arch::Mesoinception4;
        cfg.reals_only = true;
        let (batch, targets) = training_batch(&set, &[0, 1], None, &cfg, SIZE, &mut StdRng::seed_from_u64(0)).unwrap();
        // Each real stays a real and brings its fake: the paper's pairs, never an all-fake batch.
        assert_eq!(targets, [0.0, 1.0, 0.0, 1.0]);
        assert_eq!(batch.size()[0], 4);
        // Without --reals-only, ratio 1 turns every real into its blend.
        cfg.reals_only = false;
        let (_, targets) = training_batch(&set, &[0, 1], None, &cfg, SIZE, &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(targets, [1.0, 1.0]);
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

    #[test]
    fn a_resume_ramps_the_rate_up_and_a_fresh_run_does_not() {
        assert_eq!([0, 1, 2, 3].map(|k| resume_warmup(Some(k), 3)), [1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]);
        assert_eq!(resume_warmup(None, 3), 1.0);
        assert_eq!(resume_warmup(Some(0), 0), 1.0);
    }

    #[test]
    fn an_epoch_order_depends_on_seed_and_epoch_only() {
        let order = epoch_order(50, 40, 3, 2);
        assert_eq!(order.len(), 40);
        assert_eq!(order, epoch_order(50, 40, 3, 2));
        assert_ne!(order, epoch_order(50, 40, 3, 3));
        assert_ne!(order, epoch_order(50, 40, 4, 2));
    }
}
