//! The landmark cache that `dfscan train --arch lrnet` and `dfscan cv --lrnet` read: per
//! video of a manifest, each face track's runs of consecutive frames as LRNet's rows, both
//! calibrated and raw (`faces::calibrate`), made once by `dfscan extract --landmarks` with the
//! scan's own pipeline (decode, clips, detection, tracking, FaceMesh, calibration), so LRNet
//! trains on exactly what `dfscan scan --models lrnet` feeds it.
//!
//! A cache folder holds `landmarks.json` ([`CacheSettings`]: how it was made; a resumed
//! extraction must use the same) and `inputs/`, one JSON file per input ([`LandmarkRecord`]),
//! written whole (a temporary file renamed), so an interrupted extraction resumes where it
//! stopped. Rows are stored as integers: calibration measures points in whole pixels of the
//! 400x400 face, so a value v in [-1, 1] is the pixel p = 200 v + 200, and (p - 200) / 200
//! gives v back bit for bit.
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::dataset::Label;
use crate::faces::calibrate::{LandmarkRun, TrackLandmarks};

pub const SETTINGS_FILE: &str = "landmarks.json";
pub const INPUTS_DIR: &str = "inputs";
/// Half the calibrated face's side: a row's value v is the pixel 200 v + 200.
const HALF: f32 = (crate::models::lrnet::FACE_SIDE / 2) as f32;

/// How a cache was made: what must match for its records to belong together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Clips per video and frames per clip (`--clips`, `--clip-len`).
    pub clips: usize,
    pub clip_len: usize,
    pub detector: crate::faces::DetectorKind,
    pub min_face_confidence: f32,
    /// The landmarker's weights file and BLAKE3 (as JSON lines name a model).
    pub landmarker: String,
}

/// One input of the manifest, with its tracks' landmark runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LandmarkRecord {
    /// The input's path, as the manifest gave it (the unit of video-level metrics).
    pub source: String,
    pub label: Label,
    pub group: String,
    pub origin: String,
    /// Frames the scan kept (what its track filter counts against, see `aggregate`).
    pub frames_sampled: usize,
    /// Why the scan could not make the runs (unreadable input, a calibration failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "stored")]
    pub tracks: Vec<TrackLandmarks>,
}

/// An open cache: its settings and every record, in file-name order.
pub struct LandmarkSet {
    pub dir: PathBuf,
    pub settings: CacheSettings,
    pub records: Vec<LandmarkRecord>,
}

impl LandmarkSet {
    pub fn open(dir: &Path) -> Result<Self> {
        let settings = read_settings(dir)?.with_context(|| format!("{} is no landmark cache (run `dfscan extract --landmarks` first)", dir.display()))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(INPUTS_DIR))
            .with_context(|| format!("reading {}", dir.join(INPUTS_DIR).display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        let records = files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p)?).with_context(|| format!("parsing {}", p.display())))
            .collect::<Result<Vec<LandmarkRecord>>>()?;
        ensure!(!records.is_empty(), "{} holds no records", dir.display());
        Ok(Self { dir: dir.to_path_buf(), settings, records })
    }

    /// The distinct origins of the records, sorted.
    pub fn origins(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = self.records.iter().map(|r| r.origin.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }
}

/// The settings of the cache at `dir`, None if it has none yet.
pub fn read_settings(dir: &Path) -> Result<Option<CacheSettings>> {
    let path = dir.join(SETTINGS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(json) => Ok(Some(serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates the cache at `dir`, or checks that the one there was made with `settings`.
pub fn create_or_resume(dir: &Path, settings: &CacheSettings) -> Result<()> {
    std::fs::create_dir_all(dir.join(INPUTS_DIR)).with_context(|| format!("creating {}", dir.display()))?;
    match read_settings(dir)? {
        Some(old) => ensure!(&old == settings, "{} was made with {old:?}; this extraction has {settings:?} (use another folder)", dir.display()),
        None => std::fs::write(dir.join(SETTINGS_FILE), serde_json::to_string_pretty(settings)?)?,
    }
    Ok(())
}

/// Where the record of the input `source` goes: its file stem and a hash of its whole path.
pub fn record_path(dir: &Path, source: &str) -> PathBuf {
    let stem = Path::new(source).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stem: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(60).collect();
    dir.join(INPUTS_DIR).join(format!("{stem}-{}.json", &blake3::hash(source.as_bytes()).to_hex()[..12]))
}

/// Writes `record` whole: to a temporary file, renamed into place.
pub fn write_record(dir: &Path, record: &LandmarkRecord) -> Result<()> {
    let path = record_path(dir, &record.source);
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, serde_json::to_vec(record)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// Rows as whole pixels of the calibrated face (see the module's text).
mod stored {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Track {
        id: u32,
        runs: Vec<Run>,
    }

    #[derive(Serialize, Deserialize)]
    struct Run {
        clip: usize,
        start: usize,
        calibrated: Vec<Vec<i16>>,
        raw: Vec<Vec<i16>>,
    }

    fn to_pixels(rows: &[Vec<f32>]) -> Vec<Vec<i16>> {
        rows.iter().map(|r| r.iter().map(|&v| (v * HALF + HALF).round() as i16).collect()).collect()
    }

    fn from_pixels(rows: Vec<Vec<i16>>) -> Vec<Vec<f32>> {
        rows.into_iter().map(|r| r.into_iter().map(|p| (p as f32 - HALF) / HALF).collect()).collect()
    }

    pub fn serialize<S: serde::Serializer>(tracks: &[TrackLandmarks], s: S) -> Result<S::Ok, S::Error> {
        let stored: Vec<Track> = tracks
            .iter()
            .map(|t| Track {
                id: t.id,
                runs: t.runs.iter().map(|r| Run { clip: r.clip, start: r.start, calibrated: to_pixels(&r.calibrated), raw: to_pixels(&r.raw) }).collect(),
            })
            .collect();
        stored.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TrackLandmarks>, D::Error> {
        let stored = Vec::<Track>::deserialize(d)?;
        Ok(stored
            .into_iter()
            .map(|t| TrackLandmarks {
                id: t.id,
                runs: t.runs.into_iter().map(|r| LandmarkRun { clip: r.clip, start: r.start, calibrated: from_pixels(r.calibrated), raw: from_pixels(r.raw) }).collect(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_cache_bit_for_bit() {
        // Values as calibration makes them: (p - 200) / 200 for whole pixels p, some outside the box.
        let row = |k: i32| (0..136).map(|i| ((i * 7 + k) % 460 - 30) as f32).map(|p| (p - HALF) / HALF).collect::<Vec<f32>>();
        let run = LandmarkRun { clip: 1, start: 3, calibrated: (0..31).map(row).collect(), raw: (5..36).map(row).collect() };
        let record = LandmarkRecord {
            source: "/data/a b/clip.mp4".into(),
            label: Label::Fake,
            group: "g".into(),
            origin: "o".into(),
            frames_sampled: 62,
            error: None,
            tracks: vec![TrackLandmarks { id: 2, runs: vec![run] }],
        };
        let dir = tempfile::tempdir().unwrap();
        let settings = CacheSettings { clips: 2, clip_len: 61, detector: crate::faces::DetectorKind::Res10, min_face_confidence: 0.5, landmarker: "facemesh.safetensors@0".into() };
        create_or_resume(dir.path(), &settings).unwrap();
        write_record(dir.path(), &record).unwrap();
        let set = LandmarkSet::open(dir.path()).unwrap();
        assert_eq!(set.records, [record.clone()]);
        assert_eq!(set.settings, settings);
        assert!(record_path(dir.path(), &record.source).file_name().unwrap().to_string_lossy().starts_with("clip-"));
        // Another extraction's settings are refused, the same ones resume.
        create_or_resume(dir.path(), &settings).unwrap();
        assert!(create_or_resume(dir.path(), &CacheSettings { clips: 3, ..settings }).is_err());
    }
}
