//! Labelled inputs and the face-crop cache that training and evaluation read.
//!
//! A manifest lists inputs (`path,label[,group][,faces]`); `dfscan extract` turns it into a
//! crop cache: PNG crops plus `index.csv`, one row per crop with its label, source and group.
//! Splits are drawn per *group*, never per file, so a fake and the real it was made from (or
//! two clips of one person) can never sit on both sides.
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::faces::crop::CropSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Real,
    Fake,
}

impl Label {
    pub fn is_fake(self) -> bool {
        self == Label::Fake
    }
}

/// How faces are taken from an input at extraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FacesMode {
    /// Run the face detector (videos, full frames).
    Detect,
    /// The input already is a face crop.
    Whole,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    pub path: PathBuf,
    pub label: Label,
    /// Items that must stay on one side of a split share a group (default: the path itself).
    #[serde(default)]
    pub group: String,
    #[serde(default = "default_faces")]
    pub faces: FacesMode,
    /// Where the input comes from (a dataset or corpus family, e.g. "deepfacelive"): the unit
    /// that cross-source validation (`dfscan cv`) holds out. Empty when the manifest has none.
    #[serde(default)]
    pub origin: String,
}

fn default_faces() -> FacesMode {
    FacesMode::Detect
}

/// Reads a CSV manifest (header `path,label[,group][,faces]`); relative paths are taken from
/// the manifest's folder. Alternatively `source` may be a folder with `real/` and `fake/`.
pub fn read_manifest(source: &Path) -> Result<Vec<ManifestRow>> {
    if source.is_dir() {
        return manifest_from_folders(source);
    }
    let base = source.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(source).with_context(|| format!("reading manifest {}", source.display()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<ManifestRow>().enumerate() {
        let mut row = row.with_context(|| format!("{} row {}", source.display(), i + 2))?;
        if row.path.is_relative() {
            row.path = base.join(&row.path);
        }
        if row.group.is_empty() {
            row.group = row.path.to_string_lossy().into_owned();
        }
        rows.push(row);
    }
    ensure!(!rows.is_empty(), "{} lists no inputs", source.display());
    Ok(rows)
}

fn manifest_from_folders(dir: &Path) -> Result<Vec<ManifestRow>> {
    let mut rows = Vec::new();
    for (sub, label) in [("real", Label::Real), ("fake", Label::Fake)] {
        for input in crate::inputs::expand(vec![dir.join(sub)]).filter(|i| i.problem.is_none()) {
            let group = input.path.to_string_lossy().into_owned();
            rows.push(ManifestRow { path: input.path, label, group, faces: FacesMode::Detect, origin: String::new() });
        }
    }
    if rows.is_empty() {
        bail!("{} has no media under real/ or fake/", dir.display());
    }
    Ok(rows)
}

/// One cached crop (a row of `index.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropRecord {
    /// PNG file, relative to the cache folder.
    pub file: String,
    pub label: Label,
    pub group: String,
    /// The input the crop came from (the unit of video-level metrics).
    pub source: String,
    pub frame: usize,
    pub pts_s: f64,
    pub confidence: f32,
    /// The input's origin (see [`ManifestRow::origin`]); empty in caches made before it existed.
    #[serde(default)]
    pub origin: String,
}

pub const INDEX_FILE: &str = "index.csv";
/// The crop contract of a cache ([`CropSpec`]), written by `dfscan extract` beside the index.
pub const SPEC_FILE: &str = "crops.json";

/// A crop cache folder: `index.csv`, the PNGs it names, and how they were cut (`crops.json`).
pub struct CropSet {
    pub dir: PathBuf,
    pub records: Vec<CropRecord>,
    /// None for a cache made before the contract was recorded.
    pub spec: Option<CropSpec>,
}

impl CropSet {
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join(INDEX_FILE);
        let mut reader = csv::Reader::from_path(&index).with_context(|| format!("reading {} (run `dfscan extract` first)", index.display()))?;
        let records = reader.deserialize().collect::<Result<Vec<CropRecord>, _>>().with_context(|| format!("parsing {}", index.display()))?;
        ensure!(!records.is_empty(), "{} holds no crops", index.display());
        let spec_path = dir.join(SPEC_FILE);
        let spec = match std::fs::read_to_string(&spec_path) {
            Ok(json) => Some(serde_json::from_str(&json).with_context(|| format!("parsing {}", spec_path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", spec_path.display())),
        };
        Ok(Self { dir: dir.to_path_buf(), records, spec })
    }

    /// The distinct origins of the records, sorted.
    pub fn origins(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = self.records.iter().map(|r| r.origin.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Indices of the records in `split`.
    pub fn split(&self, split: Split, plan: &SplitPlan) -> Vec<usize> {
        (0..self.records.len()).filter(|&i| plan.split_of(&self.records[i].group) == split).collect()
    }

    /// The examples a model sees among the crops `idx`, as positions in `idx`: for a frame
    /// model (`frames` None) each crop alone; for a sequence model, each source input's crops
    /// in frame order cut into windows of `frames` ([`crate::models::sequence_windows`]; a
    /// shorter input is one short window, padded when batched). One face per frame, as
    /// `dfscan extract` keeps by default: with more, one window would mix faces.
    pub fn examples(&self, idx: &[usize], frames: Option<usize>) -> Vec<Vec<usize>> {
        let Some(length) = frames else { return (0..idx.len()).map(|k| vec![k]).collect() };
        let mut by_source: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
        for (k, &i) in idx.iter().enumerate() {
            by_source.entry(&self.records[i].source).or_default().push(k);
        }
        let mut examples = Vec::new();
        for mut track in by_source.into_values() {
            track.sort_by_key(|&k| self.records[idx[k]].frame);
            examples.extend(crate::models::sequence_windows(track.len(), length).into_iter().map(|w| track[w].to_vec()));
        }
        examples
    }

    /// Loads the RGB pixels of the crop `i`, resized to `size` if stored at another size.
    pub fn load_rgb(&self, i: usize, size: i32) -> Result<Vec<u8>> {
        crate::faces::crop::read_rgb_png(&self.dir.join(&self.records[i].file), size)
    }
}

/// Every image of `dir` at `size`: all crops of a crop cache (a folder with `index.csv`), or
/// else every still image under the folder, taken whole and resized. For out-of-distribution
/// sets, which have no labels or splits.
pub fn load_images(dir: &Path, size: i32) -> Result<Vec<Vec<u8>>> {
    if dir.join(INDEX_FILE).is_file() {
        let set = CropSet::open(dir)?;
        return (0..set.records.len()).map(|i| set.load_rgb(i, size)).collect();
    }
    ensure!(dir.is_dir(), "{} is neither a crop cache nor a folder of images", dir.display());
    let images = crate::inputs::expand(vec![dir.to_path_buf()])
        .map(|input| match input.problem {
            Some(problem) => bail!("{}: {problem}", input.path.display()),
            None => Ok(input.path),
        })
        .filter(|path| path.as_ref().map_or(true, |p| crate::inputs::is_still_image(p)))
        .map(|path| crate::faces::crop::read_rgb_whole(&path?, size))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!images.is_empty(), "{} holds no images", dir.display());
    Ok(images)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

/// A deterministic group -> split assignment: each group lands where a seeded hash of its
/// name falls, so the assignment is stable across runs and never depends on file order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
}

impl SplitPlan {
    pub fn split_of(&self, group: &str) -> Split {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(group.as_bytes());
        let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes");
        let u = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
        if u < self.test_fraction {
            Split::Test
        } else if u < self.test_fraction + self.val_fraction {
            Split::Val
        } else {
            Split::Train
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_group_never_straddles_splits() {
        let plan = SplitPlan { seed: 7, val_fraction: 0.15, test_fraction: 0.15 };
        let mut seen: HashMap<String, Split> = HashMap::new();
        // 400 groups with 5 items each, visited in an interleaved order.
        for item in 0..5 {
            for g in 0..400 {
                let group = format!("group-{g}");
                let split = plan.split_of(&group);
                assert_eq!(*seen.entry(group).or_insert(split), split, "item {item} of group {g}");
            }
        }
        let count = |s: Split| seen.values().filter(|&&v| v == s).count();
        // Fractions are close to the plan (400 draws: within a few percent).
        assert!((40..=80).contains(&count(Split::Val)), "val {}", count(Split::Val));
        assert!((40..=80).contains(&count(Split::Test)), "test {}", count(Split::Test));
        // Another seed gives another assignment.
        let other = SplitPlan { seed: 8, ..plan };
        assert!(seen.iter().any(|(g, s)| other.split_of(g) != *s));
    }

    #[test]
    fn sequence_examples_are_windows_of_one_source_in_frame_order() {
        let record = |source: &str, frame: usize| CropRecord {
            file: format!("{source}-{frame}.png"),
            label: Label::Real,
            group: source.into(),
            source: source.into(),
            frame,
            pts_s: 0.0,
            confidence: 1.0,
            origin: String::new(),
        };
        // Source "a" has 5 crops listed out of order, "b" one, interleaved with "a".
        let records = vec![record("a", 3), record("b", 0), record("a", 1), record("a", 5), record("a", 2), record("a", 4)];
        let set = CropSet { dir: PathBuf::new(), records, spec: None };
        let idx: Vec<usize> = (0..6).collect();
        assert_eq!(set.examples(&idx, None), [[0], [1], [2], [3], [4], [5]]);
        // Frames 1..5 of "a" in windows of 3, the last overlapping; "b" alone, to be padded.
        assert_eq!(set.examples(&idx, Some(3)), vec![vec![2, 4, 0], vec![0, 5, 3], vec![1]]);
        // Positions are in `idx`, not in the records.
        assert_eq!(set.examples(&[1, 3], Some(3)), vec![vec![1], vec![0]]);
    }

    #[test]
    fn a_folder_of_images_is_taken_whole_and_resized() {
        use opencv::core::{Mat, Scalar, CV_8UC3};
        let dir = tempfile::tempdir().unwrap();
        let wide = Mat::new_rows_cols_with_default(30, 50, CV_8UC3, Scalar::new(10.0, 20.0, 30.0, 0.0)).unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        assert!(opencv::imgcodecs::imwrite_def(dir.path().join("a/wide.png"), &wide).unwrap());
        std::fs::write(dir.path().join("a/notes.txt"), "not an image").unwrap();
        let images = load_images(dir.path(), 16).unwrap();
        assert_eq!(images.len(), 1);
        // BGR (10, 20, 30) read back as RGB.
        assert_eq!(images[0].len(), 16 * 16 * 3);
        assert_eq!(&images[0][..3], &[30, 20, 10]);
        assert!(load_images(&dir.path().join("a/notes.txt"), 16).is_err());
    }

    #[test]
    fn manifest_reads_relative_paths_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        std::fs::write(&csv, "path,label,group,faces\nclips/a.mp4,fake,pair1,detect\nb.jpg,real,,whole\n").unwrap();
        let rows = read_manifest(&csv).unwrap();
        assert_eq!(rows[0].path, dir.path().join("clips/a.mp4"));
        assert_eq!((rows[0].label, rows[0].group.as_str()), (Label::Fake, "pair1"));
        assert_eq!(rows[1].faces, FacesMode::Whole);
        assert_eq!(rows[1].group, dir.path().join("b.jpg").to_string_lossy());
    }
}
