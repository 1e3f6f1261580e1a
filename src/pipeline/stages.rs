//! The stage loops that `pipeline` runs, one thread each: decode, faces, models. Each takes
//! its input queue and its output queue and knows no sibling.
use super::*;
use crate::faces::track::{Tracker, TrackerConfig};

pub(super) fn decode_stage(
    jobs: Receiver<Job>,
    out: Sender<Msg<Frame>>,
    events: Sender<Note>,
    sampling: Sampling,
    timeout: Option<Duration>,
    shutdown: Shutdown,
) {
    for id in 0.. {
        let Job { input, key } = select! {
            recv(jobs) -> job => match job {
                Ok(job) => job,
                Err(_) => return,
            },
            recv(shutdown.woken()) -> _ => return,
        };
        // Both may have been ready: a stop wins over a queued input.
        if shutdown.is_stopping() {
            return;
        }
        let started = Instant::now();
        let stop = Stopper::new(started, timeout, &shutdown);
        let opened = match input.problem {
            Some(problem) => Err(anyhow!(problem)),
            None => {
                let poll = stop.clone();
                guarded(|| VideoSource::open_interruptible(&input.path, Arc::new(move || poll.reason().is_some())))
            }
        };
        let (source, video) = match opened {
            Ok(source) => {
                let i = &source.info;
                let summary = VideoSummary { width: i.width, height: i.height, duration_s: i.duration_s, rotation: i.rotation, codec: i.codec.clone() };
                (Some(source), Some(summary))
            }
            Err(e) => {
                let _ = events.send(Event::Started { id, path: input.path.clone(), planned_frames: Some(0) }.into());
                let error = stop.explain(e);
                let start = JobStart { id, path: input.path, started, video: None, stop, key };
                if out.send(Msg::Start(start)).is_err() || out.send(Msg::End(id, Some(error))).is_err() {
                    return;
                }
                continue;
            }
        };
        let source = source.expect("opened");
        let mut sampler = Sampler::new(sampling, source.info.duration_s);
        let _ = events.send(Event::Started { id, path: input.path.clone(), planned_frames: sampler.planned() }.into());
        if out.send(Msg::Start(JobStart { id, path: input.path, started, video, stop: stop.clone(), key })).is_err() {
            return;
        }
        let mut downstream_gone = false;
        let result = guarded(|| {
            source.sample(&mut sampler, |frame| {
                downstream_gone = out.send(Msg::Item(id, frame)).is_err();
                Ok(!downstream_gone)
            })
        });
        if downstream_gone || out.send(Msg::End(id, result.err().map(|e| stop.explain(e)))).is_err() {
            return;
        }
    }
}

pub(super) fn faces_stage(
    frames: Receiver<Msg<Frame>>,
    out: Sender<Msg<FacesInFrame>>,
    events: Sender<Note>,
    mut source: FaceSource,
    crop_size: i32,
    margin: f32,
) {
    // The first failure of each job; its later frames are skipped.
    let mut failed: HashMap<usize, String> = HashMap::new();
    let mut stops: HashMap<usize, Stopper> = HashMap::new();
    for msg in frames.iter() {
        let forward = match msg {
            Msg::Start(start) => {
                stops.insert(start.id, start.stop.clone());
                Msg::Start(start)
            }
            Msg::Item(id, _) if failed.contains_key(&id) => continue,
            Msg::Item(id, frame) => {
                // Frames of an abandoned input are dropped here, so decode is never left
                // waiting behind a queue of frames nobody will use.
                if let Some(reason) = stops.get(&id).and_then(Stopper::reason) {
                    failed.insert(id, reason);
                    continue;
                }
                let _ = events.try_send(Event::FrameDone { id }.into());
                match guarded(|| faces_in_frame(&mut source, &frame, crop_size, margin)) {
                    Ok(faces) => Msg::Item(id, faces),
                    Err(e) => {
                        failed.insert(id, format!("face detection failed on frame {}: {e:#}", frame.index));
                        continue;
                    }
                }
            }
            Msg::End(id, error) => {
                stops.remove(&id);
                Msg::End(id, error.or_else(|| failed.remove(&id)))
            }
        };
        if out.send(forward).is_err() {
            return;
        }
    }
}

fn faces_in_frame(source: &mut FaceSource, frame: &Frame, crop_size: i32, margin: f32) -> Result<FacesInFrame> {
    let faces = match source {
        FaceSource::WholeFrame => {
            let bbox = faces::FaceBox { x: 0.0, y: 0.0, w: frame.width as f32, h: frame.height as f32 };
            vec![(Detection { bbox, confidence: 1.0 }, faces::whole_frame(frame, crop_size)?)]
        }
        FaceSource::Detector(detector) => detector
            .detect(frame)?
            .into_iter()
            .map(|d| Ok((d, faces::square_crop(frame, &d.bbox, margin, crop_size)?)))
            .collect::<Result<_>>()?,
    };
    Ok(FacesInFrame { index: frame.index, pts_s: frame.pts_s, faces })
}

/// One input's evidence while its frames arrive.
struct JobState {
    start: JobStart,
    /// Links each frame's faces to the faces of the frames before: one track per person.
    tracker: Tracker,
    frames: Vec<FrameReport>,
    /// Crops not scored yet, with where their scores go: (frame position, face position).
    pending: Vec<(usize, usize, Vec<u8>)>,
    error: Option<String>,
}

pub(super) fn models_stage(crops: Receiver<Msg<FacesInFrame>>, events: Sender<Note>, model: FaceModel, cfg: ScanConfig) {
    let mut jobs: HashMap<usize, JobState> = HashMap::new();
    for msg in crops.iter() {
        match msg {
            Msg::Start(start) => {
                let tracker = Tracker::new(TrackerConfig::default());
                jobs.insert(start.id, JobState { start, tracker, frames: Vec::new(), pending: Vec::new(), error: None });
            }
            Msg::Item(id, in_frame) => {
                let Some(job) = jobs.get_mut(&id) else { continue };
                let frame_pos = job.frames.len();
                let detections: Vec<Detection> = in_frame.faces.iter().map(|(det, _)| *det).collect();
                let tracks = job.tracker.update(&detections).ids;
                let mut faces = Vec::with_capacity(in_frame.faces.len());
                for (face_pos, ((det, crop), track)) in in_frame.faces.into_iter().zip(tracks).enumerate() {
                    faces.push(FaceReport { bbox: det.bbox, confidence: det.confidence, track, score: f32::NAN, logit: f32::NAN });
                    job.pending.push((frame_pos, face_pos, crop));
                }
                job.frames.push(FrameReport { index: in_frame.index, pts_s: in_frame.pts_s, faces });
                if job.pending.len() >= cfg.batch_size && job.error.is_none() {
                    if let Err(e) = guarded(|| score_pending(&model, job)) {
                        job.error = Some(format!("{e:#}"));
                    }
                }
            }
            Msg::End(id, upstream_error) => {
                let Some(mut job) = jobs.remove(&id) else { continue };
                let mut error = upstream_error.or(job.error.take());
                if error.is_none() {
                    if let Err(e) = guarded(|| score_pending(&model, &mut job)) {
                        error = Some(format!("{e:#}"));
                    }
                }
                // An abandoned input (timeout, interrupt) gets no row, so it is tried again.
                let abandoned = error.is_some() && job.start.stop.reason().is_some();
                let row = if abandoned { None } else { job.start.key.take() };
                let report = finish(job, error, &model, &cfg);
                if events.send(Note { event: Event::Finished { id, report: Box::new(report) }, row }).is_err() {
                    return;
                }
            }
        }
    }
}

/// Scores the job's pending crops in one forward pass and files each logit with its face.
fn score_pending(model: &FaceModel, job: &mut JobState) -> Result<()> {
    if job.pending.is_empty() {
        return Ok(());
    }
    let size = model.input_size();
    let pending = std::mem::take(&mut job.pending);
    let batch = crate::models::crop_batch(pending.iter().map(|(_, _, crop)| crop), size);
    let logits = Vec::<f32>::try_from(model.fake_logits(&batch))?;
    for ((frame_pos, face_pos, _), logit) in pending.iter().zip(logits) {
        let face = &mut job.frames[*frame_pos].faces[*face_pos];
        face.logit = logit;
        face.score = aggregate::sigmoid(logit);
    }
    Ok(())
}

fn finish(job: JobState, error: Option<String>, model: &FaceModel, cfg: &ScanConfig) -> VideoReport {
    let scores: Vec<f32> = job.frames.iter().flat_map(|f| f.faces.iter().map(|face| face.score)).collect();
    let frames_with_faces = job.frames.iter().filter(|f| !f.faces.is_empty()).count();
    let error = error.or_else(|| {
        scores.is_empty().then(|| format!("no face found in {} sampled frames", job.frames.len()))
    });
    // A broken model is an error, not a verdict: NaN compares as "real" and prints as null.
    let error = error.or_else(|| {
        let bad = scores.iter().filter(|s| !s.is_finite()).count();
        (bad > 0).then(|| format!("the model gave no finite score for {bad} of {} faces", scores.len()))
    });
    let tracks = if error.is_none() {
        let faces: Vec<(u32, f32)> = job.frames.iter().flat_map(|f| f.faces.iter().map(|face| (face.track, face.score))).collect();
        aggregate::track_scores(&faces, cfg.aggregate)
    } else {
        Vec::new()
    };
    let score = if error.is_none() {
        aggregate::video_score_across_tracks(&tracks, &scores, job.frames.len(), cfg.aggregate, cfg.across_tracks)
    } else {
        None
    };
    VideoReport {
        schema_version: SCHEMA_VERSION,
        path: job.start.path.to_string_lossy().into_owned(),
        status: if error.is_none() { Status::Ok } else { Status::Error },
        verdict: score.map(|s| aggregate::verdict(s, cfg.threshold)),
        score,
        threshold: cfg.threshold,
        aggregate: cfg.aggregate,
        across_tracks: cfg.across_tracks,
        model: model.id.clone(),
        frames_sampled: job.frames.len(),
        frames_with_faces,
        faces: scores.len(),
        tracks,
        elapsed_ms: job.start.started.elapsed().as_millis() as u64,
        video: job.start.video,
        error,
        frames: cfg.per_frame.then_some(job.frames),
    }
}
