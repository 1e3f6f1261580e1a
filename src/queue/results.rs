//! `dfscan results`: the results stream read back as `scan`'s JSON lines, oldest first, one per
//! job (a second entry for a job, which the commit script never writes, would be skipped), and
//! what is still open: jobs with neither a result nor a dead letter.
use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;

use super::job::Delivery;
use super::{ops, Link, Names, Queue};

/// Entries read per round trip.
const PAGE: usize = 1000;

/// One entry of the results stream (its fields are documented in docs/distributed.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultEntry {
    pub id: String,
    pub job: String,
    pub worker: String,
    pub attempt: u32,
    /// "scanned", or "reused" (the answer kept for the same content, model and settings).
    pub answered: String,
    /// The JSON line, exactly as `scan` prints it.
    pub line: String,
}

impl ResultEntry {
    fn parse(delivery: Delivery) -> Option<Self> {
        let fields = delivery.fields?;
        let get = |name: &str| fields.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        Some(Self {
            id: delivery.id,
            job: get("job")?,
            worker: get("worker").unwrap_or_default(),
            attempt: get("attempt").and_then(|a| a.parse().ok()).unwrap_or(0),
            answered: get("answered").unwrap_or_default(),
            line: get("line")?,
        })
    }
}

/// One dead letter: a job that got no scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub job: String,
    pub error: String,
}

/// A stream id as (milliseconds, sequence), for comparing; None if it is not one.
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Reads results in order, each job once, from jobs at or after `since` (a job id).
pub struct Reader {
    link: Link,
    names: Names,
    since: (u64, u64),
    last: String,
    seen: HashSet<String>,
    /// Entries for a job that already had one (never written by the commit script).
    pub duplicates: usize,
}

impl Reader {
    pub fn new(queue: &Queue, since: Option<&str>) -> Result<Self> {
        let since = match since {
            Some(id) => stream_id(id).ok_or_else(|| anyhow::anyhow!("--since {id:?} is not a job id (MS-SEQ)"))?,
            None => (0, 0),
        };
        Ok(Self { link: queue.connect()?, names: queue.names.clone(), since, last: "0-0".into(), seen: HashSet::new(), duplicates: 0 })
    }

    /// The jobs whose result was read.
    pub fn answered(&self) -> &HashSet<String> {
        &self.seen
    }

    /// The next results, waiting up to `wait` for the first if there is none yet.
    pub fn next_batch(&mut self, wait: Option<Duration>) -> Result<Vec<ResultEntry>> {
        let mut batch = ops::range(&mut self.link, &self.names.results, &self.last, PAGE)?;
        if batch.is_empty() {
            if let Some(wait) = wait {
                batch = ops::read_after(&mut self.link, &self.names.results, &self.last, wait)?;
            }
        }
        if let Some(last) = batch.last() {
            self.last = last.id.clone();
        }
        let mut out = Vec::new();
        for entry in batch.into_iter().filter_map(ResultEntry::parse) {
            if stream_id(&entry.job).is_none_or(|id| id < self.since) {
                continue;
            }
            if !self.seen.insert(entry.job.clone()) {
                self.duplicates += 1;
                continue;
            }
            out.push(entry);
        }
        Ok(out)
    }
}

/// Follows the job stream: which jobs at or after `since` are still open.
pub struct Open {
    link: Link,
    names: Names,
    last: String,
    open: Vec<String>,
    pub jobs: usize,
}

impl Open {
    pub fn new(queue: &Queue, since: Option<&str>) -> Result<Self> {
        // XRANGE's exclusive start: the id just before `since`.
        let last = match since.and_then(stream_id) {
            Some((0, 0)) | None => "0-0".to_string(),
            Some((ms, 0)) => format!("{}-{}", ms - 1, u64::MAX),
            Some((ms, seq)) => format!("{ms}-{}", seq - 1),
        };
        Ok(Self { link: queue.connect()?, names: queue.names.clone(), last, open: Vec::new(), jobs: 0 })
    }

    /// How many submitted jobs have neither a result nor a dead letter yet.
    pub fn count(&mut self) -> Result<usize> {
        loop {
            let page = ops::range(&mut self.link, &self.names.jobs, &self.last, PAGE)?;
            let Some(last) = page.last() else { break };
            self.last = last.id.clone();
            self.jobs += page.len();
            self.open.extend(page.into_iter().map(|d| d.id));
        }
        let mut still = Vec::new();
        for chunk in self.open.chunks(PAGE) {
            let done = ops::done(&mut self.link, &self.names, chunk)?;
            still.extend(chunk.iter().zip(done).filter(|(_, d)| !d).map(|(id, _)| id.clone()));
        }
        self.open = still;
        Ok(self.open.len())
    }
}

/// The dead letters of jobs at or after `since` that have no result line (malformed entries):
/// a job whose input could not be read has both, and its line says why.
pub fn dead_without_result(queue: &Queue, since: Option<&str>, answered: &HashSet<String>) -> Result<Vec<DeadLetter>> {
    let mut link = queue.connect()?;
    let since = since.and_then(stream_id).unwrap_or((0, 0));
    let (mut last, mut out) = ("0-0".to_string(), Vec::new());
    loop {
        let page = ops::range(&mut link, &queue.names.dead, &last, PAGE)?;
        let Some(end) = page.last() else { break };
        last = end.id.clone();
        for delivery in page {
            let Some(fields) = delivery.fields else { continue };
            let get = |name: &str| fields.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            let job = get("job");
            if stream_id(&job).is_some_and(|id| id >= since) && !answered.contains(&job) {
                out.push(DeadLetter { id: delivery.id, job, error: get("error") });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_compare_as_numbers() {
        assert!(stream_id("1700000000000-10") > stream_id("1700000000000-9"));
        assert!(stream_id("999-0") < stream_id("1000-0"));
        assert_eq!(stream_id("12"), Some((12, 0)));
        assert_eq!(stream_id("x-1"), None);
    }
}
