//! Seed 000's U-Net path through the real binary, on a crop cache written here: `train --arch
//! unet` (two steps), `train-ood` on the U-Net (no VAE), a scan with `--models` and
//! `--ood-model` naming U-Net files, and `eval --ood --models` comparing it with a ViT path.
mod common;

use std::path::Path;

use common::*;
use dfscan::models::{FaceModel, NetworkConfig};
use tch::Device;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SPLIT: [&str; 6] = ["--split-seed", "1", "--val-fraction", "0.4", "--test-fraction", "0"];

#[test]
fn unet_trains_gets_its_abnormality_module_and_gives_the_scan_its_risk() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, unet, unet_ood) = (tmp.path().join("cache"), tmp.path().join("unet.safetensors"), tmp.path().join("unet-ood.safetensors"));
    crop_cache(&cache, 12);

    let mut args = vec![
        "train", "--arch", "unet", "--crops", s(&cache), "-o", s(&unet), "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "2",
        "--no-augment", "--device", "cpu",
    ];
    args.extend(SPLIT);
    let run = dfscan(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let model = FaceModel::load(&unet, Device::Cpu).unwrap();
    assert!(matches!(model.header.network, NetworkConfig::Unet(_)) && !model.has_ood() && !model.has_attention());
    assert_eq!((model.id.name.as_str(), model.input_size()), ("unet", 224));

    let mut args = vec![
        "train-ood", "--model", s(&unet), "--crops", s(&cache), "-o", s(&unet_ood), "--batch-size", "4", "--abnormality-epochs", "2",
        "--storage", "f16", "--device", "cpu",
    ];
    args.extend(SPLIT);
    let run = dfscan(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(!stderr.contains("\"stage\":\"vae\"") && stderr.matches("\"stage\":\"abnormality\"").count() == 2, "{stderr}");
    let model = FaceModel::load(&unet_ood, Device::Cpu).unwrap();
    assert!(model.has_ood() && !model.has_attention());
    let heads = model.header.ood.as_ref().unwrap();
    assert!(heads.vae.is_none());
    assert_eq!((heads.abnormality.residual_channels, heads.abnormality.residual_size), (3, 224));
    assert!(model.header.provenance.contains("unet: ") && model.header.provenance.contains("val AUROC"), "{}", model.header.provenance);

    // A plain U-Net scores the faces; the U-Net file with heads gives the risk.
    let pan = samples().join("astronaut_pan.mp4");
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "2", "--per-frame", "--models", s(&unet), "--ood-model", s(&unet_ood), s(&pan)]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    assert_eq!((&line["models"][0]["name"], &line["ood_model"]["name"]), (&"unet".into(), &"unet".into()), "{line}");
    assert!(line["score"].is_number(), "{line}");
    let risk = line["ood_risk"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&risk), "{line}");
    assert!(line["frames"][0]["faces"][0]["ood_risk"].is_number(), "{line}");

    // Both paths in one table: the ViT's and the U-Net's, each with MSP and ODIN.
    let vit = untrained_vit_ood_weights(tmp.path());
    let report = tmp.path().join("ood.json");
    let models = format!("{},{}", s(&vit), s(&unet_ood));
    let mut args = vec![
        "eval", "--models", &models, "--crops", s(&cache), "--split", "val", "--ood-synthetic", "--max-crops", "2", "--report", s(&report),
        "--device", "cpu",
    ];
    args.extend(SPLIT);
    let run = dfscan(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let table = String::from_utf8_lossy(&run.stdout);
    for word in ["deit-tiny (untrained-vit-ood.safetensors)", "unet (unet-ood.safetensors)", "abnormality", "MSP", "ODIN", "synthetic-blur", "pooled"] {
        assert!(table.contains(word), "{word} missing:\n{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let reports = json.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1]["model"]["name"], "unet");
    let pooled = reports[1]["sets"].as_array().unwrap().last().unwrap();
    for method in ["abnormality", "msp", "odin"] {
        let auroc = pooled["metrics"][method]["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auroc), "{method}: {pooled}");
    }
}
