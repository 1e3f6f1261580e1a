//! A frozen ImageNet backbone and a fitted linear head ("linear probe"): the cheap detector
//! that cross-source validation can afford to retrain once per held-out origin on 2 CPU cores.
//!
//! Why a probe: with a few thousand face crops, fine-tuning all of a network learns whatever
//! separates this corpus's real and fake *sources* (codec, resolution, background) as readily
//! as the manipulation; a frozen backbone keeps its ImageNet features and the head can only
//! weigh them. Features of every crop are computed once ([`FeatureTable`], cached beside the
//! crops), so fitting a head per fold takes seconds (the transfer-learning example of tch-rs:
//! a head fitted on `no_grad` features).
//!
//! Self-blended images ([`crate::crops::sbi`]) enter as extra *views*: each real crop gives
//! `sbi_views` blended copies labelled fake, featurised once like the crops themselves.
//!
//! The head is a logistic regression (L2, classes weighted equally) fitted by full-batch Adam
//! on standardised features; the standardisation is folded into `_fc` when saved, so the file
//! is a plain EfficientNet-Lite weights file that the scan loads like any other.
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::crops::dataset::CropSet;
use crate::crops::sbi::SbiPlan;
use crate::models::efficientnet::{EfficientNetConfig, EfficientNetLite};
use crate::models::weights::{self, Header, NetworkConfig, Preprocess, Storage};

/// What a probe is built from: the backbone's network and preprocessing, and its ImageNet
/// weights (an import with every tensor but `_fc`).
#[derive(Clone, Debug)]
pub struct Backbone {
    pub config: EfficientNetConfig,
    pub preprocess: Preprocess,
    pub weights: PathBuf,
}

impl Backbone {
    /// Short name for tables and cache files, e.g. "efficientnet-lite0", "+taps" when the
    /// probe also reads earlier blocks.
    pub fn name(&self) -> String {
        let arch = NetworkConfig::EfficientNet(self.config.clone()).arch_name();
        if self.config.taps.is_empty() { arch.to_string() } else { format!("{arch}+taps") }
    }

    fn load(&self, device: Device) -> Result<(nn::VarStore, EfficientNetLite)> {
        let mut vs = nn::VarStore::new(device);
        let net = EfficientNetLite::new(&vs.root(), &self.config);
        let missing = crate::models::init_from_pretrained(&mut vs, &self.weights)?;
        ensure!(
            missing.iter().all(|m| m.starts_with("_fc.")),
            "{} lacks backbone tensors {missing:?}",
            self.weights.display()
        );
        Ok((vs, net))
    }
}

/// Pooled backbone features of crops and their self-blended views.
pub struct FeatureTable {
    /// `[N, F]` float features.
    pub x: Tensor,
    /// The crop (index into the cache's records) each row comes from.
    pub record: Vec<usize>,
    /// True for a self-blended view of a real crop (label fake, never evaluated).
    pub blended: Vec<bool>,
}

impl FeatureTable {
    /// A table of `crops` rows without features, one per crop: for scoring fixed models only.
    pub fn none(crops: usize) -> Self {
        Self { x: Tensor::zeros([crops as i64, 1], (Kind::Float, Device::Cpu)), record: (0..crops).collect(), blended: vec![false; crops] }
    }

    pub fn len(&self) -> usize {
        self.record.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record.is_empty()
    }

    /// The feature columns a probe reads: all of them (`taps`: the tapped blocks' statistics
    /// and the head's features), or the head's pooled features alone (the last
    /// [`FEATURES`](crate::models::efficientnet::FEATURES) columns, the plain network's).
    pub fn columns(&self, taps: bool) -> Tensor {
        let width = self.x.size()[1];
        let head = crate::models::efficientnet::FEATURES;
        if taps { self.x.shallow_clone() } else { self.x.narrow(1, width - head, head) }
    }

    /// Rows whose crop passes `keep`.
    pub fn rows(&self, mut keep: impl FnMut(usize, bool) -> bool) -> Vec<i64> {
        (0..self.len()).filter(|&r| keep(self.record[r], self.blended[r])).map(|r| r as i64).collect()
    }
}

/// How the features were made; part of the cache file's name, so other settings never reuse it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Self-blended views per real crop.
    pub sbi_views: usize,
    pub seed: u64,
    pub batch_size: usize,
}

/// Where [`features`] caches its table: `<crops>/features/<backbone>-<hash>.safetensors`,
/// the hash over the backbone's weights file, the index and the settings.
fn cache_path(set: &CropSet, backbone: &Backbone, cfg: &FeatureConfig) -> Result<PathBuf> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::fs::read(&backbone.weights).with_context(|| format!("reading {}", backbone.weights.display()))?);
    hasher.update(&std::fs::read(set.dir.join(crate::crops::dataset::INDEX_FILE))?);
    hasher.update(serde_json::to_string(cfg)?.as_bytes());
    hasher.update(&backbone.preprocess.input_size.to_le_bytes());
    hasher.update(serde_json::to_string(&backbone.config)?.as_bytes());
    let tag = &hasher.finalize().to_hex()[..12];
    Ok(set.dir.join("features").join(format!("{}-{tag}.safetensors", backbone.name())))
}

/// Features of every crop of `set` and of `cfg.sbi_views` self-blended views of each real
/// crop, read from the cache when an identical run made them before. `progress(done, total)`
/// is called after each batch.
pub fn features(set: &CropSet, backbone: &Backbone, cfg: &FeatureConfig, device: Device, mut progress: impl FnMut(usize, usize)) -> Result<FeatureTable> {
    let path = cache_path(set, backbone, cfg)?;
    if path.is_file() {
        let stored: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)?.into_iter().collect();
        let get = |k: &str| stored.get(k).with_context(|| format!("{}: no tensor {k}", path.display()));
        let record: Vec<i64> = Vec::try_from(get("record")?)?;
        let blended: Vec<u8> = Vec::try_from(get("blended")?)?;
        return Ok(FeatureTable { x: get("x")?.shallow_clone(), record: record.iter().map(|&r| r as usize).collect(), blended: blended.iter().map(|&b| b != 0).collect() });
    }
    let (_vs, net) = backbone.load(device)?;
    let size = backbone.preprocess.input_size as i32;
    // Rows: every crop, then its blended views right after it (a real crop only).
    let mut rows: Vec<(usize, Option<SbiPlan>)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    for (i, r) in set.records.iter().enumerate() {
        rows.push((i, None));
        if !r.label.is_fake() {
            rows.extend((0..cfg.sbi_views).map(|_| (i, Some(SbiPlan::sample(&mut rng)))));
        }
    }
    let mut chunks = Vec::new();
    let _guard = tch::no_grad_guard();
    for (done, batch) in rows.chunks(cfg.batch_size.max(1)).enumerate() {
        let mut pixels = Vec::with_capacity(batch.len());
        for (i, plan) in batch {
            let rgb = set.load_rgb(*i, size)?;
            pixels.push(match plan {
                Some(plan) => plan.apply(&rgb, size)?.0,
                None => rgb,
            });
        }
        let input = crate::models::to_network_input(&crate::models::crop_batch(&pixels, size as i64), &backbone.preprocess, device);
        chunks.push(net.backbone.forward_t(&input, false).to_device(Device::Cpu).to_kind(Kind::Float));
        progress((done * cfg.batch_size.max(1) + batch.len()).min(rows.len()), rows.len());
    }
    let table = FeatureTable {
        x: Tensor::cat(&chunks, 0),
        record: rows.iter().map(|(i, _)| *i).collect(),
        blended: rows.iter().map(|(_, p)| p.is_some()).collect(),
    };
    std::fs::create_dir_all(path.parent().expect("has a folder"))?;
    let record = Tensor::from_slice(&table.record.iter().map(|&r| r as i64).collect::<Vec<_>>());
    let blended = Tensor::from_slice(&table.blended.iter().map(|&b| b as u8).collect::<Vec<_>>());
    let partial = path.with_extension("partial");
    Tensor::write_safetensors(&[("x", &table.x), ("record", &record), ("blended", &blended)], &partial)?;
    std::fs::rename(&partial, &path)?;
    Ok(table)
}

/// The head's fitting settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct HeadConfig {
    /// L2 penalty on the weights (of standardised features), added to the mean loss.
    pub l2: f64,
    pub steps: usize,
    pub learning_rate: f64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self { l2: 1e-2, steps: 300, learning_rate: 0.05 }
    }
}

/// A fitted logistic regression on raw (unstandardised) inputs: logit = x . w + b.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    pub w: Vec<f32>,
    pub b: f32,
}

impl LinearHead {
    pub fn logits(&self, x: &Tensor) -> Vec<f32> {
        let w = Tensor::from_slice(&self.w).to_device(x.device());
        Vec::<f32>::try_from(x.to_kind(Kind::Float).matmul(&w) + self.b as f64).expect("float logits")
    }
}

/// Fits `logit = x . w + b` to `fake` labels: binary cross-entropy with both classes weighted
/// equally, an L2 penalty, full-batch Adam on standardised columns (folded back into `w`, `b`).
pub fn fit_logistic(x: &Tensor, fake: &[bool], cfg: &HeadConfig) -> Result<LinearHead> {
    let n = fake.len() as i64;
    ensure!(n > 0 && x.size()[0] == n, "{} rows of features for {n} labels", x.size()[0]);
    let n_fake = fake.iter().filter(|&&f| f).count() as f64;
    ensure!(n_fake > 0.0 && n_fake < n as f64, "a head needs both real and fake examples ({n_fake} fake of {n})");
    let x = x.to_kind(Kind::Float);
    let mean = x.mean_dim(0, true, Kind::Float);
    let std = x.std_dim(0, false, true).clamp_min(1e-6);
    let z = (&x - &mean) / &std;
    let y = Tensor::from_slice(&fake.iter().map(|&f| f as u8 as f32).collect::<Vec<_>>()).to_device(x.device());
    let (w_fake, w_real) = (0.5 * n as f64 / n_fake, 0.5 * n as f64 / (n as f64 - n_fake));
    let sample_weight = &y * (w_fake - w_real) + w_real;
    let vs = nn::VarStore::new(x.device());
    let w = vs.root().zeros("w", &[x.size()[1]]);
    let b = vs.root().zeros("b", &[]);
    let mut opt = nn::Adam::default().build(&vs, cfg.learning_rate)?;
    for _ in 0..cfg.steps {
        let logits = z.matmul(&w) + &b;
        let bce = logits.binary_cross_entropy_with_logits::<&Tensor>(&y, Some(&sample_weight), None, Reduction::Mean);
        let loss = bce + w.square().sum(Kind::Float) * cfg.l2;
        opt.backward_step(&loss);
    }
    tch::no_grad(|| {
        // logit = ((x - mean) / std) . w + b = x . (w / std) + (b - mean . (w / std))
        let w_raw = &w / std.squeeze_dim(0);
        let b_raw = &b - (mean.squeeze_dim(0) * &w_raw).sum(Kind::Float);
        Ok(LinearHead { w: Vec::try_from(w_raw)?, b: b_raw.double_value(&[]) as f32 })
    })
}

/// Fits a [`Stacker`](crate::aggregate::Stacker) on held-out scores: `scores[i][m]` is member
/// m's P(fake) of input i (inputs no member trained on, e.g. `dfscan cv`'s out-of-fold
/// scores). A logistic regression on the members' logits with both classes weighted equally:
/// calibrated for equal priors, so 0.5 means even odds whatever share of fakes the held-out
/// corpus happens to have (fitting to that share would call every input of a fake-heavy
/// corpus fake).
pub fn fit_stacker(members: Vec<String>, scores: &[Vec<f32>], fake: &[bool], cfg: &HeadConfig, provenance: String) -> Result<crate::aggregate::Stacker> {
    ensure!(scores.iter().all(|s| s.len() == members.len()), "one score per member for every input");
    let logits: Vec<f32> = scores.iter().flatten().map(|&p| crate::aggregate::logit(p)).collect();
    let x = Tensor::from_slice(&logits).view([scores.len() as i64, members.len() as i64]);
    let head = fit_logistic(&x, fake, cfg)?;
    Ok(crate::aggregate::Stacker { members, weights: head.w, bias: head.b, provenance })
}

/// Writes the backbone with `head` as its `_fc`: an ordinary EfficientNet-Lite weights file
/// whose header carries the crop contract of the cache it was fitted on.
pub fn save_model(backbone: &Backbone, head: &LinearHead, crop: Option<crate::faces::crop::CropSpec>, provenance: String, path: &Path, storage: Storage) -> Result<()> {
    let (vs, _net) = backbone.load(Device::Cpu)?;
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    for (name, t) in tensors.iter_mut() {
        match name.as_str() {
            "_fc.weight" => *t = Tensor::from_slice(&head.w).reshape([1, -1]),
            "_fc.bias" => *t = Tensor::from_slice(&[head.b]),
            _ => {}
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: NetworkConfig::EfficientNet(backbone.config.clone()),
        preprocess: Preprocess { crop, ..backbone.preprocess.clone() },
        provenance,
        ood: None,
    };
    weights::save_as(path, &tensors, &header, storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_fit_separates_and_folds_the_standardisation_back() {
        // Two informative columns on very different scales, one noise column; 2:1 imbalance.
        tch::manual_seed(0);
        let n = 600;
        let fake: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let y = Tensor::from_slice(&fake.iter().map(|&f| f as u8 as f32).collect::<Vec<_>>());
        let noise = Tensor::randn([n as i64, 3], (Kind::Float, Device::Cpu));
        let signal = Tensor::stack(&[&y * 2.0 * 1000.0 + 5000.0, -&y * 0.02], 1);
        let x = Tensor::cat(&[signal + noise.narrow(1, 0, 2) * Tensor::from_slice(&[700.0f32, 0.01]), noise.narrow(1, 2, 1)], 1);
        let head = fit_logistic(&x, &fake, &HeadConfig::default()).unwrap();
        let logits = head.logits(&x);
        let probs: Vec<f32> = logits.iter().map(|&l| crate::aggregate::sigmoid(l)).collect();
        let auc = crate::eval::metrics::roc_auc(&probs, &fake).unwrap();
        assert!(auc > 0.95, "AUC {auc}");
        // The raw-input weights point the right way: column 0 up for fakes, column 1 down.
        assert!(head.w[0] > 0.0 && head.w[1] < 0.0, "{:?}", head.w);
        // Balanced classes: the mean P(fake) of each class sits on its side of 0.5.
        let mean_of = |want: bool| probs.iter().zip(&fake).filter(|(_, &f)| f == want).map(|(p, _)| *p as f64).sum::<f64>() / fake.iter().filter(|&&f| f == want).count() as f64;
        assert!(mean_of(true) > 0.5 && mean_of(false) < 0.5);
        // One class alone cannot be fitted.
        assert!(fit_logistic(&x, &vec![false; n], &HeadConfig::default()).is_err());
    }

    #[test]
    fn the_stacker_recovers_known_weights_on_synthetic_scores() {
        // Labels drawn from a known logistic model of two members' logits; a third member is noise.
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(7);
        // No bias: classes come out balanced, so equal class weights change nothing.
        let (w, b) = ([1.5f32, -0.8, 0.0], 0.0f32);
        let mut scores = Vec::new();
        let mut fake = Vec::new();
        for _ in 0..20000 {
            let z: [f32; 3] = std::array::from_fn(|_| rng.random_range(-3.0..3.0));
            let p = crate::aggregate::sigmoid(b + w.iter().zip(&z).map(|(w, z)| w * z).sum::<f32>());
            fake.push(rng.random::<f32>() < p);
            scores.push(z.iter().map(|&z| crate::aggregate::sigmoid(z)).collect::<Vec<f32>>());
        }
        let cfg = HeadConfig { l2: 0.0, steps: 500, learning_rate: 0.05 };
        let stacker = fit_stacker(vec!["a".into(), "b".into(), "c".into()], &scores, &fake, &cfg, String::new()).unwrap();
        for (got, want) in stacker.weights.iter().zip(w) {
            assert!((got - want).abs() < 0.1, "weights {:?}, want {w:?}", stacker.weights);
        }
        assert!((stacker.bias - b).abs() < 0.1, "bias {}", stacker.bias);
    }
}
