//! `dfscan train` and `dfscan eval` on a sequence model (ResNet-LSTM), through the library on a
//! tiny crop cache written here: the loss falls, the weights load as a `SequenceModel` with the
//! chosen T, and eval scores windows of T crops per input.
use std::path::Path;

use dfscan::eval::evaluate::{evaluate, EvalConfig};
use dfscan::models::weights::Storage;
use dfscan::models::{AnyModel, Arch, SequenceModel};
use dfscan::train::augment::AugmentConfig;
use dfscan::train::dataset::{CropRecord, CropSet, Label, SplitPlan, INDEX_FILE};
use dfscan::train::trainer::{train, TrainConfig};

const SIZE: i32 = 32;
const T: usize = 2;

/// Three real and three fake inputs of three frames each, plus one single-image input per
/// class (a track shorter than T, to be padded). Reals are reddish noise, fakes bluish: an easy
/// difference. Noise from a hash, frame by frame, so crops of one input differ.
fn tiny_cache(dir: &Path) {
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    let mut index = csv::Writer::from_path(dir.join(INDEX_FILE)).unwrap();
    let inputs = [(Label::Real, 3), (Label::Real, 3), (Label::Real, 3), (Label::Real, 1), (Label::Fake, 3), (Label::Fake, 3), (Label::Fake, 3), (Label::Fake, 1)];
    for (n, (label, frames)) in inputs.into_iter().enumerate() {
        for frame in 0..frames {
            let rgb: Vec<u8> = (0..SIZE * SIZE * 3)
                .map(|i| {
                    let noise = (((i as f64 + 97.0 * (n * 8 + frame) as f64) * 12.9898).sin() * 43758.5453).fract().abs();
                    let channel = (i % 3) as usize;
                    let tint = match (label, channel) {
                        (Label::Real, 0) | (Label::Fake, 2) => 120.0,
                        _ => 0.0,
                    };
                    (tint + 100.0 * noise) as u8
                })
                .collect();
            let file = format!("crops/{n}_{frame}.png");
            dfscan::faces::crop::write_rgb_png(&dir.join(&file), &rgb, SIZE).unwrap();
            let source = format!("input-{n}.mp4");
            index
                .serialize(CropRecord { file, label, group: source.clone(), source, frame, pts_s: frame as f64, confidence: 1.0 })
                .unwrap();
        }
    }
    index.flush().unwrap();
}

#[test]
fn a_sequence_model_trains_loads_with_its_t_and_evaluates_per_window() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    tiny_cache(&cache);
    let set = CropSet::open(&cache).unwrap();
    let every_crop_trains = SplitPlan { seed: 1, val_fraction: 0.0, test_fraction: 0.0 };
    let weights = tmp.path().join("seq.safetensors");
    let cfg = TrainConfig {
        arch: Arch::ResnetLstm,
        epochs: 3,
        batch_size: 4,
        learning_rate: 1e-3,
        weight_decay: 0.0,
        patience: 10,
        seed: 1,
        split: every_crop_trains,
        sbi_ratio: 0.0,
        augment: AugmentConfig::none(),
        device: tch::Device::Cpu,
        output: weights.clone(),
        resume: false,
        max_steps_per_epoch: None,
        command_line: "test".into(),
        // From scratch: the ImageNet import is a set-up file, and this checks the loop.
        pretrained: None,
        sequence_frames: Some(T),
        storage: Storage::F16,
    };
    let mut examples = 0;
    let history = train(&set, &cfg, |event| {
        if let dfscan::train::trainer::TrainEvent::Start { train_examples, .. } = event {
            examples = train_examples;
        }
    })
    .unwrap();
    // 6 inputs of 3 frames give 2 windows each; the 2 single images one (padded) each.
    assert_eq!(examples, 14);
    let losses: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0], "training loss should fall: {losses:?}");

    let model = SequenceModel::load(&weights, tch::Device::Cpu).unwrap();
    assert_eq!(model.frames(), T as i64);

    let model = AnyModel::load(&weights, tch::Device::Cpu).unwrap();
    let eval_cfg = EvalConfig {
        split: None,
        plan: every_crop_trains,
        aggregate: dfscan::aggregate::Strategy::Mean,
        threshold: 0.5,
        perturbations: vec![dfscan::train::augment::Perturbation::Flip],
        batch_size: 8,
    };
    let report = evaluate(&set, &model, &eval_cfg).unwrap();
    assert_eq!((report.crops, report.examples, report.videos), (20, 14, 8));
    assert_eq!(report.frame_unit, "window of 2 crops");
    assert_eq!(report.conditions.len(), 2);
    assert_eq!(report.conditions[0].frame.metrics.n_pos + report.conditions[0].frame.metrics.n_neg, 14);
}
