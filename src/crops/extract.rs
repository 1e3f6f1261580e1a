//! `dfscan extract`: labelled inputs -> cached face crops, with the scan's own decode and
//! face stages (same sampling, detector, margin and crop function), so a model trains on
//! exactly what it will see when scanning.
use std::fs::OpenOptions;
use std::path::Path;

use anyhow::{Context, Result};

use super::dataset::{CropRecord, FacesMode, ManifestRow, INDEX_FILE, SPEC_FILE};
use crate::decode::{Sampler, Sampling, VideoSource};
use crate::faces::crop::CropSpec;
use crate::faces::{self, FaceDetector};

#[derive(Clone, Debug)]
pub struct ExtractConfig {
    pub sampling: Sampling,
    /// How faces are cut; recorded in the cache as `crops.json`.
    pub crop: CropSpec,
    /// Faces kept per frame, most confident first. 1 by default: a fake video can show real
    /// people beside the swapped face, and the extra faces would be labelled wrongly.
    pub faces_per_frame: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ExtractSummary {
    pub inputs: usize,
    pub skipped_already_done: usize,
    pub failed: Vec<(String, String)>,
    pub crops: usize,
}

/// What the caller hears per input (for progress).
pub enum ExtractEvent<'a> {
    Done { path: &'a Path, crops: usize },
    Failed { path: &'a Path, error: &'a str },
}

/// Extracts crops of `rows` into `out_dir`. Resumable: inputs already in the index are skipped.
pub fn extract(
    rows: &[ManifestRow],
    out_dir: &Path,
    detector: &mut dyn FaceDetector,
    cfg: &ExtractConfig,
    mut on_event: impl FnMut(ExtractEvent),
) -> Result<ExtractSummary> {
    std::fs::create_dir_all(out_dir.join("crops"))?;
    // One cache, one contract: resuming with other crop settings would mix two kinds of pixels.
    let spec_path = out_dir.join(SPEC_FILE);
    match std::fs::read_to_string(&spec_path) {
        Ok(json) => {
            let spec: CropSpec = serde_json::from_str(&json).with_context(|| format!("parsing {}", spec_path.display()))?;
            anyhow::ensure!(spec == cfg.crop, "{} was cut with {spec:?}; this run asks for {:?}: use another folder", out_dir.display(), cfg.crop);
        }
        Err(_) => std::fs::write(&spec_path, serde_json::to_string_pretty(&cfg.crop)?)?,
    }
    let index_path = out_dir.join(INDEX_FILE);
    let done: std::collections::HashSet<String> = if index_path.is_file() {
        csv::Reader::from_path(&index_path)?.deserialize::<CropRecord>().filter_map(Result::ok).map(|r| r.source).collect()
    } else {
        Default::default()
    };
    let fresh = !index_path.is_file();
    let file = OpenOptions::new().create(true).append(true).open(&index_path).with_context(|| format!("opening {}", index_path.display()))?;
    let mut index = csv::WriterBuilder::new().has_headers(fresh).from_writer(file);
    let mut summary = ExtractSummary::default();
    for (n, row) in rows.iter().enumerate() {
        let source = row.path.to_string_lossy().into_owned();
        if done.contains(&source) {
            summary.skipped_already_done += 1;
            continue;
        }
        summary.inputs += 1;
        match crops_of(row, detector, cfg) {
            Ok(crops) => {
                for (k, (frame, pts_s, confidence, rgb)) in crops.iter().enumerate() {
                    let file = format!("crops/{n:05}_{k:03}.png");
                    faces::crop::write_rgb_png(&out_dir.join(&file), rgb, cfg.crop.side)?;
                    index.serialize(CropRecord {
                        file,
                        label: row.label,
                        group: row.group.clone(),
                        source: source.clone(),
                        frame: *frame,
                        pts_s: *pts_s,
                        confidence: *confidence,
                        origin: row.origin.clone(),
                    })?;
                }
                // Rows of one input are flushed together, so an interrupted run resumes cleanly.
                index.flush()?;
                summary.crops += crops.len();
                on_event(ExtractEvent::Done { path: &row.path, crops: crops.len() });
            }
            Err(e) => {
                let msg = format!("{e:#}");
                on_event(ExtractEvent::Failed { path: &row.path, error: &msg });
                summary.failed.push((source, msg));
            }
        }
    }
    Ok(summary)
}

type Crop = (usize, f64, f32, Vec<u8>);

fn crops_of(row: &ManifestRow, detector: &mut dyn FaceDetector, cfg: &ExtractConfig) -> Result<Vec<Crop>> {
    let source = VideoSource::open(&row.path)?;
    let mut sampler = Sampler::new(cfg.sampling, source.info.duration_s);
    let mut crops = Vec::new();
    let mut frame_error = None;
    source.sample(&mut sampler, |frame| {
        let result: Result<()> = (|| {
            match row.faces {
                FacesMode::Whole => crops.push((frame.index, frame.pts_s, 1.0, faces::whole_frame(&frame, cfg.crop.side)?)),
                FacesMode::Detect => {
                    for det in detector.detect(&frame)?.into_iter().take(cfg.faces_per_frame) {
                        crops.push((frame.index, frame.pts_s, det.confidence, cfg.crop.cut(&frame, &det.bbox)?));
                    }
                }
            }
            Ok(())
        })();
        frame_error = result.err();
        Ok(frame_error.is_none())
    })?;
    if let Some(e) = frame_error {
        return Err(e);
    }
    anyhow::ensure!(!crops.is_empty(), "no face found");
    Ok(crops)
}
