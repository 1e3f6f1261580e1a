//! The models stage's bookkeeping for one input: faces arrive frame by frame, are linked into
//! tracks, scored by every frame model in batches as they come, kept per track for the
//! sequence models, and at the input's end become its [`VideoReport`].
//!
//! How scores combine: each model gives a score per track (frame models: their faces' scores
//! under `--aggregate`; sequence models: the mean of the track's windows) and per input (under
//! `--across-tracks`); the ensemble's track and input scores are the weighted means of the
//! models' (`ModelSet::weights`). A face's own score is the weighted mean of the frame models'.
use std::collections::BTreeMap;

use super::*;
use crate::faces::track::{Tracker, TrackerConfig};
use crate::faces::crop::CropSpec;
use crate::models::set::{CropPlan, ModelSet, OodSource};
use crate::models::{crop_batch, pad_sequence, sequence_windows, AnyModel, CropScores, SequenceModel};
use crate::report::MemberScore;

/// A face's crops (one per contract of the [`CropPlan`]) waiting for the frame models, with
/// where its scores go.
struct Pending {
    frame_pos: usize,
    face_pos: usize,
    crops: Vec<Vec<u8>>,
}

/// One input's evidence while its frames arrive.
pub(super) struct JobState {
    pub(super) start: JobStart,
    /// Links each frame's faces to the faces of the frames before: one track per person.
    tracker: Tracker,
    frames: Vec<FrameReport>,
    pending: Vec<Pending>,
    /// Each track's crops in frame order, per crop contract a sequence model reads:
    /// `(contract, track) -> crops`.
    track_crops: BTreeMap<(usize, u32), Vec<Vec<u8>>>,
    pub(super) error: Option<String>,
}

impl JobState {
    pub(super) fn new(start: JobStart) -> Self {
        Self {
            start,
            tracker: Tracker::new(TrackerConfig::default()),
            frames: Vec::new(),
            pending: Vec::new(),
            track_crops: BTreeMap::new(),
            error: None,
        }
    }

    /// Files a frame's faces: links them to tracks and queues their crops.
    pub(super) fn add_frame(&mut self, in_frame: FacesInFrame, set: &ModelSet, plan: &CropPlan) {
        let frame_pos = self.frames.len();
        let detections: Vec<Detection> = in_frame.faces.iter().map(|(det, _)| *det).collect();
        let tracks = self.tracker.update(&detections).ids;
        // The contracts the sequence models read, once each (two models may share one).
        let mut sequence_crops: Vec<usize> = set.members.iter().zip(&plan.members).filter(|(m, _)| matches!(m, AnyModel::Sequence(_))).map(|(_, &k)| k).collect();
        sequence_crops.sort_unstable();
        sequence_crops.dedup();
        let mut faces = Vec::with_capacity(in_frame.faces.len());
        for (face_pos, ((det, crops), track)) in in_frame.faces.into_iter().zip(tracks).enumerate() {
            faces.push(FaceReport {
                bbox: det.bbox,
                confidence: det.confidence,
                track,
                score: None,
                logit: None,
                models: vec![None; set.members.len()],
                ood_risk: None,
                explain: None,
            });
            for &k in &sequence_crops {
                self.track_crops.entry((k, track)).or_default().push(crops[k].clone());
            }
            self.pending.push(Pending { frame_pos, face_pos, crops });
        }
        self.frames.push(FrameReport { index: in_frame.index, pts_s: in_frame.pts_s, faces });
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Scores the pending crops with every frame model (and the OOD model) and files the
    /// results with their faces; writes `--explain` overlays.
    pub(super) fn score_pending(&mut self, set: &ModelSet, plan: &CropPlan, cfg: &ScanConfig) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let frame_models = set.members.iter().filter(|m| matches!(m, AnyModel::Frame(_))).count();
        let explainer = set.attention_model().filter(|_| cfg.explain.is_some());
        let mut attention = None;
        // Which crop the explainer reads, to draw its attention over.
        let mut explained_crop = None;
        let mut batches = Batches::new(&pending, &plan.specs);
        for (m, member) in set.members.iter().enumerate() {
            let AnyModel::Frame(model) = member else { continue };
            let mut scores = batches.score(model, plan.members[m])?;
            if matches!(set.ood, Some(OodSource::Member(i)) if i == m) {
                self.file_ood_risks(&pending, &scores);
            }
            if explainer.is_some_and(|e| std::ptr::eq(e, model)) {
                attention = scores.attention.take();
                explained_crop = Some(plan.members[m]);
            }
            for (p, &logit) in pending.iter().zip(&scores.logits) {
                let face = &mut self.frames[p.frame_pos].faces[p.face_pos];
                face.models[m] = Some(aggregate::sigmoid(logit));
                // One frame model: its own logit, exact (sigmoid and back would round it).
                if frame_models == 1 {
                    face.logit = Some(logit);
                }
            }
        }
        for p in &pending {
            let face = &mut self.frames[p.frame_pos].faces[p.face_pos];
            let pairs = face.models.iter().zip(&set.weights).filter_map(|(s, &w)| s.map(|s| (w, s)));
            // A stacker scores a face when every member scored it (frame models only).
            face.score = set.stacker.as_ref().and_then(|st| st.combine(&face.models)).or_else(|| aggregate::weighted_mean(pairs));
            if frame_models > 1 {
                face.logit = face.score.map(aggregate::logit);
            }
        }
        // A member's risks came with its scores above; a model run only for them runs now.
        if let (Some(OodSource::Extra(model)), Some(k)) = (&set.ood, plan.ood) {
            let mut scores = batches.score(model, k)?;
            self.file_ood_risks(&pending, &scores);
            if explainer.is_some_and(|e| std::ptr::eq(e, model)) {
                attention = scores.attention.take();
                explained_crop = Some(k);
            }
        }
        if let (Some(root), Some(model), Some(attention), Some(k)) = (&cfg.explain, explainer, &attention, explained_crop) {
            self.explain(root, &pending, k, plan.specs[k].side, model.input_size(), attention)?;
        }
        Ok(())
    }

    fn file_ood_risks(&mut self, pending: &[Pending], scores: &CropScores) {
        for (p, &risk) in pending.iter().zip(scores.ood_risk.iter().flatten()) {
            self.frames[p.frame_pos].faces[p.face_pos].ood_risk = Some(risk);
        }
    }

    fn explain(&mut self, root: &std::path::Path, pending: &[Pending], crop: usize, size: i32, map_size: i64, attention: &tch::Tensor) -> Result<()> {
        let dir = crate::explain::input_dir(root, &self.start.path);
        for (i, p) in pending.iter().enumerate() {
            let frame = &mut self.frames[p.frame_pos];
            let face = &mut frame.faces[p.face_pos];
            let name = crate::explain::face_file(frame.index, face.track, p.face_pos);
            let map = Vec::<f32>::try_from(attention.get(i as i64).flatten(0, -1))?;
            crate::explain::write_overlay(&dir.join(&name), &p.crops[crop], size, &map, map_size as i32)?;
            face.explain = Some(name);
        }
        Ok(())
    }

    /// The input's line. `error` is the first failure upstream or here, if any.
    pub(super) fn finish(self, error: Option<String>, set: &ModelSet, plan: &CropPlan, cfg: &ScanConfig) -> VideoReport {
        let faces: Vec<&FaceReport> = self.frames.iter().flat_map(|f| &f.faces).collect();
        let frames_with_faces = self.frames.iter().filter(|f| !f.faces.is_empty()).count();
        let mut error = error.or_else(|| faces.is_empty().then(|| format!("no face found in {} sampled frames", self.frames.len())));
        // Per model: its tracks and its input score.
        let mut per_model: Vec<(Vec<aggregate::TrackScore>, Option<f32>)> = Vec::new();
        if error.is_none() {
            for (m, member) in set.members.iter().enumerate() {
                let scored = match member {
                    AnyModel::Frame(_) => Ok(frame_model_scores(&faces, m, self.frames.len(), cfg)),
                    AnyModel::Sequence(model) => {
                        let k = plan.members[m];
                        let tracks = self.track_crops.range((k, 0)..=(k, u32::MAX)).map(|((_, id), crops)| (*id, crops));
                        guarded(|| sequence_model_scores(model, tracks, &plan.specs[k], self.frames.len(), cfg))
                    }
                };
                match scored {
                    // A broken model is an error, not a verdict: NaN compares as "real".
                    Ok((tracks, score)) if tracks.iter().any(|t| !t.score.is_finite()) || score.is_some_and(|s| !s.is_finite()) => {
                        error = Some(format!("model {} gave no finite score", member.id().name));
                        break;
                    }
                    Ok(scored) => per_model.push(scored),
                    Err(e) => {
                        error = Some(format!("model {}: {e:#}", member.id().name));
                        break;
                    }
                }
            }
        }
        let ok = error.is_none();
        let model_tracks: Vec<Vec<aggregate::TrackScore>> = per_model.iter().map(|(tracks, _)| tracks.clone()).collect();
        let mut tracks = if ok { aggregate::ensemble_tracks(&model_tracks, &set.weights) } else { Vec::new() };
        let mut score = if ok { aggregate::weighted_mean(set.weights.iter().zip(&per_model).filter_map(|(&w, (_, s))| s.map(|s| (w, s)))) } else { None };
        if let (true, Some(stacker)) = (ok, &set.stacker) {
            for track in &mut tracks {
                let models: Vec<Option<f32>> = track.models.iter().map(|&s| Some(s)).collect();
                track.score = stacker.combine(&models).unwrap_or(f32::NAN);
            }
            score = stacker.combine(&per_model.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        }
        let risks: Vec<f32> = faces.iter().filter_map(|f| f.ood_risk).collect();
        let ood_risk = (ok && !risks.is_empty()).then(|| risks.iter().sum::<f32>() / risks.len() as f32);
        let (verdict, verdict_reason) = match (score, ood_risk) {
            (Some(_), Some(risk)) if risk >= cfg.ood_threshold => (
                Some(aggregate::Verdict::Uncertain),
                Some(format!("ood_risk {risk:.3} >= --ood-threshold {}: the input looks unlike the training data, so its score is not trusted", cfg.ood_threshold)),
            ),
            (score, _) => (score.map(|s| aggregate::verdict(s, cfg.threshold)), None),
        };
        let models = set
            .member_ids()
            .into_iter()
            .enumerate()
            .map(|(m, member)| MemberScore { member, score: per_model.get(m).and_then(|(_, s)| *s) })
            .collect();
        let explain = cfg.explain.as_ref().filter(|_| faces.iter().any(|f| f.explain.is_some()));
        VideoReport {
            schema_version: SCHEMA_VERSION,
            path: self.start.path.to_string_lossy().into_owned(),
            status: if ok { Status::Ok } else { Status::Error },
            verdict,
            verdict_reason,
            score,
            threshold: cfg.threshold,
            aggregate: cfg.aggregate,
            across_tracks: cfg.across_tracks,
            model: set.id(),
            models,
            ood_risk,
            ood_threshold: cfg.ood_threshold,
            ood_model: set.ood_model().map(|m| m.id.clone()),
            frames_sampled: self.frames.len(),
            frames_with_faces,
            faces: faces.len(),
            tracks,
            elapsed_ms: self.start.started.elapsed().as_millis() as u64,
            video: self.start.video,
            error,
            explain: explain.map(|root| crate::explain::input_dir(root, &self.start.path).to_string_lossy().into_owned()),
            frames: cfg.per_frame.then_some(self.frames),
        }
    }
}

/// The pending crops as model batches, built at most once per (crop contract, input side):
/// models that read the same crop at the same side (EfficientNet and the OOD ViT at 224)
/// share one batch.
struct Batches<'a> {
    pending: &'a [Pending],
    specs: &'a [CropSpec],
    built: HashMap<(usize, i64), tch::Tensor>,
}

impl<'a> Batches<'a> {
    fn new(pending: &'a [Pending], specs: &'a [CropSpec]) -> Self {
        Self { pending, specs, built: HashMap::new() }
    }

    /// A frame model's scores of the crops of contract `k`, at its input side.
    fn score(&mut self, model: &crate::models::FaceModel, k: usize) -> Result<CropScores> {
        let side = model.input_size();
        if !self.built.contains_key(&(k, side)) {
            let batch = if side == self.specs[k].side as i64 {
                crop_batch(self.pending.iter().map(|p| &p.crops[k]), side)
            } else {
                let resized: Vec<Vec<u8>> = self.pending.iter().map(|p| self.specs[k].to_input(&p.crops[k], side as i32)).collect::<Result<_>>()?;
                crop_batch(&resized, side)
            };
            self.built.insert((k, side), batch);
        }
        model.score(&self.built[&(k, side)])
    }
}

/// Model `m`'s track and input scores from its face scores.
fn frame_model_scores(faces: &[&FaceReport], m: usize, frames_sampled: usize, cfg: &ScanConfig) -> (Vec<aggregate::TrackScore>, Option<f32>) {
    let scored: Vec<(u32, f32)> = faces.iter().map(|f| (f.track, f.models[m].unwrap_or(f32::NAN))).collect();
    let tracks = aggregate::track_scores(&scored, cfg.aggregate);
    let all: Vec<f32> = scored.iter().map(|&(_, s)| s).collect();
    let score = aggregate::video_score_across_tracks(&tracks, &all, frames_sampled, cfg.aggregate, cfg.across_tracks);
    (tracks, score)
}

/// A sequence model's track scores (the mean P(fake) of each track's windows of T crops, see
/// `models::SequenceModel`) and input score (`--across-tracks` over tracks, or all windows
/// pooled).
fn sequence_model_scores<'a>(
    model: &SequenceModel,
    track_crops: impl Iterator<Item = (u32, &'a Vec<Vec<u8>>)>,
    spec: &CropSpec,
    frames_sampled: usize,
    cfg: &ScanConfig,
) -> Result<(Vec<aggregate::TrackScore>, Option<f32>)> {
    let (t, input) = (model.frames(), model.input_size());
    let per_batch = (cfg.batch_size as i64 / t).max(1) as usize;
    let mut tracks = Vec::new();
    let mut windows_all = Vec::new();
    for (id, crops) in track_crops {
        let resized: Vec<Vec<u8>>;
        let crops: &[Vec<u8>] = if input == spec.side as i64 {
            crops
        } else {
            resized = crops.iter().map(|c| spec.to_input(c, input as i32)).collect::<Result<_>>()?;
            &resized
        };
        let frames = crop_batch(crops, input);
        let sequences: Vec<tch::Tensor> = sequence_windows(crops.len(), t as usize)
            .into_iter()
            .map(|w| pad_sequence(&frames.narrow(0, w.start as i64, w.len() as i64), t))
            .collect();
        let mut probs = Vec::with_capacity(sequences.len());
        for chunk in sequences.chunks(per_batch) {
            let logits = Vec::<f32>::try_from(model.fake_logits(&tch::Tensor::stack(chunk, 0)))?;
            probs.extend(logits.into_iter().map(aggregate::sigmoid));
        }
        let score = aggregate::video_score(&probs, Strategy::Mean).expect("a track has a window");
        windows_all.extend_from_slice(&probs);
        tracks.push(aggregate::TrackScore { id, frames: crops.len(), score, models: Vec::new() });
    }
    let score = aggregate::video_score_across_tracks(&tracks, &windows_all, frames_sampled, cfg.aggregate, cfg.across_tracks);
    Ok((tracks, score))
}
