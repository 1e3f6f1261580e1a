//! `dfscan scan` and `dfscan watch`: one scan, fed by a list of paths or by a watcher. Builds
//! the run's configuration from the arguments once, runs the pipeline with the printer, and
//! picks the exit code.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::cli::{EngineArgs, FacesMode, ScanArgs, WatchArgs};
use dfscan::inputs::Input;
use dfscan::models;
use dfscan::models::set::{ModelSet, OodChoice};
use dfscan::output::{self, Printer};
use dfscan::pipeline::{self, Control, FaceSource, Recording, RunOptions, ScanSettings};
use dfscan::state::{self, StateDb};

/// Where the inputs come from, which decides how the state database is used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Scan,
    /// Always skips what the database has (unless --rescan), and must have one.
    Watch { fsync: bool },
}

pub fn scan(args: ScanArgs) -> Result<Outcome> {
    let inputs = dfscan::inputs::expand(args.paths.clone());
    scan_with(args, inputs, Box::new(std::io::stdout().lock()), Mode::Scan)
}

/// The same scan, fed by a watcher instead of a list.
pub fn watch(args: WatchArgs) -> Result<Outcome> {
    let inputs = dfscan::inputs::Watch::new(&args.scan.paths, Duration::from_millis(args.settle_ms))?;
    let out: Box<dyn Write> = match (&args.output, args.fsync) {
        (Some(path), fsync) => {
            let file = output::append_to(path).with_context(|| format!("opening {}", path.display()))?;
            if fsync { Box::new(output::Fsync(file)) } else { Box::new(file) }
        }
        (None, true) => Box::new(output::Fsync(output::stdout_file()?)),
        (None, false) => Box::new(std::io::stdout().lock()),
    };
    scan_with(args.scan, inputs, out, Mode::Watch { fsync: args.fsync })
}

fn scan_with(args: ScanArgs, inputs: impl Iterator<Item = Input> + Send + 'static, out: Box<dyn Write>, mode: Mode) -> Result<Outcome> {
    // First, so that Ctrl-C while the model loads is already a clean stop.
    let shutdown = pipeline::Shutdown::default();
    shutdown.on_signals()?;
    let settings = args.settings.settings();
    settings.check()?;
    let set = load_models(&args.engine, settings.landmarks)?;
    let face_source = face_source(&settings)?;
    let cfg = settings.config(&set, run_options(&args.engine, set.compute_kind(), args.explain.clone()))?;
    if cfg.explain.is_some() && set.attention_model().is_none() {
        bail!("--explain draws a ViT's attention, and no model of this scan is a ViT: add `--ood-model vit --ood-threshold 0.64` (the ViT's risk at its own threshold) or a ViT in --models");
    }
    let control = Control {
        timeout: timeout(args.timeout)?,
        shutdown: shutdown.clone(),
        state: open_state(&args, mode)?.map(|db| Recording {
            db,
            skip_done: (args.resume || mode != Mode::Scan) && !args.rescan,
            settings: settings.settings_key(&cfg, &set),
        }),
    };
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let mut printer = Printer::new(out, progress).quiet(args.quiet);
    pipeline::run(inputs, face_source, set, cfg, control, |event| printer.handle(event))?;
    printer.finish();
    Ok(super::outcome_of(shutdown.is_stopping(), printer.stdout_closed, &printer.summary, 0))
}

/// How faces are found for these settings: the detector (its files from the models folder),
/// or whole frames.
pub(crate) fn face_source(settings: &ScanSettings) -> Result<FaceSource> {
    Ok(match settings.faces {
        FacesMode::None => FaceSource::WholeFrame,
        FacesMode::Auto => FaceSource::Detector(dfscan::faces::build_detector(settings.detector, &super::models_dir().join("public"), settings.min_face_confidence)?),
    })
}

/// Threads, batch size and `--explain`: how the pipeline computes, for models that compute in
/// `compute`.
pub(crate) fn run_options(engine: &EngineArgs, compute: tch::Kind, explain: Option<PathBuf>) -> RunOptions {
    let mut threads = pipeline::ThreadSplit::detect().with_pools(engine.threads);
    if let Some(n) = engine.decode_threads {
        threads.decoder = n.max(1);
    }
    if let Some(n) = engine.decode_inputs {
        threads.inputs = n.max(1);
    }
    RunOptions {
        decode: dfscan::decode::DecodeOptions { threads: threads.decoder, shortcuts: !engine.no_decode_shortcuts },
        threads,
        batch_size: engine.batch_size.unwrap_or_else(|| pipeline::default_batch_size(engine.device.resolve().unwrap_or(tch::Device::Cpu), compute)),
        explain,
    }
}

/// `--timeout SECS` as a duration.
pub(crate) fn timeout(secs: Option<f64>) -> Result<Option<Duration>> {
    match secs {
        Some(secs) if secs > 0.0 && secs.is_finite() => Ok(Some(Duration::from_secs_f64(secs))),
        Some(secs) => bail!("--timeout must be a positive number of seconds, got {secs}"),
        None => Ok(None),
    }
}

/// Models resolved from the committed third-party weights, imported on first use into the
/// public folder: `lrnet-dfo` is LRNet's DeeperForensics-1.0 pair (trained on neither of the
/// corpora we evaluate on, FF++ examples and DFDC, so its scores there are out of its training
/// set), `lrnet-ffpp` the FF++ pair, and `lrnet` the shipped models/lrnet.safetensors (see
/// models/lrnet.md), else the DeeperForensics pair; `facemesh` is the landmarker. (name, files
/// under models/third_party, the imported file's name)
const THIRD_PARTY: [(&str, &str, &[&str], &str); 4] = [
    ("lrnet", "lrnet", &["dfo_g1.pth", "dfo_g2.pth"], "lrnet-dfo"),
    ("lrnet-dfo", "lrnet", &["dfo_g1.pth", "dfo_g2.pth"], "lrnet-dfo"),
    ("lrnet-ffpp", "lrnet", &["ffpp_g1.pth", "ffpp_g2.pth"], "lrnet-ffpp"),
    ("facemesh", "facemesh", &["facemesh.pth"], "facemesh"),
];

/// A `--models` entry: a third-party name (imported on first use, see [`THIRD_PARTY`]), else
/// a shipped name or a path.
pub(crate) fn resolve_model(entry: &str) -> Result<PathBuf> {
    let dir = super::models_dir();
    let shipped = models::set::resolve(&dir, entry);
    let Some((_, folder, files, out)) = THIRD_PARTY.iter().find(|t| t.0 == entry) else { return Ok(shipped) };
    if shipped.is_file() {
        return Ok(shipped);
    }
    let path = dir.join("public").join(format!("{out}.safetensors"));
    if !path.is_file() {
        let arch = if *folder == "lrnet" { models::Arch::Lrnet } else { models::Arch::Facemesh };
        let sources: Vec<PathBuf> = files.iter().map(|f| dir.join("third_party").join(folder).join(f)).collect();
        if let Some(missing) = sources.iter().find(|p| !p.is_file()) {
            bail!("{entry}: its public weights are missing at {}", missing.display());
        }
        // Written beside, then renamed: scans starting at once never read half a file.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let refs: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
        models::import::import(arch, &refs, &partial, &super::python()).with_context(|| format!("importing {entry}"))?;
        std::fs::rename(&partial, &path)?;
        eprintln!("dfscan: imported {} -> {}", files.join(" "), path.display());
    }
    Ok(path)
}

/// The scan's models: `--models`, or `--model`, or the default model; and the OOD model
/// (`--ood-model`, else a member with an abnormality module, else for the default scan the
/// shipped ViT).
pub(crate) fn load_models(args: &EngineArgs, landmarks: bool) -> Result<ModelSet> {
    // The plain scan uses the shipped stacker when there is one: the default, calibrated.
    let shipped_stacker = super::models_dir().join("default.ensemble.json");
    let plain = args.model.is_none() && args.models.is_empty();
    let stacker_file = args.ensemble.clone().or_else(|| (plain && shipped_stacker.is_file()).then_some(shipped_stacker));
    let stacker: Option<dfscan::aggregate::Stacker> = match &stacker_file {
        Some(file) => Some(
            serde_json::from_str(&std::fs::read_to_string(file).with_context(|| format!("reading --ensemble {}", file.display()))?)
                .with_context(|| format!("{} is not a stacker made by `dfscan fit-ensemble`", file.display()))?,
        ),
        None => None,
    };
    let paths: Vec<PathBuf> = match (&args.model, args.models.is_empty(), &stacker) {
        (_, _, Some(stacker)) => stacker.members.iter().map(|m| resolve_model(m)).collect::<Result<_>>()?,
        (Some(path), _, None) => vec![path.clone()],
        (None, false, None) => args.models.iter().map(|m| resolve_model(m)).collect::<Result<_>>()?,
        (None, true, None) => vec![super::default_model()],
    };
    for path in &paths {
        if !path.is_file() {
            bail!(
                "no model weights at {}.\n  Train them:  dfscan train --arch efficientnet-lite0 --crops CROPS -o PATH\n  or import public ones:  dfscan import --arch mesoinception4 CHECKPOINT.pth -o PATH\n  then scan with --model PATH (or place them at the default path).",
                path.display()
            );
        }
    }
    let default_scan = plain && args.ensemble.is_none();
    let shipped_vit = models::set::resolve(&super::models_dir(), "vit");
    let ood_file = args.ood_model.as_deref().map(|m| models::set::resolve(&super::models_dir(), m));
    let ood = match (args.ood_model.as_deref(), &ood_file) {
        (Some("none"), _) => OodChoice::Off,
        (Some(_), Some(path)) => OodChoice::File(path),
        _ if default_scan && shipped_vit.is_file() => OodChoice::MembersElse(&shipped_vit),
        _ => OodChoice::FromMembers,
    };
    if !args.model_weights.is_empty() && args.model_weights.len() != paths.len() {
        bail!("--model-weights has {} values for {} models", args.model_weights.len(), paths.len());
    }
    let weights = (!args.model_weights.is_empty()).then_some(args.model_weights.as_slice());
    let device = args.device.resolve()?;
    let compute = args.precision.resolve(device);
    let mut set = ModelSet::load(&paths, weights, ood, device, compute)?;
    if default_scan && set.ood.is_none() {
        eprintln!("dfscan: warning: neither the default model nor {} has out-of-distribution heads (dfscan train-ood adds them): ood_risk will be null", shipped_vit.display());
    }
    set.stacker = stacker;
    if set.needs_landmarks() || landmarks {
        set.landmarker = Some(models::facemesh::FaceMeshModel::load(&resolve_model("facemesh")?, device)?);
    }
    let attribution = match args.attribution.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => super::attribution::shipped().filter(|_| default_scan),
    };
    if let Some(path) = attribution {
        set.attribution = Some(super::attribution::load(&path, device, compute)?);
    }
    Ok(set)
}

/// The state database, unless `--no-state`. The default one is best effort for a scan, which
/// only loses `--resume` later without it. One the user asked for (`--state`, `--resume`) or
/// that a watcher needs must open.
fn open_state(args: &ScanArgs, mode: Mode) -> Result<Option<StateDb>> {
    if args.no_state {
        return Ok(None);
    }
    let asked = args.state.is_some() || args.resume || mode != Mode::Scan;
    let Some(path) = args.state.clone().or_else(state::default_path) else {
        if asked {
            bail!("no state directory on this system: pass --state PATH");
        }
        return Ok(None);
    };
    match StateDb::open(&path, mode == Mode::Watch { fsync: true }) {
        Ok(db) => Ok(Some(db)),
        Err(e) if !asked => {
            eprintln!("dfscan: warning: {e:#}; results are not recorded (--no-state silences this)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
