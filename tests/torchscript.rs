//! TorchScript models (`dfscan import --torchscript`, `models::torchscript`): small PyTorch
//! networks (scripts/torchscript_examples.py) traced by scripts/export_torchscript.py with the
//! project's own Python, imported with a contract, scanned; their scores must be PyTorch's on
//! the same crops (cut by `dfscan extract`, which cuts the scan's pixels: tests/crop_contract.rs)
//! within 1e-4. Imports that break their contract fail with what was got and what was expected.
//! Skips, saying so, when the set-up's .venv is absent.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn python() -> Option<PathBuf> {
    let python = repo().join(".venv/bin/python");
    if python.exists() {
        Some(python)
    } else {
        eprintln!("torchscript: skipped, {} is missing (scripts/setup.sh makes it)", python.display());
        None
    }
}

/// Runs `code` as a file (torch.jit.script reads the source of what it compiles).
fn run_python(python: &Path, code: &str, args: &[&str]) -> String {
    let file = tempfile::Builder::new().suffix(".py").tempfile().unwrap();
    std::fs::write(file.path(), code).unwrap();
    let out = Command::new(python).arg(file.path()).args(args).current_dir(repo()).output().expect("python runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Builds `class(**kwargs)` from the examples with seed 0 (BatchNorm statistics and scales made
/// non-trivial, so eval mode matters, and heads wide enough that crops of one face differ), saves its state_dict as `NAME.pth`, and writes `NAME.pt` with
/// scripts/export_torchscript.py from that checkpoint.
fn export(python: &Path, dir: &Path, name: &str, class: &str, kwargs: &str, shape: &str) -> PathBuf {
    const MAKE: &str = r#"
import sys, json, torch
sys.path.insert(0, "scripts")
import torchscript_examples as ex
torch.manual_seed(0)
model = getattr(ex, sys.argv[1])(**json.loads(sys.argv[2]))
for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.3, 0.3); m.running_var.uniform_(0.5, 1.5); m.weight.data.uniform_(0.5, 2.0)
    if isinstance(m, torch.nn.Linear):
        m.weight.data.normal_(0.0, 3.0)
torch.save(model.state_dict(), sys.argv[3])
"#;
    let (pth, pt) = (dir.join(format!("{name}.pth")), dir.join(format!("{name}.pt")));
    run_python(python, MAKE, &[class, kwargs, pth.to_str().unwrap()]);
    let module = format!("scripts/torchscript_examples.py:{class}");
    let script = repo().join("scripts/export_torchscript.py");
    let args = ["--module", &module, "--kwargs", kwargs, "--checkpoint", pth.to_str().unwrap(), "--input-shape", shape, "-o", pt.to_str().unwrap()];
    run_python(python, &std::fs::read_to_string(script).unwrap(), &args);
    pt
}

/// PyTorch's outputs for the crops in `crops` (u8 `[N, S, S, 3]`, or `[N, T, S, S, 3]`), made
/// from the eager model and the contract written out again here, apart from dfscan's code.
fn pytorch_outputs(python: &Path, class: &str, kwargs: &str, pth: &Path, crops: &Path, contract: &str) -> Vec<f64> {
    const REFERENCE: &str = r#"
import sys, json, torch
from safetensors.torch import load_file
sys.path.insert(0, "scripts")
import torchscript_examples as ex
model = getattr(ex, sys.argv[1])(**json.loads(sys.argv[2]))
model.load_state_dict(torch.load(sys.argv[3], weights_only=True))
model.eval()
c = json.loads(sys.argv[5])
x = load_file(sys.argv[4])["crops"].to(torch.float64)
x = x.movedim(-1, -3)                       # ..., S, S, 3 -> ..., 3, S, S
if c.get("channels") == "bgr":
    x = x[..., [2, 1, 0], :, :]
x = x / 255.0 * c.get("pixel_max", 1.0)
mean = torch.tensor(c.get("mean", [0.0] * 3), dtype=torch.float64).view(3, 1, 1)
std = torch.tensor(c.get("std", [1.0] * 3), dtype=torch.float64).view(3, 1, 1)
with torch.no_grad():
    out = model(((x - mean) / std).float()).double()
print(json.dumps(out.flatten().tolist() if out.dim() == 1 or out.shape[1] == 1 else out.tolist()))
"#;
    let out = run_python(python, REFERENCE, &[class, kwargs, pth.to_str().unwrap(), crops.to_str().unwrap(), contract]);
    let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    value.as_array().unwrap().iter().flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()])).map(|v| v.as_f64().unwrap()).collect()
}

/// The crops `dfscan extract` cuts of astronaut_pan.mp4 (the scan's pixels for the same frames),
/// as a u8 safetensors file `[frames, size, size, 3]`.
fn crops_of_the_clip(dir: &Path, frames: usize, margin: &str, size: i32) -> PathBuf {
    let manifest = dir.join("manifest.csv");
    std::fs::write(&manifest, format!("path,label\n{},real\n", samples().join("astronaut_pan.mp4").display())).unwrap();
    let cache = dir.join(format!("crops-{size}"));
    let out = dfscan(&["extract", manifest.to_str().unwrap(), "-o", cache.to_str().unwrap(), "--frames", &frames.to_string(), "--margin", margin, "--size", &size.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set = dfscan::crops::dataset::CropSet::open(&cache).unwrap();
    assert_eq!(set.records.len(), frames, "one face in each sampled frame");
    let pixels: Vec<Vec<u8>> = (0..frames).map(|i| set.load_rgb(i, size).unwrap()).collect();
    let batch = dfscan::models::crop_batch(&pixels, size as i64);
    let path = dir.join(format!("crops-{size}.safetensors"));
    tch::Tensor::write_safetensors(&[("crops", &batch)], &path).unwrap();
    path
}

fn import(module: &Path, output: &Path, contract: &[&str]) -> std::process::Output {
    let mut args = vec!["import", "--torchscript", module.to_str().unwrap(), "-o", output.to_str().unwrap()];
    args.extend_from_slice(contract);
    dfscan(&args)
}

fn imported(module: &Path, output: &Path, contract: &[&str]) -> PathBuf {
    let out = import(module, output, contract);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    output.to_path_buf()
}

fn scan(models: &str, frames: &str) -> serde_json::Value {
    let clip = samples().join("astronaut_pan.mp4");
    let out = dfscan(&["scan", "-q", "--no-state", "--ood-model", "none", "--per-frame", "--frames", frames, "--models", models, clip.to_str().unwrap()]);
    let line = json_lines(&out).remove(0);
    assert_eq!(line["status"], "ok", "{line}");
    line
}

#[test]
fn a_traced_frame_model_scans_as_pytorch_scores_the_same_crops() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A two-class head, BGR input in [0, 255]: every part of the contract away from its default.
    let kwargs = r#"{"classes": 2}"#;
    let pt = export(&python, tmp.path(), "tiny", "TinyEfficientNet", kwargs, "1,3,112,112");
    let flags = ["--input-size", "112", "--margin", "0.25", "--channels", "bgr", "--pixel-max", "255", "--mean", "124,116,104", "--std", "58,57,57", "--returns", "two-class", "--fake-index", "0"];
    let model = imported(&pt, &tmp.path().join("mymodel.safetensors"), &flags);

    let crops = crops_of_the_clip(tmp.path(), 4, "0.25", 112);
    let contract = r#"{"channels": "bgr", "pixel_max": 255, "mean": [124, 116, 104], "std": [58, 57, 57]}"#;
    let two = pytorch_outputs(&python, "TinyEfficientNet", kwargs, &tmp.path().join("tiny.pth"), &crops, contract);
    let want: Vec<f64> = two.chunks(2).map(|l| l[0] - l[1]).collect();

    let line = scan(model.to_str().unwrap(), "4");
    assert_eq!(line["model"]["name"], "torchscript:mymodel");
    let file_hash = blake3::hash(&std::fs::read(&model).unwrap()).to_hex()[..16].to_string();
    assert_eq!(line["model"]["blake3"], file_hash.as_str(), "the line's hash is the file's, module bytes included");
    let faces: Vec<f64> = line["frames"].as_array().unwrap().iter().map(|f| f["faces"][0]["logit"].as_f64().unwrap()).collect();
    assert_eq!(faces.len(), want.len());
    for (i, (ours, theirs)) in faces.iter().zip(&want).enumerate() {
        assert!((ours - theirs).abs() < 1e-4, "frame {i}: dfscan {ours}, PyTorch {theirs}");
    }
    // The tolerance is far below what the contract moves: read as RGB, the same crops score otherwise.
    let rgb = pytorch_outputs(&python, "TinyEfficientNet", kwargs, &tmp.path().join("tiny.pth"), &crops, &contract.replace("bgr", "rgb"));
    let moved = rgb.chunks(2).zip(&want).map(|(l, w)| (l[0] - l[1] - w).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-2, "channel order moves the logits by only {moved}");
}

#[test]
fn a_traced_sequence_model_scores_tracks_as_pytorch_and_mixes_with_the_default() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // It ends in a sigmoid: the contract says its output is P(fake).
    let kwargs = r#"{"probability": true}"#;
    let pt = export(&python, tmp.path(), "seq", "TinyCnnGru", kwargs, "1,4,3,64,64");
    let contract = r#"{"input_size": 64, "frames": 4, "margin": 0.3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "returns": "probability"}"#;
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    imported(&pt, &models.join("myseq.safetensors"), &["--contract", contract]);

    // Six frames of one track in windows of T = 4: [0, 4) and [2, 6), the track's score their mean.
    let crops = crops_of_the_clip(tmp.path(), 6, "0.3", 64);
    let windows = tmp.path().join("windows.safetensors");
    let clip = tch::Tensor::read_safetensors(&crops).unwrap().remove(0).1;
    let stacked = tch::Tensor::stack(&[clip.narrow(0, 0, 4), clip.narrow(0, 2, 4)], 0);
    tch::Tensor::write_safetensors(&[("crops", &stacked)], &windows).unwrap();
    let p = pytorch_outputs(&python, "TinyCnnGru", kwargs, &tmp.path().join("seq.pth"), &windows, contract);
    let want = (p[0] + p[1]) / 2.0;
    let line = scan(models.join("myseq.safetensors").to_str().unwrap(), "6");
    let track = &line["tracks"][0];
    assert_eq!((line["tracks"].as_array().unwrap().len(), track["frames"].as_u64()), (1, Some(6)), "{line}");
    let ours = track["models"][0].as_f64().unwrap();
    assert!((ours - want).abs() < 1e-4, "track: dfscan {ours}, PyTorch {want} (windows {p:?})");

    // By name beside the shipped default, with a frame module too: all three in `models`.
    let frame = export(&python, tmp.path(), "tiny", "TinyEfficientNet", "{}", "1,3,96,96");
    imported(&frame, &models.join("mymodel.safetensors"), &["--input-size", "96", "--returns", "fake-logit"]);
    std::os::unix::fs::symlink(repo().join("models/default.safetensors"), models.join("default.safetensors")).unwrap();
    std::os::unix::fs::symlink(repo().join("models/public"), models.join("public")).unwrap();
    // The default detector, YuNet.
    std::os::unix::fs::symlink(repo().join("models/third_party"), models.join("third_party")).unwrap();
    let clip = samples().join("astronaut_pan.mp4");
    let out = dfscan_command()
        .env("DFSCAN_MODELS", &models)
        .args(["scan", "-q", "--no-state", "--frames", "6", "--models", "default,mymodel,myseq", clip.to_str().unwrap()])
        .output()
        .unwrap();
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    let members: Vec<(&str, &str)> = line["models"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["kind"].as_str().unwrap())).collect();
    assert_eq!(members, [("efficientnet-lite0", "frame"), ("torchscript:mymodel", "frame"), ("torchscript:myseq", "sequence")]);
    assert!(line["models"].as_array().unwrap().iter().all(|m| m["score"].is_number()), "{line}");
    assert_eq!(line["model"]["name"], "efficientnet-lite0+torchscript:mymodel+torchscript:myseq");
}

#[test]
fn modules_that_break_their_contract_fail_at_import_saying_what_they_gave() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A three-class head; a module that needs CUDA; one traced in training mode.
    const MAKE: &str = r#"
import sys, torch
sys.path.insert(0, "scripts")
import torchscript_examples as ex
out = sys.argv[1]
torch.manual_seed(0)
torch.jit.save(torch.jit.trace(ex.TinyEfficientNet(classes=3).eval(), torch.randn(1, 3, 64, 64)), f"{out}/three.pt")
class OnGpu(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=[1, 2, 3]) + torch.zeros(1, device=torch.device("cuda"))
torch.jit.save(torch.jit.script(OnGpu()), f"{out}/gpu.pt")
torch.jit.save(torch.jit.trace(ex.TinyEfficientNet().train(), torch.randn(2, 3, 64, 64)), f"{out}/train.pt")
"#;
    run_python(&python, MAKE, &[tmp.path().to_str().unwrap()]);
    let fails = |module: &str, contract: &[&str]| -> String {
        let out = import(&tmp.path().join(module), &tmp.path().join("x.safetensors"), contract);
        assert!(!out.status.success(), "{module} {contract:?} imported");
        assert!(!tmp.path().join("x.safetensors").exists(), "a failed import leaves no file");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails("three.pt", &["--input-size", "64", "--returns", "two-class", "--fake-index", "1"]);
    assert!(err.contains("returned shape [2, 3]") && err.contains("expected [2, 2]"), "{err}");
    let err = fails("three.pt", &["--input-size", "64", "--returns", "fake-logit"]);
    assert!(err.contains("returned shape [2, 3]") && err.contains("expected [2] or [2, 1]"), "{err}");
    // A frame module given sequences: the input does not match.
    let err = fails("three.pt", &["--input-size", "64", "--frames", "4", "--returns", "fake-logit"]);
    assert!(err.contains("failed on the contract's input, a [2, 4, 3, 64, 64] float32 tensor") && err.contains("RuntimeError: "), "{err}");
    let err = fails("gpu.pt", &["--input-size", "32", "--returns", "fake-logit"]);
    assert!(err.contains("needs CUDA"), "{err}");
    let err = fails("train.pt", &["--input-size", "64", "--returns", "fake-logit"]);
    assert!(err.contains("normalises over the batch"), "{err}");
    let err = fails("three.pt", &["--input-size", "64"]);
    assert!(err.contains("--returns"), "{err}");
    // A state_dict is no TorchScript module.
    let state_dict = tmp.path().join("sd.pt");
    run_python(&python, "import sys, torch; torch.save({'w': torch.zeros(2)}, sys.argv[1])", &[state_dict.to_str().unwrap()]);
    let err = fails("sd.pt", &["--input-size", "64", "--returns", "fake-logit"]);
    assert!(err.contains("not a TorchScript module"), "{err}");
}

#[test]
fn the_mesonet_port_exported_as_torchscript_gives_the_reference_logits() {
    let Some(python) = python() else { return };
    let Some(shared) = shared() else {
        eprintln!("torchscript: mesonet check skipped, ../shared/reference is not present");
        return;
    };
    let reference = shared.join("reference");
    let tmp = tempfile::tempdir().unwrap();
    // The export script's own example: a plain state_dict of the built-in MesoInception4.
    let pt = tmp.path().join("meso.pt");
    let checkpoint = reference.join("mesonet-torch/mesonet_dfdc.pth");
    let args = ["--module", "scripts/torchscript_examples.py:MesoInception4", "--checkpoint", checkpoint.to_str().unwrap(), "--input-shape", "1,3,256,256", "-o", pt.to_str().unwrap()];
    run_python(&python, &std::fs::read_to_string(repo().join("scripts/export_torchscript.py")).unwrap(), &args);
    let flags = ["--input-size", "256", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--returns", "fake-logit"];
    let model = imported(&pt, &tmp.path().join("meso-ts.safetensors"), &flags);
    let images = reference.join("mesonet-test-images/256");
    let out = dfscan(&["scan", "-q", "--no-state", "--faces", "none", "--per-frame", "--model", model.to_str().unwrap(), images.to_str().unwrap()]);
    let lines = json_lines(&out);
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference.join("mesonet-torch/mesonet_dfdc.expected-256png.json")).unwrap()).unwrap();
    assert_eq!(lines.len(), expected.as_object().unwrap().len());
    for (image, want) in expected.as_object().unwrap() {
        let ours = line_for(&lines, image)["frames"][0]["faces"][0]["logit"].as_f64().unwrap();
        // The oracle is rounded to 5 decimals (tests/parity.rs holds the built-in network to 1e-3).
        assert!((ours - want["logit"].as_f64().unwrap()).abs() < 1e-4, "{image}: TorchScript {ours}, reference {want}");
    }
}
