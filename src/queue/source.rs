//! The worker's input source: jobs from the stream, checked, as the pipeline's inputs.
//!
//! Order of reading: this consumer's own pending jobs first (once per process: a restarted
//! worker finishes what it held), then jobs idle on any consumer past `claim_after`
//! (XAUTOCLAIM, swept every half of it), then new ones (XREADGROUP, blocking [`ops::BLOCK`]).
//! Each job is then checked where it will be read: a malformed entry goes to the dead letters;
//! a path outside the roots, or one `submit` could not read, becomes an error line; a file
//! that is missing or not as submitted (size, BLAKE3) is left pending and tried again after
//! `claim_after`, by any worker, until its tries run out; content answered before with the same
//! model and settings gets that answer; the rest is scanned.
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::Sender;

use super::job::{self, Content, Delivery, Job};
use super::ops::{self, Commit, Committed};
use super::worker::{dead_fields, result_fields, with_path, Answered, Held, Ledger, Note, WorkerConfig, IN_HAND};
use super::{Link, Names};
use crate::inputs::Input;
use crate::pipeline::{ScanSettings, Shutdown};

/// The error line of a job whose path resolves outside the worker's roots.
pub const OUTSIDE_ROOTS: &str = "outside the worker's roots (--root)";

pub(super) type Notes = Arc<dyn Fn(Note) + Send + Sync>;

pub(super) struct Source {
    link: Link,
    names: Names,
    cfg: WorkerConfig,
    ledger: Arc<Ledger>,
    shutdown: Shutdown,
    note: Notes,
    round: u64,
    /// The round's settings and engine identity, once its first job is known.
    settings: Option<ScanSettings>,
    identity: String,
    /// The round's first job, taken before the models were loaded.
    first: Option<Taken>,
    /// Where the XAUTOCLAIM sweep is; None between sweeps.
    sweep: Option<String>,
    last_sweep: Option<Instant>,
    last_job: Instant,
    /// Dropped with the source: tells the worker the inputs thread is done.
    pub alive: Option<Sender<()>>,
}

/// A job taken from the stream (and held in the ledger).
pub(super) struct Taken {
    pub id: String,
    pub job: Job,
    pub attempt: u32,
}

enum Checked {
    /// An error line, no retry: outside the roots, or `submit` could not read it.
    Refused(String),
    /// Not readable here as submitted: tried again.
    Unavailable(String),
    /// Readable, with its content's BLAKE3 (as the job said).
    Readable { canonical: PathBuf, content: String },
    /// Not a regular file: the pipeline says so, as `scan` would.
    Special(PathBuf),
}

impl Source {
    pub fn new(link: Link, names: Names, cfg: WorkerConfig, ledger: Arc<Ledger>, shutdown: Shutdown, note: Notes, round: u64) -> Self {
        Self { link, names, cfg, ledger, shutdown, note, round, settings: None, identity: String::new(), first: None, sweep: None, last_sweep: None, last_job: Instant::now(), alive: None }
    }

    /// The round's first job (None: stopped, or idle with `idle_exit`): the stashed one, or
    /// the next from the stream.
    pub fn first(&mut self) -> Result<Option<Taken>> {
        let stashed = self.ledger.lock().stash.take();
        if let Some(held) = stashed {
            let taken = Taken { id: held.id.clone(), job: held.job.clone().expect("a stashed job"), attempt: held.attempt };
            let mut state = self.ledger.lock();
            state.held.push(held);
            return Ok(Some(taken));
        }
        self.take()
    }

    pub fn start(&mut self, first: Taken, settings: ScanSettings, identity: String) {
        self.first = Some(first);
        self.settings = Some(settings);
        self.identity = identity;
    }

    /// The next job taken from the stream and held; None when the round ends.
    fn take(&mut self) -> Result<Option<Taken>> {
        loop {
            if !self.wait_for_room() {
                return Ok(None);
            }
            let Some((delivery, claimed)) = self.read()? else {
                if self.idle_long_enough()? {
                    self.ledger.lock().idle = true;
                    return Ok(None);
                }
                continue;
            };
            self.last_job = Instant::now();
            let parsed = match &delivery.fields {
                None => Err(("the entry was deleted before it was scanned".to_string(), None)),
                Some(fields) => Job::parse(fields).map_err(|why| (format!("malformed job: {why}"), Some(job::sample(fields)))),
            };
            let job = match parsed {
                Ok(job) => job,
                Err((error, entry)) => {
                    let dead = dead_fields(&delivery.id, &self.cfg, 1, &error, entry);
                    ops::commit(&mut self.link, &self.names, &self.cfg.group, &Commit { job: &delivery.id, result: None, answer: None, dead: Some(dead) })?;
                    self.ledger.lock().stats.dead += 1;
                    (self.note)(Note::Dead { job: delivery.id, error });
                    continue;
                }
            };
            // Claimed back from ourselves (the keeper fell behind): it is in hand already.
            if self.ledger.lock().held.iter().any(|h| h.id == delivery.id) {
                continue;
            }
            let attempt = ops::take(&mut self.link, &self.names, &delivery.id)?;
            let held = Held { id: delivery.id.clone(), job: Some(job.clone()), attempt, pipeline_id: None, answer_key: None, dead: None };
            {
                let mut state = self.ledger.lock();
                if state.round == self.round {
                    state.held.push(held);
                    match claimed {
                        Read::Own => state.stats.resumed += 1,
                        Read::Claimed => state.stats.claimed += 1,
                        Read::New => {}
                    }
                    return Ok(Some(Taken { id: delivery.id, job, attempt }));
                }
            }
            // The round ended meanwhile: not ours to scan.
            ops::hand_back(&mut self.link, &self.names, &self.cfg.group, &self.cfg.consumer, std::slice::from_ref(&delivery.id), true)?;
            return Ok(None);
        }
    }

    /// Waits until fewer than [`IN_HAND`] jobs are held; false when the round ends instead.
    fn wait_for_room(&self) -> bool {
        let mut state = self.ledger.lock();
        loop {
            if self.shutdown.is_stopping() || state.round != self.round || state.fatal.is_some() {
                return false;
            }
            if state.held.len() < IN_HAND {
                return true;
            }
            state = self.ledger.room.wait_timeout(state, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// One entry: own pending first, then claimable, then new.
    fn read(&mut self) -> Result<Option<(Delivery, Read)>> {
        let own = {
            let state = self.ledger.lock();
            (!state.own_read).then(|| state.own_cursor.clone())
        };
        if let Some(cursor) = own {
            match ops::read_own(&mut self.link, &self.names, &self.cfg.group, &self.cfg.consumer, cursor.as_deref().unwrap_or("0"))? {
                Some(delivery) => {
                    self.ledger.lock().own_cursor = Some(delivery.id.clone());
                    return Ok(Some((delivery, Read::Own)));
                }
                None => self.ledger.lock().own_read = true,
            }
        }
        let every = (self.cfg.claim_after / 2).max(Duration::from_millis(200));
        if self.sweep.is_some() || self.last_sweep.is_none_or(|t| t.elapsed() >= every) {
            let cursor = self.sweep.take().unwrap_or_else(|| "0-0".into());
            let (next, delivery) = ops::autoclaim(&mut self.link, &self.names, &self.cfg.group, &self.cfg.consumer, self.cfg.claim_after, &cursor)?;
            if next == "0-0" {
                self.last_sweep = Some(Instant::now());
            } else {
                self.sweep = Some(next);
            }
            if let Some(delivery) = delivery {
                return Ok(Some((delivery, Read::Claimed)));
            }
        }
        Ok(ops::read_new(&mut self.link, &self.names, &self.cfg.group, &self.cfg.consumer)?.map(|d| (d, Read::New)))
    }

    /// With `idle_exit`: nothing came for that long, nothing is held here, and no job is
    /// pending anywhere in the group.
    fn idle_long_enough(&mut self) -> Result<bool> {
        let Some(limit) = self.cfg.idle_exit else { return Ok(false) };
        if self.last_job.elapsed() < limit || !self.ledger.lock().held.is_empty() {
            return Ok(false);
        }
        Ok(ops::pending(&mut self.link, &self.names, &self.cfg.group)? == 0)
    }

    /// What to do with a taken job; Some(input) for the pipeline, None when it was dealt with
    /// here (answered, or left for another try). Err(None): the round ends.
    fn triage(&mut self, taken: Taken) -> Result<Option<Input>, Option<anyhow::Error>> {
        let Taken { id, job, attempt } = taken;
        if self.settings.as_ref() != Some(&job.settings) {
            let mut state = self.ledger.lock();
            let at = state.held.iter().position(|h| h.id == id);
            state.stash = at.map(|i| state.held.remove(i));
            return Err(None);
        }
        let max = self.cfg.max_attempts;
        if attempt > max {
            let last = ops::last_error(&mut self.link, &self.names, &id).map_err(Some)?;
            let last = last.unwrap_or_else(|| "the workers that took it stopped before it was done".into());
            let error = format!("no result after {} tries; the last: {last}", attempt - 1);
            return self.give(&id, Input { path: job.path, problem: Some(error.clone()) }, None, Some(error));
        }
        match check(&job, &self.cfg.roots) {
            Checked::Refused(why) => self.give(&id, Input { path: job.path, problem: Some(why) }, None, None),
            Checked::Special(canonical) => self.give(&id, Input { path: canonical, problem: None }, None, None),
            Checked::Unavailable(error) => {
                let error = format!("{}: {error}", self.cfg.consumer);
                ops::record_error(&mut self.link, &self.names, &id, &error).map_err(Some)?;
                if attempt >= max {
                    let line_error = format!("{error} ({attempt} tries)");
                    return self.give(&id, Input { path: job.path, problem: Some(line_error.clone()) }, None, Some(line_error));
                }
                self.release(&id, |stats| stats.retried += 1);
                (self.note)(Note::Retry { job: id, attempt, error });
                Ok(None)
            }
            Checked::Readable { canonical, content } => {
                let key = blake3::hash(format!("{content}\n{}", self.identity).as_bytes()).to_hex().to_string();
                let known = ops::answer(&mut self.link, &self.names, &key).map_err(Some)?;
                if let Some(line) = known.and_then(|line| with_path(&line, &job.shown_path())) {
                    self.reuse(&id, &job, attempt, &line).map_err(Some)?;
                    return Ok(None);
                }
                self.give(&id, Input { path: canonical, problem: None }, Some(key), None)
            }
        }
    }

    /// Hands a held job to the pipeline: it gets the round's next input id.
    fn give(&mut self, id: &str, input: Input, answer_key: Option<String>, dead: Option<String>) -> Result<Option<Input>, Option<anyhow::Error>> {
        let mut state = self.ledger.lock();
        let next = state.next_pipeline_id;
        let current = state.round == self.round;
        match state.held.iter_mut().find(|h| h.id == id).filter(|_| current) {
            Some(held) => {
                (held.pipeline_id, held.answer_key, held.dead) = (Some(next), answer_key, dead);
                state.next_pipeline_id += 1;
                Ok(Some(input))
            }
            None => {
                drop(state);
                let _ = ops::hand_back(&mut self.link, &self.names, &self.cfg.group, &self.cfg.consumer, &[id.to_string()], true);
                Err(None)
            }
        }
    }

    /// The job is no longer in hand (answered here, or left for another try).
    fn release(&self, id: &str, count: impl FnOnce(&mut super::worker::Stats)) {
        let mut state = self.ledger.lock();
        state.held.retain(|h| h.id != id);
        count(&mut state.stats);
        self.ledger.room.notify_all();
    }

    /// Answers a job with the answer kept for its content, model and settings.
    fn reuse(&mut self, id: &str, job: &Job, attempt: u32, line: &str) -> Result<()> {
        let held = Held { id: id.to_string(), job: Some(job.clone()), attempt, pipeline_id: None, answer_key: None, dead: None };
        let result = result_fields(&held, &self.cfg, Answered::Reused, line);
        let committed = ops::commit(&mut self.link, &self.names, &self.cfg.group, &Commit { job: id, result: Some(result), answer: None, dead: None })?;
        let how = match committed {
            Committed::Written(_) => Answered::Reused,
            Committed::AlreadyAnswered(_) => Answered::AlreadyAnswered,
        };
        self.release(id, |stats| match how {
            Answered::AlreadyAnswered => stats.already_answered += 1,
            _ => {
                stats.results += 1;
                stats.reused += 1;
            }
        });
        let outcome = serde_json::from_str::<serde_json::Value>(line)
            .map(|v| match (v["verdict"].as_str().unwrap_or("-"), v["score"].as_f64()) {
                (verdict, Some(score)) => format!("{verdict} {score:.3}"),
                (verdict, None) => verdict.to_string(),
            })
            .unwrap_or_default();
        (self.note)(Note::Done { job: id.to_string(), attempt, path: job.shown_path(), how, outcome });
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Read {
    Own,
    Claimed,
    New,
}

impl Iterator for Source {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        loop {
            let taken = match self.first.take() {
                Some(first) => first,
                None => match self.take() {
                    Ok(Some(taken)) => taken,
                    Ok(None) => return None,
                    Err(e) => return self.fail(e),
                },
            };
            match self.triage(taken) {
                Ok(Some(input)) => return Some(input),
                Ok(None) => continue,
                Err(None) => return None,
                Err(Some(e)) => return self.fail(e),
            }
        }
    }
}

impl Source {
    /// Ends the round on an error the worker cannot go on after (the queue is gone).
    fn fail(&mut self, e: anyhow::Error) -> Option<Input> {
        self.ledger.lock().fatal = Some(format!("{e:#}"));
        None
    }
}

/// Checks a job's input where the worker reads it.
fn check(job: &Job, roots: &[PathBuf]) -> Checked {
    let (blake3, size) = match &job.content {
        Content::Problem(problem) => return Checked::Refused(problem.clone()),
        Content::File { blake3, size } => (blake3, *size),
    };
    let shown = job.path.display();
    let canonical = match std::fs::canonicalize(&job.path) {
        Ok(path) => path,
        // Said before "missing", so that a job cannot probe what exists outside the roots.
        Err(_) if !job::under_roots(&lexical(&job.path), roots) => return Checked::Refused(OUTSIDE_ROOTS.into()),
        Err(e) => return Checked::Unavailable(format!("cannot read {shown}: {e}")),
    };
    if !job::under_roots(&canonical, roots) {
        return Checked::Refused(OUTSIDE_ROOTS.into());
    }
    let meta = match std::fs::metadata(&canonical) {
        Ok(meta) => meta,
        Err(e) => return Checked::Unavailable(format!("cannot read {shown}: {e}")),
    };
    if !meta.is_file() {
        return Checked::Special(canonical);
    }
    const CHANGED: &str = "changed since it was submitted, or not all there yet";
    if meta.len() != size {
        return Checked::Unavailable(format!("{shown} is {} bytes, the job says {size} ({CHANGED})", meta.len()));
    }
    match crate::state::content_hash(&canonical) {
        Err(e) => Checked::Unavailable(format!("cannot read {shown}: {e}")),
        Ok(hash) if hash != *blake3 => Checked::Unavailable(format!("{shown} is not the content the job names (BLAKE3 differs: {CHANGED})")),
        Ok(content) => Checked::Readable { canonical, content },
    }
}

/// `path` with `.` and `..` resolved by name alone (no file system).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_cannot_climb_out_by_name() {
        assert_eq!(lexical(Path::new("/data/in/../../etc/passwd")), PathBuf::from("/etc/passwd"));
        assert_eq!(lexical(Path::new("/data/./in/a.mp4")), PathBuf::from("/data/in/a.mp4"));
    }
}
