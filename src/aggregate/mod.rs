//! Per-face P(fake) -> one score per video, and the verdict: the strategies and combinations
//! here, applied in order by [`judge`].
use serde::Serialize;

pub mod judge;

pub use judge::{judge, Evidence, Judgement, Settings};

/// `--ood-threshold`'s default: the out-of-distribution risk at or above which a verdict is
/// "uncertain". Chosen for the default model's own abnormality module so that at most 5% of
/// in-distribution validation inputs are uncertain, clean or mildly re-encoded: `dfscan eval
/// --ood` measured 0.105, 0.168 and 0.487 for clean, JPEG-75 and half-size inputs of both
/// corpora (models/default.md). The ViT's risk (`--ood-model vit`) needs 0.64 (models/vit.md).
pub const DEFAULT_OOD_THRESHOLD: f32 = 0.5;

/// `--aggregate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The DFDC winner's rule (Seferbekov): trust a confident majority, else the mean.
    Confident,
    Mean,
    /// One fake face makes the video fake.
    Max,
}

/// The video score under `strategy`, or None when there is no face score at all (no face is
/// "no face", never a guess).
pub fn video_score(scores: &[f32], strategy: Strategy) -> Option<f32> {
    if scores.is_empty() {
        return None;
    }
    Some(match strategy {
        Strategy::Confident => confident(scores),
        Strategy::Mean => mean(scores.iter().copied()),
        Strategy::Max => scores.iter().copied().fold(f32::MIN, f32::max),
    })
}

/// If more than n/2.5 and more than 11 scores exceed 0.8, their mean; else if more than 90%
/// are below 0.2, their mean; else the mean of all (DFDC 1st place, `confident_strategy`).
fn confident(scores: &[f32]) -> f32 {
    const FAKE: f32 = 0.8;
    const REAL: f32 = 0.2;
    let n = scores.len() as f32;
    let fakes = scores.iter().filter(|&&s| s > FAKE).count();
    let reals = scores.iter().filter(|&&s| s < REAL).count();
    if fakes as f32 > n / 2.5 && fakes > 11 {
        mean(scores.iter().copied().filter(|&s| s > FAKE))
    } else if reals as f32 > 0.9 * n {
        mean(scores.iter().copied().filter(|&s| s < REAL))
    } else {
        mean(scores.iter().copied())
    }
}

fn mean(values: impl Iterator<Item = f32>) -> f32 {
    let (sum, count) = values.fold((0.0f64, 0usize), |(s, c), v| (s + v as f64, c + 1));
    (sum / count as f64) as f32
}

/// `--across-tracks`: how the scores of a video's face tracks (one per person, see
/// `faces::track`) make the video's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcrossTracks {
    /// The most fake track: one swapped face makes the video fake, however many real people
    /// stand beside it. Tracks seen in fewer than a tenth of the sampled frames (a passing
    /// false detection) count only when no track is longer.
    Max,
    /// Every face of the video together, tracks ignored.
    Pooled,
}

/// One face track's evidence, as the JSON line reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackScore {
    pub id: u32,
    /// Sampled frames the track has a face in.
    pub frames: usize,
    /// P(fake) of the track: its faces' scores under the `--aggregate` strategy; for an
    /// ensemble, the weighted mean of `models`.
    pub score: f32,
    /// Each model's P(fake) of the track, in the order of the line's `models` (empty while a
    /// single model's tracks are being built); null for a model that did not score it.
    pub models: Vec<Option<f32>>,
}

/// The tracks of `faces`, given as (track id, P(fake)), in order of id.
pub fn track_scores(faces: &[(u32, f32)], strategy: Strategy) -> Vec<TrackScore> {
    let mut by_track: std::collections::BTreeMap<u32, Vec<f32>> = Default::default();
    for &(id, score) in faces {
        by_track.entry(id).or_default().push(score);
    }
    by_track
        .into_iter()
        .map(|(id, scores)| TrackScore { id, frames: scores.len(), score: video_score(&scores, strategy).expect("a track has a face"), models: Vec::new() })
        .collect()
}

/// The video's score from its faces and their tracks, under `across`.
pub fn video_score_across_tracks(tracks: &[TrackScore], faces: &[f32], frames_sampled: usize, strategy: Strategy, across: AcrossTracks) -> Option<f32> {
    match across {
        AcrossTracks::Pooled => video_score(faces, strategy),
        AcrossTracks::Max => {
            let min_frames = frames_sampled.div_ceil(10).max(1);
            let steady = tracks.iter().filter(|t| t.frames >= min_frames);
            let pool: Vec<&TrackScore> = if steady.clone().next().is_some() { steady.collect() } else { tracks.iter().collect() };
            pool.iter().map(|t| t.score).reduce(f32::max)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Fake,
    Real,
    /// Out of distribution: the score is reported but not trusted either way.
    Uncertain,
    /// No face in any sampled frame: nothing to judge, and no score.
    #[serde(rename = "no_face")]
    NoFace,
}

/// Weighted mean of `(weight, value)` pairs whose weights need not sum to 1; None without
/// weight.
pub fn weighted_mean(pairs: impl IntoIterator<Item = (f32, f32)>) -> Option<f32> {
    let (sum, total) = pairs.into_iter().fold((0.0f64, 0.0f64), |(s, t), (w, v)| (s + (w * v) as f64, t + w as f64));
    (total > 0.0).then(|| (sum / total) as f32)
}

/// The tracks of an ensemble: `per_model[m]` holds model m's tracks, in order of id (empty for
/// a model that abstained). Every track any model scored is one track here, in order of id;
/// its score is the `weights`-weighted mean of the models that scored it, and a model that did
/// not (a frame model that saw none of its faces, a temporal model for which it was too short)
/// is null in its `models`.
pub fn ensemble_tracks(per_model: &[Vec<TrackScore>], weights: &[f32]) -> Vec<TrackScore> {
    let mut ids: Vec<u32> = per_model.iter().flatten().map(|t| t.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let found: Vec<Option<&TrackScore>> = per_model.iter().map(|tracks| tracks.iter().find(|t| t.id == id)).collect();
            let models: Vec<Option<f32>> = found.iter().map(|t| t.map(|t| t.score)).collect();
            let frames = found.iter().flatten().map(|t| t.frames).max().unwrap_or(0);
            let score = weighted_mean(weights.iter().zip(&models).filter_map(|(&w, s)| s.map(|s| (w, s)))).unwrap_or(f32::NAN);
            TrackScore { id, frames, score, models }
        })
        .collect()
}

/// A learned, calibrated ensemble (`dfscan fit-ensemble`, `scan --ensemble`): a logistic
/// regression on the members' logits, fitted on scores of inputs the members never trained on,
/// so 0.5 means even odds: P(fake) = sigmoid(bias + sum of weight x logit(member score)).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Stacker {
    /// The members, as `--models` names them (shipped names or paths).
    pub members: Vec<String>,
    /// One weight per member, on its logit.
    pub weights: Vec<f32>,
    pub bias: f32,
    /// How and on what it was fitted (command, inputs, folds).
    pub provenance: String,
}

impl Stacker {
    /// The combined P(fake) of one input or track from each member's P(fake); None when a
    /// member has no score (a stacker never fills in a missing member).
    pub fn combine(&self, scores: &[Option<f32>]) -> Option<f32> {
        debug_assert_eq!(scores.len(), self.weights.len());
        let mut z = self.bias as f64;
        for (s, w) in scores.iter().zip(&self.weights) {
            z += *w as f64 * logit(s.as_ref().copied()?) as f64;
        }
        Some(sigmoid(z as f32))
    }
}

/// log(p / (1 - p)), with p kept a hair inside (0, 1) so a saturated member stays finite.
pub fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

pub fn verdict(score: f32, threshold: f32) -> Verdict {
    if score >= threshold {
        Verdict::Fake
    } else {
        Verdict::Real
    }
}

pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn no_scores_no_verdict() {
        assert_eq!(video_score(&[], Strategy::Confident), None);
        assert_eq!(video_score(&[], Strategy::Mean), None);
    }

    #[test]
    fn confident_majority_of_fakes_averages_only_them() {
        // 12 of 20 above 0.8: 12 > 20/2.5 = 8 and 12 > 11, so the mean of the twelve.
        let mut s = vec![0.9f32; 12];
        s.extend([0.1f32; 8]);
        assert!(close(video_score(&s, Strategy::Confident).unwrap(), 0.9));
        assert!(close(video_score(&s, Strategy::Mean).unwrap(), (12.0 * 0.9 + 8.0 * 0.1) / 20.0));
    }

    #[test]
    fn confident_needs_more_than_eleven_fakes() {
        // 11 of 12 above 0.8 is not enough (the rule asks for more than 11): plain mean.
        let mut s = vec![0.9f32; 11];
        s.push(0.5);
        assert!(close(video_score(&s, Strategy::Confident).unwrap(), (11.0 * 0.9 + 0.5) / 12.0));
    }

    #[test]
    fn confident_real_majority_averages_the_reals() {
        // 19 of 20 below 0.2 (95% > 90%): the mean of those 19.
        let mut s = vec![0.1f32; 19];
        s.push(0.99);
        assert!(close(video_score(&s, Strategy::Confident).unwrap(), 0.1));
    }

    #[test]
    fn one_fake_track_makes_the_video_fake() {
        // Track 0: a real person in all 10 frames; track 1: a swapped face in 8 of them.
        let mut faces: Vec<(u32, f32)> = (0..10).map(|_| (0, 0.1)).collect();
        faces.extend((0..8).map(|_| (1, 0.9)));
        let tracks = track_scores(&faces, Strategy::Mean);
        assert_eq!(tracks.len(), 2);
        assert_eq!((tracks[1].id, tracks[1].frames), (1, 8));
        assert!(close(tracks[0].score, 0.1) && close(tracks[1].score, 0.9));
        let all: Vec<f32> = faces.iter().map(|f| f.1).collect();
        let max = video_score_across_tracks(&tracks, &all, 10, Strategy::Mean, AcrossTracks::Max).unwrap();
        assert!(close(max, 0.9));
        let pooled = video_score_across_tracks(&tracks, &all, 10, Strategy::Mean, AcrossTracks::Pooled).unwrap();
        assert!(close(pooled, (10.0 * 0.1 + 8.0 * 0.9) / 18.0));
    }

    #[test]
    fn a_passing_false_detection_does_not_decide() {
        // 32 frames: a one-frame track (below 32/10) scoring 0.99 is left out...
        let track = |id, frames, score| TrackScore { id, frames, score, models: Vec::new() };
        let tracks = [track(0, 32, 0.2), track(1, 1, 0.99)];
        assert!(close(video_score_across_tracks(&tracks, &[], 32, Strategy::Mean, AcrossTracks::Max).unwrap(), 0.2));
        // ...unless no track is longer (a still image has one frame).
        assert!(close(video_score_across_tracks(&tracks[1..], &[], 1, Strategy::Mean, AcrossTracks::Max).unwrap(), 0.99));
        assert_eq!(video_score_across_tracks(&[], &[], 0, Strategy::Mean, AcrossTracks::Max), None);
    }

    #[test]
    fn an_ensemble_weighs_each_models_track_scores() {
        let track = |id, score| TrackScore { id, frames: 4, score, models: Vec::new() };
        let per_model = [vec![track(0, 0.2), track(3, 0.8)], vec![track(0, 0.6), track(3, 0.4)]];
        let tracks = ensemble_tracks(&per_model, &[0.75, 0.25]);
        assert_eq!(tracks.iter().map(|t| t.id).collect::<Vec<_>>(), [0, 3]);
        assert!(close(tracks[0].score, 0.75 * 0.2 + 0.25 * 0.6));
        assert!(close(tracks[1].score, 0.75 * 0.8 + 0.25 * 0.4));
        assert_eq!(tracks[1].models, [Some(0.8), Some(0.4)]);
        // A track only one model scored: the others are null, its score that model's.
        let per_model = [vec![track(0, 0.2)], vec![track(0, 0.6), track(2, 0.9)], Vec::new()];
        let tracks = ensemble_tracks(&per_model, &[0.5, 0.25, 0.25]);
        assert_eq!(tracks.iter().map(|t| t.id).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(tracks[1].models, [None, Some(0.9), None]);
        assert!(close(tracks[1].score, 0.9) && close(tracks[0].score, (0.5 * 0.2 + 0.25 * 0.6) / 0.75));
        assert_eq!(weighted_mean([(2.0, 1.0), (2.0, 0.0)]), Some(0.5));
        assert_eq!(weighted_mean([(0.0, 1.0)]), None);
    }

    #[test]
    fn a_stacker_combines_member_logits_and_never_guesses_a_missing_one() {
        let stacker = Stacker { members: vec!["a".into(), "b".into()], weights: vec![2.0, -1.0], bias: 0.5, provenance: String::new() };
        let (pa, pb) = (0.8f32, 0.3f32);
        let want = sigmoid(0.5 + 2.0 * logit(pa) - logit(pb));
        assert!(close(stacker.combine(&[Some(pa), Some(pb)]).unwrap(), want));
        assert_eq!(stacker.combine(&[Some(pa), None]), None);
        assert!(close(logit(sigmoid(1.25)), 1.25));
        assert!(logit(1.0).is_finite() && logit(0.0).is_finite());
    }

    #[test]
    fn max_and_verdict() {
        assert!(close(video_score(&[0.1, 0.7, 0.3], Strategy::Max).unwrap(), 0.7));
        assert_eq!(verdict(0.5, 0.5), Verdict::Fake);
        assert_eq!(verdict(0.49, 0.5), Verdict::Real);
        assert!(close(sigmoid(0.0), 0.5));
    }
}
