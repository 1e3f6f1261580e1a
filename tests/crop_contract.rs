//! The crop contract: a weights file says how its faces were cut (detector, margin, side), and
//! the scan cuts that model's faces the same way, unless `--margin` overrides; `extract` and
//! `scan` cut identical pixels for the same frame. Observed through scores, which move when
//! any pixel of a crop moves.
mod common;

use common::*;
use dfscan::faces::crop::CropSpec;
use dfscan::faces::DetectorKind;
use dfscan::models::meso::MesoConfig;
use dfscan::models::weights::{self, Header, NetworkConfig, Preprocess};
use tch::nn;

/// An untrained MesoInception4 whose header records `crop` (random weights: plumbing, not accuracy).
fn meso_with_crop(path: &std::path::Path, crop: Option<CropSpec>) -> std::path::PathBuf {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let network = NetworkConfig::Meso(MesoConfig::mesoinception4_torch());
    let _net = dfscan::models::build_network(&vs.root(), &network);
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let header = Header {
        format: weights::FORMAT_VERSION,
        network,
        preprocess: Preprocess { crop, ..Preprocess::meso_torch() },
        provenance: "test: untrained, with a crop contract".into(),
        ood: None,
    };
    weights::save(path, &tensors, &header).unwrap();
    path.to_path_buf()
}

/// Each face's logit in the line's per-frame evidence, by frame index.
fn face_logits(line: &serde_json::Value) -> Vec<(u64, f64)> {
    line["frames"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["faces"].as_array().unwrap().iter().map(move |face| (f["index"].as_u64().unwrap(), face["logit"].as_f64().unwrap())))
        .collect()
}

fn scan_logits(model: &std::path::Path, extra: &[&str]) -> Vec<(u64, f64)> {
    let clip = samples().join("astronaut_pan.mp4");
    let mut args = vec!["scan", "-q", "--no-state", "--ood-model", "none", "--per-frame", "--frames", "4", "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(clip.to_str().unwrap());
    let out = dfscan(&args);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["status"], "ok", "{lines:#?}");
    face_logits(&lines[0])
}

fn differ(a: &[(u64, f64)], b: &[(u64, f64)]) -> bool {
    a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0 || (x.1 - y.1).abs() > 1e-4)
}

#[test]
fn a_model_scans_at_the_margin_it_was_trained_at_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CropSpec { detector: DetectorKind::Res10, margin: 0.2, side: 256 };
    let model = meso_with_crop(&dir.path().join("m02.safetensors"), Some(spec));
    let own = scan_logits(&model, &[]);
    assert!(!own.is_empty());
    // Its own contract is what --margin 0.2 spells out; 0.3 (the old default) cuts other pixels.
    assert!(!differ(&own, &scan_logits(&model, &["--margin", "0.2"])), "the header's margin 0.2 is not what the scan used");
    assert!(differ(&own, &scan_logits(&model, &["--margin", "0.3"])), "--margin 0.3 did not override the header");
    // A file without a contract scans at 0.3, as before contracts existed.
    let legacy = meso_with_crop(&dir.path().join("legacy.safetensors"), None);
    assert!(!differ(&scan_logits(&legacy, &[]), &scan_logits(&legacy, &["--margin", "0.3"])));
}

#[test]
fn extract_and_scan_cut_identical_pixels() {
    let dir = tempfile::tempdir().unwrap();
    // Cut at 240 and resized to the model's 256, on both sides: the resize is part of the contract.
    // Both sides at their default detector (yunet320).
    let spec = CropSpec { detector: DetectorKind::Yunet320, margin: 0.25, side: 240 };
    let model = meso_with_crop(&dir.path().join("m.safetensors"), Some(spec));
    let manifest = dir.path().join("manifest.csv");
    std::fs::write(&manifest, format!("path,label\n{},real\n", samples().join("astronaut_pan.mp4").display())).unwrap();
    let cache = dir.path().join("crops");
    let out = dfscan(&["extract", manifest.to_str().unwrap(), "-o", cache.to_str().unwrap(), "--frames", "4", "--margin", "0.25", "--size", "240"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set = dfscan::crops::dataset::CropSet::open(&cache).unwrap();
    assert_eq!(set.spec, Some(spec), "crops.json records the contract");
    let loaded = dfscan::models::FaceModel::load(&model, tch::Device::Cpu).unwrap();
    let probs = dfscan::train::cv::crop_probs(&set, &loaded, 8).unwrap();
    let extracted: Vec<(u64, f64)> = set.records.iter().zip(&probs).map(|(r, &p)| (r.frame as u64, (p as f64 / (1.0 - p as f64)).ln())).collect();
    let scanned = scan_logits(&model, &[]);
    assert_eq!(extracted.len(), scanned.len(), "one face per frame on both sides");
    // The logit through P(fake) and back loses a little precision; a one-pixel shift moves it by far more.
    for (e, s) in extracted.iter().zip(&scanned) {
        assert_eq!(e.0, s.0);
        assert!((e.1 - s.1).abs() < 1e-3, "frame {}: extract {} vs scan {}", e.0, e.1, s.1);
    }
    // Extracting into the same folder with another contract is refused (one cache, one contract).
    let again = dfscan(&["extract", manifest.to_str().unwrap(), "-o", cache.to_str().unwrap(), "--frames", "4", "--size", "256"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("another folder"));
}
