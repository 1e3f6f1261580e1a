//! Fine-tuning LRNet's two GRU streams (`models::lrnet`) on our own landmarks: the rows of a
//! landmark cache (`crops::landmarks`, made by `dfscan extract --landmarks` with the scan's
//! pipeline), calibrated or raw, starting from a public pair.
//!
//! Examples are 30-frame windows of each run of consecutive frames, taken every `stride`
//! frames (a 61-frame run gives 7 at stride 5); g1 reads a window, g2 its 29 differences, and
//! each stream is fitted with its own cross-entropy (classes weighted equally), as the source
//! trains them; the loss is their mean. Dropout (whole landmarks, then the head's) is the
//! source's. Each epoch's order and dropout masks come from the seed and the epoch, so a run
//! resumed at an epoch's end (`train --resume`) goes on as it would have.
//!
//! Videos are judged as the scan judges them ([`video_score`]): each track's blocks (the
//! source's, 30 frames apart) scored, their mean the track's score, the most fake steady track
//! the video's, so a fine-tune is measured on the numbers `dfscan scan --models` would print.
use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::checkpoint::{CheckpointReport, EpochReport, TrainState};
use super::trainer::Schedule;
use crate::aggregate::{video_score_across_tracks, AcrossTracks, Strategy, TrackScore};
use crate::crops::landmarks::LandmarkRecord;
use crate::eval::metrics::roc_auc;
use crate::faces::calibrate::Calibration;
use crate::models::lrnet::{differences, track_windows, Lrnet};

/// How a fine-tune runs (the defaults are `dfscan train`'s).
#[derive(Clone, Debug, PartialEq)]
pub struct FineTune {
    /// Stopping: `patience` epochs without a better validation video AUC.
    pub schedule: Schedule,
    /// Frames between the starts of consecutive training windows of a run.
    pub stride: usize,
    /// Which rows it trains and judges on.
    pub calibration: Calibration,
    pub device: Device,
}

impl Default for FineTune {
    fn default() -> Self {
        Self {
            schedule: Schedule { epochs: 30, batch_size: 32, learning_rate: 1e-3, weight_decay: 1e-4, patience: 6, seed: 1, max_steps_per_epoch: None },
            stride: 5,
            calibration: Calibration::On,
            device: Device::Cpu,
        }
    }
}

/// Training windows: `[N, block, 136]` and their labels.
pub struct Windows {
    pub x: Tensor,
    pub fake: Vec<bool>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.fake.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fake.is_empty()
    }
}

/// Every `stride`-th window of `block` frames of every run of `records`' tracks.
pub fn windows(records: &[&LandmarkRecord], calibration: Calibration, block: usize, stride: usize) -> Windows {
    let mut rows: Vec<f32> = Vec::new();
    let mut fake = Vec::new();
    for record in records.iter().filter(|r| r.error.is_none()) {
        for run in record.tracks.iter().flat_map(|t| &t.runs) {
            let run = run.rows(calibration);
            let mut start = 0;
            while start + block <= run.len() {
                rows.extend(run[start..start + block].iter().flatten());
                fake.push(record.label.is_fake());
                start += stride.max(1);
            }
        }
    }
    let width = crate::faces::calibrate::POINTS as i64 * 2;
    Windows { x: Tensor::from_slice(&rows).view([fake.len() as i64, block as i64, width]), fake }
}

/// Whether LRNet can score `record`: a track with a run of at least `min_frames` rows.
pub fn scorable(record: &LandmarkRecord, min_frames: usize) -> bool {
    record.error.is_none() && record.tracks.iter().flat_map(|t| &t.runs).any(|r| r.calibrated.len().max(r.raw.len()) >= min_frames)
}

/// The video's P(fake) as the scan gives it for an LRNet member (see the module's text), None
/// when no track is long enough.
pub fn video_score(net: &Lrnet, record: &LandmarkRecord, calibration: Calibration) -> Result<Option<f32>> {
    let mut tracks = Vec::new();
    for track in &record.tracks {
        let runs: Vec<&[Vec<f32>]> = track.runs.iter().map(|r| r.rows(calibration)).collect();
        let w = track_windows(net, track.id, &runs)?;
        if let Some(score) = crate::aggregate::video_score(&w.windows, Strategy::Mean) {
            tracks.push(TrackScore { id: w.id, frames: w.frames, score, models: Vec::new() });
        }
    }
    Ok(video_score_across_tracks(&tracks, &[], record.frames_sampled, Strategy::Mean, AcrossTracks::Max))
}

/// Video scores and labels of the scorable `records` (the others are left out).
pub fn video_scores(net: &Lrnet, records: &[&LandmarkRecord], calibration: Calibration) -> Result<(Vec<f32>, Vec<bool>)> {
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for record in records {
        if let Some(s) = video_score(net, record, calibration)? {
            scores.push(s);
            labels.push(record.label.is_fake());
        }
    }
    Ok((scores, labels))
}

/// One stream's cross-entropy with the classes weighted equally.
fn stream_loss(logits: &Tensor, target: &Tensor, weights: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<&Tensor>(target, Some(weights), Reduction::Mean, -100, 0.0)
}

/// Runs epochs `state.epoch..cfg.schedule.epochs` (or until `cfg.schedule.patience` epochs bring no better
/// validation video AUC), calling `on_epoch` after each with its log line, the weights and the
/// state; at the end `vs` holds the best epoch's weights (the last ones without validation).
pub fn fine_tune(
    net: &Lrnet,
    vs: &mut nn::VarStore,
    train: &Windows,
    val: &[&LandmarkRecord],
    cfg: &FineTune,
    state: &mut TrainState,
    mut on_epoch: impl FnMut(&CheckpointReport, &nn::VarStore, &TrainState) -> Result<()>,
) -> Result<()> {
    ensure!(!train.is_empty(), "no training window: no run of {} consecutive frames", net.cfg.block);
    let n = train.len();
    let fakes = train.fake.iter().filter(|&&f| f).count();
    ensure!(fakes > 0 && fakes < n, "the training windows need both classes ({fakes} fake of {n})");
    let class_weights = Tensor::from_slice(&[n as f32 / (2 * (n - fakes)) as f32, n as f32 / (2 * fakes) as f32]).to_device(cfg.device);
    let target = Tensor::from_slice(&train.fake.iter().map(|&f| f as i64).collect::<Vec<_>>());
    let mut opt = nn::AdamW { wd: cfg.schedule.weight_decay, ..Default::default() }.build(vs, cfg.schedule.learning_rate)?;
    let batch = cfg.schedule.batch_size.max(1);
    let steps = n.div_ceil(batch).min(cfg.schedule.max_steps_per_epoch.unwrap_or(usize::MAX));
    let mut best: Option<Vec<(String, Tensor)>> = None;
    while state.epoch < cfg.schedule.epochs && (state.best.is_none() || state.epochs_since_best < cfg.schedule.patience) {
        let started = std::time::Instant::now();
        let epoch = state.epoch;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(cfg.schedule.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)));
        tch::manual_seed(cfg.schedule.seed.wrapping_add(epoch as u64) as i64);
        let mut loss_sum = 0.0;
        for step in 0..steps {
            let idx = Tensor::from_slice(&order[step * batch..((step + 1) * batch).min(n)].iter().map(|&i| i as i64).collect::<Vec<_>>());
            let x = train.x.index_select(0, &idx).to_device(cfg.device);
            let y = target.index_select(0, &idx).to_device(cfg.device);
            let l1 = stream_loss(&net.g1.forward_t(&x, true), &y, &class_weights);
            let l2 = stream_loss(&net.g2.forward_t(&differences(&x), true), &y, &class_weights);
            let loss = (l1 + l2) / 2.0;
            opt.backward_step(&loss);
            loss_sum += loss.double_value(&[]);
        }
        let (scores, labels) = tch::no_grad(|| video_scores(net, val, cfg.calibration))?;
        let auc = roc_auc(&scores, &labels);
        let improved = match (auc, state.best.as_ref().and_then(|b| b.val_video_auc)) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        state.epoch += 1;
        state.global_step += steps;
        state.crops_seen += (steps * batch).min(n) as u64 * net.cfg.block as u64;
        state.seconds += started.elapsed().as_secs_f64();
        let report = CheckpointReport {
            global_step: state.global_step,
            epoch,
            step: steps,
            lr: cfg.schedule.learning_rate,
            train_loss: loss_sum / steps.max(1) as f64,
            val_loss: None,
            val_frame_auc: None,
            val_video_auc: auc,
            crops_seen: state.crops_seen,
            seconds: state.seconds,
            best: improved,
        };
        state.history.push(EpochReport {
            epoch,
            train_loss: report.train_loss,
            val_loss: None,
            val_frame_auc: None,
            val_video_auc: auc,
            learning_rate: cfg.schedule.learning_rate,
            seconds: started.elapsed().as_secs_f64(),
            best: improved,
        });
        if improved {
            state.best = Some(report.clone());
            state.epochs_since_best = 0;
            best = Some(vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect());
        } else {
            state.epochs_since_best += 1;
        }
        on_epoch(&report, vs, state)?;
    }
    if let Some(best) = best {
        copy_into(vs, &best)?;
    }
    Ok(())
}

/// Sets `vs`'s variables to `tensors` (named as its variables).
pub fn copy_into(vs: &mut nn::VarStore, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, t) in tensors {
            let var = vars.get_mut(name).ok_or_else(|| anyhow::anyhow!("the network has no {name}"))?;
            var.f_copy_(t)?;
        }
        Ok(())
    })
}

/// A fresh LRNet (the source's configuration) on `device`, with its variables, started from
/// the weights file `start` (a public pair's import or a fine-tune) or, without, from the
/// source's random initialisation.
pub fn network(start: Option<&std::path::Path>, device: Device) -> Result<(nn::VarStore, Lrnet)> {
    let mut vs = nn::VarStore::new(device);
    let net = Lrnet::new(&vs.root(), &crate::models::lrnet::LrnetConfig::source());
    if let Some(path) = start {
        let missing = crate::models::init_from_pretrained(&mut vs, path)?;
        ensure!(missing.is_empty(), "{} lacks LRNet's {missing:?}", path.display());
    }
    vs.float();
    Ok((vs, net))
}

/// The network's tensors, sorted by name (for a weights file).
pub fn tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut t: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.detach().to_kind(Kind::Float))).collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}
