//! `dfscan train-ood`: fits the abnormality module onto a trained classifier, which stays
//! frozen, and writes both as one file. Two classifiers, seed 000's two paths:
//! - a DeiT (`models::vit_ood`): the module reads the ViT's probabilities, encoding and the
//!   attention VAE's residual, so the VAE is fitted first (stage 1);
//! - a U-Net (`models::unet_ood`): the module reads its probabilities, encoding and its own
//!   reconstruction's residual; there is no stage 1;
//! - an EfficientNet-Lite (`models::efficientnet_ood`): the module reads its probabilities and
//!   pooled features, no residual; no stage 1.
//!
//! - What the ViT says about each crop (`VitOod::classify`) is computed once and kept: the
//!   ViT never changes, and it is most of the cost.
//! - Stage 1 (ViT): the VAE learns to redraw the train split's normalised attention maps
//!   (L1 + `kl_weight` x KL, the seed's objective).
//! - Stage 2, the same for both: with everything else frozen, train crops (label 0) and their
//!   synthetic out-of-distribution copies (label 1; `crops::ood`, the five corruptions in turn),
//!   plus any real out-of-distribution images (and, with `ordinary_copies`, mildly re-encoded
//!   copies of the train crops, label 0), go once through the chain a scan uses
//!   (`VitOod::heads`, `UnetOod::forward`), so the module learns on exactly what it will read.
//!   The module then fits on those inputs (binary cross-entropy, classes weighted equally).
//! - Validation: the val split against synthetic copies of it; the module's AUROC per epoch.
//!   The best epoch's weights are written (the latest when there is no val split).
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::crops::augment::{AugmentPlan, Interpolation, IsotropicResize};
use crate::crops::dataset::{self, CropSet, Split, SplitPlan};
use crate::crops::ood::{corrupt_all, OodKind};
use crate::eval::metrics::OodMetrics;
use crate::models::abnormality::Abnormality;
use crate::models::efficientnet::EfficientNetLite;
use crate::models::efficientnet_ood::{self, EfficientNetOod};
use crate::models::unet::Unet;
use crate::models::unet_ood::{self, UnetOod};
use crate::models::vae::{self, Vae};
use crate::models::vit::Vit;
use crate::models::vit_ood::{Classified, OodHeads, VitOod};
use crate::models::weights::{self, Header, Storage};
use crate::models::{self, NetworkConfig, Preprocess};

/// How one of the two stages fits.
#[derive(Clone, Debug)]
pub struct StageConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Use at most this many batches per epoch (quick runs and tests).
    pub max_steps_per_epoch: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct OodTrainConfig {
    /// A trained classifier without heads: a ViT (`dfscan train --arch deit-tiny`) or a U-Net
    /// (`--arch unet`, `unet-seed`).
    pub classifier: PathBuf,
    /// The VAE (a ViT's; unused for a U-Net) and the abnormality module's widths; the module's
    /// input widths are the classifier's (`AbnormalityConfig::reading`).
    pub heads: OodHeads,
    pub vae: StageConfig,
    /// Weight of the KL term beside the L1 reconstruction.
    pub kl_weight: f64,
    pub abnormality: StageConfig,
    pub split: SplitPlan,
    /// Real out-of-distribution images (crop caches or image folders), extra label-1 data.
    pub extra_ood: Vec<PathBuf>,
    /// Use at most this many train crops, drawn at random (CPU budgets).
    pub max_train_crops: Option<usize>,
    /// Use only crops of these origins (empty: all), in training and validation.
    pub origins: Vec<String>,
    /// Also fit each train crop's ordinary copy ([`ordinary_copy`]: re-compressed or
    /// downscaled, as real footage is) as in-distribution, so that the module flags
    /// corruption, not everyday quality loss.
    pub ordinary_copies: bool,
    pub seed: u64,
    pub device: Device,
    pub storage: Storage,
    pub output: PathBuf,
    /// The command that started training, recorded in the weights' provenance.
    pub command_line: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VaeEpochReport {
    pub epoch: usize,
    /// Mean L1 per pixel and KL over the epoch's train batches.
    pub reconstruction: f64,
    pub kl: f64,
    /// Mean L1 per pixel on the val split's maps, in eval mode (z = mean); None without one.
    pub val_reconstruction: Option<f64>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AbnormalityEpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    /// The val split against synthetic out-of-distribution copies of it.
    pub val: Option<OodMetrics>,
    pub seconds: f64,
    pub best: bool,
}

pub enum OodTrainEvent<'a> {
    Start { train_crops: usize, val_crops: usize, real_ood: usize },
    /// The frozen networks begin a pass over `crops` crops of `what`.
    Features { what: &'a str, crops: usize },
    /// A stage begins: `steps` batches per epoch.
    Stage { name: &'static str, steps_per_epoch: usize },
    Step { loss: f64 },
    VaeEpoch(&'a VaeEpochReport),
    AbnormalityEpoch(&'a AbnormalityEpochReport),
}

#[derive(Clone, Debug, Serialize)]
pub struct OodTrainReport {
    /// Empty for a U-Net.
    pub vae: Vec<VaeEpochReport>,
    pub abnormality: Vec<AbnormalityEpochReport>,
}

/// The networks, each under its own store so that each stage's optimiser sees only its own
/// network; the names are those of `VitOod::new` / `UnetOod::new` under one root. A U-Net's
/// `vae` store stays empty.
struct Stores {
    classifier: nn::VarStore,
    vae: nn::VarStore,
    abnormality: nn::VarStore,
}

/// The frozen classifier with its heads.
enum Chain {
    Vit(VitOod),
    Unet(UnetOod),
    EfficientNet(EfficientNetOod),
}

impl Chain {
    fn abnormality(&self) -> &Abnormality {
        match self {
            Chain::Vit(m) => &m.abnormality,
            Chain::Unet(m) => &m.abnormality,
            Chain::EfficientNet(m) => &m.abnormality,
        }
    }

    /// What the module reads about `pixels` (None for none), every network frozen: for a ViT
    /// through the VAE as it is now.
    fn head_inputs(&self, pixels: &[Vec<u8>], pre: &Preprocess, device: Device, batch: usize, is_ood: bool) -> Option<HeadInputs> {
        if pixels.is_empty() {
            return None;
        }
        Some(match self {
            Chain::Vit(model) => HeadInputs::of(model, classify_all(model, pixels, pre, device, batch), is_ood),
            Chain::Unet(model) => in_batches(pixels, pre, device, batch, |input| {
                let out = model.forward(input);
                HeadInputs::labelled(out.probs, out.encoding, out.residual, is_ood)
            }),
            Chain::EfficientNet(model) => in_batches(pixels, pre, device, batch, |input| {
                let out = model.forward(input);
                // No residual: `[N, 0]`, which selects and concatenates like the others.
                let none = Tensor::zeros([out.probs.size()[0], 0], (Kind::Float, device));
                HeadInputs::labelled(out.probs, out.encoding, none, is_ood)
            }),
        })
    }
}

/// `heads` of `pixels` in batches of `batch`, as network input, without gradients.
fn in_batches(pixels: &[Vec<u8>], pre: &Preprocess, device: Device, batch: usize, heads: impl Fn(&Tensor) -> HeadInputs) -> HeadInputs {
    let _guard = tch::no_grad_guard();
    let parts: Vec<HeadInputs> = pixels.chunks(batch.max(1)).map(|chunk| heads(&models::to_network_input(&models::crop_batch(chunk, pre.input_size), pre, device))).collect();
    HeadInputs::cat(&parts)
}

/// What the abnormality module reads, for a set of crops, and their labels.
struct HeadInputs {
    probs: Tensor,
    encoding: Tensor,
    residual: Tensor,
    /// `[N]` 1.0 = out of distribution.
    is_ood: Tensor,
}

impl HeadInputs {
    fn labelled(probs: Tensor, encoding: Tensor, residual: Tensor, is_ood: bool) -> Self {
        let is_ood = Tensor::full([probs.size()[0]], if is_ood { 1.0 } else { 0.0 }, (Kind::Float, probs.device()));
        Self { probs, encoding, residual, is_ood }
    }

    /// Through the ViT path's heads, from what the ViT said.
    fn of(model: &VitOod, classified: Vec<Classified>, is_ood: bool) -> Self {
        let parts: Vec<Self> = tch::no_grad(|| {
            classified
                .into_iter()
                .map(|c| {
                    let out = model.heads(c);
                    Self::labelled(out.classified.probs, out.classified.encoding, out.residual, is_ood)
                })
                .collect()
        });
        Self::cat(&parts)
    }

    fn cat(parts: &[Self]) -> Self {
        let cat = |f: fn(&Self) -> &Tensor| Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0);
        Self { probs: cat(|p| &p.probs), encoding: cat(|p| &p.encoding), residual: cat(|p| &p.residual), is_ood: cat(|p| &p.is_ood) }
    }

    fn len(&self) -> usize {
        self.is_ood.size()[0] as usize
    }

    fn select(&self, idx: &Tensor) -> Self {
        let pick = |t: &Tensor| t.index_select(0, idx);
        Self { probs: pick(&self.probs), encoding: pick(&self.encoding), residual: pick(&self.residual), is_ood: pick(&self.is_ood) }
    }

    fn risk_logits(&self, module: &Abnormality, train: bool) -> Tensor {
        module.logits_t(&self.probs, &self.encoding, &self.residual, train)
    }
}

pub fn train_ood(set: &CropSet, cfg: &OodTrainConfig, mut on_event: impl FnMut(OodTrainEvent)) -> Result<OodTrainReport> {
    tch::manual_seed(cfg.seed as i64);
    ensure!(cfg.abnormality.epochs > 0, "the abnormality module needs at least one epoch");
    let (stores, chain, heads, header) = build(cfg)?;
    let pre = &header.preprocess;
    let size = pre.input_size as i32;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    // Only the wanted origins, in training and validation (a held-out-source check of the risk).
    let wanted = |i: &usize| cfg.origins.is_empty() || cfg.origins.contains(&set.records[*i].origin);
    let mut train_idx: Vec<usize> = set.split(Split::Train, &cfg.split).into_iter().filter(wanted).collect();
    if let Some(cap) = cfg.max_train_crops.filter(|&cap| cap < train_idx.len()) {
        train_idx.shuffle(&mut rng);
        train_idx.truncate(cap);
        train_idx.sort_unstable();
    }
    ensure!(train_idx.len() >= 2, "the train split has {} crops; training needs at least 2", train_idx.len());
    let load = |idx: &[usize]| idx.iter().map(|&i| set.load_rgb(i, size)).collect::<Result<Vec<_>>>();
    let val_idx: Vec<usize> = set.split(Split::Val, &cfg.split).into_iter().filter(wanted).collect();
    let (train_pixels, val_pixels) = (load(&train_idx)?, load(&val_idx)?);
    let real_ood = cfg.extra_ood.iter().map(|dir| dataset::load_images(dir, size)).collect::<Result<Vec<_>>>()?.concat();
    on_event(OodTrainEvent::Start { train_crops: train_pixels.len(), val_crops: val_pixels.len(), real_ood: real_ood.len() });

    let batch = cfg.vae.batch_size.max(1);
    let features = |what: &str, pixels: &[Vec<u8>], is_ood: bool, on_event: &mut dyn FnMut(OodTrainEvent)| {
        on_event(OodTrainEvent::Features { what, crops: pixels.len() });
        chain.head_inputs(pixels, pre, cfg.device, batch, is_ood)
    };
    // Stage 1 (a ViT's VAE, on the train split's attention maps), then what the module reads
    // about the in-distribution crops.
    let (vae, train_id, val_id) = match &chain {
        Chain::Vit(model) => {
            let mut classify = |what: &str, pixels: &[Vec<u8>]| {
                on_event(OodTrainEvent::Features { what, crops: pixels.len() });
                classify_all(model, pixels, pre, cfg.device, batch)
            };
            let (train_classified, val_classified) = (classify("train crops", &train_pixels), classify("val crops", &val_pixels));
            let attention = |c: &[Classified]| (!c.is_empty()).then(|| Tensor::cat(&c.iter().map(|c| &c.attention).collect::<Vec<_>>(), 0));
            let train_maps = attention(&train_classified).expect("the train split has crops");
            let vae = fit_vae(&model.vae, &stores.vae, &train_maps, attention(&val_classified).as_ref(), cfg, &mut rng, &mut on_event)?;
            let val_id = (!val_classified.is_empty()).then(|| HeadInputs::of(model, val_classified, false));
            (vae, HeadInputs::of(model, train_classified, false), val_id)
        }
        Chain::Unet(_) | Chain::EfficientNet(_) => {
            let train_id = features("train crops", &train_pixels, false, &mut on_event).expect("the train split has crops");
            (Vec::new(), train_id, features("val crops", &val_pixels, false, &mut on_event))
        }
    };

    // Stage 2: the module's inputs, computed once with everything else frozen.
    let synthetic_train = corrupt_all(&train_pixels, size, cfg.seed, OodKind::for_index)?;
    let synthetic_train = features("synthetic OOD of the train crops", &synthetic_train, true, &mut on_event);
    let synthetic_val = corrupt_all(&val_pixels, size, cfg.seed ^ 1, OodKind::for_index)?;
    let synthetic_val = features("synthetic OOD of the val crops", &synthetic_val, true, &mut on_event);
    let real = features("real OOD images", &real_ood, true, &mut on_event);
    let ordinary = if cfg.ordinary_copies {
        let copies = train_pixels.iter().enumerate().map(|(i, p)| ordinary_copy(i, cfg.seed).apply(p, size)).collect::<Result<Vec<_>>>()?;
        features("ordinary copies of the train crops (in-distribution)", &copies, false, &mut on_event)
    } else {
        None
    };
    let train_parts: Vec<HeadInputs> = [Some(train_id), ordinary, synthetic_train, real].into_iter().flatten().collect();
    let train = HeadInputs::cat(&train_parts);
    drop(train_parts);
    let val = val_id.zip(synthetic_val).map(|(id, ood)| HeadInputs::cat(&[id, ood]));
    let abnormality = fit_abnormality(chain.abnormality(), &stores.abnormality, &train, val.as_ref(), cfg, &mut rng, &mut on_event, |best| {
        save(&stores, &header, &heads, cfg, &vae, best)
    })?;
    Ok(OodTrainReport { vae, abnormality })
}

/// Crop `i`'s ordinary copy: even crops re-compressed at JPEG quality 60-90, odd ones
/// downscaled to 40-80% of the side and back (area down, linear up), drawn from `seed` and
/// `i`. Mild next to the synthetic corruptions (JPEG quality 10, blur sigma 2.5); the OOD
/// evaluation's mild conditions (quality 75, half size) lie inside these ranges.
pub fn ordinary_copy(i: usize, seed: u64) -> AugmentPlan {
    let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    match i % 2 {
        0 => AugmentPlan { jpeg_quality: Some(rng.random_range(60..=90)), ..AugmentPlan::default() },
        _ => AugmentPlan {
            resize: Some(IsotropicResize { scale: rng.random_range(0.4..=0.8), interpolation: Interpolation::AreaLinear, pad: false }),
            ..AugmentPlan::default()
        },
    }
}

/// The classifier from `cfg.classifier`, loaded strictly and frozen, and the new heads, with
/// their configuration.
fn build(cfg: &OodTrainConfig) -> Result<(Stores, Chain, OodHeads, Header)> {
    let path = &cfg.classifier;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
    ensure!(header.ood.is_none(), "{} already has OOD heads: give the plain classifier that `dfscan train` wrote", path.display());
    let mut stores = Stores { classifier: nn::VarStore::new(cfg.device), vae: nn::VarStore::new(cfg.device), abnormality: nn::VarStore::new(cfg.device) };
    let abnormality = |abn_cfg| Abnormality::new(&(stores.abnormality.root() / "abnormality"), abn_cfg);
    let (chain, heads) = match &header.network {
        NetworkConfig::Vit(vit_cfg) => {
            let vae_cfg = cfg.heads.vae.clone().context("a ViT's heads need the attention VAE's configuration")?;
            let abn_cfg = cfg.heads.abnormality.clone().reading(vit_cfg.classes, vit_cfg.width, 1, vit_cfg.image_size);
            let model = VitOod { vit: Vit::new(&stores.classifier.root(), vit_cfg), vae: Vae::new(&(stores.vae.root() / "vae"), &vae_cfg), abnormality: abnormality(&abn_cfg) };
            (Chain::Vit(model), OodHeads { vae: Some(vae_cfg), abnormality: abn_cfg })
        }
        NetworkConfig::Unet(unet_cfg) => {
            let abn_cfg = unet_ood::abnormality_config(unet_cfg, cfg.heads.abnormality.clone());
            let model = UnetOod { unet: Unet::new(&stores.classifier.root(), unet_cfg), abnormality: abnormality(&abn_cfg) };
            (Chain::Unet(model), OodHeads { vae: None, abnormality: abn_cfg })
        }
        NetworkConfig::EfficientNet(net_cfg) => {
            let abn_cfg = efficientnet_ood::abnormality_config(net_cfg, cfg.heads.abnormality.clone());
            let model = EfficientNetOod { net: EfficientNetLite::new(&stores.classifier.root(), net_cfg), abnormality: abnormality(&abn_cfg) };
            (Chain::EfficientNet(model), OodHeads { vae: None, abnormality: abn_cfg })
        }
        other => bail!(
            "{} holds {}: the OOD heads read a ViT (its attention), a U-Net (its reconstruction) or an EfficientNet (its features)",
            path.display(),
            other.arch_name()
        ),
    };
    let missing = models::init_from_pretrained(&mut stores.classifier, path)?;
    ensure!(missing.is_empty(), "{} lacks {missing:?} of its {}", path.display(), header.network.arch_name());
    stores.classifier.freeze();
    Ok((stores, chain, heads, header))
}

/// [`VitOod::classify`] over `pixels` in batches, without gradients.
fn classify_all(model: &VitOod, pixels: &[Vec<u8>], pre: &Preprocess, device: Device, batch: usize) -> Vec<Classified> {
    let _guard = tch::no_grad_guard();
    pixels.chunks(batch).map(|chunk| model.classify(&models::to_network_input(&models::crop_batch(chunk, pre.input_size), pre, device))).collect()
}

/// `max_steps_per_epoch`. A last batch of one is dropped: BatchNorm cannot train on it.
fn epoch_batches(n: usize, stage: &StageConfig, rng: &mut StdRng) -> Vec<Vec<i64>> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<i64>> = order.chunks(stage.batch_size.max(2)).map(<[i64]>::to_vec).filter(|b| b.len() > 1).collect();
    if let Some(cap) = stage.max_steps_per_epoch {
        batches.truncate(cap.max(1));
    }
    batches
}

fn steps_per_epoch(n: usize, stage: &StageConfig) -> usize {
    let full = n / stage.batch_size.max(2) + usize::from(n % stage.batch_size.max(2) > 1);
    stage.max_steps_per_epoch.map_or(full, |cap| full.min(cap.max(1)))
}

fn fit_vae(
    vae: &Vae,
    store: &nn::VarStore,
    maps: &Tensor,
    val_maps: Option<&Tensor>,
    cfg: &OodTrainConfig,
    rng: &mut StdRng,
    on_event: &mut impl FnMut(OodTrainEvent),
) -> Result<Vec<VaeEpochReport>> {
    let stage = &cfg.vae;
    let mut opt = nn::Adam::default().build(store, stage.learning_rate)?;
    let n = maps.size()[0] as usize;
    on_event(OodTrainEvent::Stage { name: "VAE", steps_per_epoch: steps_per_epoch(n, stage) });
    let mut history = Vec::new();
    for epoch in 0..stage.epochs {
        let started = Instant::now();
        let (mut rec_sum, mut kl_sum, mut steps) = (0.0, 0.0, 0);
        for idx in epoch_batches(n, stage, rng) {
            let x = maps.index_select(0, &Tensor::from_slice(&idx).to_device(maps.device()));
            let parts = vae::loss(&vae.forward_all_t(&x, true), &x);
            let loss = parts.total(cfg.kl_weight);
            opt.backward_step(&loss);
            rec_sum += parts.reconstruction.double_value(&[]);
            kl_sum += parts.kl.double_value(&[]);
            steps += 1;
            on_event(OodTrainEvent::Step { loss: loss.double_value(&[]) });
        }
        let val_reconstruction = val_maps.map(|val| {
            let _guard = tch::no_grad_guard();
            let chunks = val.split(stage.batch_size.max(1) as i64, 0);
            let total: f64 = chunks.iter().map(|x| vae::loss(&vae.forward_all_t(x, false), x).reconstruction.double_value(&[]) * x.size()[0] as f64).sum();
            total / val.size()[0] as f64
        });
        let steps = f64::from(steps.max(1));
        let report = VaeEpochReport { epoch, reconstruction: rec_sum / steps, kl: kl_sum / steps, val_reconstruction, seconds: started.elapsed().as_secs_f64() };
        on_event(OodTrainEvent::VaeEpoch(&report));
        history.push(report);
    }
    Ok(history)
}

/// Fits the module; `save` gets each epoch that beats the best val AUROC so far (every epoch
/// without a val split).
#[allow(clippy::too_many_arguments)]
fn fit_abnormality(
    module: &Abnormality,
    store: &nn::VarStore,
    train: &HeadInputs,
    val: Option<&HeadInputs>,
    cfg: &OodTrainConfig,
    rng: &mut StdRng,
    on_event: &mut impl FnMut(OodTrainEvent),
    mut save: impl FnMut(&AbnormalityEpochReport) -> Result<()>,
) -> Result<Vec<AbnormalityEpochReport>> {
    let stage = &cfg.abnormality;
    let mut opt = nn::Adam::default().build(store, stage.learning_rate)?;
    // Out-of-distribution examples weighted to count as much as in-distribution ones.
    let n_ood = train.is_ood.sum(Kind::Float).double_value(&[]);
    let pos_weight = Tensor::from((train.len() as f64 - n_ood) / n_ood.max(1.0)).to_kind(Kind::Float).to_device(train.is_ood.device());
    on_event(OodTrainEvent::Stage { name: "abnormality", steps_per_epoch: steps_per_epoch(train.len(), stage) });
    let (mut history, mut best_auroc) = (Vec::new(), None::<f64>);
    for epoch in 0..stage.epochs {
        let started = Instant::now();
        let (mut loss_sum, mut steps) = (0.0, 0);
        for idx in epoch_batches(train.len(), stage, rng) {
            let batch = train.select(&Tensor::from_slice(&idx).to_device(train.is_ood.device()));
            let logits = batch.risk_logits(module, true);
            let loss = logits.binary_cross_entropy_with_logits::<&Tensor>(&batch.is_ood, None, Some(&pos_weight), Reduction::Mean);
            opt.backward_step(&loss);
            let loss = loss.double_value(&[]);
            loss_sum += loss;
            steps += 1;
            on_event(OodTrainEvent::Step { loss });
        }
        let val = val.map(|val| validate(module, val, stage.batch_size)).transpose()?.flatten();
        let best = match (val.map(|m| m.auroc), best_auroc) {
            (Some(auroc), Some(before)) => auroc > before,
            (Some(_), None) | (None, _) => true,
        };
        let report = AbnormalityEpochReport { epoch, train_loss: loss_sum / f64::from(steps.max(1)), val, seconds: started.elapsed().as_secs_f64(), best };
        if best {
            best_auroc = val.map(|m| m.auroc);
            save(&report)?;
        }
        on_event(OodTrainEvent::AbnormalityEpoch(&report));
        history.push(report);
    }
    Ok(history)
}

/// The module's out-of-distribution metrics on `val`, in eval mode.
fn validate(module: &Abnormality, val: &HeadInputs, batch: usize) -> Result<Option<OodMetrics>> {
    let _guard = tch::no_grad_guard();
    let mut risks = Vec::with_capacity(val.len());
    for start in (0..val.len() as i64).step_by(batch.max(1)) {
        let idx = Tensor::arange_start(start, (start + batch.max(1) as i64).min(val.len() as i64), (Kind::Int64, val.is_ood.device()));
        risks.extend(Vec::<f32>::try_from(val.select(&idx).risk_logits(module, false).to_device(Device::Cpu))?);
    }
    let is_ood: Vec<bool> = Vec::<f32>::try_from(val.is_ood.to_device(Device::Cpu))?.into_iter().map(|y| y > 0.5).collect();
    Ok(OodMetrics::compute(&risks, &is_ood))
}

/// Writes the classifier with its heads as one file, the provenance naming both commands and
/// the validation figures.
fn save(stores: &Stores, classifier: &Header, heads: &OodHeads, cfg: &OodTrainConfig, vae: &[VaeEpochReport], best: &AbnormalityEpochReport) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> =
        [&stores.classifier, &stores.vae, &stores.abnormality].iter().flat_map(|s| s.variables()).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let vae = match vae.last() {
        None => "none".to_string(),
        Some(last) => format!(
            "{} epochs, train L1 {:.4}, val L1 {}",
            vae.len(),
            last.reconstruction,
            last.val_reconstruction.map_or("n/a".into(), |l| format!("{l:.4}"))
        ),
    };
    let header = Header {
        provenance: format!(
            "{} (VAE: {vae}; abnormality: epoch {}, val AUROC {} against synthetic OOD of the val split). {}: {}",
            cfg.command_line,
            best.epoch + 1,
            best.val.map_or("n/a".into(), |m| format!("{:.4}", m.auroc)),
            classifier.network.arch_name(),
            classifier.provenance,
        ),
        ood: Some(heads.clone()),
        ..classifier.clone()
    };
    weights::save_as(&cfg.output, &tensors, &header, cfg.storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_copies_alternate_mild_jpeg_and_downscaling_and_repeat_with_the_seed() {
        for i in 0..40 {
            let plan = ordinary_copy(i, 7);
            assert_eq!(plan, ordinary_copy(i, 7));
            match (i % 2, plan.jpeg_quality, plan.resize) {
                (0, Some(q), None) => assert!((60..=90).contains(&q), "quality {q}"),
                (1, None, Some(r)) => assert!((0.4..=0.8).contains(&r.scale) && !r.pad, "{r:?}"),
                other => panic!("crop {i}: {other:?}"),
            }
            assert!(plan.noise.is_none() && plan.blur_sigma.is_none() && !plan.gray && !plan.flip);
        }
        assert!((0..40).any(|i| ordinary_copy(i, 7) != ordinary_copy(i, 8)), "the seed draws the copies");
    }

    #[test]
    fn steps_per_epoch_counts_the_batches_an_epoch_has() {
        let mut rng = StdRng::seed_from_u64(0);
        for (n, batch_size, cap) in [(10, 4, None), (9, 4, None), (1, 4, None), (5, 1, None), (100, 8, Some(3)), (100, 8, Some(0))] {
            let stage = StageConfig { epochs: 1, batch_size, learning_rate: 0.0, max_steps_per_epoch: cap };
            let batches = epoch_batches(n, &stage, &mut rng);
            assert_eq!(batches.len(), steps_per_epoch(n, &stage), "{n} crops, batch {batch_size}, cap {cap:?}");
            assert!(batches.iter().all(|b| b.len() >= 2), "BatchNorm needs two samples");
        }
    }
}
