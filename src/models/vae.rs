//! The attention VAE: a convolutional variational autoencoder of the ViT's 1 x 224 x 224
//! CLS-attention map. Its reconstruction error on a face is one input of the abnormality module:
//! attention patterns it never learnt to reconstruct hint at an out-of-distribution input.
//!
//! Paper: Kingma, Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (arXiv:1312.6114).
//! Reference code: the seed's `VAE` (github.com/FabrCas/master_thesis `models.py`), trained on
//! `ViT_timm_EA` attention maps (`bin_ViTClassifier.py`, `DFD_BinViTClassifier_v7`).
//!
//! Layer names are the seed's `nn.Sequential` indices (`encoder.0` the first convolution,
//! `encoder.2` its BatchNorm, ..., `encoder.16` the linear to mean and log-variance; `decoder.0`
//! the linear from the latent, `decoder.3` ... `decoder.15` the transposed convolutions), so its
//! checkpoints load by name. Two deliberate differences:
//! - Reparameterisation: z = mean + exp(0.5 logvar) * eps in training, z = mean at inference, so
//!   scans are deterministic. The seed samples with `mean + logvar * eps` in both modes.
//! - [`VaeConfig::small`]: the seed's two linear layers (25088 -> 1024, 512 -> 25088) hold ~38M
//!   of its ~44M parameters (~176 MB in f32), too big to ship. The small preset first reduces
//!   the 512 x 7 x 7 map to 32 x 7 x 7 with a 1x1 convolution (`reduce`), uses a 64-wide latent,
//!   and expands back with another 1x1 (`expand`): ~5.9M parameters, ~24 MB.
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Channels after each of the five stride-2 encoder convolutions (the decoder mirrors them).
const CHANNELS: [i64; 5] = [32, 64, 128, 256, 512];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Side of the square one-channel input; a multiple of 32 (224 -> a 7 x 7 bottleneck map).
    pub image_size: i64,
    /// Width of z; the encoder's linear outputs twice as many (mean, then log-variance).
    pub latent: i64,
    /// None: flatten the 512-channel bottleneck map as the seed does. Some(c): reduce it to c
    /// channels with a 1x1 convolution first (and expand back in the decoder).
    pub reduced_channels: Option<i64>,
    pub leaky_slope: f64,
    pub bn_eps: f64,
}

impl VaeConfig {
    /// The seed's configuration: latent 512 from the full 25088-wide flatten.
    pub fn seed() -> Self {
        Self { image_size: 224, latent: 512, reduced_channels: None, leaky_slope: 0.2, bn_eps: 1e-5 }
    }

    /// The shipped configuration: latent 64 from a 32 x 7 x 7 (1568-wide) flatten.
    pub fn small() -> Self {
        Self { latent: 64, reduced_channels: Some(32), ..Self::seed() }
    }

    fn bottleneck_side(&self) -> i64 {
        self.image_size / 32
    }

    /// Width of the flattened bottleneck, the input of `encoder.16`.
    fn flat(&self) -> i64 {
        self.reduced_channels.unwrap_or(CHANNELS[4]) * self.bottleneck_side().pow(2)
    }
}

fn batch_norm(p: nn::Path, channels: i64, eps: f64) -> nn::BatchNorm {
    nn::batch_norm2d(p, channels, nn::BatchNormConfig { eps, ..Default::default() })
}

/// What one pass gives: the reconstruction and the posterior it was decoded from.
#[derive(Debug)]
pub struct VaeOutput {
    /// `[N, 1, S, S]` in (0, 1).
    pub reconstruction: Tensor,
    /// `[N, latent]` each.
    pub mean: Tensor,
    pub logvar: Tensor,
}

/// The two terms of the VAE objective, kept apart so training can weigh and report them.
#[derive(Debug)]
pub struct VaeLoss {
    /// Mean absolute error per pixel (the seed's "mae").
    pub reconstruction: Tensor,
    /// KL(q(z|x) || N(0, I)) averaged over batch and latent dimensions (the seed's "mean").
    pub kl: Tensor,
}

impl VaeLoss {
    pub fn total(&self, kl_weight: f64) -> Tensor {
        &self.reconstruction + &self.kl * kl_weight
    }
}

/// `[N, 1, S, S]` maps in [0, 1] to their reconstruction (ModuleT) or a [`VaeOutput`].
#[derive(Debug)]
pub struct Vae {
    config: VaeConfig,
    /// (convolution, BatchNorm) per stage: `encoder.{3i}`, `encoder.{3i+2}`.
    encoder: Vec<(nn::Conv2D, nn::BatchNorm)>,
    reduce: Option<nn::Conv2D>,
    to_posterior: nn::Linear,
    from_latent: nn::Linear,
    expand: Option<nn::Conv2D>,
    /// (transposed convolution, BatchNorm): `decoder.{3+3j}`, `decoder.{5+3j}`.
    decoder: Vec<(nn::ConvTranspose2D, nn::BatchNorm)>,
    to_pixels: nn::ConvTranspose2D,
}

impl Vae {
    pub fn new(p: &nn::Path, cfg: &VaeConfig) -> Self {
        let (enc, dec) = (p / "encoder", p / "decoder");
        let down = nn::ConvConfig { stride: 2, padding: 1, ..Default::default() };
        let up = nn::ConvTransposeConfig { stride: 2, padding: 1, ..Default::default() };
        let mut c_in = 1;
        let encoder = CHANNELS
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let stage = (nn::conv2d(&enc / (3 * i), c_in, c, 4, down), batch_norm(&enc / (3 * i + 2), c, cfg.bn_eps));
                c_in = c;
                stage
            })
            .collect();
        let decoder = (0..4)
            .map(|j| {
                let (c_in, c_out) = (CHANNELS[4 - j], CHANNELS[3 - j]);
                (nn::conv_transpose2d(&dec / (3 + 3 * j), c_in, c_out, 4, up), batch_norm(&dec / (5 + 3 * j), c_out, cfg.bn_eps))
            })
            .collect();
        let one_by_one = |name: &str, c_in: i64, c_out: i64| nn::conv2d(p / name, c_in, c_out, 1, Default::default());
        Self {
            config: cfg.clone(),
            encoder,
            reduce: cfg.reduced_channels.map(|c| one_by_one("reduce", CHANNELS[4], c)),
            to_posterior: nn::linear(&enc / 16, cfg.flat(), 2 * cfg.latent, Default::default()),
            from_latent: nn::linear(&dec / 0, cfg.latent, cfg.flat(), Default::default()),
            expand: cfg.reduced_channels.map(|c| one_by_one("expand", c, CHANNELS[4])),
            decoder,
            to_pixels: nn::conv_transpose2d(&dec / 15, CHANNELS[0], 1, 4, up),
        }
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// LeakyReLU with the configured slope (tch's `leaky_relu` fixes it at 0.01).
    fn leaky(&self, xs: &Tensor) -> Tensor {
        xs.maximum(&(xs * self.config.leaky_slope))
    }

    /// Mean and log-variance of q(z | x), `[N, latent]` each.
    pub fn encode_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut x = xs.shallow_clone();
        for (conv, bn) in &self.encoder {
            // The seed's order: convolution, LeakyReLU, then BatchNorm.
            x = self.leaky(&x.apply(conv)).apply_t(bn, train);
        }
        if let Some(reduce) = &self.reduce {
            x = self.leaky(&x.apply(reduce));
        }
        let posterior = x.flatten(1, -1).apply(&self.to_posterior);
        let halves = posterior.chunk(2, 1);
        (halves[0].shallow_clone(), halves[1].shallow_clone())
    }

    /// `[N, latent]` to `[N, 1, S, S]` in (0, 1).
    pub fn decode_t(&self, z: &Tensor, train: bool) -> Tensor {
        let side = self.config.bottleneck_side();
        let channels = self.config.reduced_channels.unwrap_or(CHANNELS[4]);
        let mut x = self.leaky(&z.apply(&self.from_latent)).unflatten(1, [channels, side, side]);
        if let Some(expand) = &self.expand {
            x = self.leaky(&x.apply(expand));
        }
        for (deconv, bn) in &self.decoder {
            x = self.leaky(&x.apply(deconv)).apply_t(bn, train);
        }
        x.apply(&self.to_pixels).sigmoid()
    }

    /// Encode, sample z (training) or take the mean (inference), decode.
    pub fn forward_all_t(&self, xs: &Tensor, train: bool) -> VaeOutput {
        let (mean, logvar) = self.encode_t(xs, train);
        let z = if train { &mean + (&logvar * 0.5).exp() * mean.randn_like() } else { mean.shallow_clone() };
        VaeOutput { reconstruction: self.decode_t(&z, train), mean, logvar }
    }
}

impl ModuleT for Vae {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_all_t(xs, train).reconstruction
    }
}

/// L1 reconstruction and KL terms of `out` for the maps `target` it was computed from.
pub fn loss(out: &VaeOutput, target: &Tensor) -> VaeLoss {
    let reconstruction = out.reconstruction.l1_loss(target, tch::Reduction::Mean);
    let kl = (&out.logvar + 1.0 - out.mean.square() - out.logvar.exp()).mean(Kind::Float) * -0.5;
    VaeLoss { reconstruction, kl }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    fn params(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn seed_layout_names_and_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _vae = Vae::new(&vs.root(), &VaeConfig::seed());
        let vars = vs.variables();
        assert_eq!(vars["encoder.16.weight"].size(), [1024, 25088]);
        assert_eq!(vars["encoder.14.running_var"].size(), [512]);
        assert_eq!(vars["decoder.0.weight"].size(), [25088, 512]);
        assert_eq!(vars["decoder.15.weight"].size(), [32, 1, 4, 4]);
        assert!(!vars.contains_key("reduce.weight"));
        assert!(params(&vs) > 40_000_000);
        let small = nn::VarStore::new(Device::Cpu);
        let _vae = Vae::new(&small.root(), &VaeConfig::small());
        assert_eq!(small.variables()["encoder.16.weight"].size(), [128, 1568]);
        assert!(params(&small) < 6_000_000, "{} parameters", params(&small));
    }

    #[test]
    fn shapes_determinism_in_eval_randomness_in_train() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let vae = Vae::new(&vs.root(), &VaeConfig::small());
        let xs = Tensor::rand([2, 1, 224, 224], (Kind::Float, Device::Cpu));
        let _guard = tch::no_grad_guard();
        let out = vae.forward_all_t(&xs, false);
        assert_eq!(out.reconstruction.size(), [2, 1, 224, 224]);
        assert_eq!(out.mean.size(), [2, 64]);
        assert_eq!(out.logvar.size(), [2, 64]);
        let (lo, hi) = (out.reconstruction.min().double_value(&[]), out.reconstruction.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0);
        assert!(out.reconstruction.equal(&vae.forward_t(&xs, false)), "inference must be deterministic");
        let (a, b) = (vae.forward_t(&xs, true), vae.forward_t(&xs, true));
        assert!(!a.equal(&b), "training samples z");

        let parts = loss(&out, &xs);
        let (rec, kl) = (parts.reconstruction.double_value(&[]), parts.kl.double_value(&[]));
        assert!(rec > 0.0 && kl >= 0.0);
        assert!((parts.total(0.5).double_value(&[]) - (rec + 0.5 * kl)).abs() < 1e-6);
        // A posterior equal to the prior costs no KL.
        let prior = VaeOutput { reconstruction: xs.shallow_clone(), mean: Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), logvar: Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)) };
        let zero = loss(&prior, &xs);
        assert_eq!((zero.reconstruction.double_value(&[]), zero.kl.double_value(&[])), (0.0, 0.0));
    }
}
