//! `dfscan fit-attribution`: the attribution model (`dfscan::train::attribution`) fitted on a
//! crop cache after a grouped cross-validation that says how good it is; and, for the scan,
//! where the attribution model and its encoder's ImageNet weights are.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Result};

use super::train::pretrained_start;
use crate::cli::FitAttributionArgs;
use dfscan::attribution::Classes;
use dfscan::crops::dataset::CropSet;
use dfscan::models::attribution::{self as model, AttributionModel, EncoderSpec, FeatureEncoder};
use dfscan::models::{self, Arch, NetworkConfig, Preprocess};
use dfscan::output::progress_bar;
use dfscan::train::attribution::{self as fit, AeTraining, CropLabel, FitConfig};
use dfscan::train::attribution_eval;

/// The encoder's ImageNet weights: EfficientNet-Lite0's, imported on first use from the file
/// the set-up fetched (no Python needed), as `dfscan train` does.
pub fn encoder_weights() -> Result<PathBuf> {
    match pretrained_start(Arch::EfficientnetLite0)? {
        Some(path) => Ok(path),
        None => bail!("efficientnet-lite0 has no ImageNet weights to embed with"),
    }
}

/// The shipped attribution model, when there is one.
pub fn shipped() -> Option<PathBuf> {
    Some(super::models_dir().join("attribution.safetensors")).filter(|p| p.is_file())
}

/// Loads the attribution model at `path` with its encoder, computing in `compute`.
pub fn load(path: &Path, device: tch::Device, compute: tch::Kind) -> Result<AttributionModel> {
    AttributionModel::load(path, &encoder_weights()?, device, compute)
}

pub fn fit_attribution(args: FitAttributionArgs) -> Result<()> {
    let started = Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let set = CropSet::open(&args.crops)?;
    let (labels, missing) = fit::crop_labels(&set);
    if !missing.is_empty() {
        eprintln!("dfscan: {} fake sources are not in the family/method table (src/attribution/labels.rs) and train no forest: {missing:?}", missing.len());
    }
    // The encoder: Lite0 with its stages tapped; the cache keeps every column.
    let weights = encoder_weights()?;
    let (network, preprocess) = models::training_spec(Arch::EfficientnetLite0);
    let NetworkConfig::EfficientNet(mut config) = network else { bail!("efficientnet-lite0 is an EfficientNet") };
    config.taps = config.stage_ends();
    let spec = EncoderSpec {
        network: config,
        preprocess: Preprocess { crop: set.spec, ..preprocess },
        weights: weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        tensors_blake3: model::tensors_hash(&weights)?,
        taps: true,
    };
    let device = args.device.resolve()?;
    let encoder = FeatureEncoder::load(&spec, &weights, device, tch::Kind::Float)?;
    let bar = progress_bar(0, "embeddings [{bar:30}] {pos}/{len} crops {eta}");
    let all = fit::embeddings(&set, &encoder, args.batch_size.max(1), |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    drop(encoder);
    let embedded_s = started.elapsed().as_secs_f64();
    let spec = EncoderSpec { taps: !args.head_only, ..spec };
    let x = if spec.taps { all } else { all.narrow(1, all.size()[1] - spec.width(), spec.width()) };
    let rows: Vec<usize> = (0..set.records.len()).collect();
    let classes = fit::classes_of(&set, &labels, &rows, args.min_groups.max(1));
    ensure!(classes.families.len() >= 2 && classes.methods.len() >= 2, "attribution needs two families and two methods with {} groups each: {classes:?}", args.min_groups);
    let cfg = FitConfig {
        taps: spec.taps,
        autoencoder: AeTraining { hidden: args.ae_hidden, epochs: args.ae_epochs, ..FitConfig::default().autoencoder },
        forest: dfscan_classical::ForestParams { trees: args.trees, seed: args.seed, ..Default::default() },
        per_class: args.per_class.max(1),
        min_groups: args.min_groups,
        seed: args.seed,
    };
    let mut report = String::new();
    writeln!(report, "Command: `{command}`\n\nEncoder: {} ({} features{}), ImageNet weights {} (tensors {}); autoencoder {} -> {} -> 64; {} trees per forest, {} rows per class; seed {}.\n", spec.network_name(), spec.width(), if spec.taps { ": the head's 1280 and each stage end's mean and std" } else { ": the head's" }, spec.weights, spec.tensors_blake3, spec.width(), cfg.autoencoder.hidden.min(spec.width()), cfg.forest.trees, cfg.per_class, cfg.seed)?;
    report += &counts(&set, &labels, &classes);
    print!("{report}");
    if args.folds >= 2 {
        let t = Instant::now();
        let bar = progress_bar(args.folds as u64, "grouped cross-validation [{bar:30}] fold {pos}/{len} {eta}");
        let cv = attribution_eval::cross_validate(&set, &x, &labels, &classes, &cfg, attribution_eval::CvSettings { folds: args.folds, floor: args.floor }, |k| {
            bar.set_position(k as u64);
            bar.suspend(|| eprintln!("dfscan: fold {k} of {} done after {:.0} s", args.folds, t.elapsed().as_secs_f64()));
        })?;
        bar.finish_and_clear();
        let text = format!("\n## Grouped {}-fold cross-validation\n\n{}\nAutoencoder reconstruction loss (last epoch, standardised units) per fold: {:?}. Wall time {:.0} s.\n", args.folds, cv.markdown(), cv.ae_loss.iter().map(|l| (l * 1000.0).round() / 1000.0).collect::<Vec<_>>(), t.elapsed().as_secs_f64());
        print!("{text}");
        report += &text;
    }
    if !args.no_save {
        let t = Instant::now();
        let fitted = fit::fit(&x, &labels, &classes, &rows, &cfg, false)?;
        let provenance = format!("{command} ({} crops of {}, {} families, {} methods)", set.records.len(), set.dir.display(), classes.families.len(), classes.methods.len());
        fit::save(&fitted, spec, classes, provenance, &args.output)?;
        let text = format!("\nFinal fit on every crop: {:.0} s; wrote {}.\n", t.elapsed().as_secs_f64(), args.output.display());
        eprint!("{text}");
        report += &text;
    }
    writeln!(report, "\nWall time: embeddings {embedded_s:.0} s (cached: 0), all {:.0} s; {} threads.", started.elapsed().as_secs_f64(), tch::get_num_threads())?;
    if let Some(path) = &args.report {
        std::fs::write(path, &report)?;
        eprintln!("dfscan: report in {}", path.display());
    }
    Ok(())
}

/// The data per class, as a markdown table: crops, videos (sources) and groups.
fn counts(set: &CropSet, labels: &[CropLabel], classes: &Classes) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    type Tally<'a> = (usize, BTreeSet<&'a str>, BTreeSet<&'a str>);
    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for (r, l) in set.records.iter().zip(labels) {
        let family = match (l.fake, l.family) {
            (false, _) => "real".to_string(),
            (true, Some(f)) => f.name().to_string(),
            (true, None) => "(no family)".to_string(),
        };
        let method = match (l.fake, l.method) {
            (false, _) => String::new(),
            (true, Some(m)) if classes.methods.iter().any(|c| c.name == m) => m.to_string(),
            (true, Some(m)) => format!("{m} (no class)"),
            (true, None) => "unknown".to_string(),
        };
        let e = by.entry((family, method)).or_default();
        e.0 += 1;
        e.1.insert(&r.source);
        e.2.insert(&r.group);
    }
    let mut s = String::from("| family | method | crops | videos | groups |\n|---|---|---|---|---|\n");
    for ((family, method), (crops, videos, groups)) in by {
        s += &format!("| {family} | {method} | {crops} | {} | {} |\n", videos.len(), groups.len());
    }
    s
}

trait NetworkName {
    fn network_name(&self) -> &'static str;
}

impl NetworkName for EncoderSpec {
    fn network_name(&self) -> &'static str {
        NetworkConfig::EfficientNet(self.network.clone()).arch_name()
    }
}
