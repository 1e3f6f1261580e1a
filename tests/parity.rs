//! Parity with the public MesoNet checkpoints in ../shared/reference: imported with
//! `dfscan import` and scanned with `--faces none`, each 256x256 test PNG must give the logit
//! the reference implementation gives, within 1e-3. Skips (and says so) without the folder.
mod common;

use common::*;

fn check(arch: &str, checkpoint: &str, expected_json: &str, real_polarity: bool) {
    let Some(shared) = shared() else {
        eprintln!("parity: skipped, ../shared/reference is not present");
        return;
    };
    let reference = shared.join("reference");
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("imported.safetensors");
    let import = dfscan(&["import", "--arch", arch, reference.join(checkpoint).to_str().unwrap(), "-o", weights.to_str().unwrap()]);
    assert!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
    let images = reference.join("mesonet-test-images/256");
    let out = dfscan(&["scan", "-q", "--faces", "none", "--per-frame", "--model", weights.to_str().unwrap(), images.to_str().unwrap()]);
    let lines = json_lines(&out);
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference.join(expected_json)).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    assert_eq!(lines.len(), expected.len());
    let mut worst = 0.0f64;
    for (image, want) in expected {
        let line = line_for(&lines, image);
        let ours = line["frames"][0]["faces"][0]["logit"].as_f64().unwrap();
        // Keras checkpoints give logit(P(real)); dfscan always reports logit(P(fake)).
        let want = if real_polarity { -want["logit_real"].as_f64().unwrap() } else { want["logit"].as_f64().unwrap() };
        worst = worst.max((ours - want).abs());
        assert!((ours - want).abs() < 1e-3, "{checkpoint} {image}: ours {ours}, reference {want}");
    }
    eprintln!("parity {checkpoint}: max |logit difference| = {worst:.2e}");
}

#[test]
fn cs188_mesoinception4_dfdc() {
    check("mesoinception4", "mesonet-torch/mesonet_dfdc.pth", "mesonet-torch/mesonet_dfdc.expected-256png.json", false);
}

#[test]
fn cs188_mesoinception4_celebdf() {
    check("mesoinception4", "mesonet-torch/mesonet_celebdf.pth", "mesonet-torch/mesonet_celebdf.expected-256png.json", false);
}

#[test]
fn keras_meso4_df() {
    check("meso4", "mesonet-keras/Meso4_DF.h5", "mesonet-keras/Meso4_DF.expected-256png.json", true);
}

#[test]
fn keras_mesoinception4_f2f() {
    check("mesoinception4", "mesonet-keras/MesoInception_F2F.h5", "mesonet-keras/MesoInception_F2F.expected-256png.json", true);
}
