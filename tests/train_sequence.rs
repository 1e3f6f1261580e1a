//! `dfscan train` and `dfscan eval` on a sequence model (ResNet-LSTM), through the library on a
//! tiny crop cache written here: the loss falls, the weights load as a `SequenceModel` with the
//! chosen T, and eval scores windows of T crops per input.
mod common;

use dfscan::eval::evaluate::{evaluate, EvalConfig};
use dfscan::models::weights::Storage;
use dfscan::models::{AnyModel, Arch, SequenceModel};
use dfscan::crops::augment::AugmentConfig;
use dfscan::crops::dataset::{CropSet, Label, SplitPlan};
use dfscan::train::trainer::{train, Schedule, TrainConfig};

const T: usize = 2;

#[test]
fn a_sequence_model_trains_loads_with_its_t_and_evaluates_per_window() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // A track shorter than T, one per class, is padded.
    let inputs = [(Label::Real, 3), (Label::Real, 3), (Label::Real, 3), (Label::Real, 1), (Label::Fake, 3), (Label::Fake, 3), (Label::Fake, 3), (Label::Fake, 1)];
    common::tinted_noise_cache(&cache, &inputs);
    let set = CropSet::open(&cache).unwrap();
    let every_crop_trains = SplitPlan { seed: 1, val_fraction: 0.0, test_fraction: 0.0 };
    let weights = tmp.path().join("seq.safetensors");
    let cfg = TrainConfig {
        arch: Arch::ResnetLstm,
        schedule: Schedule { epochs: 3, batch_size: 4, learning_rate: 1e-3, weight_decay: 0.0, patience: 10, seed: 1, max_steps_per_epoch: None },
        split: every_crop_trains,
        sbi_ratio: 0.0,
        augment: AugmentConfig::none(),
        device: tch::Device::Cpu,
        output: weights.clone(),
        resume: false,
        checkpoint_every: 0,
        checkpoint_validation: true,
        stop_after_steps: None,
        resume_warmup: 0,
        command_line: "test".into(),
        // From scratch: the ImageNet import is a set-up file, and this checks the loop.
        pretrained: None,
        sequence_frames: Some(T),
        storage: Storage::F16,
        crop: None,
        origins: Vec::new(),
        reals_only: false,
    };
    let mut examples = 0;
    let history = train(&set, &cfg, |event| {
        if let dfscan::train::trainer::TrainEvent::Start { train_examples, .. } = event {
            examples = train_examples;
        }
    })
    .unwrap()
    .history;
    // 6 inputs of 3 frames give 2 windows each; the 2 single images one (padded) each.
    assert_eq!(examples, 14);
    let losses: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0], "training loss should fall: {losses:?}");

    let model = SequenceModel::load(&weights, tch::Device::Cpu).unwrap();
    assert_eq!(model.frames(), T as i64);

    let model = AnyModel::load(&weights, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let eval_cfg = EvalConfig {
        split: None,
        plan: every_crop_trains,
        aggregate: dfscan::aggregate::Strategy::Mean,
        threshold: 0.5,
        perturbations: vec![dfscan::crops::augment::Perturbation::Flip],
        batch_size: 8,
    };
    let report = evaluate(&set, &model, &eval_cfg).unwrap();
    assert_eq!((report.crops, report.examples, report.videos), (20, 14, 8));
    assert_eq!(report.frame_unit, "window of 2 crops");
    assert_eq!(report.conditions.len(), 2);
    assert_eq!(report.conditions[0].frame.metrics.n_pos + report.conditions[0].frame.metrics.n_neg, 14);
}
