//! Fitting the spectrum detector (`models::spectrum`): spectra of a crop cache's crops,
//! computed in memory (they are cheap: one DFT per crop; nothing is written beside the crops),
//! and a classifier fitted on them by smartcore, saved as a dfscan weights file the scan loads
//! like any frame model.
//!
//! What the file holds: the header's network is the [`SpectrumConfig`] (bins, classifier kind
//! and its hyper-parameters, the number of support vectors); the tensors are the
//! standardisation (`mean`, `std`) and the classifier's parameters, `weight` and `bias` for the
//! logistic regression, `support_vectors`, `dual_coef` and `bias` for an SVM, as
//! `dfscan-classical` reads them out of smartcore; the scan evaluates them in libtorch
//! ([`crate::models::spectrum::SpectrumNet`]), and a test holds the two decision functions equal.
//!
//! smartcore's SVC (an online LASVM-style solver) evaluates kernels without a cache, so its
//! fit grows with rows times support vectors; an SVM is fitted on at most `max_rows` rows, an
//! equal number of each class drawn at random (the logistic regression takes every row).
use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use dfscan_classical::{Data, Logistic, Svm};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::crops::dataset::CropSet;
use crate::faces::crop::CropSpec;
use crate::models::spectrum::{self, Classifier, ClassifierKind, SpectrumConfig, SpectrumNet};
use crate::models::weights::{self, Header, NetworkConfig, Preprocess, Storage};

/// How a spectrum classifier is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub classifier: ClassifierKind,
    /// The SVM's C.
    pub c: f64,
    /// The logistic regression's L2 penalty (on the summed loss: 1 is scikit-learn's C = 1).
    pub alpha: f64,
    /// Most rows an SVM is fitted on (half of each class where both have enough).
    pub max_rows: usize,
    /// Seed of the row sample and of smartcore's shuffles.
    pub seed: u64,
}

impl FitConfig {
    pub fn new(classifier: ClassifierKind) -> Self {
        Self { classifier, c: 1.0, alpha: 1.0, max_rows: 3000, seed: 1 }
    }
}

/// A fitted classifier: its config and its tensors, named as the weights file names them.
pub struct Fitted {
    pub config: SpectrumConfig,
    pub tensors: Vec<(String, Tensor)>,
    /// Rows it was fitted on (after sampling).
    pub rows: usize,
}

impl Fitted {
    /// The network with these tensors, on the CPU.
    pub fn network(&self) -> Result<(nn::VarStore, SpectrumNet)> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = SpectrumNet::new(&vs.root(), &self.config);
        let mut vars = vs.variables();
        ensure!(vars.len() == self.tensors.len(), "{} tensors for the {} of the network", self.tensors.len(), vars.len());
        tch::no_grad(|| -> Result<()> {
            for (name, t) in &self.tensors {
                let var = vars.get_mut(name).with_context(|| format!("the network has no {name}"))?;
                ensure!(var.size() == t.size(), "shape mismatch for {name}: {:?} vs {:?}", t.size(), var.size());
                var.copy_(t);
            }
            Ok(())
        })?;
        vs.freeze();
        Ok((vs, net))
    }

    /// Logits of "fake" for `[N, F]` features.
    pub fn logits(&self, x: &Tensor) -> Result<Vec<f32>> {
        let (_vs, net) = self.network()?;
        Ok(Vec::<f32>::try_from(tch::no_grad(|| net.forward_t(x, false)))?)
    }
}

/// The spectra of the crops `idx` of `set`, read at `side` pixels: `[idx.len(), bins]`.
/// `progress(done, total)` is called every 256 crops.
pub fn crop_spectra(set: &CropSet, idx: &[usize], side: i32, bins: usize, mut progress: impl FnMut(usize, usize)) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(idx.len() * bins);
    for (k, &i) in idx.iter().enumerate() {
        let rgb = set.load_rgb(i, side)?;
        rows.extend(spectrum::spectrum(&rgb, side, bins).with_context(|| format!("spectrum of {}", set.records[i].file))?);
        if (k + 1) % 256 == 0 || k + 1 == idx.len() {
            progress(k + 1, idx.len());
        }
    }
    Ok(Tensor::from_slice(&rows).view([idx.len() as i64, bins as i64]))
}

/// The side a cache's crops are read at for the spectrum: the side they were cut at (the
/// spectrum depends on resolution), else `dfscan extract`'s default.
pub fn side_of(set: &CropSet) -> i32 {
    set.spec.map_or(Preprocess::spectrum().input_size as i32, |s| s.side)
}

/// Rows for an SVM: all of them when there are at most `max_rows`, else a seeded sample of
/// `max_rows / 2` of each class (all of the smaller class when it has fewer, the rest from the
/// other).
fn sample_rows(fake: &[bool], max_rows: usize, seed: u64) -> Vec<usize> {
    if fake.len() <= max_rows {
        return (0..fake.len()).collect();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut pos, mut neg): (Vec<usize>, Vec<usize>) = (0..fake.len()).partition(|&i| fake[i]);
    pos.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    let half = max_rows / 2;
    let take_pos = pos.len().min(half.max(max_rows.saturating_sub(neg.len())));
    let take_neg = (max_rows - take_pos).min(neg.len());
    let mut rows: Vec<usize> = pos[..take_pos].iter().chain(&neg[..take_neg]).copied().collect();
    rows.sort_unstable();
    rows
}

/// Fits `cfg.classifier` to `fake` labels on `[N, F]` features, F = `features` (raw spectra;
/// `dfscan cv --spectrum-cnn` also passes spectra with CNN features beside them):
/// standardised by their mean and std, then smartcore. The standardisation and the
/// classifier are the tensors; the config's `bins` is F.
pub fn fit(x: &Tensor, fake: &[bool], features: usize, cfg: &FitConfig) -> Result<Fitted> {
    let bins = features;
    let n = fake.len();
    ensure!(n > 0 && x.size() == [n as i64, bins as i64], "features {:?} for {n} labels of {bins} bins", x.size());
    let n_fake = fake.iter().filter(|&&f| f).count();
    ensure!(n_fake > 0 && n_fake < n, "a classifier needs both real and fake examples ({n_fake} fake of {n})");
    let kernel = cfg.classifier.kernel(bins);
    let rows = if kernel.is_some() { sample_rows(fake, cfg.max_rows, cfg.seed) } else { (0..n).collect() };
    let x = x.to_kind(Kind::Float).to_device(Device::Cpu).index_select(0, &Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()));
    let y: Vec<bool> = rows.iter().map(|&r| fake[r]).collect();
    let mean = x.mean_dim(0, false, Kind::Float);
    let std = x.std_dim(0, false, false).clamp_min(1e-6);
    let z = (&x - &mean) / &std;
    let values: Vec<f64> = Vec::<f32>::try_from(z.contiguous().view([-1]))?.into_iter().map(f64::from).collect();
    let data = Data { x: &values, rows: rows.len(), cols: bins, fake: &y };
    let to_f32 = |v: &[f64]| Tensor::from_slice(&v.iter().map(|&a| a as f32).collect::<Vec<_>>());
    let mut tensors = vec![("mean".to_string(), mean), ("std".to_string(), std)];
    let classifier = match kernel {
        None => {
            let model = Logistic::fit(&data, cfg.alpha).map_err(|e| anyhow!(e))?;
            tensors.push(("weight".into(), to_f32(&model.weight)));
            tensors.push(("bias".into(), to_f32(&[model.bias])));
            Classifier::Logistic { alpha: cfg.alpha }
        }
        Some(kernel) => {
            let svm = Svm::fit(&data, kernel, cfg.c, cfg.seed).map_err(|e| anyhow!(e))?;
            let m = svm.support_vectors.len() as i64;
            tensors.push(("support_vectors".into(), to_f32(&svm.support_vectors.concat()).view([m, bins as i64])));
            tensors.push(("dual_coef".into(), to_f32(&svm.dual_coef)));
            tensors.push(("bias".into(), to_f32(&[svm.bias])));
            Classifier::Svm { kernel, c: cfg.c, support_vectors: m }
        }
    };
    Ok(Fitted { config: SpectrumConfig { bins, classifier }, tensors, rows: rows.len() })
}

/// Writes `fitted` as a dfscan weights file: crops are read at `side` (cut as `crop` says).
pub fn save(fitted: &Fitted, side: i32, crop: Option<CropSpec>, provenance: String, path: &Path) -> Result<()> {
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: NetworkConfig::Spectrum(fitted.config.clone()),
        preprocess: Preprocess { input_size: side as i64, crop, ..Preprocess::spectrum() },
        provenance,
        ood: None,
    };
    let mut tensors = fitted.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect::<Vec<_>>();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    weights::save_as(path, &tensors, &header, Storage::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes of `n` rows in `f` columns: the fakes' column 0 and 1 shifted (and their
    /// scale 1000 times the others', as raw spectra differ in scale), the rest noise.
    fn separable(n: usize, f: usize) -> (Tensor, Vec<bool>) {
        tch::manual_seed(4);
        let fake: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let y = Tensor::from_slice(&fake.iter().map(|&b| b as u8 as f32).collect::<Vec<_>>()).view([n as i64, 1]);
        let shift = Tensor::cat(&[&y * 3.0, -&y * 2.0, Tensor::zeros([n as i64, f as i64 - 2], (Kind::Float, Device::Cpu))], 1);
        let x = Tensor::randn([n as i64, f as i64], (Kind::Float, Device::Cpu)) + shift;
        (x * 1000.0 + 5.0, fake)
    }

    #[test]
    fn every_classifier_separates_separable_spectra() {
        let (x, fake) = separable(300, 8);
        for kind in [ClassifierKind::Logistic, ClassifierKind::SvmLinear, ClassifierKind::SvmPoly, ClassifierKind::SvmRbf, ClassifierKind::SvmSigmoid] {
            let fitted = fit(&x, &fake, 8, &FitConfig::new(kind)).unwrap();
            let probs: Vec<f32> = fitted.logits(&x).unwrap().into_iter().map(crate::aggregate::sigmoid).collect();
            let auc = crate::eval::metrics::roc_auc(&probs, &fake).unwrap();
            // The sigmoid kernel is the seed's weakest (0.42 there); separable data still suffices.
            assert!(auc > 0.9, "{}: AUC {auc}", kind.name());
        }
    }

    #[test]
    fn the_scan_network_gives_the_fitted_decision_function() {
        // The tensors in libtorch (f32) against dfscan-classical's own evaluation (f64, smartcore's kernels).
        let (x, fake) = separable(120, 5);
        let fitted = fit(&x, &fake, 5, &FitConfig::new(ClassifierKind::SvmPoly)).unwrap();
        let (mean, std) = (&fitted.tensors[0].1, &fitted.tensors[1].1);
        let z = (x.shallow_clone() - mean) / std;
        let values: Vec<f64> = Vec::<f32>::try_from(z.contiguous().view([-1])).unwrap().into_iter().map(f64::from).collect();
        let data = Data { x: &values, rows: 120, cols: 5, fake: &fake };
        let Classifier::Svm { kernel, c, .. } = fitted.config.classifier else { panic!("an SVM") };
        let svm = Svm::fit(&data, kernel, c, 1).unwrap();
        for (i, ours) in fitted.logits(&x).unwrap().iter().enumerate() {
            let theirs = svm.decision(&values[i * 5..(i + 1) * 5]);
            assert!((*ours as f64 - theirs).abs() < 1e-3 * (1.0 + theirs.abs()), "row {i}: {ours} vs {theirs}");
        }
    }

    #[test]
    fn svm_rows_are_sampled_evenly_per_class() {
        let fake: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        let rows = sample_rows(&fake, 300, 1);
        assert_eq!(rows.len(), 300);
        // 100 fakes exist: all of them, and 200 reals.
        assert_eq!(rows.iter().filter(|&&r| fake[r]).count(), 100);
        let even: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        assert_eq!(sample_rows(&even, 300, 1).iter().filter(|&&r| even[r]).count(), 150);
        assert_eq!(sample_rows(&even, 2000, 1).len(), 1000);
    }
}
