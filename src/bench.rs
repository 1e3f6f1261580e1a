//! `dfscan bench`: per-stage throughput on one input, measured with the scan's own code.
//! Figures only; nothing here is asserted by tests (the machine is shared and timings vary).
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::decode::{Frame, Sampler, Sampling, VideoSource};
use crate::faces::{self, DetectorKind, FaceDetector};
use crate::models::AnyModel;

#[derive(Clone, Debug, Serialize)]
pub struct StageRate {
    pub stage: String,
    pub items: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// For a sequence model, whose items are sequences: crops scored per second (T per
    /// sequence, padding included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crops_per_second: Option<f64>,
}

fn rate(stage: &str, items: usize, started: Instant) -> StageRate {
    let seconds = started.elapsed().as_secs_f64();
    StageRate { stage: stage.into(), items, seconds, per_second: items as f64 / seconds.max(1e-9), crops_per_second: None }
}

/// Decodes every frame (and converts each to RGB), then detects, crops and scores them. A
/// sequence model scores the crops, in frame order, as windows of its T, `batch_size`
/// sequences per forward pass (a bench of the model, not of face tracking).
pub fn stages(path: &Path, detector: &mut dyn FaceDetector, detector_kind: DetectorKind, model: &AnyModel, batch_size: usize) -> Result<Vec<StageRate>> {
    let detector_name = format!("{detector_kind:?}").to_lowercase();
    let mut rates = Vec::new();
    let source = VideoSource::open(path)?;
    let mut sampler = Sampler::new(Sampling::Fps(1e6), None); // every frame
    let mut frames: Vec<Frame> = Vec::new();
    let started = Instant::now();
    source.sample(&mut sampler, |f| {
        frames.push(f);
        Ok(true)
    })?;
    rates.push(rate("decode+rgb (every frame)", frames.len(), started));
    ensure!(!frames.is_empty(), "no frames decoded");

    let started = Instant::now();
    let detections: Vec<_> = frames.iter().map(|f| detector.detect(f)).collect::<Result<_>>()?;
    rates.push(rate(&format!("detect ({detector_name})"), frames.len(), started));

    let size = model.input_size() as i32;
    // The model's own crop contract, as the scan cuts its faces.
    let spec = model.header().preprocess.crop.unwrap_or(faces::crop::CropSpec { detector: detector_kind, margin: faces::crop::DEFAULT_MARGIN, side: size });
    let started = Instant::now();
    let mut crops = Vec::new();
    for (frame, dets) in frames.iter().zip(&detections) {
        for d in dets {
            crops.push(spec.to_input(&spec.cut(frame, &d.bbox)?, size)?);
        }
    }
    rates.push(rate("crop+resize", crops.len(), started));
    ensure!(!crops.is_empty(), "no face found in {}: pick an input with faces", path.display());

    let frames = model.sequence_frames();
    let examples: Vec<&[Vec<u8>]> = match frames {
        None => crops.chunks(1).collect(),
        Some(t) => crate::models::sequence_windows(crops.len(), t as usize).into_iter().map(|w| &crops[w]).collect(),
    };
    let started = Instant::now();
    for chunk in examples.chunks(batch_size) {
        let _ = model.fake_logits(&crate::models::example_batch(chunk.iter().copied(), size as i64, frames));
    }
    let name = &model.id().name;
    rates.push(match frames {
        None => rate(&format!("infer ({name}, batch {batch_size})"), crops.len(), started),
        Some(t) => {
            let r = rate(&format!("infer ({name}, batch {batch_size} sequences of {t} crops)"), examples.len(), started);
            StageRate { crops_per_second: Some(r.per_second * t as f64), ..r }
        }
    });
    Ok(rates)
}
