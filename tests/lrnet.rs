//! LRNet parity with the authors' code: both public weight pairs in models/third_party/lrnet,
//! imported with `dfscan import --arch lrnet G1 G2`, score the authors' four demo landmark
//! files (tests/data/lrnet) block by block as the PyTorch oracle (expected.json) does, within
//! 1e-4; the shipped models/lrnet.safetensors is that import of the DeeperForensics pair; and a
//! track too short for a block gets no score.
mod common;

use common::*;
use dfscan::models::lrnet::{self, LrnetModel, TooShort};
use tch::Device;

const TOLERANCE: f64 = 1e-4;

/// Imports one weight pair through the command line into `dir`.
fn import_pair(dir: &std::path::Path, pair: &str) -> std::path::PathBuf {
    let third_party = repo().join("models/third_party/lrnet");
    let out = dir.join(format!("lrnet-{pair}.safetensors"));
    let g1 = third_party.join(format!("{pair}_g1.pth"));
    let g2 = third_party.join(format!("{pair}_g2.pth"));
    let import = dfscan(&["import", "--arch", "lrnet", g1.to_str().unwrap(), g2.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
    out
}

fn check_pair(pair: &str, expected_prefix: &str) {
    if venv_python("lrnet parity").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = LrnetModel::load(&import_pair(tmp.path(), pair), Device::Cpu).unwrap();
    assert_eq!(model.id.name, "lrnet");
    assert!(model.header.provenance.contains(&format!("{pair}_g1.pth")), "{}", model.header.provenance);
    let data = repo().join("tests/data/lrnet");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap()).unwrap();
    let mut files = 0;
    let mut worst = 0.0f64;
    for (key, want) in expected.as_object().unwrap() {
        let Some(file) = key.strip_prefix(expected_prefix) else { continue };
        files += 1;
        let landmarks = lrnet::parse_landmarks(&std::fs::read_to_string(data.join(file)).unwrap()).unwrap();
        assert_eq!(landmarks.size(), [want["frames"].as_i64().unwrap(), 136], "{key}");
        let score = model.net.score_track(&landmarks).unwrap();
        assert_eq!(score.blocks.len() as u64, want["blocks"].as_u64().unwrap(), "{key}: blocks");
        for stream in ["g1", "g2"] {
            let ours = if stream == "g1" { &score.g1 } else { &score.g2 };
            for (b, (o, w)) in ours.iter().zip(want[stream].as_array().unwrap()).enumerate() {
                let d = (*o as f64 - w.as_f64().unwrap()).abs();
                worst = worst.max(d);
                assert!(d < TOLERANCE, "{key} block {b} {stream}: ours {o}, oracle {w}");
            }
        }
        let share = want["video_score"].as_f64().unwrap();
        assert!((score.share_fake - share).abs() < 1e-9, "{key}: share of fake blocks {} vs {share}", score.share_fake);
        let mean = want["mean_p_fake"].as_f64().unwrap();
        assert!((score.mean - mean).abs() < TOLERANCE, "{key}: mean {} vs {mean}", score.mean);
    }
    assert_eq!(files, 4, "four landmark files per weight pair");
    eprintln!("lrnet parity {pair}: max |P(fake) difference| over all blocks = {worst:.2e}");
}

#[test]
fn ffpp_weights_reproduce_the_oracle() {
    check_pair("ffpp", "ffpp/");
}

#[test]
fn deeperforensics_weights_reproduce_the_oracle() {
    check_pair("dfo", "dfo/");
}

/// models/lrnet.safetensors is the DeeperForensics pair as `dfscan import` writes it, byte for
/// byte (models/lrnet.md: shipped unchanged, not trained here).
#[test]
fn the_shipped_lrnet_is_the_import_of_the_deeperforensics_pair() {
    if venv_python("shipped lrnet").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let imported = std::fs::read(import_pair(tmp.path(), "dfo")).unwrap();
    assert!(imported == std::fs::read(repo().join("models/lrnet.safetensors")).unwrap(), "models/lrnet.safetensors differs from the import");
}

#[test]
fn a_track_under_31_frames_is_too_short_for_lrnet() {
    if venv_python("lrnet too short").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = LrnetModel::load(&import_pair(tmp.path(), "dfo"), Device::Cpu).unwrap();
    let landmarks = lrnet::parse_landmarks(&std::fs::read_to_string(repo().join("tests/data/lrnet/dfo_real.landmarks.txt")).unwrap()).unwrap();
    for n in [0, 1, 29, 30] {
        let err = model.net.score_track(&landmarks.narrow(0, 0, n)).unwrap_err();
        assert_eq!(err.downcast_ref::<TooShort>(), Some(&TooShort { frames: n as usize, needed: 31 }), "{n} frames");
        assert!(err.to_string().contains("too short for lrnet"), "{err}");
    }
    // 31 frames: one block, the oracle's first.
    let one = model.net.score_track(&landmarks.narrow(0, 0, 31)).unwrap();
    assert_eq!(one.blocks.len(), 1);
    let full = model.net.score_track(&landmarks).unwrap();
    assert!((one.g1[0] - full.g1[0]).abs() < 1e-6 && (one.g2[0] - full.g2[0]).abs() < 1e-6);
}

#[test]
fn import_refuses_one_file_or_a_wrong_pair() {
    let third_party = repo().join("models/third_party/lrnet");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.safetensors");
    let g1 = third_party.join("dfo_g1.pth");
    let one = dfscan(&["import", "--arch", "lrnet", g1.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!one.status.success());
    assert!(String::from_utf8_lossy(&one.stderr).contains("two files"), "{}", String::from_utf8_lossy(&one.stderr));
    // FaceMesh's state_dict is no LRNet stream.
    let facemesh = repo().join("models/third_party/facemesh/facemesh.pth");
    let wrong = dfscan(&["import", "--arch", "lrnet", g1.to_str().unwrap(), facemesh.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!wrong.status.success());
    assert!(!out.exists());
}

/// Every third-party file the tree carries has the sha256 its PROVENANCE.md gives.
#[test]
fn third_party_files_match_their_provenance() {
    let mut checked = 0;
    for dir in ["models/third_party/lrnet", "models/third_party/facemesh", "tests/data/lrnet"] {
        let dir = repo().join(dir);
        let provenance = std::fs::read_to_string(dir.join("PROVENANCE.md")).unwrap();
        for line in provenance.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| file") && !l.starts_with("| ---")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let (file, sha) = (cells[0], *cells.last().unwrap());
            let out = std::process::Command::new("sha256sum").arg(dir.join(file)).output().expect("sha256sum runs");
            assert!(out.status.success(), "{file} is missing");
            let got = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
            assert_eq!(got, sha, "{}/{file}", dir.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 5 + 2 + 4);
}

/// Our landmarker (FaceMesh -> 68, calibrated) against the authors' FAN landmarks on their demo
/// clips, and what LRNet says on each. A measurement: DFSCAN_LRNET_DEMO=<folder with the
/// source's demo/input/*.mp4> cargo test --test lrnet -- --ignored --nocapture
#[test]
#[ignore]
fn our_landmarks_against_the_authors() {
    use dfscan::decode::{Sampler, Sampling, VideoSource};
    use dfscan::faces::calibrate::{calibrate, CalibrationConfig};
    use dfscan::models::facemesh::FaceMeshModel;
    let Some(demo) = std::env::var_os("DFSCAN_LRNET_DEMO").map(std::path::PathBuf::from) else {
        eprintln!("skipped: set DFSCAN_LRNET_DEMO to the folder of LRNet's demo clips");
        return;
    };
    const FRAMES: usize = 151; // five blocks
    let tmp = tempfile::tempdir().unwrap();
    let fm_path = tmp.path().join("facemesh.safetensors");
    let pth = repo().join("models/third_party/facemesh/facemesh.pth");
    assert!(dfscan(&["import", "--arch", "facemesh", pth.to_str().unwrap(), "-o", fm_path.to_str().unwrap()]).status.success());
    let facemesh = FaceMeshModel::load(&fm_path, Device::Cpu).unwrap();
    let models: Vec<(&str, LrnetModel)> = ["dfo", "ffpp"].iter().map(|p| (*p, LrnetModel::load(&import_pair(tmp.path(), p), Device::Cpu).unwrap())).collect();
    let public = std::path::Path::new(dfscan::models::BUILT_IN_DIR).join("public");
    let mut detector = dfscan::faces::build_detector(dfscan::faces::DetectorKind::Res10, &public, 0.5).unwrap();
    for clip in ["dfo_fake", "dfo_real", "ff_fake", "ff_real"] {
        let source = VideoSource::open(&demo.join(format!("{clip}.mp4"))).unwrap();
        let mut sampler = Sampler::new(Sampling::Fps(1000.0), source.info.duration_s);
        let mut frames = Vec::new();
        source
            .sample(&mut sampler, |f| {
                frames.push(f);
                Ok(frames.len() < FRAMES)
            })
            .unwrap();
        let mut landmarks = Vec::new();
        for frame in &frames {
            let faces = detector.detect(frame).unwrap();
            let best = faces.iter().max_by(|a, b| (a.bbox.w * a.bbox.h).total_cmp(&(b.bbox.w * b.bbox.h)));
            landmarks.push(best.map(|d| facemesh.detect(frame, &[d.bbox]).unwrap().remove(0).ibug68));
        }
        let text = std::fs::read_to_string(repo().join(format!("tests/data/lrnet/{clip}.landmarks.txt"))).unwrap();
        let oracle = lrnet::parse_landmarks(&text).unwrap().narrow(0, 0, frames.len() as i64);
        for (name, cfg) in [("raw", CalibrationConfig { track: false, ..Default::default() }), ("calibrated", CalibrationConfig::default())] {
            let rows = calibrate(&frames, &landmarks, &cfg).unwrap();
            let ours = tch::Tensor::from_slice(&rows.concat()).view([rows.len() as i64, 136]);
            let n = ours.size()[0].min(oracle.size()[0]);
            let err = (ours.narrow(0, 0, n) - oracle.narrow(0, 0, n)).abs().mean(tch::Kind::Float).double_value(&[]) * 200.0;
            let per_point = |t: &tch::Tensor| (t.narrow(0, 1, n - 1) - t.narrow(0, 0, n - 1)).abs().mean(tch::Kind::Float).double_value(&[]) * 200.0;
            let mut line = format!(
                "{clip} {name}: {n} frames, mean |ours - FAN| {err:.1} px (400-px face); frame-to-frame motion ours {:.2} px, FAN {:.2} px",
                per_point(&ours.narrow(0, 0, n)),
                per_point(&oracle.narrow(0, 0, n))
            );
            for (pair, model) in &models {
                let s = model.net.score_track(&ours).unwrap();
                let o = model.net.score_track(&oracle.narrow(0, 0, n)).unwrap();
                line += &format!("; {pair}: ours share {:.2} mean {:.3}, FAN share {:.2} mean {:.3}", s.share_fake, s.mean, o.share_fake, o.mean);
            }
            eprintln!("{line}");
            assert!(err < 60.0, "{clip}: our landmarks are nowhere near FAN's ({err} px)");
        }
    }
}
