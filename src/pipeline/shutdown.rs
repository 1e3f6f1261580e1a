//! Stopping a run from outside its data: Ctrl-C and SIGTERM ([`Shutdown`]), and the per-input
//! deadline of `--timeout` (`Stopper`), which every stage polls.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{bounded, Receiver, Sender};

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
    /// Becomes ready (disconnected) when the run is stopped; decode waits on it beside its
    /// input queue.
    pub(super) fn woken(&self) -> &Receiver<()> {
        &self.0.wake_rx
    }

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

/// Says when one input's processing must be abandoned, and why; every stage polls it.
#[derive(Clone)]
pub(super) struct Stopper {
    deadline: Option<(Instant, Duration)>,
    shutdown: Shutdown,
}

impl Stopper {
    pub(super) fn new(started: Instant, timeout: Option<Duration>, shutdown: &Shutdown) -> Self {
        Self { deadline: timeout.map(|t| (started + t, t)), shutdown: shutdown.clone() }
    }

    pub(super) fn reason(&self) -> Option<String> {
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
    pub(super) fn explain(&self, error: anyhow::Error) -> String {
        self.reason().unwrap_or_else(|| format!("{error:#}"))
    }
}
