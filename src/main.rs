//! dfscan's command line: parse arguments, build the configuration once, run, pick the exit code.
mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::{BenchArgs, Cli, Command, EvalArgs, ExtractArgs, ImportArgs, SplitArgs, TrainArgs};
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
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}").expect("valid template"));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
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
