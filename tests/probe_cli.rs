//! Linear probes end to end: `cv` holds out each origin, `train --probe` writes a model that
//! carries the cache's crop contract and scans like any other, `fit-ensemble` turns held-out
//! scores into a stacker, and `scan --ensemble` combines its members by the stacker's weights.
mod common;

use common::*;
use dfscan::crops::dataset::Label;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cv_train_probe_fit_ensemble_and_scan_with_it() {
    let Some(_) = set_up_file("probe_cli", repo().join("models/public/efficientnet-lite0-57934424.safetensors")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    // 8 inputs, labels alternating, in origins o0 and o1 (see tinted_noise_cache).
    let inputs: Vec<(Label, usize)> = (0..8).map(|i| (if i % 2 == 0 { Label::Real } else { Label::Fake }, 3)).collect();
    tinted_noise_cache(&crops, &inputs);
    let spec = dfscan::faces::crop::CropSpec { detector: dfscan::faces::DetectorKind::Res10, margin: 0.3, side: 32 };
    std::fs::write(crops.join("crops.json"), serde_json::to_string(&spec).unwrap()).unwrap();

    let report = dir.path().join("cv.json");
    let out = dfscan(&["cv", "--crops", s(&crops), "--sbi-views", "1", "--report", s(&report)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("o0") && table.contains("o1") && table.contains("labelled+sbi"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["folds"].as_array().unwrap().len(), 2);
    assert_eq!(json["rows"].as_array().unwrap().len(), 3);
    assert_eq!(json["out_of_fold"].as_array().unwrap().len(), 8, "every input scored once, while held out");
    // The features were cached: a second run reads them (and gives the same table).
    let again = dfscan(&["cv", "--crops", s(&crops), "--sbi-views", "1"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), table);

    let probe = dir.path().join("probe.safetensors");
    let out = dfscan(&["train", "--arch", "efficientnet-lite0", "--probe", "labelled-sbi", "--sbi-views", "1", "--crops", s(&crops), "-o", s(&probe), "--val-fraction", "0", "--test-fraction", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = dfscan::models::FaceModel::load(&probe, tch::Device::Cpu).unwrap();
    assert_eq!(model.header.preprocess.crop, Some(spec), "the probe carries the cache's crop contract");
    assert_eq!(model.id.name, "efficientnet-lite0");

    let stacker = dir.path().join("stacker.json");
    let member = format!("1={}", s(&probe));
    let out = dfscan(&["fit-ensemble", "--report", s(&report), "--member", &member, "-o", s(&stacker)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fitted: dfscan::aggregate::Stacker = serde_json::from_str(&std::fs::read_to_string(&stacker).unwrap()).unwrap();
    assert_eq!(fitted.members, [s(&probe)]);

    let pan = samples().join("astronaut_pan.mp4");
    let out = dfscan(&["scan", "-q", "--no-state", "--ood-model", "none", "--frames", "4", "--ensemble", s(&stacker), s(&pan)]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    let member_score = line["models"][0]["score"].as_f64().unwrap() as f32;
    let want = fitted.combine(&[Some(member_score)]).unwrap();
    assert!((line["score"].as_f64().unwrap() as f32 - want).abs() < 1e-5, "{line}");
    // The stacker is part of the identity: not the member's own hash.
    assert_ne!(line["model"]["blake3"], line["models"][0]["blake3"]);
}
