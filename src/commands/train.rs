//! `dfscan train` and `dfscan train-ood`: a classifier on a crop cache, then the
//! out-of-distribution heads on a trained ViT or U-Net.
use anyhow::{bail, Context, Result};

use crate::cli::{AbnormalitySize, TrainArgs, TrainOodArgs, VaeSize};
use dfscan::models;
use dfscan::output::progress_bar;

/// The flags every trainer reads the same way (`dfscan train` and `--arch lrnet`).
pub(crate) fn schedule(args: &TrainArgs) -> dfscan::train::trainer::Schedule {
    dfscan::train::trainer::Schedule {
        epochs: args.epochs,
        batch_size: args.batch_size.max(1),
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        patience: args.patience.max(1),
        seed: args.seed,
        max_steps_per_epoch: args.max_steps_per_epoch,
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    if let Some(recipe) = args.probe {
        return super::cv::train_probe(&args, recipe);
    }
    if args.arch == models::Arch::Spectrum {
        return train_spectrum(&args);
    }
    if args.arch == models::Arch::Lrnet {
        return super::lrnet::train(&args);
    }
    use dfscan::crops::augment::AugmentConfig;
    use dfscan::train::trainer::{self, TrainConfig, TrainEvent};
    let set = dfscan::crops::dataset::CropSet::open(&args.crops)?;
    let cfg = TrainConfig {
        arch: args.arch,
        schedule: schedule(&args),
        split: args.split.plan(),
        sbi_ratio: args.sbi.clamp(0.0, 1.0),
        augment: match (&args.augment_config, args.no_augment) {
            (Some(path), _) => serde_json::from_str(&std::fs::read_to_string(path)?).with_context(|| format!("reading {}", path.display()))?,
            (None, true) => AugmentConfig::none(),
            (None, false) => AugmentConfig::default(),
        },
        device: args.device.resolve()?,
        output: args.output.clone(),
        resume: args.resume,
        checkpoint_every: args.checkpoint_every,
        checkpoint_validation: !args.no_checkpoint_validation,
        stop_after_steps: args.stop_after_steps,
        resume_warmup: args.resume_warmup,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        pretrained: pretrained_start(args.arch)?,
        sequence_frames: args.sequence_frames,
        storage: args.storage,
        crop: set.spec,
        origins: args.origins.clone(),
        reals_only: args.reals_only,
    };
    let bar = progress_bar(0, "epoch {prefix} [{bar:30}] {pos}/{len} {msg}");
    let mut running_loss = None::<f64>;
    let mut last_auc = String::new();
    let summary = trainer::train(&set, &cfg, |event| match event {
        TrainEvent::Start { train_examples, val_examples, example, steps_per_epoch, total_steps, epoch, step, global_step } => {
            let from = if global_step == 0 { "from the start".to_string() } else { format!("from epoch {} step {step} (step {global_step} of {total_steps})", epoch + 1) };
            eprintln!("dfscan: training {} on {train_examples} {example}, validating on {val_examples}, {from}", cfg.arch.name());
            bar.set_length(steps_per_epoch as u64);
            bar.set_position(step as u64);
        }
        TrainEvent::Pretrained { path, missing } => {
            eprintln!("dfscan: started from {} (new, untrained: {})", path.display(), missing.join(", "));
        }
        TrainEvent::Step { epoch, loss, .. } => {
            let smoothed = running_loss.map_or(loss, |r| 0.9 * r + 0.1 * loss);
            running_loss = Some(smoothed);
            bar.set_prefix(format!("{}", epoch + 1));
            bar.set_message(format!("loss {smoothed:.4}{last_auc}"));
            bar.inc(1);
        }
        TrainEvent::Checkpoint(r) => {
            if let Some(a) = r.val_video_auc {
                last_auc = format!(", val AUC {a:.3} at step {}", r.global_step);
            }
        }
        TrainEvent::Epoch(r) => {
            bar.suspend(|| eprintln!("{}", serde_json::to_string(r).expect("serialisable")));
            bar.reset();
        }
    })?;
    bar.finish_and_clear();
    let best = summary.best.as_ref();
    eprintln!(
        "dfscan: best weights in {} (epoch {}, step {}, val video AUC {}); {} of {} steps, {} crops seen; log in {}",
        cfg.output.display(),
        best.map_or(0, |r| r.epoch + 1),
        best.map_or(0, |r| r.step),
        best.and_then(|r| r.val_video_auc).map_or("n/a".into(), |a| format!("{a:.4}")),
        summary.global_step,
        summary.total_steps,
        summary.crops_seen,
        dfscan::train::checkpoint::Paths::of(&cfg.output).log.display(),
    );
    if summary.paused {
        eprintln!("dfscan: stopped after --stop-after-steps; the same command with --resume goes on");
    }
    Ok(())
}

/// `dfscan train --arch spectrum`: the classifier fitted on the spectra of the train split's
/// crops (of `--origins`, if given); the validation split's video AUC is reported.
fn train_spectrum(args: &TrainArgs) -> Result<()> {
    use dfscan::crops::dataset::{CropSet, Split};
    use dfscan::train::spectrum;
    let set = CropSet::open(&args.crops)?;
    let plan = args.split.plan();
    let wanted = |i: usize| args.origins.is_empty() || args.origins.contains(&set.records[i].origin);
    let of_split = |split: Split| (0..set.records.len()).filter(|&i| wanted(i) && plan.split_of(&set.records[i].group) == split).collect::<Vec<_>>();
    let (train, val) = (of_split(Split::Train), of_split(Split::Val));
    let side = spectrum::side_of(&set);
    let bins = models::spectrum::BINS;
    let bar = progress_bar(0, "spectra [{bar:30}] {pos}/{len} crops {eta}");
    let spectra = |idx: &[usize]| {
        bar.reset();
        spectrum::crop_spectra(&set, idx, side, bins, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
    };
    let (x_train, x_val) = (spectra(&train)?, spectra(&val)?);
    bar.finish_and_clear();
    let fake = |idx: &[usize]| idx.iter().map(|&i| set.records[i].label.is_fake()).collect::<Vec<_>>();
    let cfg = args.spectrum.fit(args.classifier, args.seed);
    let fitted = spectrum::fit(&x_train, &fake(&train), bins, &cfg)?;
    let val_auc = match val.is_empty() {
        true => None,
        false => {
            let probs: Vec<f32> = fitted.logits(&x_val)?.into_iter().map(dfscan::aggregate::sigmoid).collect();
            let sources: Vec<&str> = val.iter().map(|&i| set.records[i].source.as_str()).collect();
            let (v, l) = dfscan::eval::metrics::per_video(&probs, &fake(&val), &sources, dfscan::aggregate::Strategy::Confident);
            dfscan::eval::metrics::roc_auc(&v, &l)
        }
    };
    eprintln!(
        "dfscan: spectrum {} fitted on {} of {} train crops at {side}px; validation video AUC {}",
        cfg.classifier.name(),
        fitted.rows,
        train.len(),
        val_auc.map_or("n/a (empty split)".into(), |a| format!("{a:.4}"))
    );
    let provenance = format!("{} ({} of {} train crops)", std::env::args().collect::<Vec<_>>().join(" "), fitted.rows, train.len());
    spectrum::save(&fitted, side, set.spec, provenance, &args.output)?;
    eprintln!("dfscan: wrote {}", args.output.display());
    Ok(())
}

pub fn train_ood(args: TrainOodArgs) -> Result<()> {
    use dfscan::models::abnormality::AbnormalityConfig;
    use dfscan::models::vae::VaeConfig;
    use dfscan::models::vit_ood::OodHeads;
    use dfscan::train::ood_trainer::{self, OodTrainConfig, OodTrainEvent, StageConfig};
    let set = dfscan::crops::dataset::CropSet::open(&args.crops)?;
    let stage = |epochs, learning_rate, max_steps_per_epoch| StageConfig { epochs, batch_size: args.batch_size.max(2), learning_rate, max_steps_per_epoch };
    let cfg = OodTrainConfig {
        classifier: args.model.clone(),
        heads: OodHeads {
            vae: Some(match args.vae {
                VaeSize::Small => VaeConfig::small(),
                VaeSize::Seed => VaeConfig::seed(),
            }),
            abnormality: match args.abnormality {
                AbnormalitySize::Narrow => AbnormalityConfig::deit_tiny_narrow(),
                AbnormalitySize::Seed => AbnormalityConfig::deit_tiny(),
            },
        },
        vae: stage(args.vae_epochs, args.vae_lr, args.vae_steps),
        kl_weight: args.kl_weight,
        abnormality: stage(args.abnormality_epochs, args.abnormality_lr, args.abnormality_steps),
        split: args.split.plan(),
        extra_ood: args.ood_crops.clone(),
        max_train_crops: args.max_train_crops,
        ordinary_copies: args.ordinary_copies,
        origins: args.origins.clone(),
        seed: args.seed,
        device: args.device.resolve()?,
        storage: args.storage,
        output: args.output.clone(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let bar = progress_bar(0, "{prefix} [{bar:30}] {pos}/{len} {msg}");
    let report = ood_trainer::train_ood(&set, &cfg, |event| match event {
        OodTrainEvent::Start { train_crops, val_crops, real_ood } => {
            eprintln!("dfscan: OOD heads for {} on {train_crops} train crops (+{real_ood} real OOD images), validating on {val_crops}", args.model.display());
        }
        OodTrainEvent::Features { what, crops } => bar.suspend(|| eprintln!("dfscan: frozen networks over {crops} {what}")),
        OodTrainEvent::Stage { name, steps_per_epoch } => {
            bar.set_prefix(name);
            bar.set_length(steps_per_epoch as u64);
            bar.reset();
        }
        OodTrainEvent::Step { loss } => {
            bar.set_message(format!("loss {loss:.4}"));
            bar.inc(1);
        }
        OodTrainEvent::VaeEpoch(r) => {
            bar.suspend(|| eprintln!("{}", serde_json::json!({ "stage": "vae", "epoch": r })));
            bar.reset();
        }
        OodTrainEvent::AbnormalityEpoch(r) => {
            bar.suspend(|| eprintln!("{}", serde_json::json!({ "stage": "abnormality", "epoch": r })));
            bar.reset();
        }
    })?;
    bar.finish_and_clear();
    let best = report.abnormality.iter().rfind(|r| r.best);
    eprintln!(
        "dfscan: wrote {} (abnormality epoch {}, val AUROC {})",
        cfg.output.display(),
        best.map_or(0, |r| r.epoch + 1),
        best.and_then(|r| r.val).map_or("n/a".into(), |m| format!("{:.4}", m.auroc))
    );
    Ok(())
}

/// The pretrained start of `arch`, imported on first use from the file the set-up fetched.
pub(crate) fn pretrained_start(arch: models::Arch) -> Result<Option<std::path::PathBuf>> {
    let Some((raw, path)) = models::pretrained_weights(&super::models_dir(), arch) else { return Ok(None) };
    if !path.is_file() {
        if !raw.is_file() {
            bail!("{} needs its ImageNet weights: run scripts/setup.sh", arch.name());
        }
        models::import::import(arch, &[raw.as_path()], &path, &super::python())?;
        eprintln!("dfscan: imported {} -> {}", raw.display(), path.display());
    }
    Ok(Some(path))
}
