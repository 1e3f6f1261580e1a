//! The verdict, decided in one place: [`judge`] turns everything the models said about one
//! input ([`Evidence`]) into its scores and verdict ([`Judgement`]), under the scan's
//! [`Settings`]. A pure function: no model, tensor or file in sight, so every rule is tested on
//! hand-made evidence below.
//!
//! The steps, in order:
//! 1. each face: each frame model's P(fake) (sigmoid of its logit), and the face's own score,
//!    the members combined (the stacker, else the weighted mean);
//! 2. each model, each track: a frame model's faces under `--aggregate` (the faces it scored:
//!    frames kept only for the clips have none of its logits), a sequence model's windows by
//!    their mean (LRNet's windows are its blocks: the mean is its score; the source's
//!    share-of-blocks rule is reported beside it as `share_fake`, not used);
//! 3. each model, the input: its tracks under `--across-tracks`. A model with no track to
//!    score (a track too short for LRNet, a frame model whose frames had no face) abstains:
//!    no score, and a note saying why;
//! 4. across models: the stacker, else the weighted mean of the models that did not abstain,
//!    for each track and the input. If every model abstained, the input is an error with
//!    their notes, never a made-up score;
//! 5. the out-of-distribution rule (mean risk of the faces >= `--ood-threshold`: "uncertain"),
//!    then the threshold. No face at all is the verdict "no_face", never a guess.
use super::{ensemble_tracks, logit, sigmoid, track_scores, verdict, video_score, video_score_across_tracks, weighted_mean};
use super::{AcrossTracks, Stacker, Strategy, TrackScore, Verdict};

/// What the models said about one input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub frames_sampled: usize,
    /// Every face found, in frame order.
    pub faces: Vec<FaceEvidence>,
    /// One per model of the set, in its order.
    pub members: Vec<MemberEvidence>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaceEvidence {
    /// The face track (person) it belongs to.
    pub track: u32,
    /// Each member's logit of "fake" for this face; None for a sequence model.
    pub logits: Vec<Option<f32>>,
    /// The out-of-distribution model's risk for this face, if one ran.
    pub ood_risk: Option<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberEvidence {
    /// For messages: the model's name.
    pub name: String,
    pub kind: MemberKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MemberKind {
    /// Scores faces: its logits are in [`FaceEvidence::logits`].
    Frame,
    /// Scores tracks: P(fake) of each window of each track, tracks in id order.
    Sequence(Vec<TrackWindows>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrackWindows {
    pub id: u32,
    /// Crops of the track (its frames with a face).
    pub frames: usize,
    pub windows: Vec<f32>,
    /// Why there are no windows (e.g. "too short for lrnet: ..."); the track is not scored.
    pub note: Option<String>,
}

/// How evidence becomes a verdict: the scan's flags and the model set's combination.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub aggregate: Strategy,
    pub across_tracks: AcrossTracks,
    pub threshold: f32,
    pub ood_threshold: f32,
    /// One per member, summing to 1: the equal-weight or `--model-weights` mean.
    pub weights: Vec<f32>,
    /// A learned combination (`--ensemble`), in place of the weighted mean.
    pub stacker: Option<Stacker>,
}

/// The judgement of one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Null only with an error.
    pub verdict: Option<Verdict>,
    /// Why the verdict is "uncertain".
    pub verdict_reason: Option<String>,
    pub score: Option<f32>,
    /// Each member's P(fake) of the input; None for a member that abstained.
    pub models: Vec<Option<f32>>,
    /// Per member: why it has no score, or why some of its tracks have none.
    pub notes: Vec<Option<String>>,
    /// Per sequence member: the share of its windows with P(fake) >= 0.5 (LRNet's source
    /// rule for a video's score), reported beside its score.
    pub share_fake: Vec<Option<f32>>,
    pub tracks: Vec<TrackScore>,
    pub ood_risk: Option<f32>,
    /// One per face of the evidence, in its order.
    pub faces: Vec<FaceJudgement>,
    /// A model that gave no finite score: the input has no verdict.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaceJudgement {
    /// The frame models combined; None when only sequence models ran.
    pub score: Option<f32>,
    /// With one frame model, its own logit (exact); with several, the logit of `score`.
    pub logit: Option<f32>,
    /// Each member's P(fake) of this face (None for a sequence model).
    pub models: Vec<Option<f32>>,
}

/// The scores and verdict of one input. See the module's text for the steps.
pub fn judge(evidence: &Evidence, settings: &Settings) -> Judgement {
    let faces = face_judgements(evidence, settings);
    let n = evidence.members.len();
    let mut judgement = Judgement { verdict: None, verdict_reason: None, score: None, models: vec![None; n], notes: vec![None; n], share_fake: vec![None; n], tracks: Vec::new(), ood_risk: None, faces, error: None };
    if evidence.faces.is_empty() {
        judgement.verdict = Some(Verdict::NoFace);
        return judgement;
    }
    let mut per_model = Vec::with_capacity(evidence.members.len());
    for (m, member) in evidence.members.iter().enumerate() {
        let (tracks, score) = match &member.kind {
            MemberKind::Frame => {
                // The faces this model scored (not those of frames kept only for the clips).
                let scored: Vec<(u32, f32)> = evidence.faces.iter().zip(&judgement.faces).filter_map(|(f, j)| f.logits[m].map(|_| (f.track, j.models[m].unwrap_or(f32::NAN)))).collect();
                if scored.is_empty() {
                    judgement.notes[m] = Some(format!("{}: no face in the frames it reads", member.name));
                    per_model.push(Vec::new());
                    continue;
                }
                let tracks = track_scores(&scored, settings.aggregate);
                let all: Vec<f32> = scored.iter().map(|&(_, s)| s).collect();
                let score = video_score_across_tracks(&tracks, &all, evidence.frames_sampled, settings.aggregate, settings.across_tracks);
                (tracks, score)
            }
            MemberKind::Sequence(windows) => {
                let notes: Vec<&str> = windows.iter().filter(|t| t.windows.is_empty()).map(|t| t.note.as_deref().unwrap_or("no window")).collect();
                let scored: Vec<&TrackWindows> = windows.iter().filter(|t| !t.windows.is_empty()).collect();
                if !notes.is_empty() {
                    judgement.notes[m] = Some(notes.iter().zip(windows.iter().filter(|t| t.windows.is_empty())).map(|(n, t)| format!("track {}: {n}", t.id)).collect::<Vec<_>>().join("; "));
                }
                if scored.is_empty() {
                    let why = judgement.notes[m].take().unwrap_or_else(|| "no face track".into());
                    judgement.notes[m] = Some(format!("{}: {why}", member.name));
                    per_model.push(Vec::new());
                    continue;
                }
                let tracks: Vec<TrackScore> =
                    scored.iter().map(|t| TrackScore { id: t.id, frames: t.frames, score: video_score(&t.windows, Strategy::Mean).unwrap_or(f32::NAN), models: Vec::new() }).collect();
                let all: Vec<f32> = scored.iter().flat_map(|t| t.windows.iter().copied()).collect();
                judgement.share_fake[m] = Some(all.iter().filter(|&&p| p >= 0.5).count() as f32 / all.len() as f32);
                let score = video_score_across_tracks(&tracks, &all, evidence.frames_sampled, settings.aggregate, settings.across_tracks);
                (tracks, score)
            }
        };
        // A broken model is an error, not a verdict: NaN compares as "real".
        if tracks.iter().any(|t| !t.score.is_finite()) || !score.is_some_and(f32::is_finite) {
            judgement.error = Some(format!("model {} gave no finite score", member.name));
            return judgement;
        }
        judgement.models[m] = score;
        per_model.push(tracks);
    }
    if judgement.models.iter().all(Option::is_none) {
        // Every model abstained: their reasons, no score.
        judgement.error = Some(judgement.notes.iter().flatten().cloned().collect::<Vec<_>>().join("; "));
        return judgement;
    }
    judgement.tracks = ensemble_tracks(&per_model, &settings.weights);
    judgement.score = match &settings.stacker {
        Some(stacker) => {
            for track in &mut judgement.tracks {
                track.score = stacker.combine(&track.models).unwrap_or(f32::NAN);
            }
            stacker.combine(&judgement.models)
        }
        None => weighted_mean(settings.weights.iter().zip(&judgement.models).filter_map(|(&w, s)| s.map(|s| (w, s)))),
    };
    if judgement.score.is_none() {
        // A stacker never fills in a member that abstained.
        judgement.error = Some(format!("the ensemble needs every member's score: {}", judgement.notes.iter().flatten().cloned().collect::<Vec<_>>().join("; ")));
        return judgement;
    }
    let risks: Vec<f32> = evidence.faces.iter().filter_map(|f| f.ood_risk).collect();
    judgement.ood_risk = (!risks.is_empty()).then(|| risks.iter().sum::<f32>() / risks.len() as f32);
    judgement.verdict = match (judgement.score, judgement.ood_risk) {
        (Some(_), Some(risk)) if risk >= settings.ood_threshold => {
            judgement.verdict_reason = Some(format!(
                "ood_risk {risk:.3} >= --ood-threshold {}: the input looks unlike the training data, so its score is not trusted",
                settings.ood_threshold
            ));
            Some(Verdict::Uncertain)
        }
        (score, _) => score.map(|s| verdict(s, settings.threshold)),
    };
    judgement
}

/// Step 1: each face's per-model P(fake), combined score and logit.
fn face_judgements(evidence: &Evidence, settings: &Settings) -> Vec<FaceJudgement> {
    let frame_models = evidence.members.iter().filter(|m| m.kind == MemberKind::Frame).count();
    evidence
        .faces
        .iter()
        .map(|face| {
            let models: Vec<Option<f32>> = face.logits.iter().map(|l| l.map(sigmoid)).collect();
            let pairs = models.iter().zip(&settings.weights).filter_map(|(s, &w)| s.map(|s| (w, s)));
            // A stacker scores a face when every member scored it (frame models only).
            let score = settings.stacker.as_ref().and_then(|st| st.combine(&models)).or_else(|| weighted_mean(pairs));
            let logit = match frame_models {
                // One frame model: its own logit, exact (sigmoid and back would round it).
                1 => face.logits.iter().flatten().next().copied(),
                _ => score.map(logit),
            };
            FaceJudgement { score, logit, models }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    fn settings(weights: &[f32]) -> Settings {
        Settings { aggregate: Strategy::Mean, across_tracks: AcrossTracks::Max, threshold: 0.5, ood_threshold: 0.9, weights: weights.to_vec(), stacker: None }
    }

    fn frame(name: &str) -> MemberEvidence {
        MemberEvidence { name: name.into(), kind: MemberKind::Frame }
    }

    /// Faces of one frame model, as (track, P(fake)).
    fn faces(scores: &[(u32, f32)]) -> Vec<FaceEvidence> {
        scores.iter().map(|&(track, p)| FaceEvidence { track, logits: vec![Some(logit(p))], ood_risk: None }).collect()
    }

    #[test]
    fn no_face_is_a_verdict_without_a_score() {
        let evidence = Evidence { frames_sampled: 32, faces: Vec::new(), members: vec![frame("a")] };
        let j = judge(&evidence, &settings(&[1.0]));
        assert_eq!(j.verdict, Some(Verdict::NoFace));
        assert_eq!((j.score, j.error), (None, None));
        assert_eq!(j.models, [None]);
    }

    #[test]
    fn one_fake_track_decides_across_tracks_and_pooling_does_not() {
        // Track 0 real in 10 frames, track 1 fake in 8.
        let mut scores: Vec<(u32, f32)> = (0..10).map(|_| (0, 0.1)).collect();
        scores.extend((0..8).map(|_| (1, 0.9)));
        let evidence = Evidence { frames_sampled: 10, faces: faces(&scores), members: vec![frame("a")] };
        let j = judge(&evidence, &settings(&[1.0]));
        assert!(close(j.score.unwrap(), 0.9), "{j:?}");
        assert_eq!(j.verdict, Some(Verdict::Fake));
        assert_eq!(j.tracks.iter().map(|t| (t.id, t.frames)).collect::<Vec<_>>(), [(0, 10), (1, 8)]);
        let pooled = judge(&evidence, &Settings { across_tracks: AcrossTracks::Pooled, ..settings(&[1.0]) });
        assert!(close(pooled.score.unwrap(), (10.0 * 0.1 + 8.0 * 0.9) / 18.0));
        assert_eq!(pooled.verdict, Some(Verdict::Real));
        // One model: each face keeps its own logit exactly.
        assert_eq!(j.faces[0].logit, evidence.faces[0].logits[0]);
    }

    #[test]
    fn ensemble_weights_combine_frame_and_sequence_models() {
        // Model a (frame) says 0.2 on both faces of track 0; model b (sequence) 0.8 on its windows.
        let faces = vec![FaceEvidence { track: 0, logits: vec![Some(logit(0.2)), None], ood_risk: None }; 2];
        let windows = vec![TrackWindows { id: 0, frames: 2, windows: vec![0.7, 0.9], note: None }];
        let evidence = Evidence { frames_sampled: 2, faces, members: vec![frame("a"), MemberEvidence { name: "b".into(), kind: MemberKind::Sequence(windows) }] };
        let j = judge(&evidence, &settings(&[0.75, 0.25]));
        assert!(close(j.models[0].unwrap(), 0.2) && close(j.models[1].unwrap(), 0.8));
        assert!(close(j.score.unwrap(), 0.75 * 0.2 + 0.25 * 0.8));
        assert_eq!(j.verdict, Some(Verdict::Real));
        assert_eq!(j.tracks[0].models, [j.models[0], j.models[1]]);
        assert_eq!(j.share_fake, [None, Some(1.0)]);
        // A face's own score is the frame models' only.
        assert!(close(j.faces[0].score.unwrap(), 0.2));
        assert_eq!(j.faces[0].models[1], None);
    }

    #[test]
    fn a_stacker_replaces_the_weighted_mean() {
        let stacker = Stacker { members: vec!["a".into()], weights: vec![0.5], bias: -0.25, provenance: String::new() };
        let evidence = Evidence { frames_sampled: 3, faces: faces(&[(0, 0.9), (0, 0.9), (0, 0.9)]), members: vec![frame("a")] };
        let j = judge(&evidence, &Settings { stacker: Some(stacker), ..settings(&[1.0]) });
        let want = sigmoid(-0.25 + 0.5 * logit(0.9));
        assert!(close(j.score.unwrap(), want) && close(j.tracks[0].score, want) && close(j.faces[0].score.unwrap(), want));
    }

    #[test]
    fn out_of_distribution_inputs_are_uncertain_whatever_their_score() {
        let mut evidence = Evidence { frames_sampled: 2, faces: faces(&[(0, 0.95), (0, 0.95)]), members: vec![frame("a")] };
        evidence.faces[0].ood_risk = Some(0.95);
        evidence.faces[1].ood_risk = Some(0.85);
        let j = judge(&evidence, &settings(&[1.0]));
        assert!(close(j.ood_risk.unwrap(), 0.9));
        assert_eq!(j.verdict, Some(Verdict::Uncertain));
        assert!(j.verdict_reason.unwrap().contains("--ood-threshold 0.9"));
        assert!(j.score.is_some(), "the score is still reported");
        let lenient = judge(&evidence, &Settings { ood_threshold: 0.91, ..settings(&[1.0]) });
        assert_eq!((lenient.verdict, lenient.verdict_reason), (Some(Verdict::Fake), None));
    }

    #[test]
    fn the_threshold_splits_fake_from_real() {
        let evidence = Evidence { frames_sampled: 1, faces: faces(&[(0, 0.6)]), members: vec![frame("a")] };
        assert_eq!(judge(&evidence, &Settings { threshold: 0.6, ..settings(&[1.0]) }).verdict, Some(Verdict::Fake));
        assert_eq!(judge(&evidence, &Settings { threshold: 0.61, ..settings(&[1.0]) }).verdict, Some(Verdict::Real));
    }

    #[test]
    fn a_model_without_a_finite_score_is_an_error_not_a_verdict() {
        let evidence = Evidence { frames_sampled: 1, faces: vec![FaceEvidence { track: 0, logits: vec![Some(f32::NAN)], ood_risk: None }], members: vec![frame("broken")] };
        let j = judge(&evidence, &settings(&[1.0]));
        assert_eq!((j.verdict, j.score), (None, None));
        assert!(j.error.unwrap().contains("broken"));
    }

    fn lrnet(tracks: Vec<TrackWindows>) -> MemberEvidence {
        MemberEvidence { name: "lrnet".into(), kind: MemberKind::Sequence(tracks) }
    }

    fn too_short(id: u32, frames: usize) -> TrackWindows {
        TrackWindows { id, frames, windows: Vec::new(), note: Some(format!("too short for lrnet: {frames} consecutive frames of landmarks, it needs at least 31")) }
    }

    #[test]
    fn an_abstaining_member_leaves_the_verdict_to_the_others() {
        // Model a scores track 0's faces 0.8; lrnet's only track is too short.
        let faces = vec![FaceEvidence { track: 0, logits: vec![Some(logit(0.8)), None], ood_risk: None }; 2];
        let evidence = Evidence { frames_sampled: 2, faces, members: vec![frame("a"), lrnet(vec![too_short(0, 20)])] };
        let j = judge(&evidence, &settings(&[0.5, 0.5]));
        assert_eq!(j.error, None);
        assert_eq!(j.models[1], None);
        assert!(close(j.score.unwrap(), 0.8), "the other member alone: {j:?}");
        assert_eq!(j.verdict, Some(Verdict::Fake));
        assert!(j.notes[1].as_deref().unwrap().starts_with("lrnet: track 0: too short for lrnet"), "{:?}", j.notes);
        assert_eq!(j.tracks[0].models, [j.models[0], None]);
        // With a stacker, a missing member is an error, never a guess.
        let stacker = Stacker { members: vec!["a".into(), "lrnet".into()], weights: vec![1.0, 1.0], bias: 0.0, provenance: String::new() };
        let stacked = judge(&evidence, &Settings { stacker: Some(stacker), ..settings(&[0.5, 0.5]) });
        assert!(stacked.score.is_none() && stacked.error.unwrap().contains("too short for lrnet"));
    }

    #[test]
    fn lrnet_alone_too_short_is_an_error_and_a_long_track_counts_without_the_short_one() {
        let faces = vec![FaceEvidence { track: 0, logits: vec![None], ood_risk: None }; 20];
        let evidence = Evidence { frames_sampled: 20, faces, members: vec![lrnet(vec![too_short(0, 20)])] };
        let j = judge(&evidence, &settings(&[1.0]));
        assert_eq!((j.verdict, j.score), (None, None));
        assert!(j.error.as_deref().unwrap().starts_with("lrnet: track 0: too short for lrnet: 20"), "{:?}", j.error);
        // Track 1 has two blocks; track 0 is too short and is left out, with its note.
        let long = TrackWindows { id: 1, frames: 61, windows: vec![0.7, 0.2], note: None };
        let faces = vec![FaceEvidence { track: 1, logits: vec![None], ood_risk: None }; 61];
        let evidence = Evidence { frames_sampled: 81, faces, members: vec![lrnet(vec![too_short(0, 20), long])] };
        let j = judge(&evidence, &settings(&[1.0]));
        assert!(close(j.score.unwrap(), 0.45) && j.error.is_none());
        assert_eq!(j.share_fake, [Some(0.5)]);
        assert_eq!(j.tracks.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        assert!(j.notes[0].as_deref().unwrap().contains("track 0: too short"));
    }
}
