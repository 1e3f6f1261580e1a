//! `dfscan submit`: one job per input, as `scan` would walk them.
//!
//! Each file is read once here, for its BLAKE3 and size: a worker checks both before it
//! scans, so a file changed (or still being copied) since it was submitted is not scanned as
//! something else. An input that cannot be read here still gets a job, carrying why
//! (`problem`), so its error line comes back through `results` like every other line.
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::job::{self, Content, Job};
use super::{ops, Queue};
use crate::inputs::Input;
use crate::pipeline::ScanSettings;

/// Checks `settings` as a worker will (so that no job is refused for them), then adds one job
/// per input; `on_job` hears each (job id, job) and returns false to stop. Returns the number
/// of jobs added.
pub fn submit(queue: &Queue, inputs: impl Iterator<Item = Input>, settings: &ScanSettings, mut on_job: impl FnMut(&str, &Job) -> bool) -> Result<usize> {
    job::check_limits(settings).map_err(anyhow::Error::msg)?;
    let mut link = queue.connect()?;
    let mut count = 0;
    for input in inputs {
        let job = job_for(input, settings)?;
        let id = ops::add_job(&mut link, &queue.names, &job)?;
        count += 1;
        if !on_job(&id, &job) {
            break;
        }
    }
    Ok(count)
}

/// The job of one input: its absolute path (as given, symlinks kept: workers resolve them),
/// its content's BLAKE3 and size, or why it cannot be read.
pub fn job_for(input: Input, settings: &ScanSettings) -> Result<Job> {
    let path = absolute(&input.path)?;
    let content = match input.problem.map(Content::Problem).unwrap_or_else(|| content_of(&path)) {
        // A character is at most 4 bytes.
        Content::Problem(long) if long.len() > job::MAX_PROBLEM => Content::Problem(long.chars().take(job::MAX_PROBLEM / 4).collect()),
        content => content,
    };
    Ok(Job { path, content, settings: settings.clone() })
}

fn content_of(path: &Path) -> Content {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Content::Problem(format!("cannot open: {e}")),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Content::Problem("is a directory".into());
    }
    if !kind.is_file() {
        let what = if kind.is_fifo() { "a FIFO" } else if kind.is_socket() { "a socket" } else { "a device" };
        return Content::Problem(format!("not a regular file ({what})"));
    }
    match crate::state::content_hash(path) {
        Ok(blake3) => Content::File { blake3, size: meta.len() },
        Err(e) => Content::Problem(format!("cannot open: {e}")),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    let path = std::path::absolute(path)?;
    if path.as_os_str().len() > job::MAX_PATH {
        bail!("{}: longer than {} bytes", path.display(), job::MAX_PATH);
    }
    Ok(path)
}
