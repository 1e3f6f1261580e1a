//! How well attribution works, measured the only honest way this data allows: grouped k-fold
//! cross-validation. Every group (a real source with the fakes made from it, or one identity;
//! the cache's `group` column) falls in one fold; for each fold the whole recipe (the
//! standardisation, the autoencoder and the forests) is fitted on the other folds and judges
//! this one. Groups are dealt to folds in turn after sorting them by their main class, so
//! each class's groups spread over the folds (a class with fewer groups than folds is absent
//! from some training folds, and is then never predicted right on its own held-out groups:
//! the table shows that, it does not hide it).
//!
//! Reported per level (1: real/fake by the same recipe, seed 002's own task, which the scanner
//! does not use; 2: family; 3: method): confusion matrices and per-class accuracy (recall), per
//! crop and per video (a source's crops' probabilities averaged, as the scan averages a
//! track's faces); and, per video, what the scan's rule ([`crate::attribution::summarise`])
//! would put in the line at the confidence floor: how often it names a family or method, and
//! how often the name is right.
use std::collections::BTreeMap;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use tch::Tensor;

use super::attribution::{family_class, fit, method_class, CropLabel, FitConfig};
use crate::attribution::{summarise, Classes, FaceAttribution, UNKNOWN};
use crate::crops::dataset::CropSet;

/// Counts of (true class, predicted class).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    fn new(classes: Vec<String>) -> Self {
        let n = classes.len();
        Self { classes, counts: vec![vec![0; n]; n] }
    }

    /// Share of each class's items predicted as it (None for a class without items).
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.counts.iter().enumerate().map(|(t, row)| {
            let n: usize = row.iter().sum();
            (n > 0).then(|| row[t] as f64 / n as f64)
        }).collect()
    }

    pub fn accuracy(&self) -> f64 {
        let n: usize = self.counts.iter().flatten().sum();
        (0..self.counts.len()).map(|t| self.counts[t][t]).sum::<usize>() as f64 / n.max(1) as f64
    }

    /// Mean of the per-class accuracies (classes with items).
    pub fn balanced_accuracy(&self) -> f64 {
        let known: Vec<f64> = self.per_class().into_iter().flatten().collect();
        known.iter().sum::<f64>() / known.len().max(1) as f64
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// A markdown table: one row per true class, its count, accuracy and predictions.
    pub fn markdown(&self) -> String {
        let mut s = format!("| true \\ predicted | n | accuracy | {} |\n", self.classes.join(" | "));
        s += &format!("|---|---|---|{}\n", "---|".repeat(self.classes.len()));
        for (t, (row, acc)) in self.counts.iter().zip(self.per_class()).enumerate() {
            let n: usize = row.iter().sum();
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            s += &format!("| {} | {n} | {} | {} |\n", self.classes[t], acc.map_or("-".into(), |a| format!("{:.0}%", 100.0 * a)), cells.join(" | "));
        }
        s
    }
}

/// One level's results.
#[derive(Clone, Debug, Serialize)]
pub struct LevelResult {
    pub level: &'static str,
    pub crops: Confusion,
    pub videos: Confusion,
}

/// What the scan's rule says of the held-out fake videos at the floor.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AtFloor {
    pub floor: f32,
    /// Fake videos with a family class.
    pub videos: usize,
    pub family_named: usize,
    pub family_right: usize,
    /// Of those, videos with a method class.
    pub method_videos: usize,
    pub method_named: usize,
    pub method_right: usize,
    /// Videos whose data names no method class (one-group methods, none named) given a method
    /// anyway: always wrong.
    pub method_named_without_class: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CvReport {
    pub folds: usize,
    pub classes: Classes,
    pub levels: Vec<LevelResult>,
    pub at_floor: AtFloor,
    /// Each fold's last autoencoder epoch's reconstruction loss (standardised units).
    pub ae_loss: Vec<f64>,
}

/// The fold of each crop: groups dealt in turn after sorting them by their main class (the
/// most common method, else family, of their fakes; "real" for a group of reals only),
/// shuffled within a class.
pub fn folds_of(set: &CropSet, labels: &[CropLabel], folds: usize, seed: u64) -> Vec<usize> {
    let mut keys: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for (r, l) in set.records.iter().zip(labels) {
        let (key, weight) = match (l.fake, l.method, l.family) {
            (false, _, _) => ("~real".to_string(), 0),
            (true, Some(m), _) => (m.to_string(), 1),
            (true, None, Some(f)) => (f.name().to_string(), 1),
            (true, None, None) => ("~unlabelled".to_string(), 1),
        };
        // A real crop counts only where the group has no fake.
        *keys.entry(r.group.as_str()).or_default().entry(key).or_default() += weight;
    }
    for counts in keys.values_mut() {
        if counts.len() > 1 {
            counts.remove("~real");
        }
    }
    let mut groups: Vec<(String, &str)> = keys.iter().map(|(g, k)| (k.iter().max_by_key(|(_, &n)| n).expect("a crop").0.clone(), *g)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    groups.shuffle(&mut rng);
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let fold: BTreeMap<&str, usize> = groups.iter().enumerate().map(|(k, (_, g))| (*g, k % folds.max(1))).collect();
    set.records.iter().map(|r| fold[r.group.as_str()]).collect()
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
}

/// Held-out probabilities of every crop (None: not held out, or no class at this level).
type HeldOut = Vec<Option<Vec<f32>>>;

/// How the cross-validation runs.
#[derive(Clone, Copy, Debug)]
pub struct CvSettings {
    pub folds: usize,
    /// The confidence floor the scan's rule is applied at.
    pub floor: f32,
}

/// Grouped cross-validation of the recipe `cfg` on every crop of `set` (embeddings `x`,
/// labels from the table, classes fixed beforehand). `progress(fold)` after each fold.
pub fn cross_validate(set: &CropSet, x: &Tensor, labels: &[CropLabel], classes: &Classes, cfg: &FitConfig, cv: CvSettings, mut progress: impl FnMut(usize)) -> Result<CvReport> {
    let CvSettings { folds, floor } = cv;
    let fold = folds_of(set, labels, folds, cfg.seed);
    let n = set.records.len();
    let (mut real_fake, mut family, mut method): (HeldOut, HeldOut, HeldOut) = (vec![None; n], vec![None; n], vec![None; n]);
    let mut ae_loss = Vec::new();
    for k in 0..folds {
        let train: Vec<usize> = (0..n).filter(|&i| fold[i] != k).collect();
        let test: Vec<usize> = (0..n).filter(|&i| fold[i] == k).collect();
        if test.is_empty() {
            continue;
        }
        let fitted = fit(x, labels, classes, &train, cfg, true)?;
        ae_loss.push(*fitted.ae.losses.last().unwrap_or(&f64::NAN));
        let codes = fitted.codes(&x.index_select(0, &Tensor::from_slice(&test.iter().map(|&i| i as i64).collect::<Vec<_>>())));
        let rf = fitted.real_fake.as_ref().expect("fitted with real/fake").proba(&codes)?;
        let (fam, met) = (fitted.family.proba(&codes)?, fitted.method.proba(&codes)?);
        for (j, &i) in test.iter().enumerate() {
            real_fake[i] = Some(rf[j].clone());
            family[i] = Some(fam[j].clone());
            method[i] = Some(met[j].clone());
        }
        progress(k + 1);
    }
    let families: Vec<String> = classes.families.iter().map(|f| f.name().to_string()).collect();
    let methods: Vec<String> = classes.methods.iter().map(|m| m.name.clone()).collect();
    let truth_rf = |i: usize| Some(labels[i].fake as usize);
    let levels = vec![
        level("real/fake", vec!["real".into(), "fake".into()], set, &real_fake, truth_rf),
        level("family", families, set, &family, |i| family_class(labels, classes, i)),
        level("method", methods, set, &method, |i| method_class(labels, classes, i)),
    ];
    let at_floor = at_floor(set, labels, classes, &family, &method, floor);
    Ok(CvReport { folds, classes: classes.clone(), levels, at_floor, ae_loss })
}

/// Crop and video confusion of one level: the crops with a true class and a prediction.
fn level(name: &'static str, classes: Vec<String>, set: &CropSet, probs: &HeldOut, truth: impl Fn(usize) -> Option<usize>) -> LevelResult {
    let (mut crops, mut videos) = (Confusion::new(classes.clone()), Confusion::new(classes));
    let mut by_video: BTreeMap<&str, (usize, Vec<f32>, usize)> = BTreeMap::new();
    for (i, p) in probs.iter().enumerate() {
        let (Some(t), Some(p)) = (truth(i), p) else { continue };
        crops.counts[t][argmax(p)] += 1;
        let entry = by_video.entry(set.records[i].source.as_str()).or_insert((t, vec![0.0; p.len()], 0));
        entry.1.iter_mut().zip(p).for_each(|(s, q)| *s += q);
        entry.2 += 1;
    }
    for (t, sum, _) in by_video.into_values() {
        videos.counts[t][argmax(&sum)] += 1;
    }
    LevelResult { level: name, crops, videos }
}

/// The scan's rule on each held-out fake video with a family class.
fn at_floor(set: &CropSet, labels: &[CropLabel], classes: &Classes, family: &HeldOut, method: &HeldOut, floor: f32) -> AtFloor {
    let mut by_video: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, held) in family.iter().enumerate() {
        if family_class(labels, classes, i).is_some() && held.is_some() {
            by_video.entry(set.records[i].source.as_str()).or_default().push(i);
        }
    }
    let mut out = AtFloor { floor, ..AtFloor::default() };
    for crops in by_video.values() {
        let faces: Vec<FaceAttribution> = crops
            .iter()
            .enumerate()
            .map(|(k, &i)| FaceAttribution { face: k, track: 0, family: family[i].clone().expect("held out"), method: method[i].clone().expect("held out") })
            .collect();
        let Some(a) = summarise(&faces, &[0], classes, floor) else { continue };
        let i = crops[0];
        out.videos += 1;
        if a.family != UNKNOWN {
            out.family_named += 1;
            out.family_right += (Some(a.family.as_str()) == labels[i].family.map(|f| f.name())) as usize;
        }
        match method_class(labels, classes, i) {
            Some(m) => {
                out.method_videos += 1;
                if a.method != UNKNOWN {
                    out.method_named += 1;
                    out.method_right += (a.method == classes.methods[m].name) as usize;
                }
            }
            None => out.method_named_without_class += (a.method != UNKNOWN) as usize,
        }
    }
    out
}

impl CvReport {
    /// The report as markdown (the card's measured section).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        for l in &self.levels {
            s += &format!(
                "### Level {}: {}\n\nPer video ({} videos): accuracy {:.1}%, balanced accuracy {:.1}%.\n\n{}\nPer crop ({} crops): accuracy {:.1}%, balanced accuracy {:.1}%.\n\n{}\n",
                match l.level { "real/fake" => 1, "family" => 2, _ => 3 },
                l.level,
                l.videos.total(),
                100.0 * l.videos.accuracy(),
                100.0 * l.videos.balanced_accuracy(),
                l.videos.markdown(),
                l.crops.total(),
                100.0 * l.crops.accuracy(),
                100.0 * l.crops.balanced_accuracy(),
                l.crops.markdown()
            );
        }
        let f = &self.at_floor;
        let pct = |a: usize, b: usize| if b == 0 { "-".to_string() } else { format!("{:.0}%", 100.0 * a as f64 / b as f64) };
        s += &format!(
            "### What the line says at the floor ({})\n\nOf {} held-out fake videos with a family class, the family is named for {} ({}), right for {} of those ({}). Of the {} with a method class, a method is named for {} ({}), right for {} of those ({}). Videos of a method without a class (one group only, or none named) that get a method anyway (always wrong): {}.\n",
            f.floor, f.videos, f.family_named, pct(f.family_named, f.videos), f.family_right, pct(f.family_right, f.family_named),
            f.method_videos, f.method_named, pct(f.method_named, f.method_videos), f.method_right, pct(f.method_right, f.method_named), f.method_named_without_class
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crops::dataset::{CropRecord, Label};

    #[test]
    fn groups_stay_in_one_fold_and_a_methods_groups_spread_over_the_folds() {
        // Four Wav2Lip groups (each with a real source crop too), four DeepFaceLive, four real.
        let mut records = Vec::new();
        let mut add = |source: String, fake: bool, group: String| {
            for f in 0..3 {
                records.push(CropRecord { file: format!("{source}-{f}"), label: if fake { Label::Fake } else { Label::Real }, group: group.clone(), source: source.clone(), frame: f, pts_s: 0.0, confidence: 1.0, origin: String::new() });
            }
        };
        let w2l = ["c2_911ff4d8dd2f.mp4", "c2_e5df2eb4de91.mp4", "c2_6f4e0bd147c9.mp4", "c2_b62cb5e1f435.mp4"];
        for (k, file) in w2l.iter().enumerate() {
            add(format!("/c/{file}"), true, format!("w{k}"));
            // More real crops than fakes in the group: the fakes still decide its class.
            add(format!("/c/real{k}a.mp4"), false, format!("w{k}"));
            add(format!("/c/real{k}b.mp4"), false, format!("w{k}"));
        }
        for k in 0..4 {
            add(format!("/d/deepfacelive_pairs/fake/p{k}_R.mp4"), true, format!("d{k}"));
            add(format!("/d/r{k}.mp4"), false, format!("r{k}"));
        }
        let set = CropSet { dir: "/nonexistent".into(), records, spec: None };
        let (labels, _) = super::super::attribution::crop_labels(&set);
        let fold = folds_of(&set, &labels, 4, 1);
        let mut fold_of_group: BTreeMap<&str, usize> = BTreeMap::new();
        for (r, &f) in set.records.iter().zip(&fold) {
            assert_eq!(*fold_of_group.entry(r.group.as_str()).or_insert(f), f, "group {} straddles folds", r.group);
        }
        for prefix in ["w", "d", "r"] {
            let folds: std::collections::BTreeSet<usize> = fold_of_group.iter().filter(|(g, _)| g.starts_with(prefix)).map(|(_, &f)| f).collect();
            assert_eq!(folds.len(), 4, "{prefix}: {fold_of_group:?}");
        }
    }

    #[test]
    fn confusion_reports_per_class_and_balanced_accuracy() {
        let mut c = Confusion::new(vec!["a".into(), "b".into(), "c".into()]);
        c.counts = vec![vec![8, 2, 0], vec![1, 1, 0], vec![0, 0, 0]];
        assert_eq!(c.per_class(), [Some(0.8), Some(0.5), None]);
        assert!((c.accuracy() - 0.75).abs() < 1e-12 && (c.balanced_accuracy() - 0.65).abs() < 1e-12);
        assert!(c.markdown().contains("| a | 10 | 80% | 8 | 2 | 0 |"), "{}", c.markdown());
    }
}
