//! `dfscan cv` and `dfscan train --probe`: linear probes on a frozen ImageNet backbone,
//! judged by held-out origin, and the probe fitted on a whole split for shipping.
use anyhow::{bail, Result};
use tch::Device;

use super::train::{pretrained_start, progress_bar};
use crate::cli::{CvArgs, TrainArgs};
use dfscan::models::{self, Arch, NetworkConfig};
use dfscan::train::cv::{self, CvConfig, FixedModel, Recipe};
use dfscan::train::dataset::{CropSet, Split};
use dfscan::train::probe::{self, Backbone, FeatureConfig, FeatureTable};

/// The frozen backbone of `arch` with its ImageNet weights (imported on first use).
fn backbone(arch: Arch) -> Result<Backbone> {
    let (network, preprocess) = models::training_spec(arch);
    let NetworkConfig::EfficientNet(config) = network else { bail!("a probe's backbone is an EfficientNet-Lite, not {}", arch.name()) };
    let Some(weights) = pretrained_start(arch)? else { bail!("{} has no ImageNet weights", arch.name()) };
    Ok(Backbone { config, preprocess, weights })
}

/// Features of every crop of `set` (and blended views), from the cache or computed with a bar.
fn features(set: &CropSet, backbone: &Backbone, sbi_views: usize, seed: u64, device: Device) -> Result<FeatureTable> {
    let bar = progress_bar("features [{bar:30}] {pos}/{len} crops {eta}");
    let cfg = FeatureConfig { sbi_views, seed, batch_size: 32 };
    let table = probe::features(set, backbone, &cfg, device, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(table)
}

pub fn cv(args: CvArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let set = CropSet::open(&args.crops)?;
    let backbone = backbone(args.arch)?;
    let table = features(&set, &backbone, args.head.sbi_views, args.seed, device)?;
    let mut fixed = Vec::new();
    for name in &args.models {
        let path = models::set::resolve(name);
        let model = models::FaceModel::load(&path, device)?;
        let crop_probs = cv::crop_probs(&set, &model, 64)?;
        fixed.push(FixedModel { name: format!("{} ({})", model.id.weights, model.id.name), crop_probs, seen: args.seen.clone() });
    }
    let cfg = CvConfig { recipes: args.recipes.clone(), head: args.head.head(), aggregate: args.aggregate, origins: args.origins.clone() };
    let report = cv::cross_validate(&set, &table, backbone.name(), &fixed, &cfg)?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("dfscan: full report in {}", path.display());
    }
    Ok(())
}

/// `dfscan train --probe RECIPE`: the head fitted on the train split's features.
pub fn train_probe(args: &TrainArgs, recipe: Recipe) -> Result<()> {
    let device = args.device.resolve()?;
    let set = CropSet::open(&args.crops)?;
    let backbone = backbone(args.arch)?;
    let table = features(&set, &backbone, args.head.sbi_views, args.seed, device)?;
    let plan = args.split.plan();
    let records = &set.records;
    let in_split = |split: Split| move |i: usize| plan.split_of(&records[i].group) == split;
    let (rows, labels) = cv::training_rows(&set, &table, recipe, in_split(Split::Train));
    let head = probe::fit_logistic(&table.x.index_select(0, &tch::Tensor::from_slice(&rows)), &labels, &args.head.head())?;
    let crops = rows.iter().filter(|&&r| !table.blended[r as usize]).count();
    let val = cv::video_auc(&set, &table, &head, in_split(Split::Val), dfscan::aggregate::Strategy::Confident);
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
