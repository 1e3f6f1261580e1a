//! `dfscan cv`: cross-source validation, the project's honest number. For each origin of the
//! crop cache (a dataset or corpus family, [`crate::crops::dataset::CropRecord::origin`]), fit on
//! every other origin and score the held-out one; report video AUC per held-out origin and
//! their mean, per recipe. A model that learned one source's codec or background instead of
//! the manipulation is good on a random split and at chance here.
//!
//! Leak-free by group as well as origin: a training fold drops every group that also appears
//! in the held-out origin (one person filmed in two sources stays out of both sides).
//!
//! The recipes are linear probes ([`super::probe`]): features are computed once for the
//! whole cache, so a fold costs one head fit. The spectrum detector's classifiers
//! ([`super::spectrum`]) are folded the same way ([`FoldedRecipe`]): spectra once per crop, one
//! smartcore fit per fold. Already-trained models (the shipped default)
//! are scored on each origin as they are; they were fitted without folds, so on origins they
//! trained on their figure is in-sample (the report says which origins a model saw).
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::crops::dataset::CropSet;
use super::probe::{fit_logistic, FeatureTable, HeadConfig};
use crate::aggregate::{sigmoid, Strategy};
use crate::eval::metrics::{per_video, reliability, roc_auc, ReliabilityBin};

/// What a probe is fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// The labelled reals and fakes of the training origins.
    Labelled,
    /// The labelled reals and fakes, plus self-blended views of the reals as fakes.
    LabelledSbi,
    /// Reals and their self-blended views only (the SBI paper's setting: no real fake seen).
    SbiOnly,
}

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Labelled => "labelled",
            Recipe::LabelledSbi => "labelled+sbi",
            Recipe::SbiOnly => "sbi-only",
        }
    }

    /// Whether a feature row (a crop's label, or a blended view) is in this recipe's training data.
    fn uses(self, fake: bool, blended: bool) -> bool {
        match self {
            Recipe::Labelled => !blended,
            Recipe::LabelledSbi => true,
            Recipe::SbiOnly => blended || !fake,
        }
    }
}

/// Which rows of a feature table a recipe fits on, with their labels.
pub fn training_rows(set: &CropSet, table: &FeatureTable, recipe: Recipe, keep_crop: impl Fn(usize) -> bool) -> (Vec<i64>, Vec<bool>) {
    let rows = table.rows(|crop, blended| keep_crop(crop) && recipe.uses(set.records[crop].label.is_fake(), blended));
    let labels = rows.iter().map(|&r| table.blended[r as usize] || set.records[table.record[r as usize]].label.is_fake()).collect();
    (rows, labels)
}

/// One held-out origin: its size and each row's video AUC on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fold {
    pub origin: String,
    pub real_videos: usize,
    pub fake_videos: usize,
    /// Crops the probes trained on for this fold (labelled crops, before blended views).
    pub train_crops: usize,
}

/// A row of the table: one probe recipe, one folded recipe, or one fixed model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    /// Video AUC per fold, in [`CvReport::folds`] order (None: the fold lacks a class).
    pub auc: Vec<Option<f64>>,
    /// Mean of the fold AUCs that exist.
    pub mean_auc: Option<f64>,
    /// Pooled AUC of every held-out video's score (origins mixed: calibration across origins matters).
    pub pooled_auc: Option<f64>,
    /// Reliability of the pooled held-out video scores.
    pub reliability: Vec<ReliabilityBin>,
    /// Origins this row's model trained on (fixed models); empty for probes (never in-sample).
    pub seen: Vec<String>,
}

/// Every held-out video's score, per row: what `fit-ensemble` stacks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutOfFold {
    pub source: String,
    pub origin: String,
    pub fake: bool,
    /// P(fake) per row of [`CvReport::rows`].
    pub scores: Vec<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CvReport {
    pub backbone: String,
    pub aggregate: Strategy,
    pub head: HeadConfig,
    pub folds: Vec<Fold>,
    pub rows: Vec<Row>,
    pub out_of_fold: Vec<OutOfFold>,
}

pub struct CvConfig {
    pub recipes: Vec<Recipe>,
    /// Which features the probes read, one set of rows each: the head's alone (false) and with
    /// the tapped blocks' statistics (true). The table must hold taps for `true`.
    pub taps: Vec<bool>,
    pub head: HeadConfig,
    pub aggregate: Strategy,
    /// Held-out origins (empty: every origin of the cache).
    pub origins: Vec<String>,
}

/// A classifier fitted per fold on per-crop features of its own: the spectrum detector on the
/// crops' spectra (alone, or beside the probe backbone's features). Never in-sample.
pub struct FoldedRecipe {
    pub name: String,
    /// `[crops, F]`: row i holds crop i's features.
    pub x: Tensor,
    pub fit: super::spectrum::FitConfig,
}

/// A model scored as it is: its P(fake) for every crop of the cache (cut by the cache's
/// contract, resized to the model's input), and the origins it saw.
pub struct FixedModel {
    pub name: String,
    pub crop_probs: Vec<f32>,
    pub seen: Vec<String>,
}

/// Runs the folds. `table` holds the features of every crop of `set` (and blended views).
/// `folded` recipes are fitted per fold like the probes, and `fixed` models scored as they are.
pub fn cross_validate(set: &CropSet, table: &FeatureTable, backbone: &str, folded: &[FoldedRecipe], fixed: &[FixedModel], cfg: &CvConfig) -> Result<CvReport> {
    ensure!(set.records.iter().all(|r| !r.origin.is_empty()), "the crop cache has inputs without an origin (extract from a manifest with an origin column: scripts/manifest.py)");
    let origins = if cfg.origins.is_empty() { set.origins() } else { cfg.origins.clone() };
    ensure!(origins.len() >= 2, "cross-source validation needs at least two origins");
    // Each clean crop's row in the table: what a held-out video is scored on.
    let clean_row: BTreeMap<usize, i64> = table.rows(|_, blended| !blended).into_iter().map(|r| (table.record[r as usize], r)).collect();
    let probes: Vec<(bool, Recipe)> = cfg.taps.iter().flat_map(|&t| cfg.recipes.iter().map(move |&r| (t, r))).collect();
    let columns: Vec<Tensor> = cfg.taps.iter().map(|&t| table.columns(t)).collect();
    let n_rows = probes.len() + folded.len() + fixed.len();
    let mut folds = Vec::new();
    let mut aucs: Vec<Vec<Option<f64>>> = vec![Vec::new(); n_rows];
    let mut out_of_fold: Vec<OutOfFold> = Vec::new();
    for origin in &origins {
        let test: Vec<usize> = (0..set.records.len()).filter(|&i| &set.records[i].origin == origin).collect();
        ensure!(!test.is_empty(), "no crops of origin {origin}");
        let held_groups: BTreeSet<&str> = test.iter().map(|&i| set.records[i].group.as_str()).collect();
        let train_crop = |i: usize| &set.records[i].origin != origin && !held_groups.contains(set.records[i].group.as_str());
        let sources: Vec<&str> = test.iter().map(|&i| set.records[i].source.as_str()).collect();
        let labels: Vec<bool> = test.iter().map(|&i| set.records[i].label.is_fake()).collect();
        let mut row_scores: Vec<Vec<f32>> = Vec::with_capacity(n_rows);
        for &(taps, recipe) in &probes {
            let x = &columns[cfg.taps.iter().position(|&t| t == taps).expect("listed")];
            let (rows, y) = training_rows(set, table, recipe, train_crop);
            let head = fit_logistic(&x.index_select(0, &Tensor::from_slice(&rows)), &y, &cfg.head)?;
            let test_rows = Tensor::from_slice(&test.iter().map(|i| clean_row[i]).collect::<Vec<_>>());
            row_scores.push(head.logits(&x.index_select(0, &test_rows)).into_iter().map(sigmoid).collect());
        }
        let train: Vec<usize> = (0..set.records.len()).filter(|&i| train_crop(i)).collect();
        let y: Vec<bool> = train.iter().map(|&i| set.records[i].label.is_fake()).collect();
        let index = |idx: &[usize]| Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        for recipe in folded {
            let fitted = super::spectrum::fit(&recipe.x.index_select(0, &index(&train)), &y, recipe.x.size()[1] as usize, &recipe.fit)?;
            row_scores.push(fitted.logits(&recipe.x.index_select(0, &index(&test)))?.into_iter().map(sigmoid).collect());
        }
        for model in fixed {
            row_scores.push(test.iter().map(|&i| model.crop_probs[i]).collect());
        }
        let mut video_labels = Vec::new();
        let mut video_scores: Vec<Vec<f32>> = Vec::new();
        for (r, scores) in row_scores.iter().enumerate() {
            let (v, l) = per_video(scores, &labels, &sources, cfg.aggregate);
            aucs[r].push(roc_auc(&v, &l));
            video_scores.push(v);
            video_labels = l;
        }
        let video_sources: BTreeSet<&str> = sources.iter().copied().collect();
        for (k, source) in video_sources.iter().enumerate() {
            out_of_fold.push(OutOfFold {
                source: source.to_string(),
                origin: origin.clone(),
                fake: video_labels[k],
                scores: video_scores.iter().map(|v| v[k]).collect(),
            });
        }
        folds.push(Fold {
            origin: origin.clone(),
            real_videos: video_labels.iter().filter(|&&f| !f).count(),
            fake_videos: video_labels.iter().filter(|&&f| f).count(),
            train_crops: train.len(),
        });
    }
    let names = probes
        .iter()
        .map(|(t, r)| format!("{backbone}{} probe, {}", if *t { "+taps" } else { "" }, r.name()))
        .chain(folded.iter().map(|f| f.name.clone()))
        .chain(fixed.iter().map(|m| m.name.clone()));
    let seen = (0..probes.len() + folded.len()).map(|_| Vec::new()).chain(fixed.iter().map(|m| m.seen.clone()));
    let rows = summarise(names.zip(seen), aucs, &folds, &out_of_fold);
    Ok(CvReport { backbone: backbone.to_string(), aggregate: cfg.aggregate, head: cfg.head, folds, rows, out_of_fold })
}

/// The table's rows from each row's (name, origins it saw) and its AUC per fold: a row's
/// summary covers only the origins it never trained on.
pub fn summarise(rows: impl Iterator<Item = (String, Vec<String>)>, aucs: Vec<Vec<Option<f64>>>, folds: &[Fold], out_of_fold: &[OutOfFold]) -> Vec<Row> {
    rows.zip(aucs)
        .enumerate()
        .map(|(r, ((name, seen), auc))| {
            let present: Vec<f64> = auc.iter().zip(folds).filter(|(_, f)| !seen.contains(&f.origin)).filter_map(|(a, _)| *a).collect();
            let unseen: Vec<&OutOfFold> = out_of_fold.iter().filter(|o| !seen.contains(&o.origin)).collect();
            let pooled: Vec<f32> = unseen.iter().map(|o| o.scores[r]).collect();
            let labels: Vec<bool> = unseen.iter().map(|o| o.fake).collect();
            Row {
                name,
                mean_auc: (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64),
                pooled_auc: roc_auc(&pooled, &labels),
                reliability: reliability(&pooled, &labels, 10),
                auc,
                seen,
            }
        })
        .collect()
}

/// Video AUC of `head` on the crops that pass `keep` (clean crops only), or None when they
/// lack a class.
pub fn video_auc(set: &CropSet, table: &FeatureTable, x: &Tensor, head: &super::probe::LinearHead, keep: impl Fn(usize) -> bool, aggregate: Strategy) -> Option<f64> {
    let rows = table.rows(|crop, blended| !blended && keep(crop));
    if rows.is_empty() {
        return None;
    }
    let probs: Vec<f32> = head.logits(&x.index_select(0, &Tensor::from_slice(&rows))).into_iter().map(sigmoid).collect();
    let crops: Vec<usize> = rows.iter().map(|&r| table.record[r as usize]).collect();
    let labels: Vec<bool> = crops.iter().map(|&i| set.records[i].label.is_fake()).collect();
    let sources: Vec<&str> = crops.iter().map(|&i| set.records[i].source.as_str()).collect();
    let (v, l) = per_video(&probs, &labels, &sources, aggregate);
    roc_auc(&v, &l)
}

/// P(fake) of a trained frame model for every crop of `set`, cut as the cache was and resized
/// to the model's input, in batches.
pub fn crop_probs(set: &CropSet, model: &crate::models::FaceModel, batch_size: usize) -> Result<Vec<f32>> {
    let size = model.input_size();
    let mut probs = Vec::with_capacity(set.records.len());
    for start in (0..set.records.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(set.records.len());
        let pixels = (start..end).map(|i| set.load_rgb(i, size as i32)).collect::<Result<Vec<_>>>()?;
        let logits = Vec::<f32>::try_from(model.fake_logits(&crate::models::crop_batch(&pixels, size)).to_device(tch::Device::Cpu))?;
        probs.extend(logits.into_iter().map(sigmoid));
    }
    Ok(probs)
}

impl CvReport {
    /// The table: one line per row, one column per held-out origin, then mean and pooled AUC.
    /// An in-sample cell (a fixed model on an origin it trained on) is marked with `*`.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let mut out = format!("{:width$} |", "video AUC, held-out origin");
        for f in &self.folds {
            out += &format!(" {:>13} |", f.origin);
        }
        out += "  mean | pooled |   ECE\n";
        out += &format!("{:width$} |", "(real/fake videos)");
        for f in &self.folds {
            out += &format!(" {:>13} |", format!("{}/{}", f.real_videos, f.fake_videos));
        }
        out += "       |        |\n";
        let cell = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{a:.3}"));
        for row in &self.rows {
            out += &format!("{:width$} |", row.name);
            for (f, auc) in self.folds.iter().zip(&row.auc) {
                let mark = if row.seen.contains(&f.origin) { "*" } else { " " };
                out += &format!(" {:>12}{mark} |", cell(*auc));
            }
            let ece = crate::eval::metrics::expected_calibration_error(&row.reliability);
            out += &format!(" {:>5} | {:>6} | {:>5}\n", cell(row.mean_auc), cell(row.pooled_auc), cell(ece));
        }
        out += "mean, pooled: over the origins a row never trained on (unstarred); pooled: AUC of those videos together; ECE: expected calibration error of their scores (10 bins)\n";
        if self.rows.iter().any(|r| !r.seen.is_empty()) {
            out += "* in-sample: the model trained on this origin, so the cell is not a cross-source figure\n";
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crops::dataset::{CropRecord, Label};
    use std::path::PathBuf;

    /// Crops of three origins, 8 videos each (4 real, 4 fake, 3 crops per video), with feature
    /// column 0 carrying the label plus noise; group "shared" has a real video in "a" and in "b".
    fn synthetic() -> (CropSet, FeatureTable) {
        tch::manual_seed(0);
        let mut records = Vec::new();
        for origin in ["a", "b", "c"] {
            for v in 0..8 {
                let fake = v % 2 == 1;
                let group = if v == 0 && origin != "c" { "shared".to_string() } else { format!("{origin}{v}") };
                for frame in 0..3 {
                    records.push(CropRecord {
                        file: String::new(),
                        label: if fake { Label::Fake } else { Label::Real },
                        group: group.clone(),
                        source: format!("{origin}/{v}.mp4"),
                        frame,
                        pts_s: 0.0,
                        confidence: 1.0,
                        origin: origin.into(),
                    });
                }
            }
        }
        let n = records.len() as i64;
        let label = Tensor::from_slice(&records.iter().map(|r| r.label.is_fake() as u8 as f32).collect::<Vec<_>>());
        let x = Tensor::cat(&[label.view([n, 1]) * 3.0, Tensor::zeros([n, 1], (tch::Kind::Float, tch::Device::Cpu))], 1) + Tensor::randn([n, 2], (tch::Kind::Float, tch::Device::Cpu));
        let table = FeatureTable { x, record: (0..records.len()).collect(), blended: vec![false; records.len()] };
        (CropSet { dir: PathBuf::new(), records, spec: None }, table)
    }

    #[test]
    fn each_origin_is_held_out_once_and_its_groups_stay_out_of_training() {
        let (set, table) = synthetic();
        let cfg = CvConfig { recipes: vec![Recipe::Labelled], taps: vec![true], head: HeadConfig::default(), aggregate: Strategy::Mean, origins: Vec::new() };
        let report = cross_validate(&set, &table, "test", &[], &[], &cfg).unwrap();
        assert_eq!(report.folds.iter().map(|f| f.origin.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        // Holding out "a" also drops the "shared" group's video of "b": 16 + 24 - 3 crops train.
        assert_eq!(report.folds[0].train_crops, 8 * 3 + 8 * 3 - 3);
        assert_eq!(report.folds[2].train_crops, 16 * 3);
        assert_eq!((report.folds[0].real_videos, report.folds[0].fake_videos), (4, 4));
        // The label is in the features, so every held-out origin is separated.
        assert!(report.rows[0].auc.iter().all(|a| a.unwrap() > 0.9), "{:?}", report.rows[0].auc);
        assert_eq!(report.out_of_fold.len(), 24);
        // A fixed model is scored as it is: a constant model is at chance everywhere.
        let fixed = FixedModel { name: "constant".into(), crop_probs: vec![0.5; set.records.len()], seen: vec!["a".into()] };
        let report = cross_validate(&set, &table, "test", &[], &[fixed], &cfg).unwrap();
        assert!(report.rows[1].auc.iter().all(|a| (a.unwrap() - 0.5).abs() < 1e-9));
        // Its summary leaves out the origin it saw: 16 held-out videos of "b" and "c" pooled.
        assert_eq!(report.rows[1].reliability.iter().map(|b| b.count).sum::<usize>(), 16);
        assert!(report.table().contains("0.500*"), "in-sample cells are marked:\n{}", report.table());
        // Without origins there is nothing to hold out.
        let mut bare = set;
        bare.records.iter_mut().for_each(|r| r.origin.clear());
        assert!(cross_validate(&bare, &table, "test", &[], &[], &cfg).is_err());
    }

    #[test]
    fn recipes_pick_their_rows() {
        // (fake, blended): a real crop, a fake crop, a blended view of a real.
        assert!(Recipe::Labelled.uses(false, false) && Recipe::Labelled.uses(true, false) && !Recipe::Labelled.uses(false, true));
        assert!(Recipe::LabelledSbi.uses(false, false) && Recipe::LabelledSbi.uses(true, false) && Recipe::LabelledSbi.uses(false, true));
        assert!(Recipe::SbiOnly.uses(false, false) && !Recipe::SbiOnly.uses(true, false) && Recipe::SbiOnly.uses(false, true));
    }
}
