//! A training run split into two sittings (`stop_after_steps`, then `resume`) against the same
//! run in one go, through the library on a tiny crop cache: the resumed sitting starts at the
//! step where the first stopped, mid-epoch, on the same batch, continues the learning-rate
//! schedule at that global step, and ends after as many steps and crops as the whole run.
//! Its own test binary: the comparison needs torch's global RNG (dropout) to itself.
mod common;

use std::path::Path;

use dfscan::models::weights::Storage;
use dfscan::models::Arch;
use dfscan::crops::augment::AugmentConfig;
use dfscan::train::checkpoint::{read_log, Paths};
use dfscan::crops::dataset::{CropSet, Label, SplitPlan};
use dfscan::train::trainer::{learning_rate, train, Schedule, TrainConfig, TrainEvent, TrainSummary};

const LR: f64 = 1e-3;

fn config(output: &Path, resume: bool, stop_after_steps: Option<usize>) -> TrainConfig {
    TrainConfig {
        arch: Arch::Meso4,
        schedule: Schedule { epochs: 2, batch_size: 2, learning_rate: LR, weight_decay: 1e-4, patience: 10, seed: 5, max_steps_per_epoch: None },
        split: SplitPlan { seed: 1, val_fraction: 0.0, test_fraction: 0.0 },
        // Blends and augmentations on: a resumed step must replay their random draws too.
        sbi_ratio: 0.5,
        augment: AugmentConfig::default(),
        device: tch::Device::Cpu,
        output: output.to_path_buf(),
        resume,
        checkpoint_every: 2,
        checkpoint_validation: true,
        stop_after_steps,
        resume_warmup: 2,
        command_line: "test".into(),
        pretrained: None,
        sequence_frames: None,
        storage: Storage::F32,
        crop: None,
        origins: Vec::new(),
        reals_only: false,
    }
}

/// Trains, returning the summary, the (global step, loss) of each step and the Start event's
/// (epoch, step, global step).
fn run(set: &CropSet, cfg: &TrainConfig) -> (TrainSummary, Vec<(usize, f64)>, (usize, usize, usize)) {
    let (mut steps, mut start) = (Vec::new(), (usize::MAX, 0, 0));
    let summary = train(set, cfg, |event| match event {
        TrainEvent::Start { epoch, step, global_step, .. } => start = (epoch, step, global_step),
        TrainEvent::Step { global_step, loss, .. } => steps.push((global_step, loss)),
        _ => {}
    })
    .unwrap();
    (summary, steps, start)
}

#[test]
fn a_resumed_run_continues_the_learning_rate_schedule_where_it_stopped() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let inputs: Vec<(Label, usize)> = [Label::Real, Label::Fake].into_iter().cycle().take(8).map(|l| (l, 1)).collect();
    common::tinted_noise_cache(&cache, &inputs);
    let set = CropSet::open(&cache).unwrap();

    // 8 crops in batches of 2: 4 steps per epoch, 8 in all; checkpoints every 2.
    let whole_out = tmp.path().join("whole.safetensors");
    let (whole, whole_steps, _) = run(&set, &config(&whole_out, false, None));
    assert_eq!((whole.global_step, whole.total_steps, whole.crops_seen, whole.paused), (8, 8, 16, false));
    let whole_log = read_log(&Paths::of(&whole_out).log).unwrap();
    let at = |log: &[dfscan::train::checkpoint::CheckpointReport]| log.iter().map(|r| (r.global_step, r.epoch, r.step)).collect::<Vec<_>>();
    assert_eq!(at(&whole_log), [(2, 0, 2), (4, 0, 4), (6, 1, 2), (8, 1, 4)]);
    for r in &whole_log {
        // A line's rate is that of the step before it.
        assert_eq!(r.lr, learning_rate(r.global_step - 1, 8, LR), "{r:?}");
        assert_eq!(r.crops_seen, 2 * r.global_step as u64);
    }

    // First sitting: 3 steps, stopping mid-epoch with a checkpoint.
    let split_out = tmp.path().join("split.safetensors");
    let (first, first_steps, _) = run(&set, &config(&split_out, false, Some(3)));
    assert_eq!((first.global_step, first.crops_seen, first.paused), (3, 6, true));
    assert!(first.history.is_empty(), "no epoch finished");
    // Until then, the same run: the same draws, step for step.
    assert_eq!(first_steps, whole_steps[..3]);

    // Second sitting: from global step 3, step 3 of epoch 0.
    let (second, second_steps, start) = run(&set, &config(&split_out, true, None));
    assert_eq!(start, (0, 3, 3));
    assert_eq!(second_steps.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
    assert_eq!((second.global_step, second.crops_seen, second.paused), (whole.global_step, whole.crops_seen, false));
    assert_eq!(second.history.len(), 2);
    // Its first step sees the batch the whole run saw at step 3, with the restored weights
    // (the optimizer only acts after the loss).
    let (resumed, uninterrupted) = (second_steps[0].1, whole_steps[3].1);
    assert!((resumed - uninterrupted).abs() <= 1e-5 * uninterrupted.abs(), "step 3: resumed loss {resumed}, whole run {uninterrupted}");

    let log = read_log(&Paths::of(&split_out).log).unwrap();
    assert_eq!(at(&log), [(2, 0, 2), (3, 0, 3), (4, 0, 4), (6, 1, 2), (8, 1, 4)]);
    assert_eq!(log[1].lr, learning_rate(2, 8, LR));
    // Step 3, the first after the resume: the schedule at step 3, halved by the 2-step warm-up
    // (a schedule restarted at the epoch would give a rate near LR).
    assert!((log[2].lr - 0.5 * learning_rate(3, 8, LR)).abs() < 1e-15, "{:?}", log[2]);
    // Past the warm-up, the rates are those of the uninterrupted run.
    let rates = |log: &[dfscan::train::checkpoint::CheckpointReport]| log.iter().map(|r| (r.global_step, r.lr, r.crops_seen)).collect::<Vec<_>>();
    assert_eq!(rates(&log[3..]), rates(&whole_log[2..]));
    assert!(log.windows(2).all(|w| w[0].seconds <= w[1].seconds), "seconds add up over sittings: {log:?}");
}
