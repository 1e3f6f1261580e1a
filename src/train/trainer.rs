//! `dfscan train`: fits a face classifier on a crop cache (cifar-example loop shape: shuffle,
//! augment, forward, backward_step; evaluate per epoch; keep the best).
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
use crate::models::weights::{self, Header};
use crate::models::{self, Arch};

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
}

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
    Start { train_crops: usize, val_crops: usize, steps_per_epoch: usize, start_epoch: usize },
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

/// Labelled pixels of one split, loaded once at the model's input size.
struct Examples {
    pixels: Vec<Vec<u8>>,
    fake: Vec<bool>,
    source: Vec<String>,
}

fn load_examples(set: &CropSet, idx: &[usize], size: i32) -> Result<Examples> {
    let mut ex = Examples { pixels: Vec::with_capacity(idx.len()), fake: Vec::new(), source: Vec::new() };
    for &i in idx {
        ex.pixels.push(set.load_rgb(i, size)?);
        ex.fake.push(set.records[i].label.is_fake());
        ex.source.push(set.records[i].source.clone());
    }
    Ok(ex)
}

pub fn train(set: &CropSet, cfg: &TrainConfig, mut on_event: impl FnMut(TrainEvent)) -> Result<Vec<EpochReport>> {
    tch::manual_seed(cfg.seed as i64);
    let (network, preprocess) = models::training_spec(cfg.arch);
    ensure!(!network.is_sequence(), "dfscan train --arch {}: training on face sequences is not implemented yet (issue 4)", cfg.arch.name());
    let size = preprocess.input_size as i32;
    let train_set = load_examples(set, &set.split(Split::Train, &cfg.split), size)?;
    let val_set = load_examples(set, &set.split(Split::Val, &cfg.split), size)?;
    ensure!(!train_set.pixels.is_empty(), "the train split is empty");
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

    let per_epoch = cfg.max_steps_per_epoch.map_or(train_set.pixels.len(), |s| (s * cfg.batch_size).min(train_set.pixels.len()));
    let steps_per_epoch = per_epoch.div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    on_event(TrainEvent::Start { train_crops: train_set.pixels.len(), val_crops: val_set.pixels.len(), steps_per_epoch, start_epoch: state.epochs_done });

    for epoch in state.epochs_done..cfg.epochs {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64 * 7919));
        let mut order: Vec<usize> = (0..train_set.pixels.len()).collect();
        order.shuffle(&mut rng);
        order.truncate(per_epoch);
        let (mut loss_sum, mut batches) = (0.0, 0);
        let mut lr = cfg.learning_rate;
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let (batch, targets) = training_batch(&train_set, chunk, cfg, size, &mut rng)?;
            let input = models::to_network_input(&batch, &preprocess, cfg.device);
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
        let (val_loss, val_frame_auc, val_video_auc) = validate(net.as_ref(), &val_set, &preprocess, cfg)?;
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
            save(&vs, &cfg.output, network.clone(), preprocess.clone(), cfg, &report)?;
        } else {
            state.epochs_since_best += 1;
        }
        on_event(TrainEvent::Epoch(&report));
        state.history.push(report);
        state.epochs_done = epoch + 1;
        save(&vs, &last_path, network.clone(), preprocess.clone(), cfg, state.history.last().expect("pushed"))?;
        std::fs::write(&state_path, serde_json::to_string_pretty(&state)?)?;
        if state.epochs_since_best >= cfg.patience {
            break;
        }
    }
    Ok(state.history)
}

/// Pixels and targets of one batch: self-blend some reals into fakes, then augment all.
fn training_batch(set: &Examples, chunk: &[usize], cfg: &TrainConfig, size: i32, rng: &mut StdRng) -> Result<(Tensor, Vec<f32>)> {
    let mut bytes = Vec::with_capacity(chunk.len() * (size * size * 3) as usize);
    let mut targets = Vec::with_capacity(chunk.len());
    for &i in chunk {
        let mut fake = set.fake[i];
        let mut rgb = set.pixels[i].clone();
        if !fake && rng.random::<f64>() < cfg.sbi_ratio {
            rgb = SbiPlan::sample(rng).apply(&rgb, size)?.0;
            fake = true;
        }
        rgb = AugmentPlan::sample(&cfg.augment, rng).apply(&rgb, size)?;
        bytes.extend_from_slice(&rgb);
        targets.push(if fake { 1.0 } else { 0.0 });
    }
    let batch = Tensor::from_slice(&bytes).view([chunk.len() as i64, size as i64, size as i64, 3]);
    Ok((batch, targets))
}

/// Fake logits of every example, in batches, in eval mode.
pub fn logits_of(net: &dyn ModuleT, pixels: &[Vec<u8>], pre: &models::Preprocess, device: Device, batch_size: usize) -> Result<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let size = pre.input_size;
    let mut out = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(batch_size) {
        let batch = models::crop_batch(chunk, size);
        let logits = net.forward_t(&models::to_network_input(&batch, pre, device), false).to_device(Device::Cpu).to_kind(Kind::Float);
        out.extend(Vec::<f32>::try_from(logits)?);
    }
    Ok(out)
}

/// Validation loss and AUCs: per crop, and per source input (mean P(fake) of its crops).
fn validate(net: &dyn ModuleT, set: &Examples, pre: &models::Preprocess, cfg: &TrainConfig) -> Result<(f64, Option<f64>, Option<f64>)> {
    if set.pixels.is_empty() {
        return Ok((f64::NAN, None, None));
    }
    let logits = logits_of(net, &set.pixels, pre, cfg.device, cfg.batch_size)?;
    let probs: Vec<f32> = logits.iter().map(|&l| crate::aggregate::sigmoid(l)).collect();
    let loss = crate::eval::metrics::log_loss(&probs, &set.fake).unwrap_or(f64::NAN);
    let frame_auc = roc_auc(&probs, &set.fake);
    let sources: Vec<&str> = set.source.iter().map(String::as_str).collect();
    let (video_scores, video_labels) = crate::eval::evaluate::per_video(&probs, &set.fake, &sources, crate::aggregate::Strategy::Mean);
    Ok((loss, frame_auc, roc_auc(&video_scores, &video_labels)))
}

fn save(vs: &nn::VarStore, path: &Path, network: models::NetworkConfig, preprocess: models::Preprocess, cfg: &TrainConfig, report: &EpochReport) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let header = Header {
        format: weights::FORMAT_VERSION,
        network,
        preprocess,
        provenance: format!(
            "{} (epoch {}, val video AUC {}, val frame AUC {})",
            cfg.command_line,
            report.epoch + 1,
            report.val_video_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
            report.val_frame_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
        ),
        ood: None,
    };
    weights::save(path, &tensors, &header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_starts_at_base_and_ends_at_zero() {
        assert!((learning_rate(0, 100, 1e-3) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(50, 100, 1e-3) - 5e-4).abs() < 1e-12);
        assert!(learning_rate(100, 100, 1e-3).abs() < 1e-12);
        assert!(learning_rate(25, 100, 1e-3) > learning_rate(75, 100, 1e-3));
    }
}
