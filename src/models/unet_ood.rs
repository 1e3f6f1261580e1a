//! Seed 000's CNN path as one unit: the U-Net classifies a face and redraws it; the abnormality
//! module reads the classifier's probabilities, its encoding and the reconstruction error, and
//! gives the risk that the face is unlike anything the classifier was trained on. The same
//! module as the ViT path's (`vit_ood`), reading a three-channel residual instead of the
//! attention VAE's one.
//!
//! ```text
//! crop -> U-Net -> probs, encoding, reconstruction -> (input - reconstruction)^2
//!             \_________________________________________/
//!                               abnormality -> ood risk
//! ```
//! Reference code: the seed's `Abnormality_module` (github.com/FabrCas/master_thesis
//! `ood_detection.py`, `_forward_A`: `residual = T.square(reconstruction - x)`) on
//! `Unet5_ResidualScorer` with `large_encoding = False`, and `Abnormality_module_Encoder_v3`.
//!
//! One weights file holds both: the U-Net's tensors at the root, the module's under
//! `abnormality.`; the header's `ood` has the module's configuration and no VAE.
use anyhow::{ensure, Result};
use tch::nn;
use tch::{Kind, Tensor};

use super::abnormality::{self, Abnormality, AbnormalityConfig};
use super::unet::{Unet, UnetConfig};
use super::vit::fake_logit;
use super::vit_ood::OodHeads;

/// `widths` (hidden layers, residual encoder, init) reading `unet`'s outputs: its class
/// probabilities, its encoding (`UnetConfig::encoding_width`) and its three-channel residual
/// at the input side.
pub fn abnormality_config(unet: &UnetConfig, widths: AbnormalityConfig) -> AbnormalityConfig {
    widths.reading(unet.classes, unet.encoding_width(), 3, unet.image_size)
}

/// One batch through the U-Net and the module (eval mode).
#[derive(Debug)]
pub struct UnetOodOutput {
    /// `[N, classes]` class logits (the MSP and ODIN baselines read these).
    pub logits: Tensor,
    /// `[N]` logits of "fake".
    pub fake_logit: Tensor,
    /// `[N, classes]` softmax probabilities.
    pub probs: Tensor,
    /// `[N, encoding_width]`.
    pub encoding: Tensor,
    /// `[N, 3, S, S]` the U-Net's reconstruction of its input.
    pub reconstruction: Tensor,
    /// `[N, 3, S, S]` what the module reads beside the probabilities and encoding:
    /// (input - reconstruction)^2.
    pub residual: Tensor,
    /// `[N]` out-of-distribution risk in (0, 1).
    pub risk: Tensor,
}

/// The U-Net with its abnormality module. Loaded from one file they live under one root;
/// `train::ood_trainer` builds each under its own store (same names) and fits the module alone.
#[derive(Debug)]
pub struct UnetOod {
    pub unet: Unet,
    pub abnormality: Abnormality,
}

impl UnetOod {
    /// Fails when `heads` has a VAE, or a module that does not read this U-Net's outputs.
    pub fn new(root: &nn::Path, cfg: &UnetConfig, heads: &OodHeads) -> Result<Self> {
        ensure!(heads.vae.is_none(), "a U-Net's out-of-distribution heads have no VAE (its decoder redraws the input)");
        let expected = abnormality_config(cfg, heads.abnormality.clone());
        ensure!(heads.abnormality == expected, "the abnormality module does not read this U-Net: {:?}, expected {expected:?}", heads.abnormality);
        Ok(Self { unet: Unet::new(root, cfg), abnormality: Abnormality::new(&(root / "abnormality"), &heads.abnormality) })
    }

    /// The whole chain in eval mode (BatchNorm running statistics, no dropout): deterministic.
    /// `xs` is the U-Net's input, pixels in [0, 1].
    pub fn forward(&self, xs: &Tensor) -> UnetOodOutput {
        let out = self.unet.forward_all_t(xs, false);
        let residual = abnormality::residual(xs, &out.reconstruction);
        let probs = out.logits.softmax(-1, Kind::Float);
        let risk = self.abnormality.risk_t(&probs, &out.encoding, &residual, false);
        UnetOodOutput { fake_logit: fake_logit(&out.logits), logits: out.logits, probs, encoding: out.encoding, reconstruction: out.reconstruction, residual, risk }
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn the_module_reads_a_three_channel_residual_of_the_input_side() {
        tch::manual_seed(0);
        let cfg = UnetConfig::small();
        let heads = OodHeads { vae: None, abnormality: abnormality_config(&cfg, AbnormalityConfig::deit_tiny_narrow()) };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = UnetOod::new(&vs.root(), &cfg, &heads).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["abnormality.e1.conv1.weight"].size(), [4, 3, 3, 3]);
        // probabilities 2 + encoding 196 + residual code 64 x 7 x 7.
        assert_eq!(vars["abnormality.fc1.weight"].size(), [512, 2 + 196 + 3136]);
        assert!(vars.contains_key("d5.conv.conv2.weight") && vars.contains_key("fc5.weight"));

        let x = Tensor::rand([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| model.forward(&x));
        assert_eq!(out.residual.size(), [2, 3, 224, 224]);
        assert!(out.residual.equal(&(&x - &out.reconstruction).square()));
        assert_eq!((out.probs.size(), out.encoding.size(), out.risk.size()), (vec![2, 2], vec![2, 196], vec![2]));
        let again = tch::no_grad(|| model.forward(&x));
        assert!(out.risk.equal(&again.risk), "eval mode must be deterministic");
        let (lo, hi) = (out.risk.min().double_value(&[]), out.risk.max().double_value(&[]));
        assert!(lo > 0.0 && hi < 1.0, "risks in [{lo}, {hi}]");

        // A ViT's heads (with a VAE, reading one channel) do not fit a U-Net.
        assert!(UnetOod::new(&nn::VarStore::new(Device::Cpu).root(), &cfg, &OodHeads::shipped()).is_err());
        let one_channel = OodHeads { vae: None, abnormality: AbnormalityConfig::deit_tiny_narrow() };
        assert!(UnetOod::new(&nn::VarStore::new(Device::Cpu).root(), &cfg, &one_channel).is_err());
    }
}
