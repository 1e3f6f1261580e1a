//! Fitting the attribution model (`models::attribution`; seed 002's second recipe): every
//! crop of a cache embedded once by the frozen ImageNet encoder (cached beside the crops, like
//! the probes' features), an autoencoder trained to squeeze the standardised embeddings to 64
//! numbers, and a random forest per level on the codes: families and methods on fakes only,
//! labelled by the family/method table (`attribution::labels`) joined on each crop's `source`.
//!
//! Classes: a family or method becomes a class only with crops from `min_groups` groups or
//! more. A method seen in one group alone (GHOST's three swaps of one clip) cannot be told from
//! that clip's identity and cannot be measured on a grouped split, so its crops train the
//! family forest but not the method forest, which calls it "unknown" by construction.
//!
//! Balance: each forest is fitted on `per_class` rows of every class, drawn at random (with
//! repetition for a class with fewer), so DeepFaceLive's 1,700 crops do not outvote the rest.
//! How well it all works is measured by grouped cross-validation (`attribution_eval`).
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use dfscan_classical::{Forest, ForestParams};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::attribution::labels;
use crate::attribution::{Classes, Family, MethodClass};
use crate::crops::dataset::CropSet;
use crate::models::attribution::{self as model, AttributionHeader, EncoderSpec, FeatureEncoder};
use crate::models::autoencoder::{Autoencoder, AutoencoderConfig};

/// How the attribution model is fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Read the tapped stages' statistics besides the head's pooled features.
    pub taps: bool,
    pub autoencoder: AeTraining,
    pub forest: ForestParams,
    /// Rows of each class a forest is fitted on.
    pub per_class: usize,
    /// Groups a family or method needs to be a class.
    pub min_groups: usize,
    /// Seed of the row draws, the autoencoder's initialisation and batches.
    pub seed: u64,
}

/// The autoencoder's training: Adam on mean squared error of standardised embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AeTraining {
    pub hidden: i64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            taps: true,
            autoencoder: AeTraining { hidden: 512, epochs: 30, batch_size: 256, learning_rate: 1e-3 },
            forest: ForestParams::default(),
            per_class: 400,
            min_groups: 2,
            seed: 1,
        }
    }
}

/// What the table says of each crop of a cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CropLabel {
    pub fake: bool,
    /// None for a real crop, or a fake the table gives no family.
    pub family: Option<Family>,
    /// None: real, no method named, or a fake not in the table.
    pub method: Option<&'static str>,
}

/// The labels of every crop of `set`, and the sources of fakes that the table lacks.
pub fn crop_labels(set: &CropSet) -> (Vec<CropLabel>, Vec<String>) {
    let mut missing = std::collections::BTreeSet::new();
    let labels = set
        .records
        .iter()
        .map(|r| {
            let fake = r.label.is_fake();
            let row = if fake { labels::lookup(&r.source) } else { None };
            if fake && row.is_none() {
                missing.insert(r.source.clone());
            }
            CropLabel { fake, family: row.and_then(|r| r.family), method: row.and_then(|r| r.method) }
        })
        .collect();
    (labels, missing.into_iter().collect())
}

/// The classes of the crops `rows`: each family and method with crops from `min_groups` groups.
pub fn classes_of(set: &CropSet, labels: &[CropLabel], rows: &[usize], min_groups: usize) -> Classes {
    use std::collections::{BTreeMap, BTreeSet};
    let mut family_groups: BTreeMap<Family, BTreeSet<&str>> = BTreeMap::new();
    let mut method_groups: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<Family>)> = BTreeMap::new();
    for &i in rows {
        let group = set.records[i].group.as_str();
        if let Some(f) = labels[i].family {
            family_groups.entry(f).or_default().insert(group);
            if let Some(m) = labels[i].method {
                let entry = method_groups.entry(m).or_default();
                entry.0.insert(group);
                entry.1.insert(f);
            }
        }
    }
    Classes {
        families: family_groups.into_iter().filter(|(_, g)| g.len() >= min_groups).map(|(f, _)| f).collect(),
        methods: method_groups
            .into_iter()
            .filter(|(_, (g, _))| g.len() >= min_groups)
            .map(|(m, (_, f))| MethodClass { name: m.to_string(), families: f.into_iter().collect() })
            .collect(),
    }
}

/// Where [`embeddings`] caches a cache's embeddings: `<crops>/features/attribution-<hash>`,
/// the hash over the encoder's weights, the index and the encoder's spec.
fn cache_path(set: &CropSet, spec: &EncoderSpec) -> Result<PathBuf> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(spec.tensors_blake3.as_bytes());
    hasher.update(&std::fs::read(set.dir.join(crate::crops::dataset::INDEX_FILE))?);
    hasher.update(serde_json::to_string(&(&spec.network, &spec.preprocess, spec.taps))?.as_bytes());
    Ok(set.dir.join("features").join(format!("attribution-{}.safetensors", &hasher.finalize().to_hex()[..12])))
}

/// The embeddings `[N, width]` of every crop of `set`, read at the encoder's input side in
/// batches of `batch_size`; from the cache when an identical run made them. `progress(done,
/// total)` after each batch.
pub fn embeddings(set: &CropSet, encoder: &FeatureEncoder, batch_size: usize, mut progress: impl FnMut(usize, usize)) -> Result<Tensor> {
    let path = cache_path(set, &encoder.spec)?;
    if path.is_file() {
        let stored = Tensor::read_safetensors(&path)?;
        let x = stored.into_iter().find(|(k, _)| k == "x").map(|(_, t)| t).with_context(|| format!("{}: no tensor x", path.display()))?;
        ensure!(x.size()[0] == set.records.len() as i64, "{}: {} rows for {} crops", path.display(), x.size()[0], set.records.len());
        return Ok(x);
    }
    let side = encoder.spec.preprocess.input_size;
    let mut chunks = Vec::new();
    let n = set.records.len();
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(n);
        let pixels = (start..end).map(|i| set.load_rgb(i, side as i32)).collect::<Result<Vec<_>>>()?;
        chunks.push(encoder.features(&crate::models::crop_batch(&pixels, side)));
        progress(end, n);
    }
    let x = Tensor::cat(&chunks, 0);
    std::fs::create_dir_all(path.parent().expect("has a folder"))?;
    let partial = path.with_extension("partial");
    Tensor::write_safetensors(&[("x", &x)], &partial)?;
    std::fs::rename(&partial, &path)?;
    Ok(x)
}

/// Mean and standard deviation of each column of `x`.
pub fn standardisation(x: &Tensor) -> (Tensor, Tensor) {
    (x.mean_dim(0, false, Kind::Float), x.std_dim(0, false, false).clamp_min(1e-6))
}

/// A trained autoencoder.
pub struct TrainedAe {
    pub config: AutoencoderConfig,
    pub vs: nn::VarStore,
    pub net: Autoencoder,
    /// Mean reconstruction loss of each epoch.
    pub losses: Vec<f64>,
}

/// Trains an autoencoder on `x` (`[N, input]`, standardised).
pub fn fit_autoencoder(x: &Tensor, cfg: &AeTraining, seed: u64) -> Result<TrainedAe> {
    tch::manual_seed(seed as i64);
    let (n, width) = (x.size()[0], x.size()[1]);
    ensure!(n > 0, "no rows to train the autoencoder on");
    let vs = nn::VarStore::new(Device::Cpu);
    let config = AutoencoderConfig { hidden: cfg.hidden.min(width), ..AutoencoderConfig::seed(width) };
    let ae = Autoencoder::new(&vs.root(), &config);
    let mut opt = nn::Adam::default().build(&vs, cfg.learning_rate)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut losses = Vec::with_capacity(cfg.epochs);
    for _ in 0..cfg.epochs {
        let mut order: Vec<i64> = (0..n).collect();
        order.shuffle(&mut rng);
        let (mut sum, mut batches) = (0.0, 0);
        for batch in order.chunks(cfg.batch_size.max(1)) {
            let xb = x.index_select(0, &Tensor::from_slice(batch));
            let loss = (ae.reconstruct(&xb) - &xb).square().mean(Kind::Float);
            opt.backward_step(&loss);
            sum += loss.double_value(&[]);
            batches += 1;
        }
        losses.push(sum / batches as f64);
    }
    Ok(TrainedAe { config, vs, net: ae, losses })
}

/// `per_class` rows of each class (labels `y` in `0..classes`, one per row of `rows`): a
/// random draw without repetition where a class has enough, else all of them and repeats.
pub fn balanced(rows: &[usize], y: &[u32], classes: usize, per_class: usize, rng: &mut StdRng) -> (Vec<usize>, Vec<u32>) {
    let (mut out, mut labels) = (Vec::new(), Vec::new());
    for c in 0..classes as u32 {
        let mut of: Vec<usize> = rows.iter().zip(y).filter(|(_, &l)| l == c).map(|(&r, _)| r).collect();
        if of.is_empty() {
            continue;
        }
        of.shuffle(rng);
        let take: Vec<usize> = if of.len() >= per_class { of[..per_class].to_vec() } else { (0..per_class).map(|k| if k < of.len() { of[k] } else { of[rng.random_range(0..of.len())] }).collect() };
        labels.extend(std::iter::repeat_n(c, take.len()));
        out.extend(take);
    }
    (out, labels)
}

/// A forest over the classes that have rows among `rows`, its outputs spread back over all
/// `classes` (a class without rows gets probability 0).
pub struct PartialForest {
    pub forest: Forest,
    /// The global class of each of the forest's classes.
    pub present: Vec<usize>,
    pub classes: usize,
}

impl PartialForest {
    /// Probabilities over all classes for each row of `codes` `[N, F]`.
    pub fn proba(&self, codes: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(model::forest_proba(&self.forest, codes)?
            .into_iter()
            .map(|p| {
                let mut all = vec![0.0; self.classes];
                for (k, &c) in self.present.iter().enumerate() {
                    all[c] = p[k];
                }
                all
            })
            .collect())
    }
}

/// Fits a forest on the balanced rows of `codes` (`[N, F]`) among `rows`, labelled `y` (a
/// class in `0..classes` per row of `rows`).
pub fn fit_forest(codes: &Tensor, rows: &[usize], y: &[u32], classes: usize, cfg: &FitConfig, seed: u64) -> Result<PartialForest> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (picked, labels) = balanced(rows, y, classes, cfg.per_class, &mut rng);
    let mut present: Vec<usize> = labels.iter().map(|&c| c as usize).collect();
    present.sort_unstable();
    present.dedup();
    ensure!(present.len() >= 2, "a forest needs two classes with rows, got {present:?}");
    let local: Vec<u32> = labels.iter().map(|&c| present.iter().position(|&p| p == c as usize).expect("present") as u32).collect();
    let width = codes.size()[1] as usize;
    let x = codes.index_select(0, &Tensor::from_slice(&picked.iter().map(|&r| r as i64).collect::<Vec<_>>()));
    let values: Vec<f64> = Vec::<f32>::try_from(x.contiguous().view([-1]))?.into_iter().map(f64::from).collect();
    let params = ForestParams { seed, ..cfg.forest };
    let forest = Forest::fit(&values, picked.len(), width, &local, present.len(), &params).map_err(anyhow::Error::msg)?;
    Ok(PartialForest { forest, present, classes })
}

/// Labels of `rows` for a level's classes: (rows that have a class, their class).
pub fn level_rows(rows: &[usize], class_of: impl Fn(usize) -> Option<usize>) -> (Vec<usize>, Vec<u32>) {
    rows.iter().filter_map(|&r| class_of(r).map(|c| (r, c as u32))).unzip()
}

/// The class of crop `i` at level 2 (its family's index in `classes.families`) ...
pub fn family_class(labels: &[CropLabel], classes: &Classes, i: usize) -> Option<usize> {
    labels[i].family.and_then(|f| classes.families.iter().position(|&c| c == f))
}

/// ... and at level 3 (its method's index in `classes.methods`).
pub fn method_class(labels: &[CropLabel], classes: &Classes, i: usize) -> Option<usize> {
    labels[i].method.and_then(|m| classes.methods.iter().position(|c| c.name == m))
}

/// Everything fitted on one set of training rows.
pub struct Fitted {
    pub mean: Tensor,
    pub std: Tensor,
    pub ae: TrainedAe,
    pub family: PartialForest,
    pub method: PartialForest,
    /// Real vs fake on the same codes (seed 002's own task), for the evaluation only.
    pub real_fake: Option<PartialForest>,
}

impl Fitted {
    /// Codes `[N, 64]` of embeddings `x`.
    pub fn codes(&self, x: &Tensor) -> Tensor {
        use tch::nn::Module;
        tch::no_grad(|| self.ae.net.encoder.forward(&((x - &self.mean) / &self.std)))
    }
}

/// Fits the autoencoder on every crop of `train` and the forests on its labelled fakes (and,
/// with `real_fake`, a real/fake forest on all of them). `x` holds all crops' embeddings.
pub fn fit(x: &Tensor, labels: &[CropLabel], classes: &Classes, train: &[usize], cfg: &FitConfig, real_fake: bool) -> Result<Fitted> {
    let idx = Tensor::from_slice(&train.iter().map(|&r| r as i64).collect::<Vec<_>>());
    let xt = x.index_select(0, &idx);
    let (mean, std) = standardisation(&xt);
    let ae = fit_autoencoder(&((&xt - &mean) / &std), &cfg.autoencoder, cfg.seed)?;
    let mut fitted = Fitted { mean, std, ae, family: placeholder(), method: placeholder(), real_fake: None };
    let codes = fitted.codes(x);
    let (rows, y) = level_rows(train, |i| family_class(labels, classes, i));
    fitted.family = fit_forest(&codes, &rows, &y, classes.families.len(), cfg, cfg.seed + 2)?;
    let (rows, y) = level_rows(train, |i| method_class(labels, classes, i));
    fitted.method = fit_forest(&codes, &rows, &y, classes.methods.len(), cfg, cfg.seed + 3)?;
    if real_fake {
        let y: Vec<u32> = train.iter().map(|&i| labels[i].fake as u32).collect();
        fitted.real_fake = Some(fit_forest(&codes, train, &y, 2, &FitConfig { per_class: cfg.per_class * 2, ..cfg.clone() }, cfg.seed + 1)?);
    }
    Ok(fitted)
}

fn placeholder() -> PartialForest {
    PartialForest { forest: Forest { classes: 0, features: 0, trees: Vec::new() }, present: Vec::new(), classes: 0 }
}

/// Writes `fitted` (fitted on every class's rows) as an attribution file.
pub fn save(fitted: &Fitted, spec: EncoderSpec, classes: Classes, provenance: String, path: &Path) -> Result<()> {
    for (level, f, n) in [("family", &fitted.family, classes.families.len()), ("method", &fitted.method, classes.methods.len())] {
        ensure!(f.present.len() == n, "the {level} forest was fitted on {} of {n} classes", f.present.len());
    }
    let header = AttributionHeader {
        format: model::FORMAT_VERSION,
        encoder: spec,
        autoencoder: fitted.ae.config,
        classes,
        family: fitted.family.forest.clone(),
        method: fitted.method.forest.clone(),
        provenance,
    };
    let mut tensors: Vec<(String, Tensor)> = vec![("input_mean".into(), fitted.mean.shallow_clone()), ("input_std".into(), fitted.std.shallow_clone())];
    tensors.extend(fitted.ae.vs.variables().into_iter().filter(|(k, _)| k.starts_with("encoder.")));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    model::save(path, &header, &tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crops::dataset::{CropRecord, Label};

    /// `n` rows of `width` columns spanning `rank` directions, plus a little noise.
    fn low_rank(n: i64, width: i64, rank: i64) -> Tensor {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        Tensor::randn([n, rank], opts).matmul(&Tensor::randn([rank, width], opts)) + Tensor::randn([n, width], opts) * 0.05
    }

    #[test]
    fn the_autoencoder_codes_64_numbers_and_its_loss_falls() {
        let x = low_rank(256, 200, 10);
        let (mean, std) = standardisation(&x);
        let cfg = AeTraining { hidden: 128, epochs: 6, batch_size: 32, learning_rate: 1e-3 };
        let ae = fit_autoencoder(&((&x - &mean) / &std), &cfg, 1).unwrap();
        assert_eq!((ae.config.input, ae.config.hidden, ae.config.code), (200, 128, 64));
        assert!(ae.losses.last().unwrap() < &(0.7 * ae.losses[0]), "losses {:?}", ae.losses);
        use tch::nn::Module;
        assert_eq!(ae.net.encoder.forward(&x).size(), [256, 64]);
    }

    #[test]
    fn balanced_draws_per_class_repeating_a_small_one() {
        let rows: Vec<usize> = (0..50).collect();
        let y: Vec<u32> = (0..50).map(|i| if i < 45 { 0 } else { 1 }).collect();
        let (picked, labels) = balanced(&rows, &y, 3, 10, &mut StdRng::seed_from_u64(1));
        assert_eq!(picked.len(), 20);
        assert_eq!(labels.iter().filter(|&&c| c == 1).count(), 10);
        // Class 0 drawn without repeats; class 1's five rows each at least once.
        let zeros: std::collections::BTreeSet<usize> = picked[..10].iter().copied().collect();
        assert_eq!(zeros.len(), 10);
        assert!((45..50).all(|r| picked[10..].contains(&r)));
    }

    /// A cache in memory: `per` crops of each (source, label, group).
    fn cache(items: &[(&str, bool, &str)], per: usize) -> CropSet {
        let mut records = Vec::new();
        for (source, fake, group) in items {
            for f in 0..per {
                let label = if *fake { Label::Fake } else { Label::Real };
                records.push(CropRecord { file: format!("{source}-{f}.png"), label, group: group.to_string(), source: source.to_string(), frame: f, pts_s: 0.0, confidence: 1.0, origin: String::new() });
            }
        }
        CropSet { dir: "/nonexistent".into(), records, spec: None }
    }

    #[test]
    fn classes_need_two_groups_and_the_fit_saves_what_the_scan_reads() {
        let set = cache(
            &[
                ("/d/deepfacelive_pairs/fake/a_R.mp4", true, "dfl:a"),
                ("/d/deepfacelive_pairs/fake/b_R.mp4", true, "dfl:b"),
                ("/c/c2_e7649a314db2.mp4", true, "c2:h1"),
                ("/c/c2_63ac478040ec.mp4", true, "c2:h2"),
                ("/d/ghost_faceswap/fake/elon.webm", true, "ghost_orig"),
                ("/d/deepfacelive_pairs/real/a_L.mp4", false, "dfl:a"),
            ],
            6,
        );
        let (labels, missing) = crop_labels(&set);
        assert!(missing.is_empty());
        let all: Vec<usize> = (0..set.records.len()).collect();
        let classes = classes_of(&set, &labels, &all, 2);
        // GHOST has one group: a face swap for level 2, no method class.
        assert_eq!(classes.families, [Family::FaceSwap, Family::LipSync]);
        assert_eq!(classes.methods.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["DeepFaceLive", "HyperLips"]);
        // Embeddings that tell the two families apart along the first columns.
        let n = set.records.len() as i64;
        let shift: Vec<f32> = labels.iter().map(|l| if l.family == Some(Family::LipSync) { 3.0 } else { 0.0 }).collect();
        let x = Tensor::randn([n, 40], (Kind::Float, Device::Cpu)) + Tensor::from_slice(&shift).view([n, 1]);
        let cfg = FitConfig { autoencoder: AeTraining { hidden: 32, epochs: 3, batch_size: 16, learning_rate: 1e-3 }, forest: ForestParams { trees: 10, ..ForestParams::default() }, per_class: 20, ..FitConfig::default() };
        let fitted = fit(&x, &labels, &classes, &all, &cfg, true).unwrap();
        let codes = fitted.codes(&x);
        assert_eq!(codes.size(), [n, 64]);
        let p = fitted.family.proba(&codes).unwrap();
        let right = (0..n as usize).filter(|&i| family_class(&labels, &classes, i).is_some_and(|c| argmax(&p[i]) == c)).count();
        assert!(right >= 25, "{right} of 30 fakes");
        // The file: its header and coder give the same codes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let spec = EncoderSpec {
            network: crate::models::efficientnet::EfficientNetConfig::lite0(),
            preprocess: crate::models::Preprocess::efficientnet_lite(&crate::models::efficientnet::EfficientNetConfig::lite0()),
            weights: "w.safetensors".into(),
            tensors_blake3: "0".repeat(16),
            taps: false,
        };
        save(&fitted, spec, classes.clone(), "test".into(), &path).unwrap();
        let header = model::read_header(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((header.classes, header.family.trees.len()), (classes, 10));
        let tensors: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
        let coder = model::Coder::from_tensors(&header.autoencoder, &tensors).unwrap();
        assert!(coder.codes(&x).allclose(&codes, 1e-5, 1e-5, false));
    }

    fn argmax(p: &[f32]) -> usize {
        (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
    }
}
