//! `--models`: frame and sequence models in one pass, their weighted ensemble, and the
//! out-of-distribution risk in the verdict (`ood_risk`, "uncertain", `--explain`). The
//! networks are untrained: these tests check how scores flow and combine, not accuracy
//! (tests/ood.rs measures the shipped ViT).
mod common;

use common::*;
use serde_json::Value;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-5
}

#[test]
fn a_sequence_model_scores_each_track_beside_a_frame_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (meso, lstm) = (untrained_weights(tmp.path()), untrained_sequence_weights(tmp.path(), 4));
    let pan = samples().join("astronaut_pan.mp4");
    let two = tmp.path().join("two_people.mp4");
    ffmpeg(&["-i", s(&pan), "-filter_complex", "[0:v]split[a][b];[b]hflip[m];[a][m]hstack", "-c:v", "libx264", s(&two)]);
    let models = format!("{},{}", s(&meso), s(&lstm));
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "6", "--per-frame", "--models", &models, "--model-weights", "3,1", s(&two)]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    let members = line["models"].as_array().unwrap();
    assert_eq!(members.iter().map(|m| m["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["frame", "sequence"]);
    assert!(close(&members[0]["weight"], 0.75) && close(&members[1]["weight"], 0.25), "{line}");
    assert_eq!(line["model"]["name"], "mesoinception4+resnet-lstm");
    // The input's score is the weighted mean of the two models' own scores...
    let (a, b) = (members[0]["score"].as_f64().unwrap(), members[1]["score"].as_f64().unwrap());
    assert!(close(&line["score"], 0.75 * a + 0.25 * b), "{line}");
    // ...and so is each track's; the sequence model scored both people's tracks.
    let tracks = line["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{line}");
    for t in tracks {
        let m = t["models"].as_array().unwrap();
        assert!(close(&t["score"], 0.75 * m[0].as_f64().unwrap() + 0.25 * m[1].as_f64().unwrap()), "{t}");
    }
    // A face is scored by the frame model only.
    let face = &line["frames"][0]["faces"][0];
    assert!(face["models"][0].is_number() && face["models"][1].is_null(), "{face}");
    assert!(close(&face["score"], face["models"][0].as_f64().unwrap()));

    // A sequence model alone: faces have no score of their own, the input still has one.
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "6", "--per-frame", "--models", s(&lstm), s(&pan)]);
    let alone = &json_lines(&out)[0];
    assert_eq!(alone["status"], "ok", "{alone}");
    assert!(alone["score"].is_number() && alone["frames"][0]["faces"][0]["score"].is_null(), "{alone}");
}

#[test]
fn out_of_distribution_inputs_are_uncertain_not_fake() {
    let tmp = tempfile::tempdir().unwrap();
    let (meso, vit) = (untrained_weights(tmp.path()), untrained_vit_ood_weights(tmp.path()));
    let pan = samples().join("astronaut_pan.mp4");
    let explain = tmp.path().join("explain");
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "2", "--per-frame", "--model", s(&meso), "--threshold", "0"];
        args.extend_from_slice(extra);
        args.push(s(&pan));
        let out = dfscan(&args);
        (json_lines(&out).remove(0), out.status.code())
    };
    // Every risk reaches a threshold of 0: the fake verdict becomes "uncertain", exit 0.
    let (line, code) = scan(&["--ood-model", s(&vit), "--ood-threshold", "0", "--explain", s(&explain)]);
    assert_eq!(line["verdict"], "uncertain", "{line}");
    assert!(line["verdict_reason"].as_str().unwrap().contains("ood_risk"), "{line}");
    assert_eq!(code, Some(0), "an uncertain input is not a fake");
    let risk = line["ood_risk"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&risk), "{line}");
    assert_eq!(line["ood_model"]["name"], "deit-tiny");
    // The input's risk is the mean of its faces'.
    let faces: Vec<&Value> = line["frames"].as_array().unwrap().iter().flat_map(|f| f["faces"].as_array().unwrap()).collect();
    let mean = faces.iter().map(|f| f["ood_risk"].as_f64().unwrap()).sum::<f64>() / faces.len() as f64;
    assert!((risk - mean).abs() < 1e-5, "{line}");
    // --explain: one PNG per face, where the line says.
    let dir = std::path::PathBuf::from(line["explain"].as_str().unwrap());
    assert!(dir.starts_with(&explain), "{line}");
    for face in &faces {
        let png = dir.join(face["explain"].as_str().unwrap());
        assert!(std::fs::metadata(&png).is_ok_and(|m| m.len() > 0), "missing {}", png.display());
    }

    // Without --explain the OOD model runs on its own thread (pipeline::risk); every face
    // gets the same risk as above, where the models stage scored it itself.
    // Eight frames, four batches of two.
    let risks = |extra: &[&str]| {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "8", "--per-frame", "--model", s(&meso), "--ood-model", s(&vit), "--ood-every", "1"];
        args.extend_from_slice(extra);
        args.push(s(&pan));
        let line = json_lines(&dfscan(&args)).remove(0);
        line["frames"].as_array().unwrap().iter().flat_map(|f| f["faces"].as_array().unwrap().clone()).map(|f| f["ood_risk"].as_f64().unwrap()).collect::<Vec<_>>()
    };
    let threaded = risks(&[]);
    assert_eq!(threaded.len(), 8);
    assert_eq!(threaded, risks(&["--explain", s(&tmp.path().join("explain8"))]));

    // Under an unreachable threshold the verdict stands, and a fake still exits 1.
    let (line, code) = scan(&["--ood-model", s(&vit), "--ood-threshold", "1.01"]);
    assert_eq!(line["verdict"], "fake", "{line}");
    assert_eq!(code, Some(1));
    // --ood-every 3: the OOD model reads the 1st, 4th, 7th... face of each track, and the
    // input's risk is the mean of those.
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "8", "--per-frame", "--model", s(&meso), "--ood-model", s(&vit), "--ood-every", "3", s(&pan)]);
    let line = json_lines(&out).remove(0);
    let faces: Vec<&Value> = line["frames"].as_array().unwrap().iter().flat_map(|f| f["faces"].as_array().unwrap()).collect();
    let mut seen = std::collections::HashMap::new();
    let mut risks = Vec::new();
    for face in &faces {
        let in_track = seen.entry(face["track"].as_u64().unwrap()).or_insert(0usize);
        assert_eq!(face["ood_risk"].is_number(), *in_track % 3 == 0, "{line}");
        risks.extend(face["ood_risk"].as_f64());
        *in_track += 1;
    }
    assert!(faces.len() >= 4 && risks.len() < faces.len(), "{line}");
    let mean = risks.iter().sum::<f64>() / risks.len() as f64;
    assert!((line["ood_risk"].as_f64().unwrap() - mean).abs() < 1e-5, "{line}");
    // Without an OOD model the risk is null, never a guess.
    let (line, _) = scan(&["--ood-model", "none"]);
    assert!(line["ood_risk"].is_null() && line.get("ood_model").is_none(), "{line}");
    // A ViT with heads in the set gives the risk itself.
    let models = format!("{},{}", s(&meso), s(&vit));
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "2", "--models", &models, s(&pan)]);
    assert!(json_lines(&out)[0]["ood_risk"].is_number());
}

/// Seed 001's pair as shipped, by name: MesoInception4 per face, the ResNet-LSTM per track.
#[test]
fn the_shipped_frame_and_temporal_models_scan_the_samples_together() {
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "8", "--models", "mesoinception4,resnet-lstm", s(&samples())]);
    let lines = json_lines(&out);
    let pan = line_for(&lines, "astronaut_pan.mp4");
    assert_eq!(pan["status"], "ok", "{pan}");
    let names: Vec<&str> = pan["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mesoinception4", "resnet-lstm"]);
    assert!(pan["models"].as_array().unwrap().iter().all(|m| m["score"].is_number()), "{pan}");
    // No ViT among them and none asked for: no risk, and no guess at one.
    assert!(pan["ood_risk"].is_null(), "{pan}");
    assert_eq!(line_for(&lines, "no_face.mp4")["verdict"], "no_face");
}

/// The plain scan's risk comes from the default model, which has no attention map: `--explain`
/// asks for the ViT, and with `--ood-model vit` draws its attention beside the default's scores.
#[test]
fn the_plain_scan_explains_with_the_vit_when_given_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pan = samples().join("astronaut_pan.mp4");
    let explain = tmp.path().join("explain");
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "2", "--explain", s(&explain), s(&pan)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--ood-model vit --ood-threshold 0.64"), "{stderr}");
    let out = dfscan(&["scan", "-q", "--no-state", "--frames", "2", "--ood-model", "vit", "--ood-threshold", "0.64", "--explain", s(&explain), s(&pan)]);
    let line = json_lines(&out).remove(0);
    assert_eq!((&line["model"]["name"], &line["ood_model"]["name"], &line["ood_threshold"]), (&"efficientnet-lite0".into(), &"deit-tiny".into(), &0.64.into()), "{line}");
    let pngs = std::fs::read_dir(line["explain"].as_str().unwrap()).unwrap().count();
    assert_eq!(pngs, 2, "{line}");
}
