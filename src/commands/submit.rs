//! `dfscan submit`: one job per input on the queue; prints one JSON line per job (`job`,
//! `path`) on stdout, and on stderr how to read the results.
use std::io::Write;

use anyhow::Result;

use super::Outcome;
use crate::cli::SubmitArgs;
use dfscan::queue::job::Content;

pub fn submit(args: SubmitArgs) -> Result<Outcome> {
    let queue = super::queue(&args.queue)?;
    let settings = args.settings.settings();
    settings.check()?;
    let inputs = dfscan::inputs::expand(args.paths.clone());
    let mut out = std::io::stdout().lock();
    let (mut first, mut problems, mut closed) = (None::<String>, 0usize, false);
    let count = dfscan::queue::submit::submit(&queue, inputs, &settings, |id, job| {
        first.get_or_insert_with(|| id.to_string());
        if let Content::Problem(problem) = &job.content {
            problems += 1;
            eprintln!("dfscan: warning: {}: {problem} (its job carries the error)", job.path.display());
        }
        let line = serde_json::json!({ "job": id, "path": job.shown_path() }).to_string() + "\n";
        // `dfscan submit | head` stops submitting, like `scan | head` stops scanning.
        closed = out.write_all(line.as_bytes()).and_then(|_| out.flush()).is_err();
        !closed
    })?;
    if !args.quiet && !closed {
        let since = first.map(|id| format!(" --since {id}")).unwrap_or_default();
        let stream = if args.queue.stream == dfscan::queue::DEFAULT_STREAM { String::new() } else { format!(" --stream {}", args.queue.stream) };
        eprintln!(
            "dfscan: submitted {count} job{} ({problems} unreadable here) to {}; results: dfscan results --queue {}{stream}{since} --wait",
            if count == 1 { "" } else { "s" },
            queue.shown(),
            queue.shown()
        );
    }
    Ok(Outcome::Clean)
}
