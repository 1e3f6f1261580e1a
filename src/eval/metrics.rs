//! Binary-classification metrics on `scores` (higher = more positive) and `labels` (true =
//! positive), as scikit-learn defines them, plus the out-of-distribution metrics of ODIN
//! (Liang et al., 2018, <https://arxiv.org/abs/1706.02690>).
//!
//! Equal scores are one threshold: a curve never passes between tied samples, so the result
//! does not depend on their order. A metric that needs both classes returns None when one is
//! empty. Mismatched lengths and NaN scores are caller bugs and panic.
use serde::{Deserialize, Serialize};

/// One operating point: at `threshold`, a sample is called positive when `score >= threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RocPoint {
    pub fpr: f64,
    pub tpr: f64,
    /// +inf for the (0, 0) start, where nothing is called positive (null in JSON).
    pub threshold: f32,
}

/// Counts of positives and negatives at or above each distinct score, highest score first
/// (scikit-learn's `_binary_clf_curve`): `(threshold, true positives, false positives)`.
fn cumulative_counts(scores: &[f32], labels: &[bool]) -> Vec<(f32, usize, usize)> {
    check_inputs(scores, labels);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut counts: Vec<(f32, usize, usize)> = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // Emit only after the last of a run of equal scores.
        let run_ends = order.get(k + 1).is_none_or(|&next| scores[next] != scores[i]);
        if run_ends {
            counts.push((scores[i], tp, fp));
        }
    }
    counts
}

fn check_inputs(scores: &[f32], labels: &[bool]) {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    assert!(scores.iter().all(|s| !s.is_nan()), "scores must not be NaN");
}

fn class_sizes(labels: &[bool]) -> (usize, usize) {
    let positives = labels.iter().filter(|&&l| l).count();
    (positives, labels.len() - positives)
}

/// The ROC curve from (0, 0) to (1, 1), one point per distinct score, thresholds descending;
/// None when a class is empty (a rate would divide by zero).
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<RocPoint>> {
    let counts = cumulative_counts(scores, labels);
    let (positives, negatives) = class_sizes(labels);
    if positives == 0 || negatives == 0 {
        return None;
    }
    let start = RocPoint { fpr: 0.0, tpr: 0.0, threshold: f32::INFINITY };
    let points = counts.into_iter().map(|(threshold, tp, fp)| RocPoint {
        fpr: fp as f64 / negatives as f64,
        tpr: tp as f64 / positives as f64,
        threshold,
    });
    Some(std::iter::once(start).chain(points).collect())
}

/// Area under the ROC curve as the Mann–Whitney U statistic: the probability that a random
/// positive outscores a random negative, a tie counting one half (average ranks).
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    check_inputs(scores, labels);
    let (positives, negatives) = class_sizes(labels);
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let end = start + order[start..].iter().take_while(|&&i| scores[i] == score).count();
        // Ranks start+1 ..= end share their mean.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += average_rank * tied_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision as scikit-learn defines it: sum over thresholds of (R_n - R_{n-1}) P_n,
/// a step function with no interpolation. None without positives; 1.0 without negatives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let counts = cumulative_counts(scores, labels);
    let (positives, _) = class_sizes(labels);
    if positives == 0 {
        return None;
    }
    let mut previous_recall = 0.0;
    let mut ap = 0.0;
    for (_, tp, fp) in counts {
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - previous_recall) * precision;
        previous_recall = recall;
    }
    Some(ap)
}

/// The equal error rate and where it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Eer {
    /// FPR = FNR, interpolated linearly on the ROC segment where FPR - FNR changes sign.
    pub rate: f64,
    /// The threshold of that segment's end: the highest one with FPR >= FNR.
    pub threshold: f32,
}

/// Equal error rate; None when a class is empty.
pub fn eer(scores: &[f32], labels: &[bool]) -> Option<Eer> {
    let curve = roc_curve(scores, labels)?;
    // FPR - FNR rises from -1 at (0, 0) to +1 at (1, 1), so it changes sign exactly once.
    let gap = |p: &RocPoint| p.fpr - (1.0 - p.tpr);
    let end = curve.iter().position(|p| gap(p) >= 0.0)?;
    let (a, b) = (&curve[end - 1], &curve[end]);
    let t = -gap(a) / (gap(b) - gap(a));
    Some(Eer { rate: a.fpr + t * (b.fpr - a.fpr), threshold: b.threshold })
}

/// Mean cross-entropy of probabilities `probs` = P(positive), clipped to [1e-7, 1 - 1e-7] so
/// that one confident mistake costs about 16 nats instead of infinity; None when empty.
pub fn log_loss(probs: &[f32], labels: &[bool]) -> Option<f64> {
    const EPS: f64 = 1e-7;
    check_inputs(probs, labels);
    if probs.is_empty() {
        return None;
    }
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &positive)| {
            let p = (p as f64).clamp(EPS, 1.0 - EPS);
            -if positive { p.ln() } else { (1.0 - p).ln() }
        })
        .sum();
    Some(total / probs.len() as f64)
}

/// Counts at one threshold; `score >= threshold` is called positive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    pub fn at(scores: &[f32], labels: &[bool], threshold: f32) -> Self {
        check_inputs(scores, labels);
        let mut c = Confusion::default();
        for (&score, &positive) in scores.iter().zip(labels) {
            match (score >= threshold, positive) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// The fraction called right; None when there is no sample.
    pub fn accuracy(&self) -> Option<f64> {
        let total = self.tp + self.fp + self.tn + self.fn_;
        (total > 0).then(|| (self.tp + self.tn) as f64 / total as f64)
    }
}

/// The lowest FPR among thresholds that reach TPR >= `min_tpr`; None when a class is empty.
pub fn fpr_at_tpr(scores: &[f32], labels: &[bool], min_tpr: f64) -> Option<f64> {
    // FPR never falls as the threshold falls, so the first point that reaches it is the best.
    roc_curve(scores, labels)?.iter().find(|p| p.tpr >= min_tpr).map(|p| p.fpr)
}

/// ODIN's detection error: min over thresholds of 0.5 (1 - TPR) + 0.5 FPR, the error rate
/// at the best threshold when both classes are equally likely; None when a class is empty.
pub fn detection_error(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let curve = roc_curve(scores, labels)?;
    curve.iter().map(|p| 0.5 * (1.0 - p.tpr) + 0.5 * p.fpr).min_by(f64::total_cmp)
}

/// AUPR-In: average precision with in-distribution as the positive class, ranked by -risk.
pub fn aupr_in(risks: &[f32], is_ood: &[bool]) -> Option<f64> {
    let (safety, is_in) = in_distribution_as_positive(risks, is_ood);
    average_precision(&safety, &is_in)
}

/// Turns (risk, is OOD) into (safety, is in-distribution): the same ranking, classes swapped.
fn in_distribution_as_positive(risks: &[f32], is_ood: &[bool]) -> (Vec<f32>, Vec<bool>) {
    (risks.iter().map(|r| -r).collect(), is_ood.iter().map(|o| !o).collect())
}

/// AUPR-Out: average precision with out-of-distribution as the positive class.
pub fn aupr_out(risks: &[f32], is_ood: &[bool]) -> Option<f64> {
    average_precision(risks, is_ood)
}

/// What a scored, labelled evaluation split reports. `scores` are P(positive) in [0, 1], so
/// that the log loss means something; rank metrics are None when a class is empty.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BinaryMetrics {
    pub n_pos: usize,
    pub n_neg: usize,
    pub auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub eer: Option<f64>,
    pub eer_threshold: Option<f32>,
    /// The threshold that `accuracy` and `confusion` are counted at.
    pub threshold: f32,
    pub accuracy: Option<f64>,
    pub log_loss: Option<f64>,
    pub confusion: Confusion,
}

impl BinaryMetrics {
    pub fn compute(scores: &[f32], labels: &[bool], threshold: f32) -> Self {
        let (n_pos, n_neg) = class_sizes(labels);
        let eer = eer(scores, labels);
        let confusion = Confusion::at(scores, labels, threshold);
        BinaryMetrics {
            n_pos,
            n_neg,
            auc: roc_auc(scores, labels),
            average_precision: average_precision(scores, labels),
            eer: eer.map(|e| e.rate),
            eer_threshold: eer.map(|e| e.threshold),
            threshold,
            accuracy: confusion.accuracy(),
            log_loss: log_loss(scores, labels),
            confusion,
        }
    }
}

/// Out-of-distribution detection as ODIN reports it, from a risk score (higher = more likely
/// out-of-distribution). ODIN's FPR at 95% TPR takes in-distribution as the positive class:
/// the share of OOD samples accepted when 95% of in-distribution samples are.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OodMetrics {
    pub auroc: f64,
    pub aupr_in: f64,
    pub aupr_out: f64,
    pub fpr_at_95_tpr: f64,
    pub detection_error: f64,
}

impl OodMetrics {
    /// None unless both in- and out-of-distribution samples are present.
    pub fn compute(risks: &[f32], is_ood: &[bool]) -> Option<Self> {
        let (safety, is_in) = in_distribution_as_positive(risks, is_ood);
        Some(OodMetrics {
            auroc: roc_auc(risks, is_ood)?,
            aupr_in: aupr_in(risks, is_ood)?,
            aupr_out: aupr_out(risks, is_ood)?,
            fpr_at_95_tpr: fpr_at_tpr(&safety, &is_in, 0.95)?,
            detection_error: detection_error(risks, is_ood)?,
        })
    }
}

/// One bin of a reliability diagram: predictions in `[lo, hi)` (the last bin includes 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lo: f32,
    pub hi: f32,
    pub count: usize,
    /// Mean predicted P(positive) in the bin (None when empty).
    pub mean_predicted: Option<f64>,
    /// Share of positives in the bin: a calibrated model's equals `mean_predicted`.
    pub observed: Option<f64>,
}

/// The reliability diagram of probabilities `probs` in `bins` equal-width bins over [0, 1].
pub fn reliability(probs: &[f32], labels: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    check_inputs(probs, labels);
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p as f64;
        sums[b].2 += l as usize;
    }
    sums.into_iter()
        .enumerate()
        .map(|(b, (count, sum, positives))| ReliabilityBin {
            lo: b as f32 / bins as f32,
            hi: (b + 1) as f32 / bins as f32,
            count,
            mean_predicted: (count > 0).then(|| sum / count as f64),
            observed: (count > 0).then(|| positives as f64 / count as f64),
        })
        .collect()
}

/// Expected calibration error: the count-weighted mean gap between predicted and observed.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.count).sum();
    (total > 0).then(|| {
        bins.iter()
            .filter_map(|b| Some(b.count as f64 * (b.mean_predicted? - b.observed?).abs()))
            .sum::<f64>()
            / total as f64
    })
}

/// Video-level scores and labels: each source input's crop scores combined by `strategy`, as
/// the scan combines a video's faces.
pub fn per_video(scores: &[f32], labels: &[bool], sources: &[&str], strategy: crate::aggregate::Strategy) -> (Vec<f32>, Vec<bool>) {
    let mut by_source: std::collections::BTreeMap<&str, (Vec<f32>, bool)> = std::collections::BTreeMap::new();
    for ((s, fake), source) in scores.iter().zip(labels).zip(sources) {
        by_source.entry(source).or_insert((Vec::new(), *fake)).0.push(*s);
    }
    by_source.into_values().map(|(s, fake)| (crate::aggregate::video_score(&s, strategy).expect("at least one crop"), fake)).unzip()
}

#[cfg(test)]
mod tests;
