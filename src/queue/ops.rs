//! The queue's Redis commands, one function each, and [`COMMIT`], the script that writes a
//! job's result and acknowledges the job in one step.
use std::time::Duration;

use anyhow::{anyhow, Result};
use redis::Value;

use super::job::{Delivery, Job};
use super::{Link, Names};

/// A blocking read waits at most this long for a new job, so a stop is noticed soon.
pub const BLOCK: Duration = Duration::from_millis(500);
/// A job handed back is marked idle this long, so any worker's XAUTOCLAIM takes it at once
/// (whatever its `--claim-after`, up to a day).
const HANDED_BACK_IDLE_MS: u64 = 86_400_000;

/// Writes a job's result (and dead letter), keeps its answer, acknowledges it and forgets its
/// tries, all at once; or, when the job already has a result (`NAME:done`), only
/// acknowledges it. A job redelivered after its result was written, or scanned twice by a slow
/// worker and the one that claimed its job, so gets one result. Returns {1, result id} when
/// it wrote, {0, the earlier result id} when the job had one.
///
/// KEYS: jobs, results, dead, attempts, done, answers. ARGV: group, job id, answer key (or
/// ""), answer line, the number of result field arguments, the number of dead-letter field
/// arguments, then those fields.
const COMMIT: &str = r#"
local group, job = ARGV[1], ARGV[2]
local nres, ndead = tonumber(ARGV[5]), tonumber(ARGV[6])
local before = redis.call('HGET', KEYS[5], job)
if before then
  redis.call('XACK', KEYS[1], group, job)
  redis.call('HDEL', KEYS[4], job, job .. ':error')
  return {0, before}
end
local written = 'dead'
if nres > 0 then
  written = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7, 6 + nres))
end
if ndead > 0 then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7 + nres, 6 + nres + ndead))
end
if ARGV[3] ~= '' then
  redis.call('HSETNX', KEYS[6], ARGV[3], ARGV[4])
end
redis.call('HSET', KEYS[5], job, written)
redis.call('XACK', KEYS[1], group, job)
redis.call('HDEL', KEYS[4], job, job .. ':error')
return {1, written}
"#;

/// Creates the consumer group (reading from the stream's start) and the stream if needed.
pub fn ensure_group(link: &mut Link, names: &Names, group: &str) -> Result<()> {
    link.run(|c| {
        match redis::cmd("XGROUP").arg("CREATE").arg(&names.jobs).arg(group).arg("0").arg("MKSTREAM").query::<()>(c) {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    })
}

/// Adds one job; returns its id.
pub fn add_job(link: &mut Link, names: &Names, job: &Job) -> Result<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&names.jobs).arg("*");
    for (name, value) in job.fields() {
        cmd.arg(name).arg(value);
    }
    link.run_once(|c| cmd.query::<String>(c))
}

/// The next of this consumer's own pending jobs after `after` (a restarted worker's).
pub fn read_own(link: &mut Link, names: &Names, group: &str, consumer: &str, after: &str) -> Result<Option<Delivery>> {
    let reply: Value = link.run(|c| redis::cmd("XREADGROUP").arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(1).arg("STREAMS").arg(&names.jobs).arg(after).query(c))?;
    Ok(read_reply(reply)?.into_iter().next())
}

/// One new job, waiting at most [`BLOCK`].
pub fn read_new(link: &mut Link, names: &Names, group: &str, consumer: &str) -> Result<Option<Delivery>> {
    let block = BLOCK.as_millis() as u64;
    let reply: Value = link.run(|c| redis::cmd("XREADGROUP").arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(1).arg("BLOCK").arg(block).arg("STREAMS").arg(&names.jobs).arg(">").query(c))?;
    Ok(read_reply(reply)?.into_iter().next())
}

/// Claims one job pending on any consumer for at least `min_idle` (XAUTOCLAIM), scanning
/// the pending list from `cursor`; returns the next cursor ("0-0" when the scan is through).
pub fn autoclaim(link: &mut Link, names: &Names, group: &str, consumer: &str, min_idle: Duration, cursor: &str) -> Result<(String, Option<Delivery>)> {
    let idle = min_idle.as_millis() as u64;
    let reply: Value = link.run(|c| redis::cmd("XAUTOCLAIM").arg(&names.jobs).arg(group).arg(consumer).arg(idle).arg(cursor).arg("COUNT").arg(1).query(c))?;
    let Value::Array(mut parts) = reply else { return Err(anyhow!("XAUTOCLAIM: unexpected reply {reply:?}")) };
    if parts.len() < 2 {
        return Err(anyhow!("XAUTOCLAIM: unexpected reply {parts:?}"));
    }
    let entries = entries(parts.remove(1))?;
    let next = text(parts.remove(0))?;
    Ok((next, entries.into_iter().next()))
}

/// Counts a try of job `id`; returns how many there were, this one included.
pub fn take(link: &mut Link, names: &Names, id: &str) -> Result<u32> {
    let n: i64 = link.run(|c| redis::cmd("HINCRBY").arg(&names.attempts).arg(id).arg(1).query(c))?;
    Ok(n.max(0) as u32)
}

/// Keeps why the last try of job `id` failed, for its dead letter.
pub fn record_error(link: &mut Link, names: &Names, id: &str, error: &str) -> Result<()> {
    link.run(|c| redis::cmd("HSET").arg(&names.attempts).arg(format!("{id}:error")).arg(error).query::<()>(c))
}

pub fn last_error(link: &mut Link, names: &Names, id: &str) -> Result<Option<String>> {
    link.run(|c| redis::cmd("HGET").arg(&names.attempts).arg(format!("{id}:error")).query(c))
}

/// Resets the idle time of jobs this consumer is working on, so that no live worker's job
/// is claimed by another (XCLAIM with JUSTID: no delivery counted).
pub fn keep_alive(link: &mut Link, names: &Names, group: &str, consumer: &str, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    link.run(|c| redis::cmd("XCLAIM").arg(&names.jobs).arg(group).arg(consumer).arg(0).arg(ids).arg("JUSTID").query::<Value>(c)).map(drop)
}

/// Gives jobs back unscanned (a stopping worker): marked long idle, so the next XAUTOCLAIM of
/// any worker takes them; `uncount`: their try does not count (it never started).
pub fn hand_back(link: &mut Link, names: &Names, group: &str, consumer: &str, ids: &[String], uncount: bool) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    link.run(|c| redis::cmd("XCLAIM").arg(&names.jobs).arg(group).arg(consumer).arg(0).arg(ids).arg("IDLE").arg(HANDED_BACK_IDLE_MS).arg("JUSTID").query::<Value>(c))?;
    for id in ids.iter().filter(|_| uncount) {
        link.run(|c| redis::cmd("HINCRBY").arg(&names.attempts).arg(id).arg(-1).query::<i64>(c))?;
    }
    Ok(())
}

/// The answer kept for `key` (content, model, settings), if any.
pub fn answer(link: &mut Link, names: &Names, key: &str) -> Result<Option<String>> {
    link.run(|c| redis::cmd("HGET").arg(&names.answers).arg(key).query(c))
}

/// Jobs delivered to the group and not yet acknowledged, on any consumer.
pub fn pending(link: &mut Link, names: &Names, group: &str) -> Result<u64> {
    let reply: Value = link.run(|c| redis::cmd("XPENDING").arg(&names.jobs).arg(group).query(c))?;
    match reply {
        Value::Array(parts) => match parts.into_iter().next() {
            Some(Value::Int(n)) => Ok(n.max(0) as u64),
            other => Err(anyhow!("XPENDING: unexpected count {other:?}")),
        },
        other => Err(anyhow!("XPENDING: unexpected reply {other:?}")),
    }
}

/// What [`commit`] writes for one job.
pub struct Commit<'a> {
    pub job: &'a str,
    /// The result entry's fields (`job`, `worker`, `attempt`, `path`, `answered`, `line`).
    pub result: Option<Vec<(&'static str, String)>>,
    /// Kept as the answer for this key (content, model, settings).
    pub answer: Option<(&'a str, &'a str)>,
    /// The dead-letter entry's fields.
    pub dead: Option<Vec<(&'static str, String)>>,
}

/// How a commit went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Written: the result entry's id ("dead" for a dead letter alone).
    Written(String),
    /// The job had a result already (this one was dropped): that result's id.
    AlreadyAnswered(String),
}

pub fn commit(link: &mut Link, names: &Names, group: &str, commit: &Commit) -> Result<Committed> {
    let script = redis::Script::new(COMMIT);
    let flat = |fields: &Option<Vec<(&'static str, String)>>| -> Vec<String> { fields.iter().flatten().flat_map(|(n, v)| [n.to_string(), v.clone()]).collect() };
    let (result, dead) = (flat(&commit.result), flat(&commit.dead));
    let (key, line) = commit.answer.unwrap_or(("", ""));
    let reply: (i64, String) = link.run(|c| {
        let mut invocation = script.prepare_invoke();
        invocation.key(&names.jobs).key(&names.results).key(&names.dead).key(&names.attempts).key(&names.done).key(&names.answers);
        invocation.arg(group).arg(commit.job).arg(key).arg(line).arg(result.len()).arg(dead.len());
        for arg in result.iter().chain(&dead) {
            invocation.arg(arg);
        }
        invocation.invoke(c)
    })?;
    Ok(match reply {
        (1, id) => Committed::Written(id),
        (_, id) => Committed::AlreadyAnswered(id),
    })
}

/// Entries of a stream after `after` (exclusive), at most `count`.
pub fn range(link: &mut Link, stream: &str, after: &str, count: usize) -> Result<Vec<Delivery>> {
    let start = format!("({after}");
    let reply: Value = link.run(|c| redis::cmd("XRANGE").arg(stream).arg(&start).arg("+").arg("COUNT").arg(count).query(c))?;
    entries(reply)
}

/// Entries of `stream` after `after`, waiting up to `block` for the first.
pub fn read_after(link: &mut Link, stream: &str, after: &str, block: Duration) -> Result<Vec<Delivery>> {
    let block = block.as_millis() as u64;
    let reply: Value = link.run(|c| redis::cmd("XREAD").arg("COUNT").arg(1000).arg("BLOCK").arg(block).arg("STREAMS").arg(stream).arg(after).query(c))?;
    read_reply(reply)
}

/// Which of `jobs` have a result or a dead letter (NAME:done).
pub fn done(link: &mut Link, names: &Names, jobs: &[String]) -> Result<Vec<bool>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = link.run(|c| redis::cmd("HMGET").arg(&names.done).arg(jobs).query(c))?;
    Ok(values.into_iter().map(|v| v.is_some()).collect())
}

/// The entries of an XREAD/XREADGROUP reply for one stream (none on a timeout).
fn read_reply(reply: Value) -> Result<Vec<Delivery>> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for stream in streams {
                let Value::Array(mut pair) = stream else { return Err(anyhow!("stream reply: unexpected {stream:?}")) };
                if pair.len() != 2 {
                    return Err(anyhow!("stream reply: unexpected {pair:?}"));
                }
                out.extend(entries(pair.remove(1))?);
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries_of) in streams {
                out.extend(entries(entries_of)?);
            }
            Ok(out)
        }
        other => Err(anyhow!("stream reply: unexpected {other:?}")),
    }
}

/// `[[id, [field, value, ...] | nil], ...]`.
fn entries(value: Value) -> Result<Vec<Delivery>> {
    let Value::Array(items) = value else { return Err(anyhow!("entries: unexpected {value:?}")) };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut pair) = item else { return Err(anyhow!("entry: unexpected {item:?}")) };
            if pair.len() != 2 {
                return Err(anyhow!("entry: unexpected {pair:?}"));
            }
            let fields = match pair.remove(1) {
                Value::Nil => None,
                Value::Array(flat) => {
                    if flat.len() % 2 != 0 {
                        return Err(anyhow!("entry fields: odd count"));
                    }
                    let mut flat = flat.into_iter().map(bytes);
                    let mut fields = Vec::new();
                    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                        fields.push((name?, value?));
                    }
                    Some(fields)
                }
                other => return Err(anyhow!("entry fields: unexpected {other:?}")),
            };
            Ok(Delivery { id: text(pair.remove(0))?, fields })
        })
        .collect()
}

fn bytes(value: Value) -> Result<Vec<u8>> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        other => Err(anyhow!("expected a string, got {other:?}")),
    }
}

fn text(value: Value) -> Result<String> {
    String::from_utf8(bytes(value)?).map_err(|_| anyhow!("an id that is not UTF-8"))
}
