//! dfscan's command line: parse arguments, build the configuration once, run, pick the exit code.
mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::{Cli, Command, FacesMode, ImportArgs, ScanArgs};
use dfscan::decode::Sampling;
use dfscan::models::{self, FaceModel};
use dfscan::output::Printer;
use dfscan::pipeline::{self, Control, FaceSource, Recording, ScanConfig};
use dfscan::state::{self, StateDb};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => scan(args),
        Command::Import(args) => import(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("dfscan: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The exit code of a run ended by SIGINT or SIGTERM, as a shell reports one ended by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

fn scan(args: ScanArgs) -> Result<i32> {
    // First, so that Ctrl-C while the model loads is already a clean stop.
    let shutdown = pipeline::Shutdown::default();
    shutdown.on_signals()?;
    let weights = args.model.clone().unwrap_or_else(models::default_weights);
    if !weights.is_file() {
        bail!(
            "no model weights at {}.\n  Train them:  dfscan train --arch mesoinception4 ...\n  or import public ones:  dfscan import --arch mesoinception4 CHECKPOINT.pth -o {}\n  then scan with --model PATH (or place them at the default path).",
            weights.display(),
            weights.display()
        );
    }
    let device = args.device.resolve()?;
    let model = FaceModel::load(&weights, device)?;
    let faces_key = match args.faces {
        FacesMode::None => "whole-frame".to_string(),
        FacesMode::Auto => format!("{:?}@{}", args.detector, args.min_face_confidence),
    };
    let face_source = match args.faces {
        FacesMode::None => FaceSource::WholeFrame,
        FacesMode::Auto => FaceSource::Detector(dfscan::faces::build_detector(
            args.detector,
            &models::models_dir().join("public"),
            args.min_face_confidence,
        )?),
    };
    let cfg = ScanConfig {
        sampling: match args.fps {
            Some(fps) if fps > 0.0 => Sampling::Fps(fps),
            Some(fps) => bail!("--fps must be positive, got {fps}"),
            None if args.frames == 0 => bail!("--frames must be at least 1"),
            None => Sampling::Frames(args.frames),
        },
        margin: args.margin,
        aggregate: args.aggregate,
        threshold: args.threshold,
        batch_size: args.batch_size.max(1),
        per_frame: args.per_frame,
    };
    let control = Control {
        timeout: match args.timeout {
            Some(secs) if secs > 0.0 && secs.is_finite() => Some(std::time::Duration::from_secs_f64(secs)),
            Some(secs) => bail!("--timeout must be a positive number of seconds, got {secs}"),
            None => None,
        },
        shutdown: shutdown.clone(),
        state: open_state(&args)?.map(|db| Recording { db, skip_done: args.resume && !args.rescan, settings: state::settings_key(&cfg, &faces_key) }),
    };
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let mut printer = Printer::new(std::io::stdout().lock(), progress).quiet(args.quiet);
    let inputs = dfscan::inputs::expand(args.paths);
    pipeline::run_with(inputs, face_source, model, cfg, control, |event| printer.handle(event))?;
    printer.finish();
    if shutdown.is_stopping() {
        return Ok(EXIT_INTERRUPTED);
    }
    if printer.stdout_closed {
        return Ok(0);
    }
    Ok(printer.summary.exit_code())
}

/// The state database, unless `--no-state`. The default one is best effort: a scan without
/// it only loses `--resume` later. One the user asked for (`--state`, `--resume`) must open.
fn open_state(args: &ScanArgs) -> Result<Option<StateDb>> {
    if args.no_state {
        return Ok(None);
    }
    let asked = args.state.is_some() || args.resume;
    let Some(path) = args.state.clone().or_else(state::default_path) else {
        if asked {
            bail!("no state directory on this system: pass --state PATH");
        }
        return Ok(None);
    };
    match StateDb::open(&path, false) {
        Ok(db) => Ok(Some(db)),
        Err(e) if !asked => {
            eprintln!("dfscan: warning: {e:#}; results are not recorded (--no-state silences this)");
            Ok(None)
        }
        Err(e) => Err(e),
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
    Ok(())
}
