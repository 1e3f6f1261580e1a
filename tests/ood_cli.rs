//! train-ood -> eval --ood through the real binary, on a crop cache written here and a
//! one-block ViT made by the library: the VAE's loss falls, the file loads with its heads,
//! and eval compares the abnormality module with MSP and ODIN. The same for an
//! EfficientNet-Lite0, whose heads read its own features (the default model's kind).
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

/// An EfficientNet-Lite0 classifier file as `dfscan train` writes one (untrained here).
fn lite0(dir: &Path) -> PathBuf {
    use dfscan::models::efficientnet::EfficientNetConfig;
    tch::manual_seed(6);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg = EfficientNetConfig::lite0();
    let preprocess = Preprocess::efficientnet_lite(&cfg);
    let network = NetworkConfig::EfficientNet(cfg);
    let _net = dfscan::models::build_network(&vs.root(), &network);
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let header = Header { format: weights::FORMAT_VERSION, network, preprocess, provenance: "test Lite0".into(), ood: None };
    let path = dir.join("lite0.safetensors");
    weights::save(&path, &tensors, &header).unwrap();
    path
}

/// The default model's kind of heads: an abnormality module on an EfficientNet's own features,
/// no residual. The classifier's scores must not move, and one network gives score and risk.
#[test]
fn an_efficientnet_gets_heads_on_its_own_features_and_keeps_its_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("lite0-ood.safetensors"));
    crop_cache(&cache, 12);
    let plain = lite0(tmp.path());
    let split = ["--split-seed", "1", "--val-fraction", "0.4", "--test-fraction", "0"];
    let mut args = vec![
        "train-ood", "--model", s(&plain), "--crops", s(&cache), "-o", s(&out), "--batch-size", "4", "--abnormality-epochs", "2",
        "--ordinary-copies", "--device", "cpu",
    ];
    args.extend(split);
    let run = dfscan(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(epochs(&stderr, "vae").is_empty() && epochs(&stderr, "abnormality").len() == 2, "{stderr}");
    assert!(stderr.contains("ordinary copies of the train crops"), "{stderr}");
    // --origins keeps only those origins' crops (this cache has none named so).
    let nowhere = tmp.path().join("none.safetensors");
    let mut args = vec!["train-ood", "--model", s(&plain), "--crops", s(&cache), "-o", s(&nowhere), "--origins", "elsewhere", "--device", "cpu"];
    args.extend(split);
    let run = dfscan(&args);
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("the train split has 0 crops"), "{}", String::from_utf8_lossy(&run.stderr));

    let (before, after) = (FaceModel::load(&plain, Device::Cpu).unwrap(), FaceModel::load(&out, Device::Cpu).unwrap());
    assert!(!before.has_ood() && after.has_ood());
    let heads = after.header.ood.as_ref().unwrap();
    assert!(heads.vae.is_none());
    assert_eq!((heads.abnormality.residual_channels, heads.abnormality.encoding), (0, 1280));
    assert!(after.header.provenance.contains("efficientnet-lite0: test Lite0"), "{}", after.header.provenance);
    // Same classifier (f32 storage); the scan's copy has its BatchNorms folded: float rounding.
    let crops = Tensor::cat(&[astronaut_crop(224), astronaut_crop(224).flip([2])], 0);
    let (a, b) = (before.score(&crops).unwrap(), after.score(&crops).unwrap());
    for (x, y) in a.logits.iter().zip(&b.logits) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "logits {:?} vs {:?}", a.logits, b.logits);
    }
    assert!(a.ood_risk.is_none() && b.ood_risk.unwrap().iter().all(|r| (0.0..=1.0).contains(r)));

    // In a scan it is its own OOD model, on every face; eval --ood takes it with MSP and ODIN.
    let pan = samples().join("astronaut_pan.mp4");
    let line = json_lines(&dfscan(&["scan", "-q", "--no-state", "--frames", "3", "--per-frame", "--model", s(&out), s(&pan)])).remove(0);
    assert_eq!((&line["model"]["name"], &line["ood_model"]["name"]), (&"efficientnet-lite0".into(), &"efficientnet-lite0".into()), "{line}");
    let faces: Vec<&serde_json::Value> = line["frames"].as_array().unwrap().iter().flat_map(|f| f["faces"].as_array().unwrap()).collect();
    assert!(faces.len() == 3 && faces.iter().all(|f| f["ood_risk"].is_number()), "{line}");
    let mut args = vec!["eval", "--model", s(&out), "--crops", s(&cache), "--split", "val", "--ood-synthetic", "--max-crops", "3", "--device", "cpu"];
    args.extend(split);
    let run = dfscan(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("efficientnet-lite0") && table.contains("ODIN") && table.contains("synthetic-blur"), "{table}");
}
