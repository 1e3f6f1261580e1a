//! The JSON-line record: one object per input, fields at the top level (`jq .score` works).
//!
//! The schema only grows: fields are added, never renamed or removed, and every line carries
//! `schema_version`. A failed input still gets its line, with `status: "error"` and `error`.
//! Documented in docs/output-schema.md, with a JSON Schema in docs/output-schema.json that the
//! tests hold every line to: a field added here goes there too, with a new `SCHEMA_VERSION`.
use std::path::PathBuf;

use serde::Serialize;

use crate::aggregate::{AcrossTracks, Evidence, Judgement, Strategy, Verdict};
use crate::attribution::{Attribution, Classes, FaceAttribution};
use crate::faces::FaceBox;
use crate::models::set::MemberId;
use crate::models::ModelId;

/// 2 added `across_tracks`, `tracks` and each face's `track`. 3 added the ensemble (`models`,
/// each track's and face's `models`), the out-of-distribution risk (`ood_risk`,
/// `ood_threshold`, `ood_model`, the "uncertain" verdict and its `verdict_reason`) and
/// `explain`; a face's `score` and `logit` are null when only sequence models scored. 4: an
/// input without a face is `status: "ok"` with the verdict "no_face" (it was an error); a
/// member may abstain (`models[].score` null with its `note`, e.g. "too short for lrnet"), a
/// track's `models` entry is null for a model that did not score it, a sequence member has
/// `share_fake`, and with `--per-frame` a frame says its `clip` and a face its `landmarks`. 5
/// added `attribution` (a fake's family and method, null for other verdicts) and
/// `attribution_model`, both present when an attribution model ran.
pub const SCHEMA_VERSION: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct VideoReport {
    pub schema_version: u32,
    /// The input path as given (non-UTF-8 bytes replaced by U+FFFD).
    pub path: String,
    pub status: Status,
    /// "fake" or "real"; "uncertain" when `ood_risk` >= `ood_threshold` (the input looks
    /// unlike the training data, so `score` is not to be trusted); "no_face" when no sampled
    /// frame has a face; null when the input could not be judged (`status: "error"`).
    pub verdict: Option<Verdict>,
    /// Why the verdict is "uncertain".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    /// P(fake) of the video in [0, 1]; null when the input could not be judged.
    pub score: Option<f32>,
    pub threshold: f32,
    pub aggregate: crate::aggregate::Strategy,
    pub across_tracks: crate::aggregate::AcrossTracks,
    /// The scoring model; for an ensemble, its members' names and files joined by "+".
    pub model: ModelId,
    /// Each model of the set with its weight and its own P(fake) of the input.
    pub models: Vec<MemberScore>,
    /// Risk in [0, 1] that the input is out of distribution for the models (mean over its
    /// faces); null when no model with an abnormality module ran (`--ood-model`).
    pub ood_risk: Option<f32>,
    pub ood_threshold: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_model: Option<ModelId>,
    /// Made how, for a fake verdict: the family and method of the manipulation with their
    /// probabilities ([`crate::attribution::summarise`]); null for any other verdict. Absent
    /// (the outer None) when no attribution model ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Option<Attribution>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution_model: Option<ModelId>,
    pub frames_sampled: usize,
    pub frames_with_faces: usize,
    pub faces: usize,
    /// One entry per face track (person), in order of first appearance; empty on error
    /// before any face was scored.
    pub tracks: Vec<crate::aggregate::TrackScore>,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The folder `--explain` wrote this input's attention overlays to (one PNG per face,
    /// named by each face's `explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
    /// Per-frame evidence, with `--per-frame`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<Vec<FrameReport>>,
    /// The `--explain` overlays of this input, for the printer to write (not part of the line).
    #[serde(skip)]
    pub overlays: Vec<Overlay>,
    /// Each face track's landmark runs, calibrated and raw, when the scan keeps them for the
    /// landmark cache (`dfscan extract --landmarks`; not part of the line).
    #[serde(skip)]
    pub landmark_tracks: Vec<crate::faces::calibrate::TrackLandmarks>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VideoSummary {
    pub width: u32,
    pub height: u32,
    pub duration_s: Option<f64>,
    pub rotation: u32,
    pub codec: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrameReport {
    pub index: usize,
    pub pts_s: f64,
    /// The clip (`--clips`) this frame belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<usize>,
    pub faces: Vec<FaceReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaceReport {
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub confidence: f32,
    /// The face track (person) this face belongs to: an `id` of `tracks`.
    pub track: u32,
    /// P(fake) of this face: the ensemble of the frame models (null if only sequence models ran).
    pub score: Option<f32>,
    pub logit: Option<f32>,
    /// Each model's P(fake) of this face, in the order of the line's `models` (null for a
    /// sequence model, which scores tracks).
    pub models: Vec<Option<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_risk: Option<f32>,
    /// The 68 iBUG 300-W landmarks (x, y) in frame pixels, where a landmarker ran on this face
    /// (`--landmarks`, or a model that reads landmarks, on the frames it reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<Vec<[f32; 2]>>,
    /// File name of this face's attention overlay in the line's `explain` folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

/// A model of the set, as the JSON line reports it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberScore {
    #[serde(flatten)]
    pub member: crate::models::set::MemberId,
    /// This model's P(fake) of the input; null when the input could not be judged or the
    /// model abstained (`note` says why).
    pub score: Option<f32>,
    /// Why the model has no score, or why some of its tracks have none (e.g. "too short for
    /// lrnet").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A sequence model's share of windows with P(fake) >= 0.5 (LRNet's blocks: the source's
    /// video score, reported beside `score`, the mean, which the ensemble uses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_fake: Option<f32>,
}

/// An attention overlay to draw (`--explain`): a face crop and the map of where the ViT looked.
#[derive(Clone, Debug)]
pub struct Overlay {
    pub file: PathBuf,
    /// RGB, `side` pixels square.
    pub crop: Vec<u8>,
    pub side: i32,
    /// `map_side` squared values, highest where the model looked most.
    pub map: Vec<f32>,
    pub map_side: i32,
}

/// What every line of one scan says about its models and settings, built once.
#[derive(Clone, Debug)]
pub struct LineSettings {
    pub model: ModelId,
    pub members: Vec<MemberId>,
    pub ood_model: Option<ModelId>,
    pub threshold: f32,
    pub ood_threshold: f32,
    pub aggregate: Strategy,
    pub across_tracks: AcrossTracks,
    pub per_frame: bool,
    /// `--explain`'s folder.
    pub explain: Option<PathBuf>,
    /// The attribution model that ran, if one did.
    pub attribution: Option<AttributionLine>,
}

/// What a line needs to turn attribution evidence into its `attribution`.
#[derive(Clone, Debug)]
pub struct AttributionLine {
    pub model: ModelId,
    pub classes: Classes,
    /// Below it, a family or method is "unknown".
    pub floor: f32,
}

/// What the pipeline knows of one input besides its judgement.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub path: PathBuf,
    pub video: Option<VideoSummary>,
    pub elapsed_ms: u64,
    /// Each sampled frame with its faces, in order; their order is the evidence's.
    pub frames: Vec<SampledFrame>,
    /// Attention maps of faces (`--explain`), by the face's position in frame order.
    pub attention: Vec<FaceAttention>,
    /// The attribution model's probabilities for the faces it read (a bounded number per
    /// track), by the face's position in frame order.
    pub attribution: Vec<FaceAttribution>,
    /// Landmark runs kept for the landmark cache ([`VideoReport::landmark_tracks`]).
    pub landmark_tracks: Vec<crate::faces::calibrate::TrackLandmarks>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampledFrame {
    pub index: usize,
    pub pts_s: f64,
    /// The clip it belongs to (`--clips`).
    pub clip: Option<usize>,
    pub faces: Vec<SampledFace>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampledFace {
    pub bbox: FaceBox,
    pub confidence: f32,
    pub track: u32,
    /// 68 iBUG points in frame pixels, when the landmarker ran on it.
    pub landmarks: Option<Vec<[f32; 2]>>,
}

#[derive(Clone, Debug)]
pub struct FaceAttention {
    /// The face's position among all faces of the input, in frame order.
    pub face: usize,
    pub crop: Vec<u8>,
    pub side: i32,
    pub map: Vec<f32>,
    pub map_side: i32,
}

/// How an input ended: judged, or failed before a judgement (unreadable, undecodable, a model
/// error, a timeout).
pub enum Outcome {
    Judged(Evidence, Judgement),
    Failed(String),
}

/// The line of one input.
pub fn build(facts: Facts, outcome: Outcome, settings: &LineSettings) -> VideoReport {
    let (evidence, judgement, error) = match outcome {
        Outcome::Judged(evidence, judgement) => {
            let error = judgement.error.clone();
            (Some(evidence), Some(judgement), error)
        }
        Outcome::Failed(error) => (None, None, Some(error)),
    };
    let ok = error.is_none();
    // A failed judgement keeps its faces' scores in `frames`, but the input has no verdict.
    let judged = judgement.as_ref().filter(|_| ok);
    let overlay_dir = settings.explain.as_deref().map(|root| crate::explain::input_dir(root, &facts.path));
    let mut overlays = Vec::new();
    let mut attention = facts.attention.into_iter().peekable();
    let mut frames = Vec::with_capacity(facts.frames.len());
    let mut face_pos = 0;
    for frame in &facts.frames {
        let mut faces = Vec::with_capacity(frame.faces.len());
        for (n, face) in frame.faces.iter().enumerate() {
            let scored = judgement.as_ref().and_then(|j| j.faces.get(face_pos));
            let mut explain = None;
            if let (Some(dir), Some(a)) = (&overlay_dir, attention.next_if(|a| a.face == face_pos)) {
                let name = crate::explain::face_file(frame.index, face.track, n);
                overlays.push(Overlay { file: dir.join(&name), crop: a.crop, side: a.side, map: a.map, map_side: a.map_side });
                explain = Some(name);
            }
            faces.push(FaceReport {
                bbox: face.bbox,
                confidence: face.confidence,
                track: face.track,
                score: scored.and_then(|f| f.score),
                logit: scored.and_then(|f| f.logit),
                models: scored.map(|f| f.models.clone()).unwrap_or_else(|| vec![None; settings.members.len()]),
                ood_risk: evidence.as_ref().and_then(|e| e.faces.get(face_pos)).and_then(|f| f.ood_risk),
                landmarks: face.landmarks.clone(),
                explain,
            });
            face_pos += 1;
        }
        frames.push(FrameReport { index: frame.index, pts_s: frame.pts_s, clip: frame.clip, faces });
    }
    let face_count = frames.iter().map(|f| f.faces.len()).sum();
    let attribution = settings.attribution.as_ref().map(|a| attribution_of(judged, &facts.attribution, a, settings.threshold));
    VideoReport {
        schema_version: SCHEMA_VERSION,
        path: facts.path.to_string_lossy().into_owned(),
        status: if error.is_none() { Status::Ok } else { Status::Error },
        verdict: judged.and_then(|j| j.verdict),
        verdict_reason: judged.and_then(|j| j.verdict_reason.clone()),
        score: judged.and_then(|j| j.score),
        threshold: settings.threshold,
        aggregate: settings.aggregate,
        across_tracks: settings.across_tracks,
        model: settings.model.clone(),
        models: settings.members.iter().enumerate().map(|(m, member)| MemberScore {
                member: member.clone(),
                score: judged.and_then(|j| j.models[m]),
                note: judgement.as_ref().and_then(|j| j.notes.get(m).cloned().flatten()),
                share_fake: judged.and_then(|j| j.share_fake.get(m).copied().flatten()),
            }).collect(),
        ood_risk: judged.and_then(|j| j.ood_risk),
        ood_threshold: settings.ood_threshold,
        ood_model: settings.ood_model.clone(),
        attribution,
        attribution_model: settings.attribution.as_ref().map(|a| a.model.clone()),
        frames_sampled: frames.len(),
        frames_with_faces: frames.iter().filter(|f| !f.faces.is_empty()).count(),
        faces: face_count,
        tracks: judged.map(|j| j.tracks.clone()).unwrap_or_default(),
        elapsed_ms: facts.elapsed_ms,
        video: facts.video,
        error,
        explain: overlay_dir.filter(|_| !overlays.is_empty()).map(|d| d.to_string_lossy().into_owned()),
        frames: settings.per_frame.then_some(frames),
        overlays,
        landmark_tracks: facts.landmark_tracks,
    }
}

/// A judged fake's attribution, over the faces of its tracks that reach the threshold (the
/// tracks that made it fake; all faces if none does alone, as with pooled tracks). None for
/// any other verdict, or without evidence.
fn attribution_of(judged: Option<&Judgement>, faces: &[FaceAttribution], line: &AttributionLine, threshold: f32) -> Option<Attribution> {
    let judged = judged.filter(|j| j.verdict == Some(Verdict::Fake))?;
    let fake_tracks: Vec<u32> = judged.tracks.iter().filter(|t| t.score >= threshold).map(|t| t.id).collect();
    crate::attribution::summarise(faces, &fake_tracks, &line.classes, line.floor)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::aggregate::judge::{FaceEvidence, MemberEvidence, MemberKind};
    use crate::aggregate::{judge, Settings};

    fn id(name: &str) -> ModelId {
        ModelId { name: name.into(), weights: format!("{name}.safetensors"), blake3: "0123456789abcdef".into() }
    }

    fn line_settings(explain: Option<PathBuf>) -> LineSettings {
        LineSettings {
            model: id("m"),
            members: vec![MemberId { id: id("m"), kind: "frame", weight: 1.0 }],
            ood_model: None,
            threshold: 0.5,
            ood_threshold: 0.9,
            aggregate: Strategy::Mean,
            across_tracks: AcrossTracks::Max,
            per_frame: true,
            explain,
            attribution: None,
        }
    }

    /// Two frames: one face each (track 0), then a frame without a face.
    fn facts(logits: &[f32]) -> (Facts, Evidence) {
        let face = |track| SampledFace { bbox: FaceBox { x: 1.0, y: 2.0, w: 3.0, h: 4.0 }, confidence: 0.9, track, landmarks: None };
        let mut frames: Vec<SampledFrame> = logits.iter().enumerate().map(|(i, _)| SampledFrame { index: i * 10, pts_s: i as f64, clip: None, faces: vec![face(0)] }).collect();
        frames.push(SampledFrame { index: 99, pts_s: 9.9, clip: None, faces: Vec::new() });
        let faces = logits.iter().map(|&l| FaceEvidence { track: 0, logits: vec![Some(l)], ood_risk: Some(0.25) }).collect();
        let evidence = Evidence { frames_sampled: frames.len(), faces, members: vec![MemberEvidence { name: "m".into(), kind: MemberKind::Frame }] };
        (Facts { path: "dir/clip.mp4".into(), frames, ..Facts::default() }, evidence)
    }

    fn judged(facts: Facts, evidence: Evidence, settings: &LineSettings) -> VideoReport {
        let judging = Settings { aggregate: settings.aggregate, across_tracks: settings.across_tracks, threshold: settings.threshold, ood_threshold: settings.ood_threshold, weights: vec![1.0], stacker: None };
        let judgement = judge(&evidence, &judging);
        build(facts, Outcome::Judged(evidence, judgement), settings)
    }

    #[test]
    fn a_judged_input_reports_its_judgement_and_every_face() {
        let (facts, evidence) = facts(&[2.0, 0.0]);
        let line = judged(facts, evidence, &line_settings(None));
        assert_eq!((line.status, line.verdict), (Status::Ok, Some(Verdict::Fake)));
        let want = (crate::aggregate::sigmoid(2.0) + 0.5) / 2.0;
        assert!((line.score.unwrap() - want).abs() < 1e-6);
        assert_eq!((line.frames_sampled, line.frames_with_faces, line.faces), (3, 2, 2));
        assert_eq!(line.models[0].score, line.score);
        assert_eq!(line.ood_risk, Some(0.25));
        let frames = line.frames.as_ref().unwrap();
        assert_eq!(frames[1].faces[0].logit, Some(0.0));
        assert_eq!(frames[0].faces[0].ood_risk, Some(0.25));
        assert!(frames[2].faces.is_empty() && line.error.is_none() && line.overlays.is_empty());
    }

    #[test]
    fn no_face_is_ok_without_a_score() {
        let (mut facts, mut evidence) = facts(&[]);
        facts.frames[0].index = 0;
        evidence.faces.clear();
        let line = judged(facts, evidence, &line_settings(None));
        assert_eq!((line.status, line.verdict, line.score, line.error), (Status::Ok, Some(Verdict::NoFace), None, None));
        assert!(line.tracks.is_empty() && line.models[0].score.is_none());
    }

    #[test]
    fn a_failed_input_has_its_error_and_no_verdict() {
        let (facts, _) = facts(&[1.0]);
        let line = build(facts, Outcome::Failed("cannot open: gone".into()), &line_settings(None));
        assert_eq!((line.status, line.verdict, line.score), (Status::Error, None, None));
        assert_eq!(line.error.as_deref(), Some("cannot open: gone"));
        // Its faces are still listed, unscored.
        assert_eq!(line.faces, 1);
        assert_eq!(line.frames.unwrap()[0].faces[0].models, [None]);
    }

    #[test]
    fn attention_becomes_named_overlays_for_the_printer() {
        let (mut facts, evidence) = facts(&[1.0, -1.0]);
        facts.attention.push(FaceAttention { face: 1, crop: vec![0; 12], side: 2, map: vec![1.0], map_side: 1 });
        let line = judged(facts, evidence, &line_settings(Some("out".into())));
        let frames = line.frames.as_ref().unwrap();
        assert_eq!(frames[0].faces[0].explain, None);
        let name = frames[1].faces[0].explain.clone().expect("the second face has an overlay");
        assert_eq!(name, crate::explain::face_file(10, 0, 0));
        assert_eq!(line.overlays.len(), 1);
        assert_eq!(line.overlays[0].file, Path::new(line.explain.as_deref().unwrap()).join(&name));
        assert!(line.explain.unwrap().starts_with("out/clip-"));
    }

    /// Settings with an attribution model of two families and two methods at `floor`.
    fn with_attribution(floor: f32) -> LineSettings {
        use crate::attribution::{Family, MethodClass};
        let classes = Classes {
            families: vec![Family::FaceSwap, Family::LipSync],
            methods: vec![MethodClass { name: "DeepFaceLive".into(), families: vec![Family::FaceSwap] }, MethodClass { name: "Wav2Lip".into(), families: vec![Family::LipSync] }],
        };
        LineSettings { attribution: Some(AttributionLine { model: id("attribution"), classes, floor }), ..line_settings(None) }
    }

    /// Evidence for every face of `facts`: lip-sync at `p`, Wav2Lip at `p`.
    fn lip_sync(facts: &mut Facts, p: f32) {
        facts.attribution = (0..facts.frames.iter().map(|f| f.faces.len()).sum()).map(|face| FaceAttribution { face, track: 0, family: vec![1.0 - p, p], method: vec![1.0 - p, p] }).collect();
    }

    #[test]
    fn a_fake_is_attributed_and_a_real_input_is_not() {
        let (mut f, evidence) = facts(&[2.0, 1.0]);
        lip_sync(&mut f, 0.8);
        let line = judged(f, evidence, &with_attribution(0.5));
        assert_eq!(line.verdict, Some(Verdict::Fake));
        let a = line.attribution.clone().flatten().expect("a fake has an attribution");
        assert_eq!((a.family.as_str(), a.method.as_str()), ("lip_sync", "Wav2Lip"));
        assert!((a.family_p - 0.8).abs() < 1e-6 && (a.method_p - 0.8).abs() < 1e-6);
        assert_eq!(line.attribution_model.as_ref().map(|m| m.name.as_str()), Some("attribution"));
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["attribution"]["family"], "lip_sync");
        // The same evidence on a real verdict: null, but present, with its model.
        let (mut f, evidence) = facts(&[-2.0, -1.0]);
        lip_sync(&mut f, 0.8);
        let line = judged(f, evidence, &with_attribution(0.5));
        assert_eq!((line.verdict, line.attribution.clone()), (Some(Verdict::Real), Some(None)));
        let json = serde_json::to_value(&line).unwrap();
        assert!(json["attribution"].is_null() && json.get("attribution").is_some() && json["attribution_model"].is_object());
        // Uncertain (the risk reaches its threshold) and no_face: null too.
        let (mut f, evidence) = facts(&[2.0, 1.0]);
        lip_sync(&mut f, 0.8);
        let uncertain = LineSettings { ood_threshold: 0.2, ..with_attribution(0.5) };
        let line = judged(f, evidence, &uncertain);
        assert_eq!((line.verdict, line.attribution), (Some(Verdict::Uncertain), Some(None)));
        let (mut f, mut evidence) = facts(&[]);
        evidence.faces.clear();
        f.frames[0].index = 0;
        let line = judged(f, evidence, &with_attribution(0.5));
        assert_eq!((line.verdict, line.attribution), (Some(Verdict::NoFace), Some(None)));
        // Without an attribution model, neither field is in the line.
        let (f, evidence) = facts(&[2.0]);
        let json = serde_json::to_value(judged(f, evidence, &line_settings(None))).unwrap();
        assert!(json.get("attribution").is_none() && json.get("attribution_model").is_none());
    }

    #[test]
    fn attribution_below_the_floor_is_unknown() {
        let (mut f, evidence) = facts(&[2.0, 1.0]);
        lip_sync(&mut f, 0.6);
        let line = judged(f.clone(), evidence.clone(), &with_attribution(0.7));
        let a = line.attribution.flatten().unwrap();
        assert_eq!((a.family.as_str(), a.method.as_str()), ("unknown", "unknown"));
        assert!((a.family_p - 0.6).abs() < 1e-6);
        let a = judged(f, evidence, &with_attribution(0.5)).attribution.flatten().unwrap();
        assert_eq!((a.family.as_str(), a.method.as_str()), ("lip_sync", "Wav2Lip"));
    }
}
