//! extract -> train -> eval on inputs generated here, through the real binary: the crop cache
//! is written, a few training steps lower the loss, and eval reports metrics and a ROC plot.
mod common;

use common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A folder of labelled clips: real = the astronaut pan (and its mirror), fake = the same
/// footage with a colour-swapped face region, an easy, learnable difference.
fn labelled_clips(dir: &std::path::Path) {
    let pan = samples().join("astronaut_pan.mp4");
    for sub in ["real", "fake"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    ffmpeg(&["-i", s(&pan), "-c", "copy", s(&dir.join("real/pan.mp4"))]);
    ffmpeg(&["-i", s(&pan), "-vf", "hflip", s(&dir.join("real/mirror.mp4"))]);
    // Swap red and blue channels over the whole frame, then blur slightly: visibly "not real".
    ffmpeg(&["-i", s(&pan), "-vf", "colorchannelmixer=rr=0:rb=1:br=1:bb=0,gblur=sigma=2", s(&dir.join("fake/swapped.mp4"))]);
    ffmpeg(&["-i", s(&pan), "-vf", "hflip,colorchannelmixer=rr=0:rb=1:br=1:bb=0,gblur=sigma=2", s(&dir.join("fake/swapped_mirror.mp4"))]);
}

#[test]
fn extract_train_eval_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let clips = tmp.path().join("clips");
    labelled_clips(&clips);
    let cache = tmp.path().join("cache");

    let out = dfscan(&["extract", s(&clips), "-o", s(&cache), "--frames", "6"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let index = std::fs::read_to_string(cache.join("index.csv")).unwrap();
    let rows: Vec<&str> = index.lines().skip(1).collect();
    assert_eq!(rows.len(), 24, "4 clips x 6 frames, one face each:\n{index}");
    assert_eq!(rows.iter().filter(|r| r.contains(",fake,")).count(), 12);
    let first_png = rows[0].split(',').next().unwrap();
    assert!(cache.join(first_png).is_file());

    // A second extract over the same folder resumes: nothing is cut twice.
    let again = dfscan(&["extract", s(&clips), "-o", s(&cache), "--frames", "6"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("4 already there"));
    assert_eq!(std::fs::read_to_string(cache.join("index.csv")).unwrap(), index);

    // Every crop in the train split (no held-out groups), no augmentation: loss must fall.
    let weights = tmp.path().join("model.safetensors");
    let out = dfscan(&[
        "train", "--crops", s(&cache), "-o", s(&weights), "--epochs", "4", "--batch-size", "8", "--lr", "3e-3",
        "--no-augment", "--sbi", "0", "--val-fraction", "0", "--test-fraction", "0", "--patience", "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let losses: Vec<f64> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|epoch| epoch["train_loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 4, "{stderr}");
    assert!(losses[3] < losses[0], "training loss should fall: {losses:?}");
    assert!(weights.is_file());

    // The trained weights scan like any others, and know where they came from.
    let scan = json_lines(&dfscan(&["scan", "-q", "--frames", "2", "--model", s(&weights), s(&samples().join("astronaut_pan.mp4"))]));
    assert_eq!(scan[0]["status"], "ok");

    let report = tmp.path().join("report.json");
    let roc = tmp.path().join("roc.png");
    let out = dfscan(&[
        "eval", "--model", s(&weights), "--crops", s(&cache), "--perturb", "flip", "--perturb", "jpeg",
        "--report", s(&report), "--roc", s(&roc),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = plain_json_lines(&out);
    let conditions: Vec<&str> = lines.iter().map(|l| l["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions, ["clean", "flip", "jpeg"]);
    let clean = &lines[0];
    assert_eq!(clean["crops"], 24);
    assert_eq!(clean["videos"], 4);
    for level in ["frame", "video"] {
        for key in ["auc", "average_precision", "eer", "accuracy", "log_loss", "confusion"] {
            assert!(clean[level].get(key).is_some(), "{level}.{key} missing: {clean}");
        }
    }
    let auc = clean["frame"]["auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc));
    assert!(std::fs::metadata(&roc).unwrap().len() > 1000, "a real PNG");
    let full: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(full["conditions"][0]["video"]["roc"].as_array().unwrap().len() >= 2);
}
