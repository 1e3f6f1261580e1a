//! The models stage's bookkeeping for one input: faces arrive frame by frame with their track
//! ids, every frame model scores their crops in batches as they come, each track's crops wait
//! for the sequence models, and at the input's end the evidence goes to
//! [`aggregate::judge`] and the judgement to [`report::build`]. Nothing here combines scores
//! or decides a verdict.
use std::collections::BTreeMap;

use super::*;
use crate::aggregate::judge::{FaceEvidence, MemberEvidence, MemberKind, TrackWindows};
use crate::aggregate::Verdict;
use crate::attribution::FaceAttribution;
use crate::models::attribution::CropAttribution;
use crate::models::set::{CropPlan, ModelSet, OodSource};
use crate::models::{crop_batch, pad_sequence, sequence_windows, AnyModel, CropScores, SequenceModel};
use crate::report::{FaceAttention, Facts, Outcome, SampledFace, SampledFrame};

/// A face's crops (one per contract of the [`CropPlan`]) waiting for the frame models.
struct Pending {
    /// Its position among the input's faces, in frame order.
    face: usize,
    /// Its position among its track's scored faces (the OOD model reads every Nth, the
    /// attribution model the first N).
    in_track: usize,
    crops: Vec<Vec<u8>>,
}

/// One input's evidence while its frames arrive.
pub(super) struct JobState {
    pub(super) start: JobStart,
    frames: Vec<SampledFrame>,
    faces: Vec<FaceEvidence>,
    pending: Vec<Pending>,
    /// Each track's crops in frame order, per crop contract a sequence model reads:
    /// `(contract, track) -> crops`.
    track_crops: BTreeMap<(usize, u32), Vec<Vec<u8>>>,
    /// How many faces of each track have been queued for the frame models.
    track_faces: HashMap<u32, usize>,
    attention: Vec<FaceAttention>,
    /// The landmark models' tracks, clip by clip.
    clip_tracks: super::landmarks::ClipTracks,
    /// The crops the attribution model will read if the input is judged fake (a line reports
    /// a family and method for fakes only), in the batches they came in: `(face, crop)`.
    attribution_batches: Vec<Vec<(usize, Vec<u8>)>>,
    /// Batches of this input's faces at the OOD model's thread, not yet answered.
    pub(super) risks_pending: usize,
    pub(super) error: Option<String>,
}

impl JobState {
    pub(super) fn new(start: JobStart, ctx: &ModelsContext) -> Self {
        Self {
            start,
            frames: Vec::new(),
            faces: Vec::new(),
            pending: Vec::new(),
            track_crops: BTreeMap::new(),
            track_faces: HashMap::new(),
            attention: Vec::new(),
            clip_tracks: super::landmarks::ClipTracks::new(ctx.calibration, ctx.keep_landmarks),
            attribution_batches: Vec::new(),
            risks_pending: 0,
            error: None,
        }
    }

    /// Files a frame's faces and queues their crops: for the frame and sequence models if the
    /// frame is one of the spread frames, for the landmark models (their landmarks and
    /// regions) if it is in a clip. Every face is in the evidence, in frame order; one of a
    /// frame kept only for a clip has no frame model's logit.
    pub(super) fn add_frame(&mut self, in_frame: FacesInFrame, set: &ModelSet, plan: &CropPlan) {
        // The contracts the sequence models read, once each (two models may share one).
        let mut sequence_crops: Vec<usize> = set.members.iter().zip(&plan.members).filter(|(m, _)| matches!(m, AnyModel::Sequence(_))).map(|(_, &k)| k).collect();
        sequence_crops.sort_unstable();
        sequence_crops.dedup();
        let mut faces = Vec::with_capacity(in_frame.faces.len());
        let role = in_frame.role;
        for FoundFace { detection, track, crops, landmarks, region } in in_frame.faces {
            if let (Some((clip, pos)), Some(points), Some(region)) = (role.clip, &landmarks, region) {
                self.clip_tracks.add(clip, pos, track, points.clone(), region);
            }
            faces.push(SampledFace { bbox: detection.bbox, confidence: detection.confidence, track, landmarks });
            if role.spread {
                for &k in &sequence_crops {
                    self.track_crops.entry((k, track)).or_default().push(crops[k].clone());
                }
                let in_track = self.track_faces.entry(track).or_default();
                self.pending.push(Pending { face: self.faces.len(), in_track: *in_track, crops });
                *in_track += 1;
            }
            self.faces.push(FaceEvidence { track, logits: vec![None; set.members.len()], ood_risk: None });
        }
        self.frames.push(SampledFrame { index: in_frame.index, pts_s: in_frame.pts_s, clip: role.clip.map(|c| c.0), faces });
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Scores the pending crops in batches of exactly `ctx.batch_size`, and with `all` (at the
    /// input's end) the rest too. A frame of many faces would otherwise make a batch of a new
    /// size, and oneDNN keeps the kernels it compiles for every shape it meets: about 160 MB
    /// on a clip of 66 face tracks (README, "Speed").
    pub(super) fn score_pending(&mut self, ctx: &ModelsContext, all: bool) -> Result<()> {
        while self.pending.len() >= ctx.batch_size || (all && !self.pending.is_empty()) {
            let n = self.pending.len().min(ctx.batch_size);
            let batch: Vec<Pending> = self.pending.drain(..n).collect();
            self.score(batch, ctx)?;
        }
        Ok(())
    }

    /// Scores one batch with every frame model (and the OOD model) and files their logits,
    /// risks and (`--explain`) attention with their faces. An OOD model that is no member
    /// reads only every `ood_every`-th face of each track.
    fn score(&mut self, pending: Vec<Pending>, ctx: &ModelsContext) -> Result<()> {
        let (set, plan) = (&ctx.set, &ctx.plan);
        let explainer = set.attention_model().filter(|_| ctx.explain);
        let mut batches = Batches::new(&pending);
        let all: Vec<usize> = (0..pending.len()).collect();
        let every_nth: Vec<usize> = all.iter().copied().filter(|&i| pending[i].in_track % ctx.ood_every == 0).collect();
        // (model, its crop contract, its member index, whether it gives the risk, which faces)
        let mut runs: Vec<(&crate::models::FaceModel, usize, Option<usize>, bool, &[usize])> = Vec::new();
        for (m, member) in set.members.iter().enumerate() {
            if let AnyModel::Frame(model) = member {
                runs.push((model, plan.members[m], Some(m), matches!(set.ood, Some(OodSource::Member(i)) if i == m), &all));
            }
        }
        // A model run only for its risk is no member: on its own thread, or here with --explain.
        if let (Some(worker), Some(k), false) = (&ctx.risk, plan.ood, every_nth.is_empty()) {
            let crops = crop_batch(every_nth.iter().map(|&i| &pending[i].crops[k]), worker.input_size);
            worker.send(self.start.id, every_nth.iter().map(|&i| pending[i].face).collect(), crops)?;
            self.risks_pending += 1;
        }
        if let (Some(OodSource::Extra(model)), Some(k)) = (&set.ood, plan.ood) {
            let faces: &[usize] = if ctx.explain { &all } else { &every_nth };
            runs.push((model, k, None, true, faces));
        }
        for (model, k, member, gives_risk, chosen) in runs {
            if chosen.is_empty() {
                continue;
            }
            let scores = batches.score(model, k, chosen)?;
            for (j, &i) in chosen.iter().enumerate() {
                let face = &mut self.faces[pending[i].face];
                if let Some(m) = member {
                    face.logits[m] = Some(scores.logits[j]);
                }
                if gives_risk {
                    face.ood_risk = scores.ood_risk.as_ref().map(|r| r[j]);
                }
            }
            if explainer.is_some_and(|e| std::ptr::eq(e, model)) {
                self.file_attention(&pending, &scores, k, plan.crops[k].input, model.input_size() as i32)?;
            }
        }
        if let Some(k) = plan.attribution {
            let picked: Vec<(usize, Vec<u8>)> = pending.iter().filter(|p| p.in_track < ctx.attribution_faces).map(|p| (p.face, p.crops[k].clone())).collect();
            if !picked.is_empty() {
                self.attribution_batches.push(picked);
            }
        }
        Ok(())
    }

    /// Files the OOD model's answer for some of this input's faces.
    pub(super) fn file_risks(&mut self, answer: super::risk::Answer) {
        self.risks_pending -= 1;
        match answer.risks {
            Ok(risks) => {
                for (face, risk) in answer.faces.into_iter().zip(risks) {
                    self.faces[face].ood_risk = Some(risk);
                }
            }
            Err(e) => {
                self.error.get_or_insert(format!("OOD model: {e}"));
            }
        }
    }

    fn file_attention(&mut self, pending: &[Pending], scores: &CropScores, crop: usize, side: i32, map_side: i32) -> Result<()> {
        let Some(attention) = &scores.attention else { return Ok(()) };
        for (i, p) in pending.iter().enumerate() {
            let map = Vec::<f32>::try_from(attention.get(i as i64).flatten(0, -1))?;
            self.attention.push(FaceAttention { face: p.face, crop: p.crops[crop].clone(), side, map, map_side });
        }
        Ok(())
    }

    /// The input's line, or, for a fake when there is an attribution model, the judged input
    /// and the crops that model must read first. `error` is the first failure upstream or
    /// here, if any.
    pub(super) fn finish(self, error: Option<String>, ctx: &ModelsContext) -> Finished {
        let (set, plan) = (&ctx.set, &ctx.plan);
        let mut clip_tracks = self.clip_tracks;
        let outcome = match error {
            Some(error) => Outcome::Failed(error),
            None => {
                let mut members = Vec::with_capacity(set.members.len());
                let mut failed = None;
                for (m, member) in set.members.iter().enumerate() {
                    let kind = match member {
                        AnyModel::Frame(_) => MemberKind::Frame,
                        AnyModel::Sequence(model) => {
                            let k = plan.members[m];
                            let tracks = self.track_crops.range((k, 0)..=(k, u32::MAX)).map(|((_, id), crops)| (*id, crops));
                            match guarded(|| sequence_windows_of(model, tracks, ctx.batch_size)) {
                                Ok(windows) => MemberKind::Sequence(windows),
                                Err(e) => {
                                    failed = Some(format!("model {}: {e:#}", member.id().name));
                                    break;
                                }
                            }
                        }
                        AnyModel::Landmarks(model) => {
                            match guarded(|| clip_tracks.windows(model)) {
                                Ok(windows) => MemberKind::Sequence(windows),
                                Err(e) => {
                                    failed = Some(format!("model {}: {e:#}", member.id().name));
                                    break;
                                }
                            }
                        }
                    };
                    members.push(MemberEvidence { name: member.id().name.clone(), kind });
                }
                match failed {
                    Some(error) => Outcome::Failed(error),
                    None => {
                        let evidence = aggregate::Evidence { frames_sampled: self.frames.len(), faces: self.faces, members };
                        let judgement = aggregate::judge(&evidence, &ctx.judging);
                        Outcome::Judged(evidence, judgement)
                    }
                }
            }
        };
        // A line names the family and method of a fake only, so only a fake's faces go
        // through the attribution model.
        let attribute = ctx.attribution.is_some() && matches!(&outcome, Outcome::Judged(_, j) if j.verdict == Some(Verdict::Fake));
        let landmark_tracks = if ctx.keep_landmarks { clip_tracks.take() } else { Vec::new() };
        let facts = Facts {
            path: self.start.path,
            video: self.start.video,
            elapsed_ms: 0,
            frames: self.frames,
            attention: self.attention,
            attribution: Vec::new(),
            landmark_tracks,
        };
        let judged = Judged { facts, outcome, started: self.start.started };
        if attribute {
            Finished::Attribute(judged, self.attribution_batches)
        } else {
            Finished::Line(judged.complete(Ok(Vec::new()), ctx))
        }
    }
}

/// What [`JobState::finish`] gives.
pub(super) enum Finished {
    Line(VideoReport),
    /// A fake: the attribution model reads these crops, then [`Judged::complete`] makes its line.
    Attribute(Judged, super::attribution::Batches),
}

/// A judged input whose line waits only for the attribution model's answer.
pub(super) struct Judged {
    facts: Facts,
    outcome: Outcome,
    started: std::time::Instant,
}

impl Judged {
    /// The line, with the attribution model's probabilities `(face, probabilities)` of the
    /// faces it read; its failure fails the input.
    pub(super) fn complete(mut self, answer: Result<Vec<(usize, CropAttribution)>, String>, ctx: &ModelsContext) -> VideoReport {
        match (answer, &self.outcome) {
            (Ok(faces), Outcome::Judged(evidence, _)) => {
                let track = |face: usize| evidence.faces[face].track;
                self.facts.attribution = faces.into_iter().map(|(face, (family, method))| FaceAttribution { face, track: track(face), family, method }).collect();
            }
            (Ok(_), _) => {}
            (Err(e), _) => self.outcome = Outcome::Failed(format!("attribution model: {e}")),
        }
        self.facts.elapsed_ms = self.started.elapsed().as_millis() as u64;
        report::build(self.facts, self.outcome, &ctx.line)
    }
}

/// The pending crops as model batches, built at most once per crop of the plan: models that
/// read the same crop (EfficientNet and the OOD ViT at 224) share one batch. Crops come at
/// the model's input side from the faces stage.
struct Batches<'a> {
    pending: &'a [Pending],
    built: HashMap<usize, tch::Tensor>,
}

impl<'a> Batches<'a> {
    fn new(pending: &'a [Pending]) -> Self {
        Self { pending, built: HashMap::new() }
    }

    /// A frame model's scores of the crops of plan entry `k` of the `chosen` pending faces
    /// (all of them, or a subset for the OOD model).
    fn score(&mut self, model: &crate::models::FaceModel, k: usize, chosen: &[usize]) -> Result<CropScores> {
        if chosen.len() < self.pending.len() && !self.built.contains_key(&k) {
            return model.score(&crop_batch(chosen.iter().map(|&i| &self.pending[i].crops[k]), model.input_size()));
        }
        let side = model.input_size();
        let batch = self.built.entry(k).or_insert_with(|| crop_batch(self.pending.iter().map(|p| &p.crops[k]), side));
        if chosen.len() < self.pending.len() {
            let index = tch::Tensor::from_slice(&chosen.iter().map(|&i| i as i64).collect::<Vec<_>>());
            return model.score(&batch.index_select(0, &index));
        }
        model.score(batch)
    }
}

/// A sequence model's P(fake) of each window of T crops of each track (see
/// `models::SequenceModel` for windows and padding).
fn sequence_windows_of<'a>(model: &SequenceModel, track_crops: impl Iterator<Item = (u32, &'a Vec<Vec<u8>>)>, batch_size: usize) -> Result<Vec<TrackWindows>> {
    let (t, input) = (model.frames(), model.input_size());
    let per_batch = (batch_size as i64 / t).max(1) as usize;
    let mut tracks = Vec::new();
    for (id, crops) in track_crops {
        let frames = crop_batch(crops, input);
        let sequences: Vec<tch::Tensor> = sequence_windows(crops.len(), t as usize)
            .into_iter()
            .map(|w| pad_sequence(&frames.narrow(0, w.start as i64, w.len() as i64), t))
            .collect();
        let mut windows = Vec::with_capacity(sequences.len());
        for chunk in sequences.chunks(per_batch) {
            let logits = Vec::<f32>::try_from(model.fake_logits(&tch::Tensor::stack(chunk, 0)))?;
            windows.extend(logits.into_iter().map(aggregate::sigmoid));
        }
        tracks.push(TrackWindows { id, frames: crops.len(), windows, note: None });
    }
    Ok(tracks)
}
