//! `dfscan worker`: scans queued jobs with `scan`'s models and pipeline until SIGTERM (the
//! jobs in hand finish or go back; exit 130) or, with `--idle-exit`, until the queue is empty
//! (exit 0). Progress bars on a terminal as in `scan`, and a line per job on stderr.
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::scan::{face_source, load_models, run_options, timeout};
use super::Outcome;
use crate::cli::WorkerArgs;
use dfscan::output::Printer;
use dfscan::pipeline::{ScanSettings, Shutdown};
use dfscan::queue::worker::{self, Answered, Engine, Note, WorkerConfig};

pub fn worker(args: WorkerArgs) -> Result<Outcome> {
    let shutdown = Shutdown::default();
    shutdown.on_signals()?;
    let queue = super::queue(&args.queue)?;
    let roots = args
        .roots
        .iter()
        .map(|root| {
            let canonical = std::fs::canonicalize(root).with_context(|| format!("--root {}", root.display()))?;
            if !canonical.is_dir() {
                bail!("--root {} is not a directory", root.display());
            }
            Ok(canonical)
        })
        .collect::<Result<Vec<_>>>()?;
    let seconds = |name: &str, secs: f64| -> Result<Duration> {
        if !(secs > 0.0 && secs.is_finite()) {
            bail!("{name} must be a positive number of seconds, got {secs}");
        }
        Ok(Duration::from_secs_f64(secs))
    };
    if args.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    let cfg = WorkerConfig {
        group: args.group.clone(),
        consumer: args.consumer.clone().unwrap_or_else(default_consumer),
        roots,
        claim_after: seconds("--claim-after", args.claim_after)?,
        max_attempts: args.max_attempts,
        idle_exit: args.idle_exit.map(|s| seconds("--idle-exit", s)).transpose()?,
    };
    let timeout = timeout(args.timeout)?;
    let progress = !args.quiet && std::io::stderr().is_terminal();
    // Its closing notes are a scan's (a list of every uncertain input): the stats line stands for them.
    let printer = Arc::new(Mutex::new(Printer::new(std::io::sink(), progress).quiet(true)));
    if !args.quiet {
        let roots: Vec<String> = cfg.roots.iter().map(|r| r.display().to_string()).collect();
        eprintln!("dfscan: worker {} of group {} on {} at {}, reading under {}", cfg.consumer, cfg.group, queue.names.jobs, queue.shown(), roots.join(", "));
    }
    let engine = &args.engine;
    let engine_for = |settings: &ScanSettings| -> Result<Engine> {
        let models = load_models(engine, settings.landmarks)?;
        let face_source = face_source(settings)?;
        let cfg = settings.config(&models, run_options(engine, models.compute_kind(), None))?;
        let identity = format!("model={} {}", models.id().blake3, settings.settings_key(&cfg, &models));
        Ok(Engine { face_source, models, cfg, identity })
    };
    let (log, quiet) = (printer.clone(), args.quiet);
    let stats = worker::run(&queue, &cfg, &shutdown, timeout, engine_for, move |note| tell(&log, note, quiet))?;
    printer.lock().unwrap_or_else(|e| e.into_inner()).finish();
    if !args.quiet {
        eprintln!(
            "dfscan: worker {} stops: {} results ({} answers reused), {} redelivered jobs already answered, {} claimed after --claim-after, {} own resumed, {} retries, {} dead letters, {} handed back",
            cfg.consumer, stats.results, stats.reused, stats.already_answered, stats.claimed, stats.resumed, stats.retried, stats.dead, stats.handed_back
        );
    }
    Ok(if shutdown.is_stopping() { Outcome::Interrupted } else { Outcome::Clean })
}

/// HOSTNAME-PID.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "worker" } else { &host }, std::process::id())
}

/// One note on stderr (bars through the printer).
fn tell(printer: &Mutex<Printer<std::io::Sink>>, note: Note, quiet: bool) {
    let mut printer = printer.lock().unwrap_or_else(|e| e.into_inner());
    let message = match note {
        Note::Pipeline(event) => {
            printer.handle(event);
            return;
        }
        Note::Warning(message) => format!("warning: {message}"),
        _ if quiet => return,
        Note::Settings(settings) => format!("loading the models for jobs with settings {}", serde_json::to_string(&settings).unwrap_or_default()),
        Note::Done { job, attempt, path, how, outcome } => {
            let how = match how {
                Answered::Scanned => "",
                Answered::Reused => " (answer reused: same content, model and settings)",
                Answered::AlreadyAnswered => " (already answered: nothing written)",
            };
            format!("job {job} (try {attempt}) {path}: {outcome}{how}")
        }
        Note::Retry { job, attempt, error } => format!("job {job} (try {attempt}): {error}; tried again after --claim-after"),
        Note::Dead { job, error } => format!("job {job} -> dead letters: {error}"),
        Note::HandedBack(n) => format!("handed back {n} job{} unscanned", if n == 1 { "" } else { "s" }),
    };
    printer.note(&message);
}
