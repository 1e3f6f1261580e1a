//! The printer: JSON lines on stdout (one per input, flushed as each finishes) and progress
//! bars on stderr. The only module that writes to the terminal during a scan.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::Path;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::aggregate::Verdict;
use crate::pipeline::Event;
use crate::report::{Status, VideoReport};

/// Counts that decide the exit code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub scanned: usize,
    pub fakes: usize,
    pub errors: usize,
    /// Inputs judged out of distribution ("uncertain"): listed on stderr at the end, not fakes.
    pub uncertain: Vec<String>,
    /// Inputs the state database already had (`--resume`, `watch`): no line, no effect on the
    /// exit code.
    pub skipped: usize,
}

impl Summary {
    /// Counts a line printed elsewhere (`dfscan results`), as [`Printer`] counts a report.
    pub fn count_line(&mut self, line: &serde_json::Value) {
        self.scanned += 1;
        match (line["status"].as_str(), line["verdict"].as_str()) {
            (Some("error"), _) | (None, _) => self.errors += 1,
            (_, Some("fake")) => self.fakes += 1,
            (_, Some("uncertain")) => self.uncertain.push(line["path"].as_str().unwrap_or_default().to_string()),
            _ => {}
        }
    }

    fn count(&mut self, report: &VideoReport) {
        self.scanned += 1;
        if report.status == Status::Error {
            self.errors += 1;
        } else if report.verdict == Some(Verdict::Fake) {
            self.fakes += 1;
        } else if report.verdict == Some(Verdict::Uncertain) {
            self.uncertain.push(report.path.clone());
        }
    }
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    videos: HashMap<usize, ProgressBar>,
}

pub struct Printer<W: Write> {
    out: W,
    bars: Option<Bars>,
    /// Say on stderr, at the end, how many inputs were skipped (off with `--quiet`).
    notes: bool,
    pub summary: Summary,
    /// Set when stdout was closed under us (`dfscan scan ... | head`): stop quietly.
    pub stdout_closed: bool,
}

impl<W: Write> Printer<W> {
    /// `progress`: draw bars on stderr (callers pass false for `--quiet` or a non-terminal).
    pub fn new(out: W, progress: bool) -> Self {
        let bars = progress.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(progress_bar(0, "{prefix:>8} [{bar:30}] {pos}/{len} inputs, {elapsed}"));
            overall.set_prefix("scan");
            Bars { multi, overall, videos: HashMap::new() }
        });
        Self { out, bars, notes: true, summary: Summary::default(), stdout_closed: false }
    }

    /// No closing note on stderr (`--quiet`); warnings are still written.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.notes = !quiet;
        self
    }

    /// Handles one pipeline event; false means stop the scan (stdout is gone).
    pub fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Queued => {
                if let Some(b) = &self.bars {
                    b.overall.inc_length(1);
                }
            }
            Event::Started { id, path, planned_frames } => {
                if let Some(b) = &mut self.bars {
                    let bar = b.multi.add(progress_bar(planned_frames.unwrap_or(0) as u64, "{prefix:>8} [{bar:30}] {pos}/{len} frames {msg}"));
                    bar.set_prefix("video");
                    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
                    b.videos.insert(id, bar);
                }
            }
            Event::FrameDone { id } => {
                if let Some(bar) = self.bars.as_ref().and_then(|b| b.videos.get(&id)) {
                    bar.inc(1);
                }
            }
            Event::Skipped { .. } => self.summary.skipped += 1,
            Event::Warning(message) => self.warn(&message),
            Event::Finished { id, report } => {
                if let Some(b) = &mut self.bars {
                    if let Some(bar) = b.videos.remove(&id) {
                        bar.finish_and_clear();
                        b.multi.remove(&bar);
                    }
                    b.overall.inc(1);
                }
                self.summary.count(&report);
                for overlay in &report.overlays {
                    if let Err(e) = crate::explain::write_overlay(&overlay.file, &overlay.crop, overlay.side, &overlay.map, overlay.map_side) {
                        self.warn(&format!("--explain: writing {}: {e:#}", overlay.file.display()));
                    }
                }
                if let Err(e) = self.write_line(&report) {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        self.stdout_closed = true;
                        return false;
                    }
                    eprintln!("dfscan: writing results: {e}");
                    return false;
                }
            }
        }
        true
    }

    fn write_line(&mut self, report: &VideoReport) -> io::Result<()> {
        let mut line = serde_json::to_string(report).map_err(io::Error::other)?;
        // One write per line: a process killed between two writes could leave half a line
        // in a file that the next run appends to.
        line.push('\n');
        // Suspend the bars so a line never interleaves with a redraw.
        match &self.bars {
            Some(b) => b.multi.suspend(|| self.out.write_all(line.as_bytes()).and_then(|_| self.out.flush())),
            None => self.out.write_all(line.as_bytes()).and_then(|_| self.out.flush()),
        }
    }

    fn warn(&self, message: &str) {
        self.note(&format!("warning: {message}"));
    }

    /// A line on stderr ("dfscan: " and `message`) that no bar redraw cuts (the worker's log).
    pub fn note(&self, message: &str) {
        match &self.bars {
            Some(b) => b.multi.suspend(|| eprintln!("dfscan: {message}")),
            None => eprintln!("dfscan: {message}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = &self.bars {
            b.overall.finish_and_clear();
        }
        if self.notes {
            note_uncertain(&self.summary);
        }
        if self.notes && self.summary.skipped > 0 {
            let n = self.summary.skipped;
            eprintln!(
                "dfscan: skipped {n} input{} already scanned with this model and these settings (--rescan scans them again)",
                if n == 1 { "" } else { "s" }
            );
        }
    }
}

fn note_uncertain(summary: &Summary) {
    let list = &summary.uncertain;
    if !list.is_empty() {
        eprintln!("dfscan: {} input{} out of distribution (verdict \"uncertain\", not counted as fake): {}", list.len(), if list.len() == 1 { "" } else { "s" }, list.join(", "));
    }
}

/// Prints JSON lines made elsewhere (`dfscan results`: the workers' lines), one write and
/// flush each, counting them as a scan's [`Printer`] counts its own.
pub struct LinePrinter<W: Write> {
    out: W,
    pub summary: Summary,
    /// Set when stdout was closed under us (`dfscan results | head`): stop quietly.
    pub stdout_closed: bool,
}

impl<W: Write> LinePrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out, summary: Summary::default(), stdout_closed: false }
    }

    /// Prints one line; false means stop (stdout is gone).
    pub fn line(&mut self, line: &str) -> bool {
        self.summary.count_line(&serde_json::from_str(line).unwrap_or(serde_json::Value::Null));
        let mut text = line.trim_end().to_string();
        text.push('\n');
        match self.out.write_all(text.as_bytes()).and_then(|_| self.out.flush()) {
            Ok(()) => true,
            Err(e) => {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.stdout_closed = true;
                } else {
                    eprintln!("dfscan: writing results: {e}");
                }
                false
            }
        }
    }

    /// The closing note on stderr (inputs judged out of distribution).
    pub fn finish(&self) {
        note_uncertain(&self.summary);
    }
}

/// The one way dfscan makes a progress bar: `template`'s style on stderr, hidden when stderr
/// is not a terminal (a log file gets no bar redraws). The scan's printer adds its bars to one
/// [`MultiProgress`]; training, extraction and `cv` use one bar each.
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Opens `path` for appending lines (`watch --output`). If the file ends in the middle of a
/// line (a power cut mid-write), that line is ended first, so the next starts on its own.
pub fn append_to(path: &Path) -> io::Result<File> {
    let mut file = File::options().create(true).append(true).read(true).open(path)?;
    if file.metadata()?.len() > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

/// Standard output as a plain file, so that [`Fsync`] can sync it when it is one.
pub fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Writes straight through, and makes every flush reach the disk (`--fsync`): the printer
/// flushes after each line.
pub struct Fsync(pub File);

impl Write for Fsync {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.sync_data() {
            // A pipe or a terminal: nothing to put on disk.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            result => result,
        }
    }
}
