//! The abnormality module: an out-of-distribution risk in (0, 1) from what a classifier says
//! about a face: its softmax probabilities, its encoding, and a residual map. For the ViT path
//! (`vit_ood`) the residual is the attention VAE's, (VAE(att) - att)^2, one channel; for the
//! U-Net path (`unet_ood`) it is the U-Net's own reconstruction error, (input - reconstruction)^2,
//! three channels. The EfficientNet path (`efficientnet_ood`) has neither an attention map nor
//! a decoder: its module reads no residual (`residual_channels` 0, no encoder blocks). It is
//! trained on in-distribution crops (risk 0) against synthetic out-of-distribution ones made
//! from them (risk 1; `train::ood_trainer`).
//!
//! Reference code: the seed's `Abnormality_module_Encoder_ViT_v3` and, for the U-Net,
//! `Abnormality_module_Encoder_v3`, both on `Encoder_block_v2` (github.com/FabrCas/master_thesis
//! `models.py`, `ood_detection.py` `Abnormality_module_ViT` and `Abnormality_module`), after Hendrycks & Gimpel's abnormality module ("A Baseline for
//! Detecting Misclassified and Out-of-Distribution Examples", ICLR 2017, arXiv:1610.02136).
//!
//! Names follow the seed (`e1`..`e5` with `conv1..3`/`bn1..3`, `fc1`/`bn1`,
//! `fc_risk_1`/`bn_risk_1`, `fc_risk_2`/`bn_risk_2`, `fc_risk_final`). One deliberate difference:
//! the seed passes the final unit through BatchNorm and GELU before its sigmoid, so its risk can
//! never fall below sigmoid(min GELU) = 0.46; here `fc_risk_final` is the risk logit itself
//! (no `bn_risk_final`), so in-distribution inputs can score near 0.
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbnormalityConfig {
    /// Side of the residual map (the classifier's input side).
    pub residual_size: i64,
    /// Channels of the residual map: 1 for the ViT's attention residual, 3 for the U-Net's
    /// reconstruction residual, 0 for none (an EfficientNet's module: no encoder blocks).
    /// (Files written before the U-Net path have no field: 1.)
    #[serde(default = "one")]
    pub residual_channels: i64,
    /// Output channels of the five encoder blocks, each halving the side (224 -> 7).
    pub channels: [i64; 5],
    /// Softmax probabilities (2) and encoding width (192 for DeiT-tiny, the U-Net's
    /// `encoding_width`).
    pub classes: i64,
    pub encoding: i64,
    /// Widths of `fc1`, `fc_risk_1`, `fc_risk_2`.
    pub hidden: [i64; 3],
    /// Std of the normal init of every weight matrix and kernel (the seed's `_init_weights_normal`).
    pub init_std: f64,
}

impl AbnormalityConfig {
    /// The seed's module on DeiT-tiny: 2 + 192 + 64 x 7 x 7 = 3330 inputs -> 1024 -> 512 -> 128 -> 1.
    pub fn deit_tiny() -> Self {
        Self { residual_size: 224, residual_channels: 1, channels: [4, 8, 16, 32, 64], classes: 2, encoding: 192, hidden: [1024, 512, 128], init_std: 0.01 }
    }

    /// These widths, reading another classifier's inputs: `classes` probabilities, an
    /// `encoding`-wide encoding, and a residual of `channels` x `side` x `side`. The seed's
    /// U-Net module (`Abnormality_module_Encoder_v3`) is `deit_tiny().reading(2, 3136, 3, 224)`.
    pub fn reading(self, classes: i64, encoding: i64, channels: i64, side: i64) -> Self {
        Self { classes, encoding, residual_channels: channels, residual_size: side, ..self }
    }

    /// The seed's module with `fc1`, `fc_risk_1` and `fc_risk_2` at half width (512, 256,
    /// 128): `fc1` holds most of the seed module's 4M parameters, and halving it keeps the
    /// shipped ViT file (ViT, small VAE, this module) under 30 MB in f16.
    pub fn deit_tiny_narrow() -> Self {
        Self { hidden: [512, 256, 128], ..Self::deit_tiny() }
    }

    /// Width of the flattened residual code (3136 for the seed, 0 without a residual).
    pub fn residual_features(&self) -> i64 {
        if self.residual_channels == 0 {
            return 0;
        }
        let side = self.residual_size >> self.channels.len();
        self.channels[self.channels.len() - 1] * side * side
    }

    /// Width of the concatenated input of `fc1` (3330 for the seed).
    pub fn features(&self) -> i64 {
        self.classes + self.encoding + self.residual_features()
    }
}

/// [conv3 s1 -> BN -> GELU, conv3 s2 -> BN -> GELU, conv3 s1 -> BN -> GELU]: the seed's
/// `Encoder_block_v2`, halving the side by a strided convolution.
#[derive(Debug)]
struct EncoderBlock {
    layers: [(nn::Conv2D, nn::BatchNorm); 3],
}

impl EncoderBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, init_std: f64) -> Self {
        let conv = |i: usize, c_in: i64, stride: i64| {
            let cfg = nn::ConvConfig { stride, padding: 1, ws_init: nn::Init::Randn { mean: 0.0, stdev: init_std }, ..Default::default() };
            (nn::conv2d(&p / format!("conv{i}"), c_in, c_out, 3, cfg), nn::batch_norm2d(&p / format!("bn{i}"), c_out, Default::default()))
        };
        Self { layers: [conv(1, c_in, 1), conv(2, c_out, 2), conv(3, c_out, 1)] }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |x, (conv, bn)| x.apply(conv).apply_t(bn, train).gelu("none"))
    }
}

/// Inputs: softmax probabilities `[N, classes]`, encoding `[N, encoding]`, residual
/// `[N, residual_channels, S, S]` (see [`residual`]; ignored when `residual_channels` is 0);
/// output: `[N]` risk logits ([`Abnormality::logits_t`]) or risks in (0, 1)
/// ([`Abnormality::risk_t`]), higher = more likely out of distribution.
#[derive(Debug)]
pub struct Abnormality {
    config: AbnormalityConfig,
    blocks: Vec<EncoderBlock>,
    /// (linear, BatchNorm1d) for `fc1`/`bn1`, `fc_risk_1`/`bn_risk_1`, `fc_risk_2`/`bn_risk_2`.
    hidden: Vec<(nn::Linear, nn::BatchNorm)>,
    fc_risk_final: nn::Linear,
}

impl Abnormality {
    pub fn new(p: &nn::Path, cfg: &AbnormalityConfig) -> Self {
        let mut c_in = cfg.residual_channels;
        // No residual, no encoder blocks.
        let widths = if cfg.residual_channels > 0 { &cfg.channels[..] } else { &[] };
        let blocks = widths
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let block = EncoderBlock::new(p / format!("e{}", i + 1), c_in, c, cfg.init_std);
                c_in = c;
                block
            })
            .collect();
        let linear_cfg = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: cfg.init_std }, ..Default::default() };
        let names = [("fc1", "bn1"), ("fc_risk_1", "bn_risk_1"), ("fc_risk_2", "bn_risk_2")];
        let mut width = cfg.features();
        let hidden = names
            .iter()
            .zip(cfg.hidden)
            .map(|(&(fc, bn), out)| {
                let layer = (nn::linear(p / fc, width, out, linear_cfg), nn::batch_norm1d(p / bn, out, Default::default()));
                width = out;
                layer
            })
            .collect();
        Self { config: cfg.clone(), blocks, hidden, fc_risk_final: nn::linear(p / "fc_risk_final", width, 1, linear_cfg) }
    }

    pub fn config(&self) -> &AbnormalityConfig {
        &self.config
    }

    /// `[N]` risk logits; train with binary cross-entropy on these (label 1 = out of distribution).
    pub fn logits_t(&self, probs: &Tensor, encoding: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        let mut parts = vec![probs.shallow_clone(), encoding.shallow_clone()];
        if !self.blocks.is_empty() {
            parts.push(self.blocks.iter().fold(residual.shallow_clone(), |x, block| block.forward_t(&x, train)).flatten(1, -1));
        }
        let x = Tensor::cat(&parts, 1);
        let x = self.hidden.iter().fold(x, |x, (fc, bn)| x.apply(fc).apply_t(bn, train).gelu("none"));
        x.apply(&self.fc_risk_final).squeeze_dim(1)
    }

    /// `[N]` out-of-distribution risks in (0, 1).
    pub fn risk_t(&self, probs: &Tensor, encoding: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        self.logits_t(probs, encoding, residual, train).sigmoid()
    }
}

/// The residual map the module reads: (reconstruction - original)^2, element-wise: `[N, 1, S, S]`
/// for an attention map and its VAE reconstruction, `[N, 3, S, S]` for an image and the U-Net's.
pub fn residual(original: &Tensor, reconstruction: &Tensor) -> Tensor {
    (reconstruction - original).square().to_kind(Kind::Float)
}

fn one() -> i64 {
    1
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn seed_widths_and_forward_shape() {
        let cfg = AbnormalityConfig::deit_tiny();
        assert_eq!((cfg.residual_features(), cfg.features()), (3136, 3330));
        let vs = nn::VarStore::new(Device::Cpu);
        let abn = Abnormality::new(&vs.root(), &cfg);
        let vars = vs.variables();
        assert_eq!(vars["fc1.weight"].size(), [1024, 3330]);
        assert_eq!(vars["e5.conv3.weight"].size(), [64, 64, 3, 3]);
        assert_eq!(vars["fc_risk_final.weight"].size(), [1, 128]);
        assert!(!vars.contains_key("bn_risk_final.weight"));

        let n = 3;
        let probs = Tensor::rand([n, 2], (Kind::Float, Device::Cpu)).softmax(-1, Kind::Float);
        let encoding = Tensor::randn([n, 192], (Kind::Float, Device::Cpu));
        let att = Tensor::rand([n, 1, 224, 224], (Kind::Float, Device::Cpu));
        let residual = residual(&att, &(&att * 0.9));
        // Training (batch statistics) and inference (running statistics) both give [N] in (0, 1).
        for train in [true, false] {
            let risk = tch::no_grad(|| abn.risk_t(&probs, &encoding, &residual, train));
            assert_eq!(risk.size(), [n]);
            let (lo, hi) = (risk.min().double_value(&[]), risk.max().double_value(&[]));
            assert!(lo > 0.0 && hi < 1.0, "train {train}: risks in [{lo}, {hi}]");
        }
    }
}
