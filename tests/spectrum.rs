//! The spectrum detector end to end: `train --arch spectrum` fits each kind of classifier on a
//! crop cache and writes a weights file that `FaceModel` loads strictly and scores new crops
//! with; `cv --spectrum` fits it per held-out origin; `scan --models` runs it on a video.
mod common;

use common::*;
use dfscan::crops::dataset::{CropRecord, Label, INDEX_FILE};
use opencv::core::{self, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

const SIDE: i32 = 64;
const INPUTS: u64 = 160;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A `SIDE` x `SIDE` RGB crop of seeded noise: sharp for a real, or downscaled by 2 and
/// upscaled back for a fake (the upsampling trace the spectrum detector looks for).
fn crop(fake: bool, seed: u64) -> Vec<u8> {
    let mut noise = Mat::new_rows_cols_with_default(SIDE, SIDE, core::CV_8UC3, core::Scalar::all(0.0)).unwrap();
    core::RNG::new(seed).unwrap().fill(&mut noise, core::RNG_UNIFORM, &core::Scalar::all(40.0), &core::Scalar::all(220.0), false).unwrap();
    if !fake {
        return noise.data_bytes().unwrap().to_vec();
    }
    let (mut small, mut up) = (Mat::default(), Mat::default());
    imgproc::resize(&noise, &mut small, Size::new(SIDE / 2, SIDE / 2), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    imgproc::resize(&small, &mut up, Size::new(SIDE, SIDE), 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
    up.data_bytes().unwrap().to_vec()
}

/// A cache of 160 inputs x 4 crops, labels alternating, origins "a" and "b" in pairs: an SVM
/// needs at least as many rows as the spectrum's 300 points (see dfscan-classical), and each
/// cv fold trains on one origin's 320.
fn cache(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    let mut index = csv::Writer::from_path(dir.join(INDEX_FILE)).unwrap();
    for n in 0..INPUTS {
        let label = if n % 2 == 1 { Label::Fake } else { Label::Real };
        for frame in 0..4 {
            let file = format!("crops/{n}_{frame}.png");
            dfscan::faces::crop::write_rgb_png(&dir.join(&file), &crop(label.is_fake(), 100 * n + frame), SIDE).unwrap();
            let source = format!("input-{n}.mp4");
            let origin = if n / 2 % 2 == 0 { "a" } else { "b" };
            index.serialize(CropRecord { file, label, group: source.clone(), source, frame: frame as usize, pts_s: 0.0, confidence: 1.0, origin: origin.into() }).unwrap();
        }
    }
    index.flush().unwrap();
    let spec = dfscan::faces::crop::CropSpec { detector: dfscan::faces::DetectorKind::Res10, margin: 0.3, side: SIDE };
    std::fs::write(dir.join("crops.json"), serde_json::to_string(&spec).unwrap()).unwrap();
}

#[test]
fn train_load_score_cv_and_scan_with_a_spectrum_model() {
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    cache(&crops);
    // New crops, never fitted on: 20 of each class.
    let held_out: Vec<(bool, Vec<u8>)> = (0..40).map(|i| (i % 2 == 1, crop(i % 2 == 1, 10_000 + i))).collect();
    let batch = dfscan::models::crop_batch(held_out.iter().map(|(_, c)| c), SIDE as i64);
    let labels: Vec<bool> = held_out.iter().map(|(f, _)| *f).collect();
    let mut models = Vec::new();
    for classifier in ["logistic", "svm-poly", "svm-rbf", "svm-linear", "svm-sigmoid"] {
        let path = dir.path().join(format!("{classifier}.safetensors"));
        let out = dfscan(&["train", "--arch", "spectrum", "--classifier", classifier, "--crops", s(&crops), "-o", s(&path), "--val-fraction", "0", "--test-fraction", "0"]);
        assert!(out.status.success(), "{classifier}: {}", String::from_utf8_lossy(&out.stderr));
        let model = dfscan::models::FaceModel::load(&path, tch::Device::Cpu).unwrap();
        assert_eq!(model.id.name, "spectrum");
        assert_eq!(model.input_size(), SIDE as i64, "read at the side the cache was cut at");
        assert_eq!(model.header.preprocess.crop.map(|c| c.side), Some(SIDE));
        let scores = model.score(&batch).unwrap();
        assert!(scores.ood_risk.is_none() && scores.attention.is_none());
        let auc = dfscan::eval::metrics::roc_auc(&scores.logits, &labels).unwrap();
        assert!(auc > 0.9, "{classifier}: held-out AUC {auc}");
        // fake_logits and score agree.
        let logits = Vec::<f32>::try_from(model.fake_logits(&batch)).unwrap();
        assert_eq!(logits, scores.logits);
        models.push(path);
    }

    // Cross-source: each origin held out once, the classifiers fitted on the other.
    let report = dir.path().join("cv.json");
    let out = dfscan(&["cv", "--crops", s(&crops), "--no-probes", "--spectrum", "logistic,svm-rbf", "--report", s(&report)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["name"].as_str().unwrap()).collect::<Vec<_>>(), ["spectrum logistic", "spectrum svm-rbf"]);
    for row in rows {
        assert!(row["seen"].as_array().unwrap().is_empty(), "folded rows are never in-sample");
        for auc in row["auc"].as_array().unwrap() {
            assert!(auc.as_f64().unwrap() > 0.9, "{row}");
        }
    }
    assert_eq!(json["out_of_fold"].as_array().unwrap().len(), INPUTS as usize);
    // Nothing to report is an error, not an empty table.
    assert!(!dfscan(&["cv", "--crops", s(&crops), "--no-probes"]).status.success());

    // The scan runs it like any frame model.
    let pan = samples().join("astronaut_pan.mp4");
    let out = dfscan(&["scan", "-q", "--no-state", "--ood-model", "none", "--frames", "4", "--models", s(&models[1]), s(&pan)]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    assert_eq!(line["model"]["name"], "spectrum", "{line}");
    let score = line["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{line}");
}

/// The shipped file (models/spectrum.md) scans by its name, at the side it was fitted at.
#[test]
fn the_shipped_spectrum_model_scans_by_name() {
    let out = dfscan(&["scan", "-q", "--no-state", "--ood-model", "none", "--attribution", "none", "--frames", "4", "--models", "spectrum", s(&samples().join("astronaut_pan.mp4"))]);
    let line = &json_lines(&out)[0];
    assert_eq!((&line["status"], &line["model"]["name"]), (&"ok".into(), &"spectrum".into()), "{line}");
    assert!(line["score"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)), "{line}");
}
