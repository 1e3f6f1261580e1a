//! The classifier's own out-of-distribution risk: the abnormality module on an
//! EfficientNet-Lite's pooled features and probabilities, so one backbone pass gives both the
//! score and the risk. Seed 000's module without its residual branch: an EfficientNet has no
//! attention map for a VAE to redraw (the ViT path, `vit_ood`) and no decoder (the U-Net path,
//! `unet_ood`), so the module reads the probabilities and the encoding only.
//!
//! ```text
//! crop -> EfficientNet-Lite backbone -> encoding [N, 1280] -> head -> fake logit -> probs
//!                                          \________________________________________/
//!                                                          abnormality -> ood risk
//! ```
//! Why: the default scan ran a second network (the ViT with its VAE, about 70 ms a face on
//! one CPU core) only for this risk; here it costs one small MLP per face.
//!
//! One weights file holds both: the classifier's tensors at the root (unchanged names), the
//! module's under `abnormality.`; the header's `ood` has the module alone (no VAE).
use anyhow::{ensure, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::abnormality::{Abnormality, AbnormalityConfig};
use super::efficientnet::{EfficientNetConfig, EfficientNetLite};
use super::vit_ood::OodHeads;

/// `widths` (hidden layers, init) reading an EfficientNet of `cfg`: two class probabilities
/// (from its one logit) and its pooled features, no residual.
pub fn abnormality_config(cfg: &EfficientNetConfig, widths: AbnormalityConfig) -> AbnormalityConfig {
    widths.reading(2, cfg.feature_width(), 0, cfg.resolution)
}

/// The two class logits (real, fake) of one fake logit: softmax gives (1 - p, p), and MSP and
/// ODIN read them as they read a two-class head.
pub fn class_logits(fake_logit: &Tensor) -> Tensor {
    Tensor::stack(&[fake_logit.zeros_like(), fake_logit.shallow_clone()], 1)
}

/// One batch through the network and the module (eval mode).
#[derive(Debug)]
pub struct EfficientNetOodOutput {
    /// `[N]` logits of "fake".
    pub fake_logit: Tensor,
    /// `[N, 2]` ([`class_logits`]).
    pub logits: Tensor,
    /// `[N, 2]` softmax probabilities.
    pub probs: Tensor,
    /// `[N, feature_width]` the pooled features the head reads.
    pub encoding: Tensor,
    /// `[N]` out-of-distribution risk in (0, 1).
    pub risk: Tensor,
}

#[derive(Debug)]
pub struct EfficientNetOod {
    pub net: EfficientNetLite,
    pub abnormality: Abnormality,
}

impl EfficientNetOod {
    /// Fails when `heads` has a VAE, or a module that does not read this network's outputs.
    pub fn new(root: &nn::Path, cfg: &EfficientNetConfig, heads: &OodHeads) -> Result<Self> {
        ensure!(heads.vae.is_none(), "an EfficientNet's out-of-distribution heads have no VAE (it has no attention map)");
        let expected = abnormality_config(cfg, heads.abnormality.clone());
        ensure!(heads.abnormality == expected, "the abnormality module does not read this EfficientNet: {:?}, expected {expected:?}", heads.abnormality);
        Ok(Self { net: EfficientNetLite::new(root, cfg), abnormality: Abnormality::new(&(root / "abnormality"), &heads.abnormality) })
    }

    /// The whole chain in eval mode: deterministic. `xs` is the network's normalised input.
    pub fn forward(&self, xs: &Tensor) -> EfficientNetOodOutput {
        let encoding = self.net.backbone.forward_t(xs, false);
        let fake_logit = self.net.head.forward_t(&encoding, false);
        let logits = class_logits(&fake_logit);
        let probs = logits.softmax(-1, Kind::Float);
        // The module reads no residual; an empty tensor stands for it.
        let risk = self.abnormality.risk_t(&probs, &encoding, &Tensor::new(), false);
        EfficientNetOodOutput { fake_logit, logits, probs, encoding, risk }
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn the_module_reads_probabilities_and_features_and_the_classifier_is_unchanged() {
        tch::manual_seed(0);
        let cfg = EfficientNetConfig::lite0();
        let heads = OodHeads { vae: None, abnormality: abnormality_config(&cfg, AbnormalityConfig::deit_tiny_narrow()) };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = EfficientNetOod::new(&vs.root(), &cfg, &heads).unwrap();
        let vars = vs.variables();
        // probabilities 2 + features 1280, no residual encoder.
        assert_eq!(vars["abnormality.fc1.weight"].size(), [512, 2 + 1280]);
        assert!(!vars.keys().any(|k| k.starts_with("abnormality.e1.")), "no residual encoder");
        assert!(vars.contains_key("_fc.weight") && vars.contains_key("_blocks.15._project_conv.weight"));

        let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| model.forward(&x));
        // The fake logit is the plain network's.
        let plain = tch::no_grad(|| model.net.forward_t(&x, false));
        assert!(out.fake_logit.allclose(&plain, 1e-6, 1e-6, false));
        assert_eq!((out.encoding.size(), out.risk.size()), (vec![2, 1280], vec![2]));
        let p_fake = out.probs.select(1, 1);
        assert!(p_fake.allclose(&out.fake_logit.sigmoid(), 1e-6, 1e-6, false), "softmax of (0, l) is (1 - p, p)");
        let again = tch::no_grad(|| model.forward(&x));
        assert!(out.risk.equal(&again.risk), "eval mode must be deterministic");
        let (lo, hi) = (out.risk.min().double_value(&[]), out.risk.max().double_value(&[]));
        assert!(lo > 0.0 && hi < 1.0, "risks in [{lo}, {hi}]");

        // A ViT's heads (with a VAE) and a module reading a residual do not fit.
        assert!(EfficientNetOod::new(&nn::VarStore::new(Device::Cpu).root(), &cfg, &OodHeads::shipped()).is_err());
        let with_residual = OodHeads { vae: None, abnormality: AbnormalityConfig::deit_tiny_narrow().reading(2, 1280, 1, 224) };
        assert!(EfficientNetOod::new(&nn::VarStore::new(Device::Cpu).root(), &cfg, &with_residual).is_err());
    }
}
