//! `dfscan eval`: a model against a labelled crop cache, at frame and video level, optionally
//! again under each robustness perturbation (seed 001's study).
//!
//! Video level means per source input: its crops' P(fake) combined with the scan's own
//! aggregation strategy, so the figures describe what `dfscan scan` would say.
//!
//! A sequence model scores windows of T crops of one input ([`CropSet::examples`]), not
//! crops: its "frame" level is per window, and its video level combines an input's windows.
//! Perturbations are fixed transformations, so every crop of a window gets the same one.

use anyhow::{ensure, Result};
use serde::Serialize;

use super::metrics::{per_video, reliability, roc_curve, BinaryMetrics, ReliabilityBin, RocPoint};
use crate::aggregate::{self, Strategy};
use crate::models::{AnyModel, ModelId};
use crate::crops::augment::Perturbation;
use crate::crops::dataset::{CropSet, Split, SplitPlan};

#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Evaluate one split of the cache (None: every crop).
    pub split: Option<Split>,
    pub plan: SplitPlan,
    pub aggregate: Strategy,
    pub threshold: f32,
    pub perturbations: Vec<Perturbation>,
    pub batch_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelResult {
    pub metrics: BinaryMetrics,
    /// ROC points; empty when one class is missing.
    pub roc: Vec<RocPoint>,
    /// Reliability diagram (10 bins): is P(fake) = 0.7 fake 70% of the time?
    pub reliability: Vec<ReliabilityBin>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    /// "clean" or the perturbation's name.
    pub condition: String,
    pub frame: LevelResult,
    pub video: LevelResult,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: ModelId,
    pub provenance: String,
    pub split: Option<Split>,
    pub split_plan: SplitPlan,
    pub aggregate: Strategy,
    pub threshold: f32,
    pub crops: usize,
    /// What the "frame" level scores: "crop", or "window of T crops" for a sequence model.
    pub frame_unit: String,
    /// Scored examples: crops, or windows.
    pub examples: usize,
    pub videos: usize,
    pub conditions: Vec<Condition>,
}

/// Positions in `set` of the crops of `split` (None: all of them); an empty split is an error.
fn split_indices(set: &CropSet, split: Option<Split>, plan: &SplitPlan) -> Result<Vec<usize>> {
    let idx: Vec<usize> = match split {
        Some(split) => set.split(split, plan),
        None => (0..set.records.len()).collect(),
    };
    ensure!(!idx.is_empty(), "no crops in the {split:?} split");
    Ok(idx)
}

/// The crops of one split (None: all) at `size`, with their labels and source inputs.
pub struct LabelledCrops {
    pub pixels: Vec<Vec<u8>>,
    pub fake: Vec<bool>,
    pub sources: Vec<String>,
}

impl LabelledCrops {
    pub fn load(set: &CropSet, split: Option<Split>, plan: &SplitPlan, size: i32) -> Result<Self> {
        let idx = split_indices(set, split, plan)?;
        Ok(Self {
            pixels: idx.iter().map(|&i| set.load_rgb(i, size)).collect::<Result<Vec<_>>>()?,
            fake: idx.iter().map(|&i| set.records[i].label.is_fake()).collect(),
            sources: idx.iter().map(|&i| set.records[i].source.clone()).collect(),
        })
    }

    /// At most `n` of the crops, spread evenly over the split ([`evenly`]).
    pub fn evenly(self, n: usize) -> Self {
        Self { pixels: evenly(self.pixels, n), fake: evenly(self.fake, n), sources: evenly(self.sources, n) }
    }

    pub fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(String::as_str).collect()
    }

    /// How many source inputs (videos) the crops come from.
    pub fn videos(&self) -> usize {
        self.sources.iter().collect::<std::collections::BTreeSet<_>>().len()
    }
}

/// The scored examples of a split: each one's crops (positions in the loaded pixels), label
/// and source input.
struct Examples<'a> {
    members: Vec<Vec<usize>>,
    labels: Vec<bool>,
    sources: Vec<&'a str>,
}

pub fn evaluate(set: &CropSet, model: &AnyModel, cfg: &EvalConfig) -> Result<EvalReport> {
    let idx = split_indices(set, cfg.split, &cfg.plan)?;
    let size = model.input_size() as i32;
    let pixels = idx.iter().map(|&i| set.load_rgb(i, size)).collect::<Result<Vec<_>>>()?;
    let members = set.examples(&idx, model.sequence_frames().map(|t| t as usize));
    let record = |m: &Vec<usize>| &set.records[idx[m[0]]];
    let examples = Examples {
        labels: members.iter().map(|m| record(m).label.is_fake()).collect(),
        sources: members.iter().map(|m| record(m).source.as_str()).collect(),
        members,
    };
    let mut conditions = vec![condition("clean", model, &pixels, &examples, cfg)?];
    for p in &cfg.perturbations {
        let perturbed = pixels.iter().map(|rgb| p.apply(rgb, size)).collect::<Result<Vec<_>>>()?;
        conditions.push(condition(&format!("{p:?}").to_lowercase(), model, &perturbed, &examples, cfg)?);
    }
    let videos = examples.sources.iter().collect::<std::collections::BTreeSet<_>>().len();
    Ok(EvalReport {
        model: model.id().clone(),
        provenance: model.header().provenance.clone(),
        split: cfg.split,
        split_plan: cfg.plan,
        aggregate: cfg.aggregate,
        threshold: cfg.threshold,
        crops: idx.len(),
        frame_unit: model.sequence_frames().map_or("crop".into(), |t| format!("window of {t} crops")),
        examples: examples.members.len(),
        videos,
        conditions,
    })
}

/// At most `n` of `items`, evenly spaced from the first: a subsample that still spans every
/// part of an ordered list (crops are listed video by video).
pub fn evenly<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let (len, n) = (items.len(), n.min(items.len()));
    let keep: std::collections::BTreeSet<usize> = (0..n).map(|i| i * len / n).collect();
    items.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, item)| item).collect()
}

fn condition(name: &str, model: &AnyModel, pixels: &[Vec<u8>], examples: &Examples, cfg: &EvalConfig) -> Result<Condition> {
    let size = model.input_size();
    let labels = &examples.labels;
    // Batches hold about `batch_size` crops, whichever the unit.
    let per_batch = (cfg.batch_size / model.sequence_frames().unwrap_or(1) as usize).max(1);
    let mut scores = Vec::with_capacity(labels.len());
    for chunk in examples.members.chunks(per_batch) {
        let batch = crate::models::example_batch(chunk.iter().map(|m| m.iter().map(|&c| &pixels[c])), size, model.sequence_frames());
        scores.extend(Vec::<f32>::try_from(model.fake_logits(&batch))?.into_iter().map(aggregate::sigmoid));
    }
    let (video_scores, video_labels) = per_video(&scores, labels, &examples.sources, cfg.aggregate);
    let level = |scores: &[f32], labels: &[bool]| LevelResult {
        metrics: BinaryMetrics::compute(scores, labels, cfg.threshold),
        roc: roc_curve(scores, labels).unwrap_or_default(),
        reliability: reliability(scores, labels, 10),
    };
    Ok(Condition { condition: name.to_string(), frame: level(&scores, labels), video: level(&video_scores, &video_labels) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_keeps_first_and_spreads() {
        assert_eq!(evenly((0..10).collect(), 3), [0, 3, 6]);
        assert_eq!(evenly((0..4).collect(), 9), [0, 1, 2, 3]);
        assert_eq!(evenly((0..5).collect::<Vec<i32>>(), 0), Vec::<i32>::new());
    }
}
