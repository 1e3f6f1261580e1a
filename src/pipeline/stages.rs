//! The stage loops that `pipeline` runs, one thread each: decode, faces, models. Each takes
//! its input queue and its output queue and knows no sibling.
use super::*;
use super::scoring::JobState;
use crate::models::set::PlannedCrop;
use crate::faces::{Tracker, TrackerConfig};

pub(super) fn decode_stage(
    jobs: Receiver<Job>,
    out: Sender<Msg<Frame>>,
    events: Sender<Note>,
    sampling: SamplingPlan,
    decode: crate::decode::DecodeOptions,
    timeout: Option<Duration>,
    shutdown: Shutdown,
) {
    loop {
        let Job { id, input, key } = select! {
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
                guarded(|| VideoSource::open_with(&input.path, Arc::new(move || poll.reason().is_some()), decode))
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
        let mut sampler = Sampler::plan(sampling.spread, sampling.clips, source.info.duration_s, source.info.frame_rate);
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
    specs: Vec<PlannedCrop>,
    landmarker: Option<Landmarker>,
) {
    // The first failure of each job; its later frames are skipped.
    let mut failed: HashMap<usize, String> = HashMap::new();
    let mut stops: HashMap<usize, Stopper> = HashMap::new();
    // One per input: links each frame's faces to those of the frames before.
    let mut trackers: HashMap<usize, Tracker> = HashMap::new();
    for msg in frames.iter() {
        let forward = match msg {
            Msg::Start(start) => {
                stops.insert(start.id, start.stop.clone());
                trackers.insert(start.id, Tracker::new(TrackerConfig::default()));
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
                let tracker = trackers.get_mut(&id).expect("a job's frames come after its start");
                match guarded(|| faces_in_frame(&mut source, &frame, &specs, tracker, landmarker.as_ref())) {
                    Ok(faces) => Msg::Item(id, faces),
                    Err(e) => {
                        failed.insert(id, format!("face detection failed on frame {}: {e:#}", frame.index));
                        continue;
                    }
                }
            }
            Msg::End(id, error) => {
                stops.remove(&id);
                trackers.remove(&id);
                Msg::End(id, error.or_else(|| failed.remove(&id)))
            }
        };
        if out.send(forward).is_err() {
            return;
        }
    }
}

/// A frame's faces with their tracks, each cut and sized once per crop of the scan's plan
/// (`specs`: a contract at a network's input side), with their landmarks where the
/// `landmarker` runs on this frame.
fn faces_in_frame(source: &mut FaceSource, frame: &Frame, specs: &[PlannedCrop], tracker: &mut Tracker, landmarker: Option<&Landmarker>) -> Result<FacesInFrame> {
    let (detections, whole) = match source {
        FaceSource::WholeFrame => (vec![Detection { bbox: faces::FaceBox { x: 0.0, y: 0.0, w: frame.width as f32, h: frame.height as f32 }, confidence: 1.0, landmarks: None }], true),
        FaceSource::Detector(detector) => (detector.detect(frame)?, false),
    };
    let tracks = tracker.update(&detections).ids;
    let in_clip = frame.role.clip.is_some();
    let points = match landmarker {
        Some(l) if l.every_frame || (in_clip && l.regions) => {
            let boxes: Vec<faces::FaceBox> = detections.iter().map(|d| d.bbox).collect();
            l.model.detect(frame, &boxes)?.into_iter().map(|f| Some(f.ibug68)).collect()
        }
        _ => vec![None; detections.len()],
    };
    let regions = landmarker.is_some_and(|l| l.regions && in_clip);
    let faces = detections
        .into_iter()
        .zip(tracks)
        .zip(points)
        .map(|((detection, track), landmarks)| {
            let crops = specs.iter().map(|c| if whole { faces::whole_frame(frame, c.input) } else { c.spec.to_input(&c.spec.cut(frame, &detection.bbox)?, c.input) }).collect::<Result<_>>()?;
            let region = (regions && landmarks.is_some()).then(|| super::landmarks::Region::cut(frame, &detection.bbox));
            Ok(FoundFace { detection, track, crops, landmarks, region })
        })
        .collect::<Result<_>>()?;
    Ok(FacesInFrame { index: frame.index, pts_s: frame.pts_s, role: frame.role, faces })
}

/// Lines leave the models stage in input order. Inputs decoded side by side end in any order,
/// and a fake's line waits for the attribution model's answer; a later line that is ready
/// waits behind them (holding only its report).
struct Outbox {
    lines: std::collections::BTreeMap<usize, Outgoing>,
    /// The id of the next line to send.
    next: usize,
}

struct Outgoing {
    row: Option<ScanKey>,
    line: Line,
}

enum Line {
    Ready(VideoReport),
    /// Waiting for the attribution model.
    Waiting(scoring::Judged),
}

/// Lines held for the attribution model at most: past it, the models stage waits for the
/// oldest answer (each holds its input's line and kept crops).
const WAITING_LINES: usize = 4;

impl Outbox {
    fn new() -> Self {
        Self { lines: Default::default(), next: 0 }
    }

    fn push(&mut self, id: usize, row: Option<ScanKey>, line: Line) {
        self.lines.insert(id, Outgoing { row, line });
    }

    /// Sends the ready lines that are next in order; false when the caller has gone.
    fn flush(&mut self, events: &Sender<Note>) -> bool {
        self.send(events, true)
    }

    /// At the end of the inputs: every line, in order, over the gaps that inputs dropped by a
    /// stop before they started leave.
    fn flush_all(&mut self, events: &Sender<Note>) -> bool {
        self.send(events, false)
    }

    fn send(&mut self, events: &Sender<Note>, in_order: bool) -> bool {
        while let Some(entry) = self.lines.first_entry() {
            if (in_order && *entry.key() != self.next) || !matches!(entry.get().line, Line::Ready(_)) {
                break;
            }
            let (id, Outgoing { row, line: Line::Ready(report) }) = entry.remove_entry() else { unreachable!("a ready line") };
            self.next = id + 1;
            if events.send(Note { event: Event::Finished { id, report: Box::new(report) }, row }).is_err() {
                return false;
            }
        }
        true
    }

    /// Completes the line `answer` is for.
    fn file(&mut self, answer: attribution::Answer, ctx: &ModelsContext) {
        if !matches!(self.lines.get(&answer.job), Some(Outgoing { line: Line::Waiting(_), .. })) {
            return;
        }
        let Some(Outgoing { row, line: Line::Waiting(judged) }) = self.lines.remove(&answer.job) else { unreachable!("a waiting line") };
        self.lines.insert(answer.job, Outgoing { row, line: Line::Ready(judged.complete(answer.faces, ctx)) });
    }

    fn waiting(&self) -> usize {
        self.lines.values().filter(|o| matches!(o.line, Line::Waiting(_))).count()
    }

    /// Waits for the next answer and files it; with the model's thread gone, every waiting
    /// line fails instead (no line is lost). False when none can come any more.
    fn receive(&mut self, answers: &Receiver<attribution::Answer>, ctx: &ModelsContext) -> bool {
        match answers.recv() {
            Ok(answer) => {
                self.file(answer, ctx);
                true
            }
            Err(_) => {
                let fail = |line| match line {
                    Line::Waiting(judged) => Line::Ready(judged.complete(Err("the attribution model's thread has stopped".into()), ctx)),
                    ready => ready,
                };
                self.lines = std::mem::take(&mut self.lines).into_iter().map(|(id, Outgoing { row, line })| (id, Outgoing { row, line: fail(line) })).collect();
                false
            }
        }
    }
}

pub(super) fn models_stage(crops: Receiver<Msg<FacesInFrame>>, events: Sender<Note>, ctx: ModelsContext) {
    let mut jobs: HashMap<usize, JobState> = HashMap::new();
    let mut outbox = Outbox::new();
    let never = crossbeam_channel::never();
    let mut answers = ctx.attribution.as_ref().map_or(&never, |w| w.answers());
    loop {
        let msg = select! {
            recv(crops) -> msg => match msg {
                Ok(msg) => msg,
                Err(_) => break,
            },
            recv(answers) -> answer => {
                match answer {
                    Ok(answer) => outbox.file(answer, &ctx),
                    // The model's thread is gone: fail what waits, and listen no more.
                    Err(_) => {
                        outbox.receive(answers, &ctx);
                        answers = &never;
                    }
                }
                if !outbox.flush(&events) {
                    return;
                }
                continue;
            }
        };
        // The OOD model's answers so far, filed with their inputs.
        while let Some(answer) = ctx.risk.as_ref().and_then(|w| w.try_recv()) {
            if let Some(job) = jobs.get_mut(&answer.job) {
                job.file_risks(answer);
            }
        }
        match msg {
            Msg::Start(start) => {
                jobs.insert(start.id, JobState::new(start, &ctx));
            }
            Msg::Item(id, in_frame) => {
                let Some(job) = jobs.get_mut(&id) else { continue };
                job.add_frame(in_frame, &ctx.set, &ctx.plan);
                if job.pending() >= ctx.batch_size && job.error.is_none() {
                    if let Err(e) = guarded(|| job.score_pending(&ctx, false)) {
                        job.error = Some(format!("{e:#}"));
                    }
                }
            }
            Msg::End(id, upstream_error) => {
                let Some(mut job) = jobs.remove(&id) else { continue };
                let mut error = upstream_error.or(job.error.take());
                if error.is_none() {
                    if let Err(e) = guarded(|| job.score_pending(&ctx, true)) {
                        error = Some(format!("{e:#}"));
                    }
                }
                // Wait for this input's risks; other inputs' answers that come first are filed.
                while job.risks_pending > 0 {
                    let answer = match ctx.risk.as_ref().map(|w| w.recv()) {
                        Some(Ok(answer)) => answer,
                        Some(Err(e)) => {
                            error.get_or_insert(format!("{e:#}"));
                            break;
                        }
                        None => break,
                    };
                    if answer.job == id {
                        job.file_risks(answer);
                    } else if let Some(other) = jobs.get_mut(&answer.job) {
                        other.file_risks(answer);
                    }
                }
                error = error.or(job.error.take());
                // An abandoned input (timeout, interrupt) gets no row, so it is tried again.
                let abandoned = error.is_some() && job.start.stop.reason().is_some();
                let row = if abandoned { None } else { job.start.key.take() };
                let line = match (job.finish(error, &ctx), ctx.attribution.as_ref()) {
                    (scoring::Finished::Line(report), _) => Line::Ready(report),
                    (scoring::Finished::Attribute(judged, batches), Some(worker)) => match worker.send(id, batches) {
                        Ok(()) => Line::Waiting(judged),
                        Err(e) => Line::Ready(judged.complete(Err(format!("{e:#}")), &ctx)),
                    },
                    (scoring::Finished::Attribute(judged, _), None) => Line::Ready(judged.complete(Ok(Vec::new()), &ctx)),
                };
                outbox.push(id, row, line);
                // Too many lines held: wait for the oldest answers.
                while outbox.waiting() > WAITING_LINES && outbox.receive(answers, &ctx) {}
                if !outbox.flush(&events) {
                    return;
                }
            }
        }
    }
    // The inputs are over: the held lines' answers, then the lines.
    while outbox.waiting() > 0 && outbox.receive(answers, &ctx) {}
    outbox.flush_all(&events);
}
