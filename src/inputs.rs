//! What to scan: files, directories (recursive, by extension), `-` for paths on stdin, and
//! watched directories ([`Watch`]). Produces a lazy stream, so a huge directory or an endless
//! stdin starts scanning at once.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use notify_debouncer_full::notify::event::{AccessKind, AccessMode, ModifyKind};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

/// One input. `problem` is set when the path is known to be unscannable before decoding
/// (e.g. a directory walk error); it still becomes a JSON line.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub problem: Option<String>,
}

/// Extensions picked up inside directories; a file named explicitly is scanned whatever its name.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "avi", "mkv", "webm", "mpg", "mpeg", "wmv", "flv", "ts", "3gp", "gif", // video
    "png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", // still images
];

/// The still images among [`MEDIA_EXTENSIONS`]: its tail from "png".
pub fn is_still_image(path: &Path) -> bool {
    let first_image = MEDIA_EXTENSIONS.iter().position(|&e| e == "png").expect("png is listed");
    has_extension(path, &MEDIA_EXTENSIONS[first_image..])
}

pub fn is_media(path: &Path) -> bool {
    has_extension(path, MEDIA_EXTENSIONS)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands `args` in order: `-` reads one path per line from stdin, directories are walked in
/// name order, anything else is taken as a file.
pub fn expand(args: Vec<PathBuf>) -> impl Iterator<Item = Input> + Send {
    args.into_iter().flat_map(|arg| -> Box<dyn Iterator<Item = Input> + Send> {
        if arg.as_os_str() == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).map(|l| Input {
                path: PathBuf::from(l),
                problem: None,
            }))
        } else if arg.is_dir() {
            Box::new(walk(arg))
        } else {
            Box::new(std::iter::once(Input { path: arg, problem: None }))
        }
    })
}

fn walk(dir: PathBuf) -> impl Iterator<Item = Input> {
    walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name().into_iter().filter_map(|entry| match entry {
        Ok(e) if e.file_type().is_file() && is_media(e.path()) => Some(Input { path: e.into_path(), problem: None }),
        // A FIFO, socket or device is never silently skipped, whatever its name: decode
        // refuses it with its own line ("not a regular file"), as when it is named directly.
        Ok(e) if !e.file_type().is_file() && !e.file_type().is_dir() => Some(Input { path: e.into_path(), problem: None }),
        Ok(_) => None,
        // An unreadable folder or a symlink loop is reported once, as its own line.
        Err(err) => Some(Input {
            path: err.path().map(Path::to_path_buf).unwrap_or_default(),
            problem: Some(format!("cannot walk: {err}")),
        }),
    })
}

/// Names that are not finished files yet: hidden files and the temporary names that
/// downloaders, editors and copy tools write to before renaming.
pub fn is_partial(path: &Path) -> bool {
    const PARTIAL: &[&str] = &["part", "partial", "tmp", "temp", "crdownload", "download", "swp"];
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.starts_with('.') || name.ends_with('~') || PARTIAL.contains(&extension.as_str())
}

/// Media files that appear under some directories, for `dfscan watch`: an endless stream.
///
/// Paths are absolute. Files already there when it starts come first (the state database skips those already
/// scanned), then every file created, written or moved in, in any folder below, including
/// folders made later. A file is handed out once it is complete: its size and modification
/// time unchanged for `settle`. Partial names ([`is_partial`]) are ignored until renamed.
/// The same file, unchanged, is handed out once per run.
pub struct Watch {
    // Watching stops when this is dropped.
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    events: std::sync::mpsc::Receiver<DebounceEventResult>,
    dirs: Vec<PathBuf>,
    settle: Duration,
    /// Files seen but not yet complete, in path order.
    pending: BTreeMap<PathBuf, Pending>,
    /// What was handed out, as (size, mtime) then; grows by one entry per file seen.
    handed: HashMap<PathBuf, (u64, SystemTime)>,
    ready: VecDeque<Input>,
}

struct Pending {
    size: u64,
    modified: SystemTime,
    unchanged_since: Instant,
}

impl Watch {
    pub fn new(dirs: &[PathBuf], settle: Duration) -> anyhow::Result<Self> {
        // Unbounded, as the debouncer's own map is: it holds paths, one entry per file event,
        // while the pipeline is busy; no frames.
        let (tx, events) = std::sync::mpsc::channel();
        // The debouncer merges bursts of events for one file; `settle` decides when it is done.
        let debounce = (settle / 2).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let mut debouncer = new_debouncer(debounce, None, tx)?;
        // Events name absolute paths: the walks must spell them the same way, or one file
        // could pass as two.
        let dirs = dirs.iter().map(|d| std::fs::canonicalize(d).with_context(|| format!("watching {}", d.display()))).collect::<anyhow::Result<Vec<_>>>()?;
        for dir in &dirs {
            anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
            debouncer.watch(dir, RecursiveMode::Recursive).with_context(|| format!("watching {}", dir.display()))?;
        }
        let mut watch = Self {
            _debouncer: debouncer,
            events,
            dirs,
            settle,
            pending: BTreeMap::new(),
            handed: HashMap::new(),
            ready: VecDeque::new(),
        };
        // Watching first, then the walk: a file that lands in between is seen twice, not never.
        watch.sweep();
        Ok(watch)
    }

    /// Looks at every file under the watched directories (at start, and when the kernel's
    /// event queue overflowed and events were lost).
    fn sweep(&mut self) {
        for dir in self.dirs.clone() {
            self.consider(dir, Change::Arrived);
        }
    }

    /// Something happened at `path`: a folder that arrived is walked, a media file waits to
    /// settle.
    fn consider(&mut self, path: PathBuf, what: Change) {
        let Ok(meta) = std::fs::metadata(&path) else { return }; // gone again
        if meta.is_dir() {
            if what != Change::Arrived {
                return;
            }
            // Files may land in a new folder before its own watch is in place: walk it.
            for input in walk(path) {
                match input.problem {
                    Some(_) => self.ready.push_back(input),
                    None => self.consider(input.path, Change::Arrived),
                }
            }
        } else if meta.is_file() && is_media(&path) && !is_partial(&path) {
            let (size, modified) = (meta.len(), meta.modified().unwrap_or(UNIX_EPOCH));
            // Any event restarts the clock: the file may still be written.
            self.pending.insert(path, Pending { size, modified, unchanged_since: Instant::now() });
        }
    }

    /// Moves the files that have settled to `ready`.
    fn check_pending(&mut self) {
        let now = Instant::now();
        let mut settled = Vec::new();
        self.pending.retain(|path, p| {
            let Ok(meta) = std::fs::metadata(path) else { return false };
            let now_is = (meta.len(), meta.modified().unwrap_or(UNIX_EPOCH));
            if now_is != (p.size, p.modified) {
                (p.size, p.modified, p.unchanged_since) = (now_is.0, now_is.1, now);
                return true;
            }
            if now.duration_since(p.unchanged_since) < self.settle {
                return true;
            }
            settled.push((path.clone(), now_is));
            false
        });
        for (path, state) in settled {
            if self.handed.insert(path.clone(), state) != Some(state) {
                self.ready.push_back(Input { path, problem: None });
            }
        }
    }
}

/// The events that matter. Reads are not among them: walking a folder opens it, and hashing
/// or decoding a file reads it, and neither may start another round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Created or moved in (or unknown, which is treated alike).
    Arrived,
    /// Written to, or closed after writing.
    Written,
}

impl Change {
    fn of(kind: &EventKind) -> Option<Self> {
        match kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any | EventKind::Other => Some(Change::Arrived),
            EventKind::Modify(_) | EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Written),
            EventKind::Access(_) | EventKind::Remove(_) => None,
        }
    }
}

impl Iterator for Watch {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        let poll = (self.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        loop {
            if let Some(input) = self.ready.pop_front() {
                return Some(input);
            }
            match self.events.recv_timeout(poll) {
                Ok(Ok(events)) => {
                    for event in events {
                        if event.event.need_rescan() {
                            self.sweep();
                        }
                        if let Some(what) = Change::of(&event.event.kind) {
                            for path in event.event.paths {
                                self.consider(path, what);
                            }
                        }
                    }
                }
                // E.g. the limit on inotify watches: said once, as a line of its own.
                Ok(Err(errors)) => {
                    for error in errors {
                        let path = error.paths.first().cloned().unwrap_or_else(|| self.dirs[0].clone());
                        self.ready.push_back(Input { path, problem: Some(format!("watch error: {error}")) });
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            self.check_pending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_hidden_names_wait_for_their_rename() {
        for name in ["clip.mp4.part", "clip.mp4.crdownload", "clip.mp4~", ".clip.mp4", "upload.TMP"] {
            assert!(is_partial(Path::new(name)), "{name}");
        }
        for name in ["clip.mp4", "dir/clip.jpg", "a.b.mov"] {
            assert!(!is_partial(Path::new(name)), "{name}");
        }
    }
}
