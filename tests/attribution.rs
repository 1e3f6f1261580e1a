//! The shipped attribution model (models/attribution.safetensors, models/attribution.md) on
//! the real encoder: it loads with the set-up's ImageNet weights and no others, and gives
//! probabilities over its classes; and, on demand, what it adds to a scan's cost.
mod common;

use common::*;
use dfscan::models::attribution::AttributionModel;
use dfscan::models::{Arch, FaceModel};
use std::path::PathBuf;
use tch::Device;

/// The encoder's ImageNet weights as `dfscan train` and the scan import them, imported into
/// `dir` when the set-up's raw file is there but no import yet (no Python needed).
fn encoder_weights(test: &str, dir: &std::path::Path) -> Option<PathBuf> {
    let public = repo().join("models/public");
    let imported = public.join("efficientnet-lite0-imagenet.safetensors");
    if imported.is_file() {
        return Some(imported);
    }
    let raw = set_up_file(test, public.join("efficientnet-lite0-57934424.safetensors"))?;
    let out = dir.join("lite0.safetensors");
    dfscan::models::import::import(Arch::EfficientnetLite0, &[raw.as_path()], &out, std::path::Path::new("python3")).unwrap();
    Some(out)
}

fn shipped() -> PathBuf {
    repo().join("models/attribution.safetensors")
}

#[test]
fn the_shipped_model_gives_probabilities_over_its_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(weights) = encoder_weights("attribution", tmp.path()) else { return };
    let model = AttributionModel::load(&shipped(), &weights, Device::Cpu, tch::Kind::Float).unwrap();
    assert_eq!((model.id.name.as_str(), model.input_size()), ("attribution", 224));
    let crops = tch::Tensor::cat(&[astronaut_crop(224), astronaut_crop(224).flip([2])], 0);
    let out = model.attribute(&crops).unwrap();
    assert_eq!(out.len(), 2);
    let classes = &model.header.classes;
    for (family, method) in &out {
        assert_eq!((family.len(), method.len()), (classes.families.len(), classes.methods.len()));
        for p in [family, method] {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5 && p.iter().all(|&q| (0.0..=1.0).contains(&q)), "{p:?}");
        }
    }
    // Other ImageNet weights (MobileNetV2's) give other embeddings: refused, not guessed with.
    if let Some(other) = set_up_file("attribution", repo().join("models/public/mobilenet_v2-b0353104.safetensors")) {
        let err = AttributionModel::load(&shipped(), &other, Device::Cpu, tch::Kind::Float).err().expect("refused");
        assert!(format!("{err:#}").contains("other weights"), "{err:#}");
    }
}

/// What attribution adds to a scan, measured in one process so that other load on the machine
/// cancels out of the ratio: the attribution model on the 8 faces it reads per track, against
/// the default model on a video's 32 faces.
/// `cargo test --release --test attribution -- --ignored --nocapture cost`.
#[test]
#[ignore = "a measurement, not a check: run on demand"]
fn cost_of_attribution_beside_the_default_model() {
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let Some(weights) = encoder_weights("cost", tmp.path()) else { return };
    let load = std::time::Instant::now();
    let model = AttributionModel::load(&shipped(), &weights, Device::Cpu, tch::Kind::Float).unwrap();
    let load_s = load.elapsed().as_secs_f64();
    let default = FaceModel::load(&repo().join("models/default.safetensors"), Device::Cpu).unwrap();
    let crop = astronaut_crop(224);
    let batch = |n: i64| crop.repeat([n, 1, 1, 1]);
    let (eight, all) = (batch(8), batch(32));
    let _ = (model.attribute(&eight), default.fake_logits(&all)); // warm-up
    let time = |f: &dyn Fn()| (0..5).map(|_| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }).fold(f64::MAX, f64::min);
    let attribution = time(&|| drop(model.attribute(&eight).unwrap()));
    let detector = time(&|| drop(default.fake_logits(&all)));
    eprintln!(
        "attribution: load {load_s:.2} s; 8 faces {:.0} ms ({:.1} ms a face); default model, 32 faces {:.0} ms; ratio {:.2}",
        attribution * 1e3,
        attribution * 1e3 / 8.0,
        detector * 1e3,
        attribution / detector
    );
}
