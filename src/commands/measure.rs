//! `dfscan eval` and `dfscan bench`: how well a model separates fakes (and, with `--ood`,
//! out-of-distribution inputs) on a crop cache, and how fast each stage runs.
use anyhow::{bail, Result};

use crate::cli::{BenchArgs, EvalArgs};
use dfscan::models;

pub fn eval(args: EvalArgs) -> Result<()> {
    use dfscan::eval::evaluate::{self, EvalConfig};
    use dfscan::eval::plot::{roc_png, RocSeries};
    let ood = !args.ood.is_empty() || args.ood_synthetic;
    if !args.models.is_empty() && !ood {
        bail!("eval --models compares out-of-distribution paths: give --ood DIR or --ood-synthetic");
    }
    let set = dfscan::crops::dataset::CropSet::open(&args.crops)?;
    if ood {
        let paths: Vec<std::path::PathBuf> = match &args.model {
            _ if !args.models.is_empty() => args.models.iter().map(|m| models::set::resolve(&super::models_dir(), m)).collect(),
            Some(path) => vec![path.clone()],
            None => vec![super::default_model()],
        };
        let device = args.device.resolve()?;
        let models = paths.iter().map(|p| models::FaceModel::load(p, device)).collect::<Result<Vec<_>>>()?;
        return eval_ood(&args, &models, &set);
    }
    let weights = args.model.clone().unwrap_or_else(super::default_model);
    let device = args.device.resolve()?;
    let model = models::AnyModel::load(&weights, device, args.precision.resolve(device))?;
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
    // The clean condition's video-level reliability: is the score calibrated?
    eprint!("{}", super::cv::reliability_table(&report.conditions[0].video.reliability));
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

/// `eval --ood`: the split's crops against each OOD set, for each model; one table on stdout.
fn eval_ood(args: &EvalArgs, models: &[models::FaceModel], set: &dfscan::crops::dataset::CropSet) -> Result<()> {
    use dfscan::eval::ood_eval::{self, OodEvalConfig};
    let cfg = OodEvalConfig { odin: Default::default(), batch_size: 16, aggregate: args.aggregate, ood_threshold: args.ood_threshold };
    // The crops and sets at each input side, made once: models of one side see the same.
    let mut sides: Vec<(i64, dfscan::eval::evaluate::LabelledCrops, Vec<ood_eval::OodSet>)> = Vec::new();
    let mut reports = Vec::with_capacity(models.len());
    for model in models {
        if !sides.iter().any(|(side, ..)| *side == model.input_size()) {
            let (id, sets) = ood_sets(args, set, model.input_size() as i32)?;
            sides.push((model.input_size(), id, sets));
        }
        let (_, id, sets) = sides.iter().find(|(side, ..)| *side == model.input_size()).expect("made above");
        reports.push(ood_eval::evaluate_ood(model, id, args.split, args.split_args.plan(), sets, &cfg)?);
    }
    print!("{}", ood_eval::table(&reports));
    if let Some(path) = &args.report {
        // One model: its report, as before; several: the list.
        let json = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            all => serde_json::to_string_pretty(all)?,
        };
        std::fs::write(path, json)?;
    }
    Ok(())
}

/// The split's crops (in-distribution) and the OOD sets, at `size`.
fn ood_sets(args: &EvalArgs, set: &dfscan::crops::dataset::CropSet, size: i32) -> Result<(dfscan::eval::evaluate::LabelledCrops, Vec<dfscan::eval::ood_eval::OodSet>)> {
    use dfscan::crops::ood::{corrupt_all, OodKind};
    use dfscan::eval::evaluate::{evenly, LabelledCrops};
    use dfscan::eval::ood_eval::OodSet;
    let limit = args.max_crops.unwrap_or(usize::MAX);
    let id = LabelledCrops::load(set, args.split, &args.split_args.plan(), size)?.evenly(limit);
    let mut sets = Vec::new();
    for dir in &args.ood {
        let pixels = evenly(dfscan::crops::dataset::load_images(dir, size)?, limit);
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
    Ok((id, sets))
}

pub fn bench(args: BenchArgs) -> Result<()> {
    // The scan's split, so each stage's rate is what it gets inside a scan.
    dfscan::pipeline::ThreadSplit::detect().with_pools(args.threads).apply()?;
    let weights = args.model.clone().unwrap_or_else(super::default_model);
    let device = args.device.resolve()?;
    let model = models::AnyModel::load(&weights, device, args.precision.resolve(device))?;
    let batch_size = args.batch_size.unwrap_or_else(|| dfscan::pipeline::default_batch_size(device, model.compute_kind()));
    let mut detector = dfscan::faces::build_detector(args.detector, &super::models_dir().join("public"), 0.5)?;
    for rate in dfscan::bench::stages(&args.input, detector.as_mut(), args.detector, &model, batch_size.max(1))? {
        println!("{}", serde_json::to_string(&rate)?);
    }
    Ok(())
}
