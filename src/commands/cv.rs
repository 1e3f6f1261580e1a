//! `dfscan cv` and `dfscan train --probe`: linear probes on a frozen ImageNet backbone,
//! judged by held-out origin, and the probe fitted on a whole split for shipping.
use anyhow::{bail, ensure, Context, Result};
use tch::Device;

use super::train::pretrained_start;
use dfscan::output::progress_bar;
use crate::cli::{CvArgs, FitEnsembleArgs, TrainArgs};
use dfscan::models::{self, Arch, NetworkConfig};
use dfscan::train::cv::{self, CvConfig, FixedModel, FoldedRecipe, Recipe};
use dfscan::train::spectrum;
use dfscan::crops::dataset::{CropSet, Split};
use dfscan::train::probe::{self, Backbone, FeatureConfig, FeatureTable};

/// The frozen backbone of `arch` with its ImageNet weights (imported on first use), tapped
/// at each stage's end: one feature table serves the plain probe (the head's columns) and the
/// multi-level one (all columns).
fn backbone(arch: Arch) -> Result<Backbone> {
    let (network, preprocess) = models::training_spec(arch);
    let NetworkConfig::EfficientNet(mut config) = network else { bail!("a probe's backbone is an EfficientNet-Lite, not {}", arch.name()) };
    config.taps = config.stage_ends();
    let Some(weights) = pretrained_start(arch)? else { bail!("{} has no ImageNet weights", arch.name()) };
    Ok(Backbone { config, preprocess, weights })
}

/// Features of every crop of `set` (and blended views), from the cache or computed with a bar.
fn features(set: &CropSet, backbone: &Backbone, sbi_views: usize, seed: u64, device: Device) -> Result<FeatureTable> {
    let bar = progress_bar(0, "features [{bar:30}] {pos}/{len} crops {eta}");
    let cfg = FeatureConfig { sbi_views, seed, batch_size: 32 };
    let table = probe::features(set, backbone, &cfg, device, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(table)
}

pub fn cv(args: CvArgs) -> Result<()> {
    if args.lrnet {
        return super::lrnet::cv(&args);
    }
    let device = args.device.resolve()?;
    if args.no_probes && args.models.is_empty() && args.spectrum.is_empty() {
        bail!("--no-probes leaves nothing to report: give --models or --spectrum");
    }
    let set = CropSet::open(&args.crops)?;
    // Fixed models alone need no features.
    let table = match args.no_probes {
        true => FeatureTable::none(set.records.len()),
        false => features(&set, &backbone(args.arch)?, args.head.sbi_views, args.seed, device)?,
    };
    let mut fixed = Vec::new();
    for name in &args.models {
        let path = models::set::resolve(&super::models_dir(), name);
        let model = models::FaceModel::load(&path, device)?;
        let crop_probs = cv::crop_probs(&set, &model, 64)?;
        fixed.push(FixedModel { name: format!("{} ({})", model.id.weights, model.id.name), crop_probs, seen: args.seen.clone() });
    }
    let taps = match (args.no_probes, args.head.taps) {
        (true, _) => Vec::new(),
        (false, true) => vec![false, true],
        (false, false) => vec![false],
    };
    let folded = spectrum_recipes(&args, &set, &table)?;
    let cfg = CvConfig { recipes: args.recipes.clone(), taps, head: args.head.head(), aggregate: args.aggregate, origins: args.origins.clone() };
    let report = cv::cross_validate(&set, &table, args.arch.name(), &folded, &fixed, &cfg)?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("dfscan: full report in {}", path.display());
    }
    Ok(())
}

/// The `--spectrum` rows: each classifier on every crop's spectrum (computed here, in memory),
/// and with `--spectrum-cnn` also on the spectrum beside the probe's pooled features.
fn spectrum_recipes(args: &CvArgs, set: &CropSet, table: &FeatureTable) -> Result<Vec<FoldedRecipe>> {
    if args.spectrum.is_empty() {
        return Ok(Vec::new());
    }
    let bar = progress_bar(0, "spectra [{bar:30}] {pos}/{len} crops {eta}");
    let all: Vec<usize> = (0..set.records.len()).collect();
    let side = spectrum::side_of(set);
    let spectra = spectrum::crop_spectra(set, &all, side, models::spectrum::BINS, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let mut inputs = vec![("spectrum".to_string(), spectra.shallow_clone())];
    if args.spectrum_cnn {
        // The probe table's clean row of each crop, in crop order.
        let mut row_of = vec![-1i64; set.records.len()];
        for r in table.rows(|_, blended| !blended) {
            row_of[table.record[r as usize]] = r;
        }
        ensure!(row_of.iter().all(|&r| r >= 0), "the feature table lacks crops");
        let cnn = table.columns(false).index_select(0, &tch::Tensor::from_slice(&row_of));
        inputs.push((format!("spectrum+{}", args.arch.name()), tch::Tensor::cat(&[spectra, cnn.to_kind(tch::Kind::Float)], 1)));
    }
    let mut recipes = Vec::new();
    for (name, x) in &inputs {
        for &kind in &args.spectrum {
            recipes.push(FoldedRecipe { name: format!("{name} {}", kind.name()), x: x.shallow_clone(), fit: args.spectrum_fit.fit(kind, args.seed) });
        }
    }
    Ok(recipes)
}

/// `dfscan train --probe RECIPE`: the head fitted on the train split's features.
pub fn train_probe(args: &TrainArgs, recipe: Recipe) -> Result<()> {
    let device = args.device.resolve()?;
    let set = CropSet::open(&args.crops)?;
    let mut backbone = backbone(args.arch)?;
    let table = features(&set, &backbone, args.head.sbi_views, args.seed, device)?;
    let x = table.columns(args.head.taps);
    if !args.head.taps {
        backbone.config.taps.clear();
    }
    let plan = args.split.plan();
    let records = &set.records;
    let in_split = |split: Split| move |i: usize| plan.split_of(&records[i].group) == split;
    let (rows, labels) = cv::training_rows(&set, &table, recipe, in_split(Split::Train));
    let head = probe::fit_logistic(&x.index_select(0, &tch::Tensor::from_slice(&rows)), &labels, &args.head.head())?;
    let crops = rows.iter().filter(|&&r| !table.blended[r as usize]).count();
    let val = cv::video_auc(&set, &table, &x, &head, in_split(Split::Val), dfscan::aggregate::Strategy::Confident);
    eprintln!(
        "dfscan: {} probe ({}) fitted on {crops} crops + {} blended views; validation video AUC {}",
        backbone.name(),
        recipe.name(),
        rows.len() - crops,
        val.map_or("n/a (empty split)".into(), |a| format!("{a:.4}"))
    );
    let provenance = format!("{} ({} crops, {} blended views)", std::env::args().collect::<Vec<_>>().join(" "), crops, rows.len() - crops);
    probe::save_model(&backbone, &head, set.spec, provenance, &args.output, args.storage)?;
    eprintln!("dfscan: wrote {}", args.output.display());
    Ok(())
}

/// `dfscan fit-ensemble`: a stacker on a cv report's held-out scores.
pub fn fit_ensemble(args: FitEnsembleArgs) -> Result<()> {
    let report: cv::CvReport = serde_json::from_str(&std::fs::read_to_string(&args.report)?)
        .with_context(|| format!("{} is not a report of `dfscan cv --report`", args.report.display()))?;
    let mut picks = Vec::new();
    for member in &args.members {
        let Some((row, name)) = member.split_once('=') else { bail!("--member {member}: expected ROW=NAME") };
        let row: usize = row.parse().map_err(|_| anyhow::anyhow!("--member {member}: ROW is a row number of the cv table"))?;
        let Some(named) = report.rows.get(row) else { bail!("--member {member}: the report has rows 0..{}", report.rows.len()) };
        eprintln!("dfscan: {name} <- held-out scores of row {row}, {}", named.name);
        picks.push((row, name.to_string()));
    }
    // Only inputs no member trained on: a fixed model's in-sample origins are left out.
    let seen: Vec<&String> = picks.iter().flat_map(|(row, _)| &report.rows[*row].seen).collect();
    let held_out: Vec<&cv::OutOfFold> = report.out_of_fold.iter().filter(|o| !seen.contains(&&o.origin)).collect();
    let fake: Vec<bool> = held_out.iter().map(|o| o.fake).collect();
    let scores: Vec<Vec<f32>> = held_out.iter().map(|o| picks.iter().map(|(row, _)| o.scores[*row]).collect()).collect();
    let provenance = format!("{} ({} held-out inputs of {} folds)", std::env::args().collect::<Vec<_>>().join(" "), scores.len(), report.folds.len());
    let head = dfscan::train::probe::HeadConfig { l2: args.l2, steps: 500, ..Default::default() };
    let stacker = probe::fit_stacker(picks.into_iter().map(|(_, n)| n).collect(), &scores, &fake, &head, provenance)?;
    // How calibrated it is on the scores it was fitted on (three or so parameters: little room to overfit).
    let stacked: Vec<f32> = scores.iter().map(|s| stacker.combine(&s.iter().map(|&p| Some(p)).collect::<Vec<_>>()).unwrap_or(f32::NAN)).collect();
    let bins = dfscan::eval::metrics::reliability(&stacked, &fake, 10);
    eprintln!(
        "dfscan: weights {:?}, bias {:.4}; pooled AUC {}, log loss {}, expected calibration error {}",
        stacker.weights,
        stacker.bias,
        dfscan::eval::metrics::roc_auc(&stacked, &fake).map_or("n/a".into(), |a| format!("{a:.4}")),
        dfscan::eval::metrics::log_loss(&stacked, &fake).map_or("n/a".into(), |a| format!("{a:.4}")),
        dfscan::eval::metrics::expected_calibration_error(&bins).map_or("n/a".into(), |a| format!("{a:.4}")),
    );
    print!("{}", reliability_table(&bins));
    std::fs::write(&args.output, serde_json::to_string_pretty(&stacker)?)?;
    eprintln!("dfscan: wrote {}", args.output.display());
    Ok(())
}

/// A reliability diagram as text: per bin, predictions, mean predicted and observed P(fake).
pub fn reliability_table(bins: &[dfscan::eval::metrics::ReliabilityBin]) -> String {
    let mut out = String::from("P(fake) bin | inputs | mean predicted | observed fake share\n");
    for b in bins.iter().filter(|b| b.count > 0) {
        let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        out += &format!("{:.1}-{:.1}     | {:>6} | {:>14} | {:>19}\n", b.lo, b.hi, b.count, cell(b.mean_predicted), cell(b.observed));
    }
    out
}
