//! `dfscan eval --ood`: how well a model with OOD heads (seed 000's ViT path or U-Net path)
//! tells the crops of a split (in-distribution) from other images, by its abnormality module
//! and by the two baselines on the same classifier, MSP and ODIN (`models::ood`), measured as
//! ODIN reports it ([`OodMetrics`]): per out-of-distribution set, and with all sets pooled.
//! Several models go in one table ([`table`]).
use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::evaluate::LabelledCrops;
use super::metrics::per_video;
use super::metrics::{roc_auc, OodMetrics};
use crate::aggregate::{self, Strategy};
use crate::crops::augment::{AugmentPlan, Interpolation, IsotropicResize};
use crate::models::ood::Odin;
use crate::models::{FaceModel, ModelId, OodRisks};
use crate::crops::dataset::{Split, SplitPlan};

/// Out-of-distribution images under a name (a folder, or a synthetic corruption).
pub struct OodSet {
    pub name: String,
    pub pixels: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug)]
pub struct OodEvalConfig {
    pub odin: Odin,
    pub batch_size: usize,
    /// How a video's crops make its P(fake), for the classifier's video-level AUC.
    pub aggregate: Strategy,
    /// The scan's `--ood-threshold`, whose rate of "uncertain" in-distribution inputs is
    /// measured.
    pub ood_threshold: f32,
}

/// How often in-distribution inputs would come out "uncertain": an input's risk is the mean
/// abnormality risk of its crops, as in the scan, and it is uncertain at or above the
/// threshold. Measured clean and under mild re-encoding, which ordinary footage has.
#[derive(Clone, Debug, Serialize)]
pub struct UncertainRate {
    /// "clean", "jpeg-75" (re-compressed at quality 75) or "half-size" (down to half the
    /// side and back up).
    pub condition: String,
    pub inputs: usize,
    pub uncertain: usize,
    /// `uncertain / inputs` at `OodEvalConfig::ood_threshold`.
    pub rate: f64,
    /// The lowest threshold at which at most 5% of these inputs are uncertain.
    pub threshold_for_5_percent: f32,
}

/// The mild conditions of [`UncertainRate`]: ordinary footage, not corruption.
fn mild_conditions() -> [(&'static str, AugmentPlan); 3] {
    let identity = AugmentPlan::default();
    [
        ("clean", identity.clone()),
        ("jpeg-75", AugmentPlan { jpeg_quality: Some(75), ..identity.clone() }),
        ("half-size", AugmentPlan { resize: Some(IsotropicResize { scale: 0.5, interpolation: Interpolation::AreaLinear, pad: false }), ..identity }),
    ]
}

/// [`UncertainRate`] of `id` under each mild condition.
fn uncertain_rates(model: &FaceModel, id: &LabelledCrops, cfg: &OodEvalConfig) -> Result<Vec<UncertainRate>> {
    let size = model.input_size() as i32;
    let mut rates = Vec::new();
    for (name, plan) in mild_conditions() {
        let pixels: Vec<Vec<u8>> = id.pixels.iter().map(|p| plan.apply(p, size)).collect::<Result<_>>()?;
        let mut risks = Vec::with_capacity(pixels.len());
        for chunk in pixels.chunks(cfg.batch_size.max(1)) {
            let scores = model.score(&crate::models::crop_batch(chunk, model.input_size()))?;
            risks.extend(scores.ood_risk.context("the model has no abnormality module")?);
        }
        // Per input, as the scan's `ood_risk`: the mean over its crops.
        let (mut inputs, _) = per_video(&risks, &id.fake, &id.source_names(), Strategy::Mean);
        inputs.sort_by(f32::total_cmp);
        let uncertain = inputs.iter().filter(|&&r| r >= cfg.ood_threshold).count();
        // At most 5% at or above: just above the input risk that leaves 5% above it.
        let keep = inputs.len() - inputs.len() / 20;
        let threshold_for_5_percent = inputs.get(keep.saturating_sub(1)).map_or(0.0, |&r| r.next_up());
        rates.push(UncertainRate { condition: name.into(), inputs: inputs.len(), uncertain, rate: uncertain as f64 / inputs.len().max(1) as f64, threshold_for_5_percent });
    }
    Ok(rates)
}

/// One set's figures for each method; None where a class is empty.
#[derive(Clone, Debug, Serialize)]
pub struct MethodMetrics {
    pub abnormality: Option<OodMetrics>,
    pub msp: Option<OodMetrics>,
    pub odin: Option<OodMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OodSetResult {
    /// The set's name, or "pooled" for all sets together.
    pub name: String,
    pub crops: usize,
    pub metrics: MethodMetrics,
}

#[derive(Clone, Debug, Serialize)]
pub struct OdinSettings {
    pub temperature: f64,
    pub epsilon: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OodReport {
    pub model: ModelId,
    pub provenance: String,
    /// The in-distribution crops: this split of the cache (None: all of it).
    pub split: Option<Split>,
    pub split_plan: SplitPlan,
    pub id_crops: usize,
    pub id_videos: usize,
    /// The classifier's own task on the in-distribution crops: AUC of P(fake), per crop and
    /// per video (crops combined by `aggregate`).
    pub id_frame_auc: Option<f64>,
    pub id_video_auc: Option<f64>,
    pub aggregate: Strategy,
    pub odin: OdinSettings,
    /// One entry per set, then "pooled".
    pub sets: Vec<OodSetResult>,
    /// `--ood-threshold` and how often in-distribution inputs reach it.
    pub ood_threshold: f32,
    pub uncertain: Vec<UncertainRate>,
}

/// Every risk of each crop, in the order of the crops.
#[derive(Default)]
struct Risks {
    fake_logits: Vec<f32>,
    abnormality: Vec<f32>,
    msp: Vec<f32>,
    odin: Vec<f32>,
}

impl Risks {
    fn of(model: &FaceModel, pixels: &[Vec<u8>], cfg: &OodEvalConfig) -> Result<Self> {
        let mut all = Self::default();
        for chunk in pixels.chunks(cfg.batch_size.max(1)) {
            let OodRisks { fake_logits, abnormality, msp, odin } = model.ood_risks(&crate::models::crop_batch(chunk, model.input_size()), &cfg.odin)?;
            all.fake_logits.extend(fake_logits);
            all.abnormality.extend(abnormality);
            all.msp.extend(msp);
            all.odin.extend(odin);
        }
        Ok(all)
    }
}

/// Each method's metrics for in-distribution `id` against `ood` (one set or several).
fn compare<'a>(id: &'a Risks, ood: impl Iterator<Item = &'a Risks> + Clone) -> MethodMetrics {
    let method = |risks: fn(&Risks) -> &[f32]| {
        let scores: Vec<f32> = risks(id).iter().chain(ood.clone().flat_map(risks)).copied().collect();
        let is_ood: Vec<bool> = (0..scores.len()).map(|i| i >= id.fake_logits.len()).collect();
        OodMetrics::compute(&scores, &is_ood)
    };
    MethodMetrics { abnormality: method(|r| &r.abnormality), msp: method(|r| &r.msp), odin: method(|r| &r.odin) }
}

pub fn evaluate_ood(model: &FaceModel, id: &LabelledCrops, split: Option<Split>, plan: SplitPlan, sets: &[OodSet], cfg: &OodEvalConfig) -> Result<OodReport> {
    ensure!(!sets.is_empty(), "no out-of-distribution set to compare with (--ood DIR or --ood-synthetic)");
    let id_risks = Risks::of(model, &id.pixels, cfg)?;
    let set_risks = sets.iter().map(|set| Risks::of(model, &set.pixels, cfg)).collect::<Result<Vec<_>>>()?;
    let mut results: Vec<OodSetResult> = sets
        .iter()
        .zip(&set_risks)
        .map(|(set, risks)| OodSetResult { name: set.name.clone(), crops: set.pixels.len(), metrics: compare(&id_risks, std::iter::once(risks)) })
        .collect();
    results.push(OodSetResult { name: "pooled".into(), crops: set_risks.iter().map(|r| r.msp.len()).sum(), metrics: compare(&id_risks, set_risks.iter()) });
    let probs: Vec<f32> = id_risks.fake_logits.iter().map(|&l| aggregate::sigmoid(l)).collect();
    let (video_probs, video_fake) = per_video(&probs, &id.fake, &id.source_names(), cfg.aggregate);
    Ok(OodReport {
        model: model.id.clone(),
        provenance: model.header.provenance.clone(),
        split,
        split_plan: plan,
        id_crops: id.pixels.len(),
        id_videos: id.videos(),
        id_frame_auc: roc_auc(&probs, &id.fake),
        id_video_auc: roc_auc(&video_probs, &video_fake),
        aggregate: cfg.aggregate,
        odin: OdinSettings { temperature: cfg.odin.temperature, epsilon: cfg.odin.epsilon },
        sets: results,
        ood_threshold: cfg.ood_threshold,
        uncertain: uncertain_rates(model, id, cfg)?,
    })
}

impl OodReport {
    /// The figures as a plain-text table, one row per set and method (see [`table`]).
    pub fn table(&self) -> String {
        table(std::slice::from_ref(self))
    }
}

/// Several models' figures (`eval --ood --models a,b`: the ViT path and the U-Net path) in one
/// plain-text table, one row per set, model and method; each model's classifier AUC and
/// "uncertain" rates below.
pub fn table(reports: &[OodReport]) -> String {
    let auc = |a: Option<f64>| a.map_or("n/a".into(), |a| format!("{a:.4}"));
    let name = |r: &OodReport| format!("{} ({})", r.model.name, r.model.weights);
    let width = reports.iter().map(|r| name(r).len()).max().unwrap_or(0).max(5);
    let mut out = String::new();
    for r in reports {
        out += &format!(
            "in-distribution for {}: {} crops of {} videos ({}); classifier AUC {} per crop, {} per video\n",
            name(r),
            r.id_crops,
            r.id_videos,
            r.split.map_or("all crops".to_string(), |s| format!("{s:?} split").to_lowercase()),
            auc(r.id_frame_auc),
            auc(r.id_video_auc),
        );
    }
    out += &format!("{:<24} {:>6}  {:<width$}  {:<12} {:>7} {:>8} {:>8} {:>8} {:>8}\n", "OOD set", "crops", "model", "method", "AUROC", "AUPR-in", "AUPR-out", "FPR@95", "det.err");
    let sets = reports.first().map_or(0, |r| r.sets.len());
    for k in 0..sets {
        for r in reports.iter().filter(|r| k < r.sets.len()) {
            let (set, m) = (&r.sets[k], &r.sets[k].metrics);
            for (method, metrics) in [("abnormality", &m.abnormality), ("MSP", &m.msp), ("ODIN", &m.odin)] {
                let figures = metrics.map_or("n/a".to_string(), |m| {
                    format!("{:>7.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}", m.auroc, m.aupr_in, m.aupr_out, m.fpr_at_95_tpr, m.detection_error)
                });
                out += &format!("{:<24} {:>6}  {:<width$}  {:<12} {figures}\n", set.name, set.crops, name(r), method);
            }
        }
    }
    for r in reports {
        out += &format!("in-distribution inputs \"uncertain\" at --ood-threshold {} for {}:\n", r.ood_threshold, name(r));
        for u in &r.uncertain {
            out += &format!("{:<10} {:>3} of {:>4} inputs ({:>5.1}%); at most 5% from threshold {:.4}\n", u.condition, u.uncertain, u.inputs, 100.0 * u.rate, u.threshold_for_5_percent);
        }
    }
    out
}
