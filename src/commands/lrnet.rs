//! LRNet on our own landmarks: `dfscan extract --landmarks` (the landmark cache, made by the
//! scan's pipeline), `dfscan train --arch lrnet` (a fine-tune of both streams on it) and
//! `dfscan cv --lrnet` (its cross-source table beside the public pairs, calibrated and raw).
use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::scan::resolve_model;
use super::Outcome;
use crate::cli::{CvArgs, ExtractArgs, LrnetArgs, TrainArgs};
use dfscan::crops::dataset::{read_manifest, FacesMode, ManifestRow, Split};
use dfscan::crops::landmarks::{self, CacheSettings, LandmarkRecord, LandmarkSet};
use dfscan::eval::metrics::roc_auc;
use dfscan::faces::calibrate::Calibration;
use dfscan::models::lrnet::{LrnetConfig, LrnetModel};
use dfscan::models::set::{ModelSet, OodChoice};
use dfscan::models::weights::{self, Header, NetworkConfig, Preprocess, Storage};
use dfscan::pipeline::{self, Control, Event, RunOptions, ScanSettings};
use dfscan::train::checkpoint::{self, Paths, TrainState};
use dfscan::train::lrnet::{self as ft, FineTune};

/// `dfscan extract --landmarks`: each video of the manifest not yet in the cache, scanned with
/// LRNet's clips and FaceMesh; its tracks' runs written as one record.
pub fn extract(args: &ExtractArgs) -> Result<Outcome> {
    let rows = read_manifest(&args.manifest)?;
    let (videos, stills): (Vec<&ManifestRow>, Vec<&ManifestRow>) =
        rows.iter().partition(|r| r.faces == FacesMode::Detect && !dfscan::inputs::is_still_image(&r.path));
    let device = dfscan::models::DeviceChoice::Auto.resolve()?;
    let mut set = ModelSet::load(&[resolve_model("lrnet-dfo")?], None, OodChoice::Off, device, tch::Kind::Float)?;
    let landmarker = dfscan::models::facemesh::FaceMeshModel::load(&resolve_model("facemesh")?, device)?;
    let settings = CacheSettings {
        clips: args.clips.max(1),
        clip_len: args.clip_len.max(1),
        detector: args.detector,
        min_face_confidence: args.min_face_confidence,
        landmarker: format!("{}@{}", landmarker.id.weights, landmarker.id.blake3),
    };
    set.landmarker = Some(landmarker);
    landmarks::create_or_resume(&args.output, &settings)?;
    let todo: Vec<&ManifestRow> = videos.iter().copied().filter(|r| !landmarks::record_path(&args.output, &r.path.to_string_lossy()).is_file()).collect();
    eprintln!(
        "dfscan: landmarks of {} videos into {} ({} already there, {} stills and crops left out: LRNet needs consecutive frames)",
        todo.len(),
        args.output.display(),
        videos.len() - todo.len(),
        stills.len()
    );
    // The scan's settings for LRNet, with these clips; the runs come back on each report.
    let scan_settings = ScanSettings {
        clips: Some(settings.clips),
        clip_len: settings.clip_len,
        detector: args.detector,
        min_face_confidence: args.min_face_confidence,
        ..ScanSettings::default()
    };
    let threads = pipeline::ThreadSplit::detect();
    let run = RunOptions { decode: dfscan::decode::DecodeOptions { threads: threads.decoder, shortcuts: true }, threads, batch_size: pipeline::default_batch_size(tch::Device::cuda_if_available(), tch::Kind::Float), explain: None };
    let mut cfg = scan_settings.config(&set, run)?;
    cfg.keep_landmarks = true;
    let shutdown = pipeline::Shutdown::default();
    shutdown.on_signals()?;
    let by_path: HashMap<PathBuf, &ManifestRow> = todo.iter().map(|r| (r.path.clone(), *r)).collect();
    let inputs: Vec<dfscan::inputs::Input> = todo.iter().map(|r| dfscan::inputs::Input { path: r.path.clone(), problem: None }).collect();
    let bar = dfscan::output::progress_bar(todo.len() as u64, "landmarks [{bar:30}] {pos}/{len} videos {eta}");
    let (mut written, mut failed, mut write_error) = (0, 0, None);
    let control = Control { timeout: None, shutdown: shutdown.clone(), state: None };
    pipeline::run(inputs.into_iter(), super::scan::face_source(&scan_settings)?, set, cfg, control, |event| {
        let Event::Finished { report, .. } = event else { return true };
        bar.inc(1);
        let Some(row) = by_path.get(std::path::Path::new(&report.path)) else { return true };
        if let Some(e) = &report.error {
            failed += 1;
            bar.suspend(|| eprintln!("dfscan: {}: {e}", report.path));
        }
        let record = LandmarkRecord {
            source: report.path.clone(),
            label: row.label,
            group: row.group.clone(),
            origin: row.origin.clone(),
            frames_sampled: report.frames_sampled,
            error: report.error.clone(),
            tracks: report.landmark_tracks,
        };
        match landmarks::write_record(&args.output, &record) {
            Ok(()) => written += 1,
            Err(e) => {
                write_error = Some(e);
                return false;
            }
        }
        true
    })?;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    eprintln!("dfscan: {written} records written ({failed} with an error, kept with it: LRNet leaves them out)");
    Ok(if shutdown.is_stopping() { Outcome::Interrupted } else { Outcome::Clean })
}

/// The weights a fine-tune starts from: a model name or path, or None for `none`.
fn start_of(args: &LrnetArgs) -> Result<Option<PathBuf>> {
    match args.lrnet_start.as_str() {
        "none" => Ok(None),
        name => {
            let path = resolve_model(name)?;
            if !path.is_file() {
                bail!("--lrnet-start {name}: no weights at {}", path.display());
            }
            Ok(Some(path))
        }
    }
}

/// `dfscan train --arch lrnet --crops LANDMARK_CACHE`: both streams fine-tuned on the train
/// split's windows, the best epoch by validation video AUC kept in `-o`; the start's and the
/// fine-tune's validation and test video AUC printed.
pub fn train(args: &TrainArgs) -> Result<()> {
    if args.stop_after_steps.is_some() || args.probe.is_some() {
        bail!("--arch lrnet trains whole epochs (no --stop-after-steps) and has no probe");
    }
    let set = LandmarkSet::open(&args.crops)?;
    let plan = args.split.plan();
    let min_frames = LrnetConfig::source().min_frames();
    let wanted = |r: &&LandmarkRecord| (args.origins.is_empty() || args.origins.contains(&r.origin)) && ft::scorable(r, min_frames);
    let records: Vec<&LandmarkRecord> = set.records.iter().filter(wanted).collect();
    let of = |split: Split| records.iter().copied().filter(|r| plan.split_of(&r.group) == split).collect::<Vec<_>>();
    let (train, val, test) = (of(Split::Train), of(Split::Val), of(Split::Test));
    let device = args.device.resolve()?;
    let cfg = FineTune { schedule: super::train::schedule(args), stride: args.lrnet.window_stride.max(1), calibration: args.landmark_calibration, device };
    let examples = ft::windows(&train, cfg.calibration, dfscan::models::lrnet::BLOCK as usize, cfg.stride);
    let steps = examples.len().div_ceil(cfg.schedule.batch_size).min(cfg.schedule.max_steps_per_epoch.unwrap_or(usize::MAX));
    let start = start_of(&args.lrnet)?;
    let paths = Paths::of(&args.output);
    let fresh = TrainState::new(cfg.schedule.seed, cfg.schedule.batch_size, examples.len(), steps);
    let (mut state, (mut vs, net)) = match args.resume {
        true => {
            let state = TrainState::read(&paths.state)?;
            state.ensure_continues(&fresh)?;
            (state, ft::network(Some(&paths.last), device)?)
        }
        false => (fresh, ft::network(start.as_deref(), device)?),
    };
    let auc = |net: &dfscan::models::lrnet::Lrnet, records: &[&LandmarkRecord]| -> Result<String> {
        let (s, l) = ft::video_scores(net, records, cfg.calibration)?;
        Ok(roc_auc(&s, &l).map_or("n/a".into(), |a| format!("{a:.4}")))
    };
    let start_name = start.as_ref().map_or("random initialisation".to_string(), |p| p.display().to_string());
    eprintln!(
        "dfscan: fine-tuning lrnet from {start_name} on {} windows of {} videos ({} landmarks), validating on {} videos, {} test videos; {}",
        examples.len(),
        train.len(),
        cfg.calibration.rows_name(),
        val.len(),
        test.len(),
        if args.resume { format!("resumed after epoch {}", state.epoch) } else { format!("start: val video AUC {}, test {}", auc(&net, &val)?, auc(&net, &test)?) },
    );
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: NetworkConfig::Lrnet(LrnetConfig::source()),
        preprocess: Preprocess::lrnet(),
        provenance: format!(
            "{} (fine-tuned from {start_name} on {} windows of {} videos of {}, {} landmarks)",
            std::env::args().collect::<Vec<_>>().join(" "),
            examples.len(),
            train.len(),
            args.crops.display(),
            cfg.calibration.rows_name()
        ),
        ood: None,
    };
    ft::fine_tune(&net, &mut vs, &examples, &val, &cfg, &mut state, |report, vs, state| {
        let tensors = ft::tensors(vs);
        if report.best {
            weights::save_as(&args.output, &tensors, &header, args.storage)?;
        }
        weights::save_as(&paths.last, &tensors, &header, Storage::F32)?;
        state.write(&paths.state)?;
        checkpoint::append_log(&paths.log, report)?;
        eprintln!("{}", serde_json::to_string(report)?);
        Ok(())
    })?;
    if state.best.is_none() {
        // No validation video of both classes: the last weights.
        weights::save_as(&args.output, &ft::tensors(&vs), &header, args.storage)?;
    }
    let best = LrnetModel::load(&args.output, device).with_context(|| format!("reading back {}", args.output.display()))?;
    eprintln!(
        "dfscan: best weights in {} (epoch {}): val video AUC {}, test {}; log in {}",
        args.output.display(),
        state.best.as_ref().map_or(state.epoch, |b| b.epoch + 1),
        auc(&best.net, &val)?,
        auc(&best.net, &test)?,
        paths.log.display()
    );
    Ok(())
}

/// `dfscan cv --lrnet --crops LANDMARK_CACHE`: LRNet's cross-source table.
pub fn cv(args: &CvArgs) -> Result<()> {
    use dfscan::train::lrnet_cv::{self, CvEvent, LrnetCv};
    let set = LandmarkSet::open(&args.crops)?;
    let device = args.device.resolve()?;
    let names: Vec<String> = if args.models.is_empty() { vec!["lrnet-dfo".into(), "lrnet-ffpp".into()] } else { args.models.clone() };
    let loaded = names.iter().map(|n| LrnetModel::load(&resolve_model(n)?, device)).collect::<Result<Vec<_>>>()?;
    let start = start_of(&args.lrnet_fit)?.map(|p| (args.lrnet_fit.lrnet_start.clone(), p));
    let mut fine_tune = FineTune { stride: args.lrnet_fit.window_stride.max(1), device, ..FineTune::default() };
    fine_tune.schedule.seed = args.seed;
    let cv = LrnetCv {
        fixed: names.iter().zip(&loaded).map(|(n, m)| (format!("{n} ({})", m.id.weights), &m.net)).collect(),
        start,
        fine_tune,
        calibrations: vec![Calibration::On, Calibration::Off],
        origins: args.origins.clone(),
        val: dfscan::crops::dataset::SplitPlan { seed: args.seed, val_fraction: 0.15, test_fraction: 0.0 },
    };
    let report = lrnet_cv::cross_validate(&set, &cv, |event| match event {
        CvEvent::FineTune { origin, calibration, windows, train_videos, val_videos } => {
            eprintln!("dfscan: fold {origin} ({}): fine-tuning on {windows} windows of {train_videos} videos, stopping on {val_videos}", calibration.rows_name());
        }
        CvEvent::Epoch { epoch, train_loss, val_auc } => {
            eprintln!("dfscan:   epoch {}: loss {train_loss:.4}, val video AUC {}", epoch + 1, val_auc.map_or("n/a".into(), |a| format!("{a:.3}")));
        }
    })?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("dfscan: full report in {}", path.display());
    }
    Ok(())
}
