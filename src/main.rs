//! dfscan's command line: parse arguments, build the configuration once, run, pick the exit code.
mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::{AbnormalitySize, BenchArgs, Cli, Command, EvalArgs, ExtractArgs, ImportArgs, SplitArgs, TrainArgs, TrainOodArgs, VaeSize};
use dfscan::decode::Sampling;
use dfscan::models;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => commands::scan::scan(args),
        Command::Watch(args) => commands::scan::watch(args),
        Command::Import(args) => import(args).map(|()| 0),
        Command::Extract(args) => extract(args),
        Command::Train(args) => train(args).map(|()| 0),
        Command::TrainOod(args) => train_ood(args).map(|()| 0),
        Command::Eval(args) => eval(args).map(|()| 0),
        Command::Bench(args) => bench(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("dfscan: {e:#}");
            ExitCode::from(2)
        }
    }
}


fn import(args: ImportArgs) -> Result<()> {
    let python = args.python.unwrap_or_else(models::import::default_python);
    let summary = models::import::import(args.arch, &args.input, &args.output, &python)
        .with_context(|| format!("importing {}", args.input.display()))?;
    eprintln!(
        "dfscan: wrote {} ({} tensors, {} layout, output {:?}, input {}x{})",
        args.output.display(),
        summary.tensors,
        summary.layout,
        summary.header.preprocess.output,
        summary.header.preprocess.input_size,
        summary.header.preprocess.input_size,
    );
    eprintln!("dfscan: provenance: {}", summary.header.provenance);
    Ok(())
}

fn extract(args: ExtractArgs) -> Result<i32> {
    use dfscan::train::extract::{self, ExtractConfig, ExtractEvent};
    let rows = dfscan::train::dataset::read_manifest(&args.manifest)?;
    let mut detector = dfscan::faces::build_detector(args.detector, &models::models_dir().join("public"), args.min_face_confidence)?;
    let cfg = ExtractConfig { sampling: Sampling::Frames(args.frames.max(1)), margin: args.margin, size: args.size, faces_per_frame: args.faces_per_frame.max(1) };
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let summary = extract::extract(&rows, &args.output, detector.as_mut(), &cfg, |event| {
        bar.inc(1);
        if let ExtractEvent::Failed { path, error } = event {
            bar.suspend(|| eprintln!("dfscan: skipped {}: {error}", path.display()));
        }
    })?;
    bar.finish_and_clear();
    eprintln!(
        "dfscan: {} crops from {} inputs into {} ({} already there, {} without usable faces)",
        summary.crops,
        summary.inputs - summary.failed.len(),
        args.output.display(),
        summary.skipped_already_done,
        summary.failed.len()
    );
    Ok(if summary.failed.is_empty() { 0 } else { 2 })
}

impl SplitArgs {
    fn plan(self) -> dfscan::train::dataset::SplitPlan {
        dfscan::train::dataset::SplitPlan { seed: self.split_seed, val_fraction: self.val_fraction, test_fraction: self.test_fraction }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    use dfscan::train::augment::AugmentConfig;
    use dfscan::train::trainer::{self, TrainConfig, TrainEvent};
    let set = dfscan::train::dataset::CropSet::open(&args.crops)?;
    let cfg = TrainConfig {
        arch: args.arch,
        epochs: args.epochs,
        batch_size: args.batch_size.max(1),
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        patience: args.patience.max(1),
        seed: args.seed,
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
        max_steps_per_epoch: args.max_steps_per_epoch,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        pretrained: pretrained_start(args.arch)?,
        sequence_frames: args.sequence_frames,
        storage: args.storage,
    };
    let bar = progress_bar("epoch {prefix} [{bar:30}] {pos}/{len} {msg}");
    let mut running_loss = None::<f64>;
    let mut last_auc = String::new();
    let history = trainer::train(&set, &cfg, |event| match event {
        TrainEvent::Start { train_examples, val_examples, example, steps_per_epoch, start_epoch } => {
            eprintln!("dfscan: training {} on {train_examples} {example}, validating on {val_examples}, from epoch {}", cfg.arch.name(), start_epoch + 1);
            bar.set_length(steps_per_epoch as u64);
        }
        TrainEvent::Pretrained { path, missing } => {
            eprintln!("dfscan: started from {} (new, untrained: {})", path.display(), missing.join(", "));
        }
        TrainEvent::Step { epoch, loss } => {
            let smoothed = running_loss.map_or(loss, |r| 0.9 * r + 0.1 * loss);
            running_loss = Some(smoothed);
            bar.set_prefix(format!("{}", epoch + 1));
            bar.set_message(format!("loss {smoothed:.4}{last_auc}"));
            bar.inc(1);
        }
        TrainEvent::Epoch(r) => {
            last_auc = r.val_video_auc.map_or(String::new(), |a| format!(", last val AUC {a:.3}"));
            bar.suspend(|| eprintln!("{}", serde_json::to_string(r).expect("serialisable")));
            bar.reset();
        }
    })?;
    bar.finish_and_clear();
    let best = history.iter().filter(|r| r.best).last();
    eprintln!(
        "dfscan: best weights in {} (epoch {}, val video AUC {})",
        cfg.output.display(),
        best.map_or(0, |r| r.epoch + 1),
        best.and_then(|r| r.val_video_auc).map_or("n/a".into(), |a| format!("{a:.4}"))
    );
    Ok(())
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn train_ood(args: TrainOodArgs) -> Result<()> {
    use dfscan::models::abnormality::AbnormalityConfig;
    use dfscan::models::vae::VaeConfig;
    use dfscan::models::vit_ood::OodHeads;
    use dfscan::train::ood_trainer::{self, OodTrainConfig, OodTrainEvent, StageConfig};
    let set = dfscan::train::dataset::CropSet::open(&args.crops)?;
    let stage = |epochs, learning_rate, max_steps_per_epoch| StageConfig { epochs, batch_size: args.batch_size.max(2), learning_rate, max_steps_per_epoch };
    let cfg = OodTrainConfig {
        vit: args.model.clone(),
        heads: OodHeads {
            vae: match args.vae {
                VaeSize::Small => VaeConfig::small(),
                VaeSize::Seed => VaeConfig::seed(),
            },
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
        seed: args.seed,
        device: args.device.resolve()?,
        storage: args.storage,
        output: args.output.clone(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let bar = progress_bar("{prefix} [{bar:30}] {pos}/{len} {msg}");
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
fn pretrained_start(arch: models::Arch) -> Result<Option<std::path::PathBuf>> {
    let Some((raw, path)) = models::pretrained_weights(arch) else { return Ok(None) };
    if !path.is_file() {
        if !raw.is_file() {
            bail!("{} needs its ImageNet weights: run scripts/setup.sh", arch.name());
        }
        models::import::import(arch, &raw, &path, &models::import::default_python())?;
        eprintln!("dfscan: imported {} -> {}", raw.display(), path.display());
    }
    Ok(Some(path))
}

fn eval(args: EvalArgs) -> Result<()> {
    use dfscan::eval::evaluate::{self, EvalConfig};
    use dfscan::eval::plot::{roc_png, RocSeries};
    let weights = args.model.clone().unwrap_or_else(models::default_weights);
    let model = models::AnyModel::load(&weights, args.device.resolve()?)?;
    let set = dfscan::train::dataset::CropSet::open(&args.crops)?;
    if !args.ood.is_empty() || args.ood_synthetic {
        let models::AnyModel::Frame(model) = &model else { bail!("eval --ood: {} is a sequence model; the OOD heads belong to a ViT", weights.display()) };
        return eval_ood(&args, model, &set);
    }
    let cfg = EvalConfig {
        split: args.split,
        plan: args.split_args.plan(),
        aggregate: args.aggregate,
        threshold: args.threshold,
        perturbations: args.perturb.clone(),
        batch_size: 64,
    };
    let report = evaluate::evaluate(&set, &model, &cfg)?;
    // One summary line per condition on stdout; the full report (with ROC points) on request.
    for c in &report.conditions {
        let line = serde_json::json!({
            "condition": c.condition, "model": report.model, "split": report.split,
            "crops": report.crops, "frame_unit": report.frame_unit, "examples": report.examples,
            "videos": report.videos, "frame": c.frame.metrics, "video": c.video.metrics,
        });
        println!("{line}");
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &args.roc {
        let clean = &report.conditions[0];
        let series = [("video", &clean.video), ("frame", &clean.frame)]
            .into_iter()
            .filter_map(|(name, level)| Some(RocSeries { name: name.to_string(), points: level.roc.clone(), auc: level.metrics.auc? }))
            .collect::<Vec<_>>();
        let split = report.split.map_or("all crops".to_string(), |s| format!("{s:?} split").to_lowercase());
        roc_png(path, &series, &format!("{} on the {split}", report.model.weights))?;
    }
    Ok(())
}

/// `eval --ood`: the split's crops against each OOD set; the table on stdout.
fn eval_ood(args: &EvalArgs, model: &models::FaceModel, set: &dfscan::train::dataset::CropSet) -> Result<()> {
    use dfscan::eval::evaluate::{evenly, LabelledCrops};
    use dfscan::eval::ood_eval::{self, OodEvalConfig, OodSet};
    use dfscan::train::ood::{corrupt_all, OodKind};
    let size = model.input_size() as i32;
    let limit = args.max_crops.unwrap_or(usize::MAX);
    let id = LabelledCrops::load(set, args.split, &args.split_args.plan(), size)?.evenly(limit);
    let mut sets = Vec::new();
    for dir in &args.ood {
        let pixels = evenly(dfscan::train::dataset::load_images(dir, size)?, limit);
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        sets.push(OodSet { name, pixels });
    }
    if args.ood_synthetic {
        for (k, kind) in OodKind::ALL.into_iter().enumerate() {
            // One fixed seed per corruption: reruns see the same corrupted crops.
            let pixels = corrupt_all(&id.pixels, size, k as u64 + 1, |_| kind)?;
            sets.push(OodSet { name: format!("synthetic-{}", kind.name()), pixels });
        }
    }
    let cfg = OodEvalConfig { odin: Default::default(), batch_size: 16, aggregate: args.aggregate };
    let report = ood_eval::evaluate_ood(model, &id, args.split, args.split_args.plan(), &sets, &cfg)?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let weights = args.model.clone().unwrap_or_else(models::default_weights);
    let model = models::AnyModel::load(&weights, args.device.resolve()?)?;
    let mut detector = dfscan::faces::build_detector(args.detector, &models::models_dir().join("public"), 0.5)?;
    let name = format!("{:?}", args.detector).to_lowercase();
    for rate in dfscan::bench::stages(&args.input, detector.as_mut(), &name, &model, args.batch_size.max(1))? {
        println!("{}", serde_json::to_string(&rate)?);
    }
    Ok(())
}
