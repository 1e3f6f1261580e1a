//! LRNet on our own landmarks: the landmark cache (`extract --landmarks`) holds exactly what
//! the scan feeds LRNet, calibrated and raw (`scan --landmark-calibration on|off` reads one or
//! the other); `train --arch lrnet` fine-tunes both streams, resumes, and writes weights the
//! scan loads; the fine-tune's loss falls, and `cv --lrnet`'s folds hold each origin out. The
//! library tests run on the authors' demo landmark files (tests/data/lrnet), cut into runs.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use dfscan::crops::dataset::{Label, SplitPlan};
use dfscan::crops::landmarks::{self, CacheSettings, LandmarkRecord, LandmarkSet};
use dfscan::faces::calibrate::{Calibration, LandmarkRun, TrackLandmarks};
use dfscan::models::lrnet::{self, LrnetModel};
use dfscan::train::checkpoint::TrainState;
use dfscan::train::lrnet::{self as ft, FineTune};
use dfscan::train::trainer::Schedule;
use tch::Device;

/// One of the authors' landmark files as a record: its frames cut into runs of 61 (as two
/// clips would give), the raw rows the calibrated ones plus a little jitter.
fn record(file: &str, label: Label, origin: &str) -> LandmarkRecord {
    let text = std::fs::read_to_string(repo().join("tests/data/lrnet").join(file)).unwrap();
    let rows: Vec<Vec<f32>> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect()).collect();
    let runs = rows
        .chunks(61)
        .enumerate()
        .map(|(k, chunk)| LandmarkRun {
            clip: k,
            start: 0,
            calibrated: chunk.to_vec(),
            raw: chunk.iter().enumerate().map(|(t, r)| r.iter().enumerate().map(|(i, v)| v + if (t + i) % 3 == 0 { 0.01 } else { 0.0 }).collect()).collect(),
        })
        .collect();
    LandmarkRecord {
        source: format!("/data/{origin}/{file}"),
        label,
        group: file.to_string(),
        origin: origin.into(),
        frames_sampled: rows.len(),
        error: None,
        tracks: vec![TrackLandmarks { id: 0, runs }],
    }
}

fn demo_records() -> Vec<LandmarkRecord> {
    vec![
        record("ff_real.landmarks.txt", Label::Real, "ff"),
        record("ff_fake.landmarks.txt", Label::Fake, "ff"),
        record("dfo_real.landmarks.txt", Label::Real, "dfo"),
        record("dfo_fake.landmarks.txt", Label::Fake, "dfo"),
    ]
}

#[test]
fn fine_tune_loss_falls_and_videos_are_judged_as_the_scan_judges_them() {
    let records = demo_records();
    let refs: Vec<&LandmarkRecord> = records.iter().collect();
    tch::manual_seed(5);
    let (mut vs, net) = ft::network(None, Device::Cpu).unwrap();
    // A video with one track and one run is its blocks' mean (the scan's rule for LRNet).
    let run = &records[0].tracks[0].runs[0].calibrated;
    let flat: Vec<f32> = run.iter().flatten().copied().collect();
    let mean = net.score_track(&tch::Tensor::from_slice(&flat).view([run.len() as i64, -1])).unwrap().mean;
    let one_run = LandmarkRecord { tracks: vec![TrackLandmarks { id: 0, runs: vec![records[0].tracks[0].runs[0].clone()] }], ..records[0].clone() };
    let score = ft::video_score(&net, &one_run, Calibration::On).unwrap().unwrap();
    assert!((score as f64 - mean).abs() < 1e-6, "{score} vs {mean}");
    // Raw and calibrated rows are different inputs.
    assert_ne!(ft::video_score(&net, &one_run, Calibration::Off).unwrap(), Some(score));

    let d = FineTune::default();
    let cfg = FineTune { schedule: Schedule { epochs: 6, batch_size: 16, learning_rate: 3e-3, seed: 3, patience: 100, ..d.schedule }, stride: 10, ..d };
    let windows = ft::windows(&refs, Calibration::On, lrnet::BLOCK as usize, cfg.stride);
    // Runs of 61 frames at stride 10: windows at 0, 10, 20, 30 (and shorter runs fewer).
    assert_eq!(windows.x.size()[1..], [30, 136]);
    assert!(windows.len() > 100, "{} windows", windows.len());
    let mut state = TrainState::new(cfg.schedule.seed, cfg.schedule.batch_size, windows.len(), 0);
    let mut losses = Vec::new();
    ft::fine_tune(&net, &mut vs, &windows, &refs, &cfg, &mut state, |r, _, _| {
        losses.push(r.train_loss);
        assert!(r.val_video_auc.is_some());
        Ok(())
    })
    .unwrap();
    assert_eq!(losses.len(), 6);
    assert!(losses[5] < 0.9 * losses[0], "the loss falls: {losses:?}");
    assert_eq!(state.epoch, 6);
    assert!(state.best.is_some());
}

#[test]
fn cv_holds_each_origin_out_and_fine_tunes_on_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = CacheSettings { clips: 2, clip_len: 61, detector: dfscan::faces::DetectorKind::Res10, min_face_confidence: 0.5, landmarker: "test".into() };
    landmarks::create_or_resume(tmp.path(), &settings).unwrap();
    for r in demo_records() {
        landmarks::write_record(tmp.path(), &r).unwrap();
    }
    let set = LandmarkSet::open(tmp.path()).unwrap();
    assert_eq!(set.records.len(), 4);
    // Through the cache: the authors' values (multiples of 1/200) come back within f32 rounding.
    let back = set.records.iter().find(|r| r.source.ends_with("ff_real.landmarks.txt")).unwrap();
    let original = record("ff_real.landmarks.txt", Label::Real, "ff");
    let (a, b) = (&back.tracks[0].runs[3].calibrated[7], &original.tracks[0].runs[3].calibrated[7]);
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6));
    // A random pair as the fixed row and as the fine-tune's start.
    let (vs, fixed) = ft::network(None, Device::Cpu).unwrap();
    let start = tmp.path().join("start.safetensors");
    let header = dfscan::models::Header {
        format: dfscan::models::weights::FORMAT_VERSION,
        network: dfscan::models::NetworkConfig::Lrnet(lrnet::LrnetConfig::source()),
        preprocess: dfscan::models::Preprocess::lrnet(),
        provenance: "test".into(),
        ood: None,
    };
    dfscan::models::weights::save(&start, &ft::tensors(&vs), &header).unwrap();
    let cv = dfscan::train::lrnet_cv::LrnetCv {
        fixed: vec![("random".into(), &fixed)],
        start: Some(("random".into(), start)),
        fine_tune: {
            let d = FineTune::default();
            FineTune { schedule: Schedule { epochs: 2, ..d.schedule }, stride: 15, ..d }
        },
        calibrations: vec![Calibration::On, Calibration::Off],
        origins: Vec::new(),
        // Two groups per fold: none kept for early stopping.
        val: SplitPlan { seed: 1, val_fraction: 0.0, test_fraction: 0.0 },
    };
    let mut fine_tunes = Vec::new();
    let report = dfscan::train::lrnet_cv::cross_validate(&set, &cv, |e| {
        if let dfscan::train::lrnet_cv::CvEvent::FineTune { origin, train_videos, .. } = e {
            fine_tunes.push((origin.to_string(), train_videos));
        }
    })
    .unwrap();
    assert_eq!(report.folds.iter().map(|f| f.origin.as_str()).collect::<Vec<_>>(), ["dfo", "ff"]);
    // Each fold fine-tunes (calibrated, then raw) on the other origin's two videos alone.
    assert_eq!(fine_tunes.iter().map(|(o, n)| (o.as_str(), *n)).collect::<Vec<_>>(), [("dfo", 2), ("dfo", 2), ("ff", 2), ("ff", 2)]);
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["random, calibrated", "fine-tuned from random, calibrated", "random, raw", "fine-tuned from random, raw"]);
    assert!(report.rows.iter().all(|r| r.auc.iter().all(Option::is_some)), "each fold has a real and a fake video");
    assert_eq!(report.out_of_fold.len(), 4);
    // The fixed row scores a held-out video as the library does.
    let dfo_fake = report.out_of_fold.iter().find(|o| o.source.ends_with("dfo_fake.landmarks.txt")).unwrap();
    let rec = set.records.iter().find(|r| r.source == dfo_fake.source).unwrap();
    assert_eq!(Some(dfo_fake.scores[0]), ft::video_score(&fixed, rec, Calibration::On).unwrap());
    assert!(report.table().contains("fine-tuned from random, raw"));
}

/// A 25 fps clip of `frames` frames: the astronaut zooming in at `speed` per frame.
fn zoom_clip(frames: usize, speed: &str) -> PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lrnet-train-{frames}-{speed}.mp4"));
    if !path.is_file() {
        let filter = format!("scale=640:-2,zoompan=z='1+{speed}*on':x='iw/2-(iw/zoom/2)+on':y='ih/2-(ih/zoom/2)':d=1:s=480x480:fps=25");
        let partial = path.with_extension("partial.mp4");
        let n = frames.to_string();
        ffmpeg(&["-loop", "1", "-i", samples().join("astronaut.jpg").to_str().unwrap(), "-vf", &filter, "-frames:v", &n, "-pix_fmt", "yuv420p", partial.to_str().unwrap()]);
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let out = dfscan(args);
    assert!(out.status.success(), "dfscan {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn scan_score(clip: &Path, extra: &[&str]) -> f32 {
    let args = [&["scan", "--no-state", "-q", "--clips", "1", "--clip-len", "35"], extra, &[clip.to_str().unwrap()]].concat();
    let lines = json_lines(&dfscan(&args));
    assert_eq!(lines[0]["status"], "ok", "{}", lines[0]);
    lines[0]["score"].as_f64().unwrap() as f32
}

#[test]
fn the_cache_holds_what_the_scan_feeds_lrnet_and_a_fine_tune_scans() {
    if venv_python("lrnet extract --landmarks (imports the public weights)").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (slow, fast) = (zoom_clip(40, "0.002"), zoom_clip(40, "0.006"));
    let manifest = tmp.path().join("m.csv");
    std::fs::write(&manifest, format!("path,label,group,faces,origin\n{},real,a,detect,o1\n{},fake,b,detect,o2\n", slow.display(), fast.display())).unwrap();
    let cache = tmp.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    run_ok(&["extract", "--landmarks", manifest.to_str().unwrap(), "-o", cache_s, "--clips", "1", "--clip-len", "35"]);
    let set = LandmarkSet::open(&cache).unwrap();
    assert_eq!(set.records.len(), 2);
    assert_eq!((set.settings.clips, set.settings.clip_len), (1, 35));
    let rec = set.records.iter().find(|r| r.source == slow.to_string_lossy()).unwrap();
    let run = &rec.tracks[0].runs[0];
    assert_eq!((run.calibrated.len(), run.raw.len(), run.calibrated[0].len()), (35, 35, 136));
    assert_ne!(run.calibrated, run.raw, "calibration moved some points");
    // The scan's LRNet score, calibrated and raw, is the cache's, to the last digit printed.
    let public = LrnetModel::load(&repo().join("models/public/lrnet-dfo.safetensors"), Device::Cpu).unwrap();
    let (on, off) = (scan_score(&slow, &["--models", "lrnet-dfo"]), scan_score(&slow, &["--models", "lrnet-dfo", "--landmark-calibration", "off"]));
    assert_ne!(on, off, "--landmark-calibration off changes what LRNet reads");
    assert_eq!(ft::video_score(&public.net, rec, Calibration::On).unwrap(), Some(on));
    assert_eq!(ft::video_score(&public.net, rec, Calibration::Off).unwrap(), Some(off));
    // A rerun skips what is there.
    let again = run_ok(&["extract", "--landmarks", manifest.to_str().unwrap(), "-o", cache_s, "--clips", "1", "--clip-len", "35"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("2 already there"));

    // Two epochs, then one more with --resume; every epoch logged once; the weights scan.
    let out = tmp.path().join("ft.safetensors");
    let train = |epochs: &str, resume: bool| {
        let base = ["train", "--arch", "lrnet", "--crops", cache_s, "-o", out.to_str().unwrap(), "--epochs", epochs, "--window-stride", "2", "--val-fraction", "0", "--test-fraction", "0"];
        run_ok(&[&base[..], if resume { &["--resume"][..] } else { &[][..] }].concat())
    };
    train("2", false);
    train("3", true);
    let log = std::fs::read_to_string(format!("{}.log.jsonl", out.display())).unwrap();
    assert_eq!(log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    let tuned = LrnetModel::load(&out, Device::Cpu).unwrap();
    assert!(tuned.header.provenance.contains("fine-tuned from"), "{}", tuned.header.provenance);
    let score = scan_score(&slow, &["--models", out.to_str().unwrap()]);
    assert_eq!(ft::video_score(&tuned.net, rec, Calibration::On).unwrap(), Some(score));
}
