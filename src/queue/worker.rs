//! `dfscan worker`: the scan's pipeline fed by the queue instead of a list of paths.
//!
//! ```text
//! source (the pipeline's inputs thread): XREADGROUP / XAUTOCLAIM -> check -> Input
//!   -> pipeline::run (decode, faces, models) -> Event::Finished on this thread
//!   -> ops::commit (result + XACK in one script)
//! keeper thread: resets the idle time of the jobs in hand (XCLAIM JUSTID)
//! ```
//! A round is one `pipeline::run` for one set of job settings; a job with other settings ends
//! the round (it waits in the ledger) and the next round loads the models for it. At most
//! [`IN_HAND`] jobs are taken at a time, so a worker holds no backlog that others could scan.
//! When the run stops (SIGTERM, idle, an error), jobs taken but not finished are handed back.
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::job::Job;
use super::ops::{self, Commit, Committed};
use super::source::{Notes, Source};
use super::{Link, Queue};
use crate::models::set::ModelSet;
use crate::pipeline::{self, Control, Event, FaceSource, ScanConfig, ScanSettings, Shutdown};
use crate::report::{Status, VideoReport};

/// Jobs a worker holds at once: one scanning, one decoded ahead (the pipeline's stages overlap).
pub const IN_HAND: usize = 2;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub group: String,
    /// This worker's name in the group: a restarted worker with the same name takes its own
    /// pending jobs back first.
    pub consumer: String,
    /// Only inputs under these folders are read (canonical paths).
    pub roots: Vec<PathBuf>,
    /// A job pending this long on a consumer that stopped renewing it is claimed.
    pub claim_after: Duration,
    /// A job tried this many times (its worker died, or its input could not be read) goes to
    /// the dead-letter stream with its error, and its line says why.
    pub max_attempts: u32,
    /// Stop once no job has come for this long and none is pending on any worker.
    pub idle_exit: Option<Duration>,
}

/// What scans the jobs of one set of settings: made by the caller (models, detector).
pub struct Engine {
    pub face_source: FaceSource,
    pub models: ModelSet,
    pub cfg: ScanConfig,
    /// With the content's BLAKE3, what decides an answer: the models' weights (BLAKE3) and
    /// [`ScanSettings::settings_key`].
    pub identity: String,
}

/// What the worker tells its caller, for stderr.
#[derive(Debug)]
pub enum Note {
    /// The scan's own progress (as `scan` shows it).
    Pipeline(Event),
    /// Models are (re)loaded for jobs with these settings.
    Settings(ScanSettings),
    /// A job got its result.
    Done { job: String, attempt: u32, path: String, how: Answered, outcome: String },
    /// A job's input could not be read as submitted; it is tried again after `claim_after`.
    Retry { job: String, attempt: u32, error: String },
    /// A job went to the dead-letter stream.
    Dead { job: String, error: String },
    /// Jobs given back unscanned.
    HandedBack(usize),
    Warning(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Scanned here (or refused here: outside the roots, unreadable after its tries).
    Scanned,
    /// The same content was answered with this model and these settings before: that answer.
    Reused,
    /// The job had a result already (it was redelivered); nothing was written.
    AlreadyAnswered,
}

/// Counts over a worker's life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub results: usize,
    pub reused: usize,
    pub already_answered: usize,
    /// Jobs taken from another consumer (or this one, earlier) by XAUTOCLAIM.
    pub claimed: usize,
    /// This consumer's own pending jobs taken back at start.
    pub resumed: usize,
    pub retried: usize,
    pub dead: usize,
    pub handed_back: usize,
}

/// A job in this worker's hands.
pub(super) struct Held {
    pub id: String,
    pub job: Option<Job>,
    pub attempt: u32,
    /// Its place in the round's pipeline, once given to it.
    pub pipeline_id: Option<usize>,
    /// The answer key (content, model, settings), when the content was checked.
    pub answer_key: Option<String>,
    /// Why it goes to the dead-letter stream along with its (error) line.
    pub dead: Option<String>,
}

#[derive(Default)]
pub(super) struct LedgerState {
    pub round: u64,
    pub next_pipeline_id: usize,
    pub held: Vec<Held>,
    /// A taken job whose settings need another round.
    pub stash: Option<Held>,
    /// This consumer's own pending jobs were read (once per process), up to this id.
    pub own_read: bool,
    pub own_cursor: Option<String>,
    pub idle: bool,
    pub fatal: Option<String>,
    pub stats: Stats,
}

/// What the source, the result writer and the keeper share.
#[derive(Default)]
pub(super) struct Ledger {
    pub state: Mutex<LedgerState>,
    /// Signalled when a held job finishes (room for another).
    pub room: Condvar,
}

impl Ledger {
    pub fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs until stopped (or idle, with `idle_exit`). `engine_for` makes the engine of a job's
/// settings; `note` hears what happens (from the worker's threads).
pub fn run(
    queue: &Queue,
    cfg: &WorkerConfig,
    shutdown: &Shutdown,
    timeout: Option<Duration>,
    mut engine_for: impl FnMut(&ScanSettings) -> Result<Engine>,
    note: impl Fn(Note) + Send + Sync + 'static,
) -> Result<Stats> {
    let note: Notes = Arc::new(note);
    let mut link = queue.connect()?;
    ops::ensure_group(&mut link, &queue.names, &cfg.group)?;
    let ledger = Arc::new(Ledger::default());
    let (keeper_stop, keeper) = start_keeper(queue, cfg, &ledger)?;
    let outcome = rounds(&mut link, queue, cfg, shutdown, timeout, &mut engine_for, &note, &ledger);
    let stash: Vec<String> = ledger.lock().stash.take().map(|h| h.id).into_iter().collect();
    if !stash.is_empty() {
        ops::hand_back(&mut link, &queue.names, &cfg.group, &cfg.consumer, &stash, true)?;
        ledger.lock().stats.handed_back += 1;
        note(Note::HandedBack(1));
    }
    drop(keeper_stop);
    let _ = keeper.join();
    let stats = ledger.lock().stats.clone();
    outcome.map(|()| stats)
}

/// One round per set of settings, until stopped, idle or failed.
#[allow(clippy::too_many_arguments)]
fn rounds(
    link: &mut Link,
    queue: &Queue,
    cfg: &WorkerConfig,
    shutdown: &Shutdown,
    timeout: Option<Duration>,
    engine_for: &mut impl FnMut(&ScanSettings) -> Result<Engine>,
    note: &Notes,
    ledger: &Arc<Ledger>,
) -> Result<()> {
    while !shutdown.is_stopping() {
        let round = {
            let mut state = ledger.lock();
            state.round += 1;
            state.next_pipeline_id = 0;
            state.round
        };
        let mut source = Source::new(queue.connect()?, queue.names.clone(), cfg.clone(), ledger.clone(), shutdown.clone(), note.clone(), round);
        let Some(first) = source.first()? else { break };
        let settings = first.job.settings.clone();
        note(Note::Settings(settings.clone()));
        let engine = match engine_for(&settings) {
            Ok(engine) => engine,
            Err(e) => {
                let error = format!("{}: cannot scan with its settings: {e:#}", cfg.consumer);
                ledger.lock().held.clear();
                if first.attempt < cfg.max_attempts {
                    // Counted as a try: if no worker can load them, the job ends in the dead letters.
                    ops::record_error(link, &queue.names, &first.id, &error)?;
                    ops::hand_back(link, &queue.names, &cfg.group, &cfg.consumer, std::slice::from_ref(&first.id), false)?;
                    return Err(e.context("loading the models for a job's settings"));
                }
                // No line can be made without models: a dead letter alone.
                let dead = dead_fields(&first.id, cfg, first.attempt, &format!("{error} ({} tries)", first.attempt), None);
                ops::commit(link, &queue.names, &cfg.group, &Commit { job: &first.id, result: None, answer: None, dead: Some(dead) })?;
                ledger.lock().stats.dead += 1;
                note(Note::Dead { job: first.id, error });
                continue;
            }
        };
        source.start(first, settings, engine.identity.clone());
        let (alive_tx, alive_rx) = crossbeam_channel::bounded::<()>(0);
        source.alive = Some(alive_tx);
        let control = Control { timeout, shutdown: shutdown.clone(), state: None };
        let mut writer = Writer { link: &mut *link, queue, cfg, ledger, shutdown, round, note };
        let ran = pipeline::run(source, engine.face_source, engine.models, engine.cfg, control, |event| writer.handle(event));
        // The source ends soon after a stop (it blocks at most ops::BLOCK); a job it takes
        // after the round ended it hands back itself.
        let _ = alive_rx.recv_timeout(ops::BLOCK * 4);
        let unfinished: Vec<String> = {
            let mut state = ledger.lock();
            state.round += 1;
            state.held.drain(..).map(|h| h.id).collect()
        };
        if !unfinished.is_empty() {
            ops::hand_back(link, &queue.names, &cfg.group, &cfg.consumer, &unfinished, true)?;
            ledger.lock().stats.handed_back += unfinished.len();
            note(Note::HandedBack(unfinished.len()));
        }
        ran?;
        let state = ledger.lock();
        if let Some(fatal) = &state.fatal {
            return Err(anyhow!("{fatal}"));
        }
        if state.idle {
            break;
        }
    }
    Ok(())
}

/// The keeper: every third of `claim_after`, renews the jobs in hand, so that only a worker
/// that stopped (killed, hung, cut off) loses its jobs to XAUTOCLAIM.
fn start_keeper(queue: &Queue, cfg: &WorkerConfig, ledger: &Arc<Ledger>) -> Result<(crossbeam_channel::Sender<()>, thread::JoinHandle<()>)> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let mut link = queue.connect()?;
    let (names, cfg, ledger) = (queue.names.clone(), cfg.clone(), ledger.clone());
    let every = (cfg.claim_after / 3).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let keeper = thread::Builder::new().name("keeper".into()).spawn(move || {
        let mut warned = false;
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
            let ids: Vec<String> = ledger.lock().held.iter().map(|h| h.id.clone()).collect();
            if let Err(e) = ops::keep_alive(&mut link, &names, &cfg.group, &cfg.consumer, &ids) {
                if !warned {
                    warned = true;
                    eprintln!("dfscan: warning: cannot renew the jobs in hand ({e:#}); others may claim them");
                }
            }
        }
    })?;
    Ok((stop_tx, keeper))
}

/// Writes each finished input's result and acknowledges its job (on the caller's thread).
struct Writer<'a> {
    link: &'a mut Link,
    queue: &'a Queue,
    cfg: &'a WorkerConfig,
    ledger: &'a Ledger,
    shutdown: &'a Shutdown,
    round: u64,
    note: &'a Notes,
}

impl Writer<'_> {
    fn handle(&mut self, event: Event) -> bool {
        let Event::Finished { id, mut report } = event else {
            (self.note)(Note::Pipeline(event));
            return true;
        };
        let held = {
            let mut state = self.ledger.lock();
            let at = (state.round == self.round).then(|| state.held.iter().position(|h| h.pipeline_id == Some(id))).flatten();
            let held = at.map(|i| state.held.remove(i));
            self.ledger.room.notify_all();
            held
        };
        let Some(held) = held else {
            (self.note)(Note::Warning(format!("a result without its job (input {id}); it is not written")));
            return true;
        };
        let job = held.job.as_ref().expect("a held job has its fields");
        report.path = job.shown_path();
        // An input abandoned by a second SIGTERM is no answer: its job goes back.
        if report.status == Status::Error && self.shutdown.is_aborting() {
            if let Err(e) = ops::hand_back(self.link, &self.queue.names, &self.cfg.group, &self.cfg.consumer, std::slice::from_ref(&held.id), true) {
                (self.note)(Note::Warning(format!("cannot hand job {} back ({e:#}); it is claimed after --claim-after", held.id)));
            }
            self.ledger.lock().stats.handed_back += 1;
            (self.note)(Note::HandedBack(1));
            (self.note)(Note::Pipeline(Event::Finished { id, report }));
            return true;
        }
        let written = write_report(self.link, self.queue, self.cfg, self.ledger, &held, &report);
        match written {
            Ok(how) => (self.note)(Note::Done { job: held.id.clone(), attempt: held.attempt, path: report.path.clone(), how, outcome: outcome_of(&report) }),
            Err(e) => {
                let message = format!("cannot write the result of job {} ({e:#}); it is scanned again after --claim-after", held.id);
                self.ledger.lock().fatal = Some(message);
                self.shutdown.stop();
                return false;
            }
        }
        if let Some(error) = &held.dead {
            (self.note)(Note::Dead { job: held.id.clone(), error: error.clone() });
        }
        (self.note)(Note::Pipeline(Event::Finished { id, report }));
        true
    }
}

fn write_report(link: &mut Link, queue: &Queue, cfg: &WorkerConfig, ledger: &Ledger, held: &Held, report: &VideoReport) -> Result<Answered> {
    let line = serde_json::to_string(report)?;
    let answer = match (&held.answer_key, report.status) {
        (Some(key), Status::Ok) => Some((key.as_str(), line.as_str())),
        _ => None,
    };
    let result = result_fields(held, cfg, Answered::Scanned, &line);
    let dead = held.dead.as_ref().map(|error| dead_fields(&held.id, cfg, held.attempt, error, None));
    let committed = ops::commit(link, &queue.names, &cfg.group, &Commit { job: &held.id, result: Some(result), answer, dead })?;
    let mut state = ledger.lock();
    Ok(match committed {
        Committed::Written(_) => {
            state.stats.results += 1;
            state.stats.dead += held.dead.is_some() as usize;
            Answered::Scanned
        }
        Committed::AlreadyAnswered(_) => {
            state.stats.already_answered += 1;
            Answered::AlreadyAnswered
        }
    })
}

/// The fields of a result entry.
pub(super) fn result_fields(held: &Held, cfg: &WorkerConfig, how: Answered, line: &str) -> Vec<(&'static str, String)> {
    let path = held.job.as_ref().map(Job::shown_path).unwrap_or_default();
    let answered = if how == Answered::Reused { "reused" } else { "scanned" };
    vec![("job", held.id.clone()), ("worker", cfg.consumer.clone()), ("attempt", held.attempt.to_string()), ("path", path), ("answered", answered.into()), ("line", line.to_string())]
}

/// The fields of a dead letter.
pub(super) fn dead_fields(job: &str, cfg: &WorkerConfig, attempts: u32, error: &str, entry: Option<String>) -> Vec<(&'static str, String)> {
    let mut fields = vec![("job", job.to_string()), ("worker", cfg.consumer.clone()), ("attempts", attempts.to_string()), ("error", error.to_string())];
    fields.extend(entry.map(|e| ("entry", e)));
    fields
}

/// "fake 0.73", "no_face", "error: ..." for the log.
fn outcome_of(report: &VideoReport) -> String {
    match (report.status, report.verdict, report.score) {
        (Status::Error, _, _) => format!("error: {}", report.error.as_deref().unwrap_or("?")),
        (_, Some(verdict), Some(score)) => format!("{} {score:.3}", serde_json::to_value(verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()),
        (_, Some(verdict), None) => serde_json::to_value(verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        _ => String::new(),
    }
}

/// `line` (a JSON line of `scan`) with its top-level `path` replaced.
pub(super) fn with_path(line: &str, path: &str) -> Option<String> {
    const KEY: &str = "\"path\":";
    // `schema_version` (a number) comes first, so the first "path" key is the line's own.
    if !line.starts_with("{\"schema_version\":") {
        return None;
    }
    let start = line.find(KEY)? + KEY.len();
    let mut value = serde_json::Deserializer::from_str(&line[start..]).into_iter::<String>();
    value.next()?.ok()?;
    let end = start + value.byte_offset();
    Some(format!("{}{}{}", &line[..start], serde_json::to_string(path).ok()?, &line[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_line_gets_the_jobs_path_and_nothing_else_changes() {
        let line = r#"{"schema_version":4,"path":"/a/\"x\".mp4","status":"ok","score":0.48776075,"tracks":[{"path":"no"}]}"#;
        let moved = with_path(line, "/b/y.mp4").unwrap();
        assert_eq!(moved, r#"{"schema_version":4,"path":"/b/y.mp4","status":"ok","score":0.48776075,"tracks":[{"path":"no"}]}"#);
        assert!(with_path("{\"path\":1}", "/b").is_none());
    }
}
