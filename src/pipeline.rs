//! The one place where stages are wired: threads, bounded channels, shutdown.
//!
//! ```text
//! inputs --jobs--> decode --frames--> faces --crops--> models --events--> caller (output)
//! ```
//! Every queue is bounded, so a fast stage blocks instead of filling memory: at most
//! `FRAME_QUEUE` decoded frames and `CROP_QUEUE` frames' crops wait at any time, whatever the
//! size of the input. Shutdown starts at the inputs: when they run out, each stage drains its
//! queue, drops its sender, and the next one follows. If the caller stops listening (e.g. a
//! closed stdout), every send fails and the stages unwind the same way. A [`Shutdown`] (Ctrl-C)
//! ends the inputs early the same way: decode takes no new input, what is in flight finishes;
//! a second one abandons that too.
//!
//! With [`Control::state`], the inputs thread hashes each file and skips those the state
//! database already has (`--resume`, `watch`), and each finished input's row is written on the
//! caller's thread right after `on_event` has handled its line, never before.
//!
//! One input cannot hurt the others: a panic while processing it becomes its error line
//! ([`guarded`]), and with [`Control::timeout`] an input that takes too long is abandoned:
//! decode polls its deadline between packets (and FFmpeg while reading), the faces stage
//! between frames, so nothing is killed and the next input starts at once.
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use tch::Tensor;

use crate::aggregate::{self, Strategy};
use crate::decode::{Frame, Sampler, Sampling, VideoSource};
use crate::faces::{self, Detection, FaceDetector};
use crate::inputs::Input;
use crate::models::FaceModel;
use crate::report::{FaceReport, FrameReport, Status, VideoReport, VideoSummary, SCHEMA_VERSION};
use crate::state::{ScanKey, StateDb};

/// Paths waiting to be opened.
const JOB_QUEUE: usize = 16;
/// Decoded RGB frames waiting for face detection (a 1080p frame is 6 MB).
const FRAME_QUEUE: usize = 8;
/// Frames' face crops waiting for the model.
const CROP_QUEUE: usize = 32;
/// Events waiting for the caller; progress events are dropped rather than wait.
const EVENT_QUEUE: usize = 256;

/// Everything a scan needs besides its inputs, detector and model.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    pub sampling: Sampling,
    /// Fraction of the face box added on each side of the square crop.
    pub margin: f32,
    pub aggregate: Strategy,
    pub threshold: f32,
    /// Most crops per forward pass.
    pub batch_size: usize,
    pub per_frame: bool,
}

/// How a run is steered from outside its data.
#[derive(Debug, Default)]
pub struct Control {
    /// An input still in progress this long after it was opened is abandoned with an error
    /// line. Its clock starts when decode opens it, so it includes waiting behind the frames
    /// of the input before it (at most `FRAME_QUEUE` + `CROP_QUEUE` frames).
    pub timeout: Option<Duration>,
    pub shutdown: Shutdown,
    pub state: Option<Recording>,
}

/// Where finished inputs are recorded, and whether those already recorded are skipped.
#[derive(Debug)]
pub struct Recording {
    pub db: StateDb,
    /// Skip inputs whose key is in the database (`scan --resume`, `watch`); they print nothing
    /// and count as `Event::Skipped`.
    pub skip_done: bool,
    /// [`crate::state::settings_key`] of this run.
    pub settings: String,
}

/// Ends a run from outside (Ctrl-C): [`stop`](Self::stop) takes no new input and lets the
/// inputs in flight finish; [`abort`](Self::abort) abandons those too, with "interrupted" lines.
#[derive(Clone)]
pub struct Shutdown(Arc<ShutdownState>);

struct ShutdownState {
    stopping: AtomicBool,
    aborting: AtomicBool,
    /// Dropped by `stop`, which wakes decode where it waits for the next input.
    wake_tx: Mutex<Option<Sender<()>>>,
    wake_rx: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (wake_tx, wake_rx) = bounded(0);
        let state = ShutdownState { stopping: AtomicBool::new(false), aborting: AtomicBool::new(false), wake_tx: Mutex::new(Some(wake_tx)), wake_rx };
        Self(Arc::new(state))
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("stopping", &self.is_stopping()).field("aborting", &self.is_aborting()).finish()
    }
}

impl Shutdown {
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        self.0.wake_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn abort(&self) {
        self.0.aborting.store(true, Ordering::SeqCst);
        self.stop();
    }

    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }

    pub fn is_aborting(&self) -> bool {
        self.0.aborting.load(Ordering::SeqCst)
    }

    /// The first SIGINT or SIGTERM stops, the second aborts. Takes over both signals for the
    /// rest of the process.
    pub fn on_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        thread::Builder::new().name("signals".into()).spawn(move || {
            for _ in signals.forever() {
                if shutdown.is_stopping() {
                    shutdown.abort();
                } else {
                    shutdown.stop();
                }
            }
        })?;
        Ok(())
    }
}

/// How faces are found: a detector, or the whole frame as one face (`--faces none`).
pub enum FaceSource {
    Detector(Box<dyn FaceDetector>),
    WholeFrame,
}

/// What the caller hears from a running scan, in order per input.
#[derive(Debug)]
pub enum Event {
    /// An input was found (counts grow as directories are walked or stdin is read).
    Queued,
    Started { id: usize, path: PathBuf, planned_frames: Option<usize> },
    /// One sampled frame of input `id` went through face detection.
    FrameDone { id: usize },
    Finished { id: usize, report: Box<VideoReport> },
    /// An input the state database already has, with this model and these settings.
    Skipped { path: PathBuf },
    /// Something the user should hear that is no input's result (e.g. the state database
    /// could not be written).
    Warning(String),
}

/// What the stages send the caller's thread: an event, and for a finished input the state row
/// to write once the event is handled (none if the input was abandoned, so it is retried).
struct Note {
    event: Event,
    row: Option<ScanKey>,
}

impl From<Event> for Note {
    fn from(event: Event) -> Self {
        Self { event, row: None }
    }
}

/// An input on its way to decode, with its state key when there is a state database.
struct Job {
    input: Input,
    key: Option<ScanKey>,
}

struct JobStart {
    id: usize,
    path: PathBuf,
    started: Instant,
    video: Option<VideoSummary>,
    stop: Stopper,
    key: Option<ScanKey>,
}

/// Says when one input's processing must be abandoned, and why; every stage polls it.
#[derive(Clone)]
struct Stopper {
    deadline: Option<(Instant, Duration)>,
    shutdown: Shutdown,
}

impl Stopper {
    fn new(started: Instant, timeout: Option<Duration>, shutdown: &Shutdown) -> Self {
        Self { deadline: timeout.map(|t| (started + t, t)), shutdown: shutdown.clone() }
    }

    fn reason(&self) -> Option<String> {
        if self.shutdown.is_aborting() {
            return Some("interrupted".into());
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Some(format!("timed out after {} s (--timeout)", limit.as_secs_f64())),
            _ => None,
        }
    }

    /// The error to report: the stop reason if there is one (a decode error after an interrupt
    /// only says "interrupted"), else `error` itself.
    fn explain(&self, error: anyhow::Error) -> String {
        self.reason().unwrap_or_else(|| format!("{error:#}"))
    }
}

/// What flows between stages: a job's start, its items in order, then its end.
enum Msg<T> {
    Start(JobStart),
    Item(usize, T),
    /// The job is over; `Some(reason)` if it failed anywhere upstream.
    End(usize, Option<String>),
}

struct FacesInFrame {
    index: usize,
    pts_s: f64,
    faces: Vec<(Detection, Vec<u8>)>,
}

/// Runs a scan to completion, calling `on_event` on this thread; `on_event` returns false to
/// stop early. Returns once every stage has stopped.
pub fn run(
    inputs: impl Iterator<Item = Input> + Send + 'static,
    face_source: FaceSource,
    model: FaceModel,
    cfg: ScanConfig,
    on_event: impl FnMut(Event) -> bool,
) -> Result<()> {
    run_with(inputs, face_source, model, cfg, Control::default(), on_event)
}

/// [`run`], steered by `control`.
pub fn run_with(
    inputs: impl Iterator<Item = Input> + Send + 'static,
    face_source: FaceSource,
    model: FaceModel,
    cfg: ScanConfig,
    control: Control,
    mut on_event: impl FnMut(Event) -> bool,
) -> Result<()> {
    let Control { timeout, shutdown, state } = control;
    let (job_tx, job_rx) = bounded::<Job>(JOB_QUEUE);
    let (frame_tx, frame_rx) = bounded::<Msg<Frame>>(FRAME_QUEUE);
    let (crop_tx, crop_rx) = bounded::<Msg<FacesInFrame>>(CROP_QUEUE);
    let (event_tx, event_rx) = bounded::<Note>(EVENT_QUEUE);
    let (models_done_tx, models_done_rx) = bounded::<()>(0);
    // SQLite connections are per thread: the inputs thread reads, this one writes.
    let lookup = match &state {
        Some(rec) => Some((rec.db.reopen()?, rec.skip_done, rec.settings.clone(), model.id.blake3.clone())),
        None => None,
    };
    let mut writer = state.map(|rec| rec.db);

    // Not joined: it may be blocked reading stdin, and it ends with the process anyway.
    {
        let (events, shutdown) = (event_tx.clone(), shutdown.clone());
        thread::Builder::new().name("inputs".into()).spawn(move || {
            for input in inputs {
                if shutdown.is_stopping() {
                    break;
                }
                let key = match (&lookup, &input.problem) {
                    (Some((_, _, settings, model)), None) => ScanKey::for_file(&input.path, model, settings),
                    _ => None,
                };
                if let (Some((db, true, _, _)), Some(key)) = (&lookup, &key) {
                    // A database that cannot be read skips nothing.
                    if db.contains(key).unwrap_or(false) {
                        if events.send(Event::Skipped { path: input.path }.into()).is_err() {
                            break;
                        }
                        continue;
                    }
                }
                let _ = events.try_send(Event::Queued.into());
                if job_tx.send(Job { input, key }).is_err() {
                    break;
                }
            }
        })?;
    }
    let stages = vec![
        {
            let (events, sampling, shutdown) = (event_tx.clone(), cfg.sampling, shutdown.clone());
            thread::Builder::new().name("decode".into()).spawn(move || decode_stage(job_rx, frame_tx, events, sampling, timeout, shutdown))?
        },
        {
            let (events, size, margin) = (event_tx.clone(), model.input_size() as i32, cfg.margin);
            thread::Builder::new().name("faces".into()).spawn(move || faces_stage(frame_rx, crop_tx, events, face_source, size, margin))?
        },
        // `models_done` closes when this thread ends, however it ends.
        thread::Builder::new().name("models".into()).spawn(move || {
            let _models_done = models_done_tx;
            models_stage(crop_rx, event_tx, model, cfg)
        })?,
    ];
    // Hands a note to the caller, then records its row: a row never exists for a line that
    // was not handled. False when the caller wants no more.
    let mut warned = false;
    let mut deliver = |note: Note| -> bool {
        let row = match (&note.event, note.row, writer.as_mut()) {
            (Event::Finished { report, .. }, Some(key), Some(db)) => Some((key, report.status, serde_json::to_string(report), db)),
            _ => None,
        };
        if !on_event(note.event) {
            return false;
        }
        if let Some((key, status, line, db)) = row {
            let status = if status == Status::Ok { "ok" } else { "error" };
            let recorded = line.map_err(anyhow::Error::from).and_then(|line| db.record(&key, status, &line));
            if let Err(e) = recorded {
                if !warned {
                    warned = true;
                    let message = format!("cannot record results in the state database {} ({e:#}); a later --resume will scan them again", db.path().display());
                    return on_event(Event::Warning(message));
                }
            }
        }
        true
    };
    // The inputs thread holds a sender too and may never end (stdin, watch), so the end of
    // the models stage, not of the channel, ends the run.
    loop {
        select! {
            recv(event_rx) -> note => {
                if !note.is_ok_and(&mut deliver) {
                    break;
                }
            }
            recv(models_done_rx) -> _ => {
                for note in event_rx.try_iter() {
                    if !deliver(note) {
                        break;
                    }
                }
                break;
            }
        }
    }
    drop(event_rx);
    for stage in stages {
        stage.join().map_err(|_| anyhow!("a pipeline stage panicked outside any input"))?;
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error for the current input only.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(anyhow!("internal error while processing this input: {msg}"))
    })
}

fn decode_stage(
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
            recv(shutdown.0.wake_rx) -> _ => return,
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

fn faces_stage(
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
    frames: Vec<FrameReport>,
    /// Crops not scored yet, with where their scores go: (frame position, face position).
    pending: Vec<(usize, usize, Vec<u8>)>,
    error: Option<String>,
}

fn models_stage(crops: Receiver<Msg<FacesInFrame>>, events: Sender<Note>, model: FaceModel, cfg: ScanConfig) {
    let mut jobs: HashMap<usize, JobState> = HashMap::new();
    for msg in crops.iter() {
        match msg {
            Msg::Start(start) => {
                jobs.insert(start.id, JobState { start, frames: Vec::new(), pending: Vec::new(), error: None });
            }
            Msg::Item(id, in_frame) => {
                let Some(job) = jobs.get_mut(&id) else { continue };
                let frame_pos = job.frames.len();
                let mut faces = Vec::with_capacity(in_frame.faces.len());
                for (face_pos, (det, crop)) in in_frame.faces.into_iter().enumerate() {
                    faces.push(FaceReport { bbox: det.bbox, confidence: det.confidence, score: f32::NAN, logit: f32::NAN });
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
    let bytes: Vec<u8> = pending.iter().flat_map(|(_, _, crop)| crop.iter().copied()).collect();
    let batch = Tensor::from_slice(&bytes).view([pending.len() as i64, size, size, 3]);
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
    let score = if error.is_none() { aggregate::video_score(&scores, cfg.aggregate) } else { None };
    VideoReport {
        schema_version: SCHEMA_VERSION,
        path: job.start.path.to_string_lossy().into_owned(),
        status: if error.is_none() { Status::Ok } else { Status::Error },
        verdict: score.map(|s| aggregate::verdict(s, cfg.threshold)),
        score,
        threshold: cfg.threshold,
        aggregate: cfg.aggregate,
        model: model.id.clone(),
        frames_sampled: job.frames.len(),
        frames_with_faces,
        faces: scores.len(),
        elapsed_ms: job.start.started.elapsed().as_millis() as u64,
        video: job.start.video,
        error,
        frames: cfg.per_frame.then_some(job.frames),
    }
}
