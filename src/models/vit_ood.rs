//! Seed 000's detector as one unit: the ViT classifies a face and shows where it looked; the
//! attention VAE redraws that attention map as an in-distribution face would have it; the
//! abnormality module reads the classifier's probabilities, its encoding and the VAE's
//! residual, and gives the risk that the face is unlike anything the classifier was trained on.
//!
//! ```text
//! crop -> ViT -> probs, encoding, attention -> VAE -> (reconstruction - attention)^2
//!                   \________________________________________/
//!                                     abnormality -> ood risk
//! ```
//! One weights file holds all three: the ViT's tensors at the root (timm's names), the VAE's
//! under `vae.` and the abnormality module's under `abnormality.`; its header's `ood` field
//! ([`OodHeads`]) says how the two heads are built. A ViT file without heads scores like any
//! frame model and gives no risk. (A U-Net file's `ood` has the abnormality module alone: the
//! U-Net redraws its input itself; `unet_ood`.)
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

use super::abnormality::{self, Abnormality, AbnormalityConfig};
use super::vae::{Vae, VaeConfig};
use super::vit::{self, Vit, VitConfig};

/// The heads' configurations, stored in the weights header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodHeads {
    /// The attention VAE of a ViT; None for a U-Net, whose decoder is its reconstruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<VaeConfig>,
    pub abnormality: AbnormalityConfig,
}

impl OodHeads {
    /// What `dfscan train-ood` builds by default on a ViT: the small VAE (see
    /// `VaeConfig::small`) and the narrow abnormality module (`AbnormalityConfig::deit_tiny_narrow`).
    pub fn shipped() -> Self {
        Self { vae: Some(VaeConfig::small()), abnormality: AbnormalityConfig::deit_tiny_narrow() }
    }
}

/// What the frozen classifier tells the two heads about a batch (eval mode).
#[derive(Debug)]
pub struct Classified {
    /// `[N]` logits of "fake".
    pub fake_logit: Tensor,
    /// `[N, 2]` the ViT's class logits (the MSP and ODIN baselines read these).
    pub logits: Tensor,
    /// `[N, 2]` softmax probabilities.
    pub probs: Tensor,
    /// `[N, width]` encoding.
    pub encoding: Tensor,
    /// `[N, 1, S, S]` the attention map the VAE reads: CLS attention scaled so each map's
    /// maximum is 1 ([`normalised_attention`]).
    pub attention: Tensor,
}

/// One batch through the three networks.
#[derive(Debug)]
pub struct VitOodOutput {
    pub classified: Classified,
    /// `[N, 1, S, S]` the VAE's reconstruction of `classified.attention`.
    pub reconstruction: Tensor,
    /// `[N, 1, S, S]` what the abnormality module reads beside the probabilities and encoding:
    /// (reconstruction - attention)^2.
    pub residual: Tensor,
    /// `[N]` out-of-distribution risk in (0, 1).
    pub risk: Tensor,
}

/// The ViT with its VAE and abnormality module. Loaded from one file, they live under one
/// root; `train::ood_trainer` builds each under its own store (same names) to fit one at a time.
#[derive(Debug)]
pub struct VitOod {
    pub vit: Vit,
    pub vae: Vae,
    pub abnormality: Abnormality,
}

impl VitOod {
    /// Fails when `heads` has no VAE (a U-Net's heads).
    pub fn new(root: &nn::Path, vit_cfg: &VitConfig, heads: &OodHeads) -> Result<Self> {
        let vae = heads.vae.as_ref().context("a ViT's out-of-distribution heads need the attention VAE; these have none")?;
        Ok(Self {
            vit: Vit::new(root, vit_cfg),
            vae: Vae::new(&(root / "vae"), vae),
            abnormality: Abnormality::new(&(root / "abnormality"), &heads.abnormality),
        })
    }

    /// The whole chain in eval mode (VAE mean, BatchNorm running statistics): deterministic.
    pub fn forward(&self, xs: &Tensor) -> VitOodOutput {
        self.heads(self.classify(xs))
    }

    /// The ViT's part of [`VitOod::forward`]: what the heads read, before they read it.
    pub fn classify(&self, xs: &Tensor) -> Classified {
        let out = self.vit.forward_all_t(xs, false);
        Classified {
            fake_logit: vit::fake_logit(&out.logits),
            probs: out.probs(),
            attention: normalised_attention(&out.attention),
            logits: out.logits,
            encoding: out.encoding,
        }
    }

    /// The heads' part of [`VitOod::forward`]. Training calls it too, so the abnormality module
    /// learns on exactly the residuals a scan gives it.
    pub fn heads(&self, classified: Classified) -> VitOodOutput {
        let reconstruction = self.vae.forward_all_t(&classified.attention, false).reconstruction;
        let residual = abnormality::residual(&classified.attention, &reconstruction);
        let risk = self.abnormality.risk_t(&classified.probs, &classified.encoding, &residual, false);
        VitOodOutput { classified, reconstruction, residual, risk }
    }
}

/// The ViT's CLS attention `[N, 1, S, S]` scaled so that each map's maximum is 1: its values
/// are attention probabilities of about 1/196, far from the [0, 1] range of the VAE's sigmoid
/// output, and the map's shape (where the classifier looked), not its mass, is what the VAE
/// learns.
pub fn normalised_attention(attention: &Tensor) -> Tensor {
    let n = attention.size()[0];
    let peak = attention.view([n, -1]).amax([1], false).clamp_min(1e-12).view([n, 1, 1, 1]);
    (attention / peak).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn one_root_holds_three_networks_and_the_chain_is_deterministic() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = VitOod::new(&vs.root(), &VitConfig { depth: 2, ..VitConfig::deit_tiny_distilled() }, &OodHeads::shipped()).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.iter().any(|n| n.starts_with("vae.encoder.")));
        assert!(names.iter().any(|n| n.starts_with("abnormality.fc1.")));
        assert!(names.iter().any(|n| n.starts_with("blocks.1.attn.qkv")));
        let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let (a, b) = (tch::no_grad(|| model.forward(&x)), tch::no_grad(|| model.forward(&x)));
        assert_eq!(a.risk.size(), [2]);
        assert_eq!(a.classified.attention.size(), [2, 1, 224, 224]);
        assert!(a.risk.equal(&b.risk), "eval mode must be deterministic");
        let peak = a.classified.attention.view([2, -1]).amax([1], false);
        assert!(peak.allclose(&Tensor::ones([2], (Kind::Float, Device::Cpu)), 1e-6, 1e-6, false));
    }
}
