//! What to scan: files, directories (recursive, by extension), and `-` for paths on stdin.
//! Produces a lazy stream, so a huge directory or an endless stdin starts scanning at once.
use std::io::BufRead;
use std::path::{Path, PathBuf};

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

pub fn is_media(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
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
        Ok(_) => None,
        // An unreadable folder or a symlink loop is reported once, as its own line.
        Err(err) => Some(Input {
            path: err.path().map(Path::to_path_buf).unwrap_or_default(),
            problem: Some(format!("cannot walk: {err}")),
        }),
    })
}
