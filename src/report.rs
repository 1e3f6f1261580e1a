//! The JSON-line record: one object per input, fields at the top level (`jq .score` works).
//!
//! The schema only grows: fields are added, never renamed or removed, and every line carries
//! `schema_version`. A failed input still gets its line, with `status: "error"` and `error`.
//! Documented in docs/output-schema.md, with a JSON Schema in docs/output-schema.json that the
//! tests hold every line to: a field added here goes there too, with a new `SCHEMA_VERSION`.
use serde::Serialize;

use crate::aggregate::Verdict;
use crate::faces::FaceBox;
use crate::models::ModelId;

/// 2 added `across_tracks`, `tracks` and each face's `track`. 3 added the ensemble (`models`,
/// each track's and face's `models`), the out-of-distribution risk (`ood_risk`,
/// `ood_threshold`, `ood_model`, the "uncertain" verdict and its `verdict_reason`) and
/// `explain`; a face's `score` and `logit` are null when only sequence models scored.
pub const SCHEMA_VERSION: u32 = 3;

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
    /// unlike the training data, so `score` is not to be trusted); null when the input could
    /// not be judged.
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
    /// File name of this face's attention overlay in the line's `explain` folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

/// A model of the set, as the JSON line reports it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberScore {
    #[serde(flatten)]
    pub member: crate::models::set::MemberId,
    /// This model's P(fake) of the input; null when the input could not be judged.
    pub score: Option<f32>,
}
