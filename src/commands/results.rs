//! `dfscan results`: the queue's results as `scan`'s JSON lines on stdout, oldest first; with
//! `--follow` as they come, with `--wait` until every submitted job has one, then the exit
//! code `scan` would give them.
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Outcome;
use crate::cli::ResultsArgs;
use dfscan::output::LinePrinter;
use dfscan::pipeline::Shutdown;
use dfscan::queue::ops::BLOCK;
use dfscan::queue::results::{self, Open, Reader};

/// How often `--wait` asks whether every job is answered while results keep coming.
const CHECK_OPEN_EVERY: Duration = Duration::from_secs(1);

pub fn results(args: ResultsArgs) -> Result<Outcome> {
    let shutdown = Shutdown::default();
    shutdown.on_signals()?;
    let queue = super::queue(&args.queue)?;
    let since = args.since.as_deref();
    let mut reader = Reader::new(&queue, since)?;
    let mut open = if args.wait { Some(Open::new(&queue, since)?) } else { None };
    let mut printer = LinePrinter::new(std::io::stdout().lock());
    let following = args.follow || args.wait;
    let mut checked: Option<Instant> = None;
    'reading: while !shutdown.is_stopping() {
        let batch = reader.next_batch(following.then_some(BLOCK))?;
        for entry in &batch {
            if !printer.line(&entry.line) {
                break 'reading;
            }
        }
        if batch.is_empty() && !following {
            break;
        }
        let Some(open) = open.as_mut() else { continue };
        if !batch.is_empty() && checked.is_some_and(|t| t.elapsed() < CHECK_OPEN_EVERY) {
            continue;
        }
        checked = Some(Instant::now());
        if open.count()? == 0 {
            // Every job is answered, and a result is written with its job's mark: the rest
            // of the results are in the stream now.
            loop {
                let rest = reader.next_batch(None)?;
                if rest.is_empty() {
                    break 'reading;
                }
                for entry in &rest {
                    if !printer.line(&entry.line) {
                        break 'reading;
                    }
                }
            }
        }
    }
    let mut failed = 0;
    if args.wait && !printer.stdout_closed && !shutdown.is_stopping() {
        for dead in results::dead_without_result(&queue, since, reader.answered())? {
            failed += 1;
            eprintln!("dfscan: job {} has no line: {} (dead letter {} in {})", dead.job, dead.error, dead.id, queue.names.dead);
        }
    }
    if reader.duplicates > 0 {
        eprintln!("dfscan: warning: {} extra result entries for jobs already printed were skipped", reader.duplicates);
    }
    printer.finish();
    Ok(super::outcome_of(shutdown.is_stopping(), printer.stdout_closed, &printer.summary, failed))
}
