//! train-ood -> eval --ood through the real binary, on a crop cache written here and a
//! one-block ViT made by the library: the VAE's loss falls, the file loads with its heads,
//! and eval compares the abnormality module with MSP and ODIN.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use dfscan::models::vit::VitConfig;
use dfscan::models::weights::{self, Header, NetworkConfig, Preprocess};
use dfscan::models::FaceModel;
use tch::{Device, Tensor};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ViT classifier file as `dfscan train` writes one, with one block instead of twelve so
/// that the test is quick.
fn small_vit(dir: &Path) -> PathBuf {
    tch::manual_seed(5);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg = VitConfig { depth: 1, ..VitConfig::deit_tiny_distilled() };
    let network = NetworkConfig::Vit(cfg);
    let _net = dfscan::models::build_network(&vs.root(), &network);
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let header = Header { format: weights::FORMAT_VERSION, network, preprocess: Preprocess::deit(), provenance: "test ViT".into(), ood: None };
    let path = dir.join("vit.safetensors");
    weights::save(&path, &tensors, &header).unwrap();
    path
}

/// stderr's JSON lines of one stage, as `train-ood` reports each epoch.
fn epochs(stderr: &str, stage: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["stage"] == stage)
        .map(|l| l["epoch"].clone())
        .collect()
}

#[test]
fn train_ood_then_eval_ood() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("vit-ood.safetensors"));
    crop_cache(&cache, 12);
    let vit = small_vit(tmp.path());
    let split = ["--split-seed", "1", "--val-fraction", "0.4", "--test-fraction", "0"];

    let mut args = vec![
        "train-ood", "--model", s(&vit), "--crops", s(&cache), "-o", s(&out), "--batch-size", "4", "--vae-epochs", "4",
        "--vae-lr", "3e-3", "--abnormality-epochs", "2", "--storage", "f16", "--device", "cpu",
    ];
    args.extend(split);
    let run = dfscan(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let vae = epochs(&stderr, "vae");
    assert_eq!(vae.len(), 4, "{stderr}");
    let l1: Vec<f64> = vae.iter().map(|e| e["reconstruction"].as_f64().unwrap()).collect();
    assert!(l1[3] < l1[0], "the VAE's reconstruction loss should fall: {l1:?}");
    assert!(vae[0]["val_reconstruction"].as_f64().is_some(), "a val split exists: {stderr}");
    let abnormality = epochs(&stderr, "abnormality");
    assert_eq!(abnormality.len(), 2, "{stderr}");
    let auroc = abnormality[0]["val"]["auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc));

    let model = FaceModel::load(&out, Device::Cpu).unwrap();
    assert!(model.has_ood());
    assert!(model.header.provenance.contains("train-ood") && model.header.provenance.contains("val AUROC"), "{}", model.header.provenance);
    let scores = model.score(&astronaut_crop(224)).unwrap();
    let risk = scores.ood_risk.unwrap()[0];
    assert!((0.0..=1.0).contains(&risk), "risk {risk}");

    // A folder of images that are no face crops: one wide, one tall, taken whole.
    let images = tmp.path().join("scenery");
    std::fs::create_dir_all(&images).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=320x180", "-frames:v", "1", s(&images.join("wide.png"))]);
    ffmpeg(&["-f", "lavfi", "-i", "mandelbrot=size=120x200", "-frames:v", "1", s(&images.join("tall.jpg"))]);
    let report = tmp.path().join("ood.json");
    let mut args = vec![
        "eval", "--model", s(&out), "--crops", s(&cache), "--split", "val", "--ood", s(&images), "--ood-synthetic",
        "--max-crops", "3", "--report", s(&report), "--device", "cpu",
    ];
    args.extend(split);
    let run = dfscan(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let table = String::from_utf8_lossy(&run.stdout);
    for word in ["abnormality", "MSP", "ODIN", "scenery", "synthetic-jpeg", "pooled", "AUROC", "FPR@95"] {
        assert!(table.contains(word), "{word} missing:\n{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let sets = json["sets"].as_array().unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["scenery", "synthetic-blur", "synthetic-noise", "synthetic-scaled-noise", "synthetic-rotated-noise", "synthetic-jpeg", "pooled"]);
    assert_eq!(sets[0]["crops"], 2);
    assert_eq!(sets[6]["crops"], 2 + 5 * json["id_crops"].as_u64().unwrap());
    for set in sets {
        for method in ["abnormality", "msp", "odin"] {
            let m = &set["metrics"][method];
            for key in ["auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_error"] {
                let v = m[key].as_f64().unwrap_or_else(|| panic!("{}: {method}.{key} missing: {m}", set["name"]));
                assert!((0.0..=1.0).contains(&v), "{method}.{key} = {v}");
            }
        }
    }
    assert_eq!(json["odin"]["temperature"], 1000.0);
    assert!(json["id_crops"].as_u64().unwrap() <= 3);
}
