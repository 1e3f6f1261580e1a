//! A job as it travels in the stream: one entry of flat fields, checked before anything acts
//! on it. Anyone who can write to the stream can write any entry, so a worker takes nothing on
//! trust: unknown fields, oversized values, a relative path or settings `scan` does not know
//! make the entry malformed (it goes to the dead-letter stream, the worker goes on), and what
//! the job names is checked again where it is read (roots, size, BLAKE3; see `source`).
//!
//! Fields (format 1): `v` = "1"; `path` = the input's absolute path as the workers see it
//! (raw bytes); `blake3` = its content's BLAKE3 (64 hex digits) and `size` = its length in
//! bytes, or instead `problem` = why `submit` could not read it (it becomes the error of the
//! input's line, as `scan` would print it); `settings` = [`ScanSettings`] as JSON.
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::pipeline::ScanSettings;

/// The format of the fields below; a worker refuses any other.
pub const FORMAT: &str = "1";
/// At most this many fields in an entry.
pub const MAX_FIELDS: usize = 8;
/// Longest path, in bytes (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest settings JSON, in bytes.
pub const MAX_SETTINGS: usize = 4096;
/// Longest `problem`, in bytes.
pub const MAX_PROBLEM: usize = 1024;
/// Most frames a job may ask for per input (`frames`), most per second (`fps`), and most clips.
pub const MAX_FRAMES: usize = 10_000;
pub const MAX_FPS: f64 = 240.0;
pub const MAX_CLIPS: usize = 100;
pub const MAX_CLIP_LEN: usize = 10_000;

/// A stream entry as read: its id and its fields (none when the entry was deleted while it
/// was pending).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A checked job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub path: PathBuf,
    pub content: Content,
    pub settings: ScanSettings,
}

/// What `submit` knew of the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// Its BLAKE3 (hex) and size in bytes when it was submitted.
    File { blake3: String, size: u64 },
    /// Why it could not be read when it was submitted.
    Problem(String),
}

impl Job {
    /// The entry's fields, in order.
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![("v", FORMAT.as_bytes().to_vec()), ("path", self.path.as_os_str().as_bytes().to_vec())];
        match &self.content {
            Content::File { blake3, size } => {
                fields.push(("blake3", blake3.clone().into_bytes()));
                fields.push(("size", size.to_string().into_bytes()));
            }
            Content::Problem(problem) => fields.push(("problem", problem.clone().into_bytes())),
        }
        fields.push(("settings", serde_json::to_vec(&self.settings).expect("settings serialise")));
        fields
    }

    /// The path as the JSON line gives it (non-UTF-8 bytes replaced).
    pub fn shown_path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Checks an entry's fields; the error says what is wrong, for the dead-letter stream.
    pub fn parse(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Job, String> {
        if fields.len() > MAX_FIELDS {
            return Err(format!("{} fields, at most {MAX_FIELDS}", fields.len()));
        }
        let mut seen: Vec<&[u8]> = Vec::new();
        for (name, _) in fields {
            if !matches!(name.as_slice(), b"v" | b"path" | b"blake3" | b"size" | b"problem" | b"settings") {
                return Err(format!("unknown field {:?}", shorten(name, 40)));
            }
            if seen.contains(&name.as_slice()) {
                return Err(format!("field {:?} given twice", shorten(name, 40)));
            }
            seen.push(name);
        }
        let get = |name: &str| fields.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| v.as_slice());
        let text = |name: &str, max: usize| -> Result<Option<&str>, String> {
            let Some(value) = get(name) else { return Ok(None) };
            if value.len() > max {
                return Err(format!("{name} is {} bytes, at most {max}", value.len()));
            }
            std::str::from_utf8(value).map(Some).map_err(|_| format!("{name} is not UTF-8"))
        };
        match text("v", 8)? {
            Some(FORMAT) => {}
            Some(other) => return Err(format!("format {other:?}, this worker reads {FORMAT:?}")),
            None => return Err("no format field v".into()),
        }
        let path = get("path").ok_or("no path")?;
        if path.is_empty() || path.len() > MAX_PATH || path.contains(&0) {
            return Err(format!("path is {} bytes (1 to {MAX_PATH}, no NUL)", path.len()));
        }
        let path = PathBuf::from(std::ffi::OsString::from_vec(path.to_vec()));
        if !path.is_absolute() {
            return Err("path is not absolute".into());
        }
        let content = match (text("blake3", 64)?, text("size", 20)?, text("problem", MAX_PROBLEM)?) {
            (Some(blake3), Some(size), None) => {
                if blake3.len() != 64 || !blake3.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err("blake3 is not 64 lowercase hex digits".into());
                }
                let size = size.parse::<u64>().map_err(|_| format!("size {size:?} is not a number of bytes"))?;
                Content::File { blake3: blake3.to_string(), size }
            }
            (None, None, Some(problem)) => Content::Problem(problem.to_string()),
            _ => return Err("a job has blake3 and size, or a problem".into()),
        };
        let settings = text("settings", MAX_SETTINGS)?.ok_or("no settings")?;
        let settings: ScanSettings = serde_json::from_str(settings).map_err(|e| format!("settings: {e}"))?;
        check_limits(&settings)?;
        Ok(Job { path, content, settings })
    }
}

/// A job's settings must be ones `scan` accepts, within the sizes a worker will do.
pub fn check_limits(settings: &ScanSettings) -> Result<(), String> {
    settings.check().map_err(|e| format!("settings: {e}"))?;
    let limits = [
        (settings.frames <= MAX_FRAMES, format!("frames {} > {MAX_FRAMES}", settings.frames)),
        (settings.fps.is_none_or(|f| f <= MAX_FPS), format!("fps {:?} > {MAX_FPS}", settings.fps)),
        (settings.clips.is_none_or(|c| c <= MAX_CLIPS), format!("clips {:?} > {MAX_CLIPS}", settings.clips)),
        (settings.clip_len <= MAX_CLIP_LEN, format!("clip_len {} > {MAX_CLIP_LEN}", settings.clip_len)),
    ];
    match limits.into_iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(format!("settings: {why}")),
        None => Ok(()),
    }
}

/// The fields of an entry as a short JSON object, for the dead-letter stream: each name and
/// value cut to a few hundred bytes, non-UTF-8 bytes replaced.
pub fn sample(fields: &[(Vec<u8>, Vec<u8>)]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = fields.iter().take(16).map(|(n, v)| (shorten(n, 64), serde_json::Value::String(shorten(v, 512)))).collect();
    serde_json::Value::Object(object).to_string()
}

fn shorten(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max { format!("{text}...") } else { text }
}

/// Whether `path` (canonical) lies under one of `roots` (canonical).
pub fn under_roots(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_job_survives_its_fields() {
        let job = Job { path: "/data/a b.mp4".into(), content: Content::File { blake3: "ab".repeat(32), size: 12 }, settings: ScanSettings { frames: 4, ..Default::default() } };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = job.fields().into_iter().map(|(n, v)| (n.as_bytes().to_vec(), v)).collect();
        assert_eq!(Job::parse(&fields).unwrap(), job);
        let problem = Job { content: Content::Problem("cannot walk: denied".into()), ..job };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = problem.fields().into_iter().map(|(n, v)| (n.as_bytes().to_vec(), v)).collect();
        assert_eq!(Job::parse(&fields).unwrap(), problem);
    }

    #[test]
    fn malformed_entries_say_why() {
        let hash = "0".repeat(64);
        let good = [("v", "1"), ("path", "/a.mp4"), ("blake3", hash.as_str()), ("size", "3"), ("settings", "{}")];
        assert!(Job::parse(&owned(&good)).is_ok());
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("garbage", "x")], "unknown field"),
            (vec![("v", "2")], "format"),
            (good.iter().map(|&(n, v)| if n == "path" { (n, "a.mp4") } else { (n, v) }).collect(), "not absolute"),
            (good.iter().map(|&(n, v)| if n == "blake3" { (n, "xyz") } else { (n, v) }).collect(), "blake3"),
            (good.iter().map(|&(n, v)| if n == "size" { (n, "-1") } else { (n, v) }).collect(), "size"),
            (good.iter().map(|&(n, v)| if n == "settings" { (n, r#"{"frames":1000000}"#) } else { (n, v) }).collect(), "frames"),
            (good.iter().map(|&(n, v)| if n == "settings" { (n, r#"{"exec":"sh"}"#) } else { (n, v) }).collect(), "unknown field"),
            (good.iter().filter(|(n, _)| *n != "size").copied().collect(), "blake3 and size"),
        ];
        for (fields, why) in cases {
            let err = Job::parse(&owned(&fields)).unwrap_err();
            assert!(err.contains(why), "{fields:?}: {err}");
        }
        let long = "/".repeat(MAX_PATH + 1);
        assert!(Job::parse(&owned(&[("v", "1"), ("path", &long)])).unwrap_err().contains("path is"));
        assert!(sample(&owned(&[("x", &"y".repeat(5000))])).len() < 600);
    }

    #[test]
    fn roots_are_whole_components() {
        let roots = [PathBuf::from("/data/in")];
        assert!(under_roots(Path::new("/data/in/a.mp4"), &roots));
        assert!(!under_roots(Path::new("/data/inbox/a.mp4"), &roots));
        assert!(!under_roots(Path::new("/etc/passwd"), &roots));
    }
}
