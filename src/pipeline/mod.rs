//! The one place where stages are wired: threads, bounded channels, shutdown.
//!
//! ```text
//! inputs --jobs--> decode (x2) --frames--> faces --crops--> models --events--> caller (output)
//!                                                            |  ^  |  ^
//!                                                OOD crops   v  |  v  |  a fake's crops, its attribution
//!                                                          risk   attribution
//! ```
//! Every queue is bounded, so a fast stage blocks instead of filling memory: at most
//! `FRAME_QUEUE` decoded frames and `CROP_QUEUE` frames' crops wait at any time, whatever the
//! size of the input. Shutdown starts at the inputs: when they run out, each stage drains its
//! queue, drops its sender, and the next one follows. If the caller stops listening (e.g. a
//! closed stdout), every send fails and the stages unwind the same way. A [`Shutdown`] (Ctrl-C)
//! ends the inputs early the same way: decode takes no new input, what is in flight finishes;
//! a second one abandons that too.
//!
//! Decode runs on [`ThreadSplit::inputs`] threads, each with an input of its own, so the frames
//! of two inputs interleave in the queues: the later stages keep each input's state by its
//! id, and the models stage sends the lines in input order.
//!
//! With [`Control::state`], the inputs thread hashes each file and skips those the state
//! database already has (`--resume`, `watch`), and each finished input's row is written on the
//! caller's thread right after `on_event` has handled its line, never before.
//!
//! One input cannot hurt the others: a panic while processing it becomes its error line
//! ([`guarded`]), and with [`Control::timeout`] an input that takes too long is abandoned:
//! decode polls its deadline between packets (and FFmpeg while reading), the faces stage
//! between frames, so nothing is killed and the next input starts at once.
//!
//! The stage loops themselves are in `stages`; `risk` runs the OOD model beside the models
//! stage, `attribution` the attribution model; `shutdown` holds what stops them from outside;
//! `settings` holds the settings that change a result, as data (`scan`'s flags, a queued job's).
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::aggregate::{self, AcrossTracks, Strategy};
use crate::decode::{Clips, Frame, Role, Sampler, Sampling, VideoSource};
use crate::faces::{self, Detection, FaceDetector};
use crate::inputs::Input;
use crate::models::set::ModelSet;
use crate::models::set::CropPlan;
use crate::report::{self, LineSettings, Status, VideoReport, VideoSummary};
use crate::state::{ScanKey, StateDb};

mod attribution;
mod landmarks;
mod risk;
mod scoring;
mod settings;
mod shutdown;
mod stages;
mod threads;

pub use settings::{default_batch_size, FacesMode, RunOptions, ScanSettings, DEFAULT_CLIPS};
pub use shutdown::Shutdown;
use shutdown::Stopper;
use stages::{decode_stage, faces_stage, models_stage};
pub use threads::ThreadSplit;

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
    /// The frames spread over the video for the frame models (unless only landmark models,
    /// which read clips, are in the set).
    pub sampling: Sampling,
    /// Runs of consecutive frames for the models that read them (`--clips`, `--clip-len`).
    pub clips: Option<Clips>,
    /// Run the landmarker on every face of every kept frame and show its points (`--landmarks`).
    pub landmarks: bool,
    /// Whether LRNet reads calibrated or raw landmarks (`--landmark-calibration`).
    pub landmark_calibration: crate::faces::calibrate::Calibration,
    /// Hand each input's landmark runs, calibrated and raw, to the caller on its report
    /// (`VideoReport::landmark_tracks`, never printed): the landmark cache's extraction.
    pub keep_landmarks: bool,
    /// Decoder threads and shortcuts (they change neither the frames kept nor their pixels).
    pub decode: crate::decode::DecodeOptions,
    /// OpenCV's and libtorch's pools (process-wide, sized when the run starts).
    pub threads: ThreadSplit,
    /// Fraction of the face box added on each side of the square crop, for every model
    /// (`--margin`); None: each model's own crop contract ([`ModelSet::crop_plan`]).
    pub margin: Option<f32>,
    /// The face detector, named in the crop contract of models that record none.
    pub detector: crate::faces::DetectorKind,
    pub aggregate: Strategy,
    /// How the scores of a video's face tracks make its score.
    pub across_tracks: AcrossTracks,
    pub threshold: f32,
    /// Most crops per forward pass.
    pub batch_size: usize,
    pub per_frame: bool,
    /// Inputs whose out-of-distribution risk reaches this get the verdict "uncertain".
    pub ood_threshold: f32,
    /// An OOD model that is no member reads every Nth face of each track (`--ood-every`): its
    /// risk judges the input, not each face, and it costs as much as a classifier.
    pub ood_every: usize,
    /// Below it, the attribution's family or method is "unknown" (`--attribution-floor`).
    pub attribution_floor: f32,
    /// The attribution model reads the first N faces of each track (`--attribution-faces`).
    pub attribution_faces: usize,
    /// Write attention overlays of every face here (`--explain`).
    pub explain: Option<PathBuf>,
}

impl ScanConfig {
    /// The settings that change a result, in one string (the state database's key with the
    /// file and model hashes); the device and batch size do not. `faces`: the face source and
    /// detector; `ood_model`: the BLAKE3 of the model that gives the out-of-distribution risk.
    pub fn settings_key(&self, faces: &str, ood_model: Option<&str>) -> String {
        format!(
            "sampling={:?} clips={:?} landmarks={} faces={faces} margin={:?} aggregate={:?} across_tracks={:?} threshold={} per_frame={} ood={} ood_threshold={} ood_every={} schema={}",
            self.sampling,
            self.clips,
            self.landmarks,
            self.margin,
            self.aggregate,
            self.across_tracks,
            self.threshold,
            self.per_frame,
            ood_model.unwrap_or("none"),
            self.ood_threshold,
            self.ood_every,
            report::SCHEMA_VERSION
        ) + if self.landmark_calibration == crate::faces::calibrate::Calibration::Off { " landmark_calibration=off" } else { "" }
    }
}

/// How a run is steered from outside its data.
#[derive(Debug, Default)]
pub struct Control {
    /// An input still in progress this long after it was opened is abandoned with an error
    /// line. Its clock starts when decode opens it, so it includes waiting behind the frames
    /// of the inputs before it (at most `FRAME_QUEUE` + `CROP_QUEUE` frames).
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
    /// [`ScanConfig::settings_key`] of this run.
    pub settings: String,
}

/// How faces are found: a detector, or the whole frame as one face (`--faces none`).
pub enum FaceSource {
    Detector(Box<dyn FaceDetector>),
    WholeFrame,
}

/// What the caller hears from a running scan, in order per input.
///
/// An input's `id` is its place among the inputs that reach decode, from 0, in the order the
/// iterator gave them: without a state database that skips inputs (`Control::state` with
/// `skip_done`), the n-th input the iterator yields is `id` n - 1. The queue's worker relies on
/// it to pair each result with its job.
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

/// An input on its way to decode, with its place among the inputs ([`Event`]'s `id`) and its
/// state key when there is a state database.
struct Job {
    id: usize,
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

/// What flows between stages: a job's start, its items in order, then its end.
enum Msg<T> {
    Start(JobStart),
    Item(usize, T),
    /// The job is over; `Some(reason)` if it failed anywhere upstream.
    End(usize, Option<String>),
}

/// What the faces stage hands the models stage: one sampled frame's faces.
struct FacesInFrame {
    index: usize,
    pts_s: f64,
    /// What the frame was kept for: the frame models, a clip, or both.
    role: Role,
    faces: Vec<FoundFace>,
}

struct FoundFace {
    detection: Detection,
    /// The face track (person), linking it to the faces of earlier frames of its input.
    track: u32,
    /// One crop per entry of the scan's [`CropPlan`], cut and sized here: the models stage
    /// never resizes.
    crops: Vec<Vec<u8>>,
    /// The 68 iBUG points in frame pixels, where the landmarker ran.
    landmarks: Option<Vec<[f32; 2]>>,
    /// On a clip frame, for a model that reads landmarks: the pixels around the face that the
    /// landmark calibration reads (see `landmarks`).
    region: Option<landmarks::Region>,
}

/// The landmarker as the faces stage runs it.
struct Landmarker {
    model: crate::models::facemesh::FaceMeshModel,
    /// On every kept frame (`--landmarks`); else on clip frames only.
    every_frame: bool,
    /// Cut each clip face's region (a model reads landmarks).
    regions: bool,
}

/// Which frames decode keeps for each input.
#[derive(Clone, Copy, Debug)]
struct SamplingPlan {
    spread: Option<Sampling>,
    clips: Option<Clips>,
}

/// What the models stage needs besides the faces, fixed for the whole scan.
struct ModelsContext {
    set: ModelSet,
    plan: CropPlan,
    /// How evidence becomes a verdict.
    judging: aggregate::Settings,
    /// What every line says about the models and settings.
    line: LineSettings,
    batch_size: usize,
    explain: bool,
    ood_every: usize,
    /// The attribution model reads the first N faces of each track.
    attribution_faces: usize,
    calibration: crate::faces::calibrate::Calibration,
    keep_landmarks: bool,
    /// The OOD model when it runs only for its risk, on its own thread (absent with
    /// `--explain`, which files its attention as it scores).
    risk: Option<risk::RiskWorker>,
    /// The attribution model, on its own thread.
    attribution: Option<attribution::AttributionWorker>,
}

impl ModelsContext {
    fn new(mut set: ModelSet, plan: CropPlan, cfg: &ScanConfig) -> Result<Self> {
        let judging = aggregate::Settings {
            aggregate: cfg.aggregate,
            across_tracks: cfg.across_tracks,
            threshold: cfg.threshold,
            ood_threshold: cfg.ood_threshold,
            weights: set.weights.clone(),
            stacker: set.stacker.clone(),
        };
        let line = LineSettings {
            model: set.id(),
            members: set.member_ids(),
            ood_model: set.ood_model().map(|m| m.id.clone()),
            threshold: cfg.threshold,
            ood_threshold: cfg.ood_threshold,
            aggregate: cfg.aggregate,
            across_tracks: cfg.across_tracks,
            per_frame: cfg.per_frame,
            explain: cfg.explain.clone(),
            attribution: set.attribution.as_ref().map(|a| report::AttributionLine { model: a.id.clone(), classes: a.header.classes.clone(), floor: cfg.attribution_floor }),
        };
        let attribution_faces = cfg.attribution_faces.max(1);
        let (calibration, keep_landmarks) = (cfg.landmark_calibration, cfg.keep_landmarks);
        let risk = match set.ood.take() {
            Some(crate::models::set::OodSource::Extra(model)) if cfg.explain.is_none() => Some(risk::RiskWorker::spawn(model)?),
            other => {
                set.ood = other;
                None
            }
        };
        let attribution = set.attribution.take().map(attribution::AttributionWorker::spawn).transpose()?;
        let explain = cfg.explain.is_some();
        Ok(Self { set, plan, judging, line, batch_size: cfg.batch_size, explain, ood_every: cfg.ood_every.max(1), attribution_faces, calibration, keep_landmarks, risk, attribution })
    }
}

/// Runs a scan to completion, steered by `control`, calling `on_event` on this thread;
/// `on_event` returns false to stop early. Returns once every stage has stopped.
pub fn run(
    inputs: impl Iterator<Item = Input> + Send + 'static,
    face_source: FaceSource,
    models: ModelSet,
    cfg: ScanConfig,
    control: Control,
    mut on_event: impl FnMut(Event) -> bool,
) -> Result<()> {
    let Control { timeout, shutdown, state } = control;
    cfg.threads.apply()?;
    let (job_tx, job_rx) = bounded::<Job>(JOB_QUEUE);
    let (frame_tx, frame_rx) = bounded::<Msg<Frame>>(FRAME_QUEUE);
    let (crop_tx, crop_rx) = bounded::<Msg<FacesInFrame>>(CROP_QUEUE);
    let (event_tx, event_rx) = bounded::<Note>(EVENT_QUEUE);
    let (models_done_tx, models_done_rx) = bounded::<()>(0);
    // SQLite connections are per thread: the inputs thread reads, this one writes.
    let lookup = match &state {
        Some(rec) => Some((rec.db.reopen()?, rec.skip_done, rec.settings.clone(), models.id().blake3)),
        None => None,
    };
    let mut writer = state.map(|rec| rec.db);

    // Not joined: it may be blocked reading stdin, and it ends with the process anyway.
    {
        let (events, shutdown) = (event_tx.clone(), shutdown.clone());
        thread::Builder::new().name("inputs".into()).spawn(move || {
            let mut ids = 0..;
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
                let id = ids.next().expect("endless ids");
                if job_tx.send(Job { id, input, key }).is_err() {
                    break;
                }
            }
        })?;
    }
    let plan = models.crop_plan(cfg.margin, cfg.detector);
    let mut models = models;
    let needs_landmarks = models.needs_landmarks();
    if (needs_landmarks || cfg.landmarks) && models.landmarker.is_none() {
        return Err(anyhow!("landmarks are needed (a landmark model or --landmarks) but no landmarker was loaded"));
    }
    let landmarker = models.landmarker.take().filter(|_| needs_landmarks || cfg.landmarks).map(|model| Landmarker { model, every_frame: cfg.landmarks, regions: needs_landmarks });
    // Spread frames only for the models that read them; clips only when asked for.
    let plan_of = SamplingPlan { spread: models.reads_spread_frames().then_some(cfg.sampling), clips: cfg.clips };
    // Several decode threads, each with its own input, so that one input's decoding (one
    // core, for a 1080p video) overlaps the next one's instead of leaving the other core idle.
    let mut stages = Vec::new();
    for n in 0..cfg.threads.inputs.max(1) {
        let (jobs, frames, events, decode, shutdown) = (job_rx.clone(), frame_tx.clone(), event_tx.clone(), cfg.decode, shutdown.clone());
        stages.push(thread::Builder::new().name(format!("decode-{n}")).spawn(move || decode_stage(jobs, frames, events, plan_of, decode, timeout, shutdown))?);
    }
    drop((job_rx, frame_tx));
    stages.extend([
        {
            let (events, specs) = (event_tx.clone(), plan.crops.clone());
            thread::Builder::new().name("faces".into()).spawn(move || faces_stage(frame_rx, crop_tx, events, face_source, specs, landmarker))?
        },
        // `models_done` closes when this thread ends, however it ends.
        {
            let context = ModelsContext::new(models, plan, &cfg)?;
            thread::Builder::new().name("models".into()).spawn(move || {
                let _models_done = models_done_tx;
                models_stage(crop_rx, event_tx, context)
            })?
        },
    ]);
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

/// A thread named `name` that answers each request with `answer`, in order, until the
/// requests' sender is dropped (or the answers' receiver is). Requests wait in a queue of
/// `queue` (bounded like every queue of the pipeline); answers are drained by the caller after
/// every message, so theirs needs no bound and the two threads cannot wait on each other. The
/// OOD model (`risk`) and the attribution model (`attribution`) run this way.
fn serve<Q: Send + 'static, A: Send + 'static>(name: &str, queue: usize, mut answer: impl FnMut(Q) -> A + Send + 'static) -> Result<(Sender<Q>, Receiver<A>)> {
    let (requests, inbox) = bounded::<Q>(queue);
    let (outbox, answers) = crossbeam_channel::unbounded();
    thread::Builder::new().name(name.into()).spawn(move || {
        for request in inbox.iter() {
            if outbox.send(answer(request)).is_err() {
                return;
            }
        }
    })?;
    Ok((requests, answers))
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
