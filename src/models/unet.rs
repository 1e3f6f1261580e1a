//! Seed 000's CNN path: a U-Net whose encoder feeds both a classifier (real/fake) and a decoder
//! that redraws the input. The reconstruction error, (input - reconstruction)^2, is what the
//! abnormality module reads beside the classifier's probabilities and encoding
//! (`super::unet_ood`), as the attention VAE's residual is for the ViT (`super::vit_ood`).
//!
//! Papers: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
//! Segmentation", MICCAI 2015 (arXiv:1505.04597); He et al., "Deep Residual Learning for Image
//! Recognition", CVPR 2016 (arXiv:1512.03385) for the shortcuts. Reference code: the seed's
//! `Unet5_ResidualScorer` on `Encoder_block_residual`, `Conv_block`, `Decoder_block`
//! (github.com/FabrCas/master_thesis@2fa216a `models.py`), trained by `DFD_BinClassifier_v4`
//! (`bin_classifier.py`: 0.9 x classification + 0.1 x mean absolute reconstruction error).
//!
//! ```text
//! x [N,3,224,224] in [0,1] -> e1..e5 (skip s_i, pooled p_i + shortcut) -> b [N,512,7,7]
//!   classifier: flatten -> fc1/bn1 (the encoding) -> fc2/bn2 -> fc3/bn3 -> fc4/bn4 -> fc5 -> logits [N,2]
//!   decoder:    d1(b, s5) -> d2(., s4) -> ... -> d5(., s1) -> out (1x1) -> sigmoid -> reconstruction [N,3,224,224]
//! ```
//! Names are the seed's state_dict keys (`e1.conv.conv1`, `e1.conv.bn1`, `e1.ds_layer.0` (the
//! shortcut's conv), `e1.ds_layer.1` (its BatchNorm), `b.conv1`, `fc1`..`fc5`, `bn1`..`bn4`,
//! `d1.up`, `d1.conv.conv1`, `out`), so its checkpoints load by name ([`import_seed`]).
//!
//! One addition, for the shipped file: the seed flattens the 512 x 7 x 7 bottleneck into a
//! 25,088-wide `fc1` to 3,136 (79M parameters, 315 MB in f32). [`UnetConfig::small`] first
//! reduces the bottleneck to 32 channels with a 1x1 convolution, BatchNorm and ReLU (`reduce`,
//! `reduce_bn`), so `fc1` reads 1,568 values; the classifier's widths keep the seed's ratios
//! (1/8, 1/32, 1/64, 1/128 of its input). It also halves every convolution's width (8..256
//! channels): a quarter of the parameters and of the CPU time per crop.
use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::import::{map_torch, Mapped};
use super::weights::{NetworkConfig, Preprocess};

/// The seed's input side (`INPUT_WIDTH`, `INPUT_HEIGHT`).
pub const INPUT_SIZE: i64 = 224;

/// Hyper-parameters of `Unet5_ResidualScorer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnetConfig {
    /// Side of the square RGB input, pixels in [0, 1]; a multiple of 32 (five halvings).
    pub image_size: i64,
    /// Output channels of the encoder blocks `e1`..`e5` and of the bottleneck `b`; the decoder
    /// `d1`..`d5` mirrors them back down to `channels[0]`.
    pub channels: [i64; 6],
    /// None: `fc1` reads the flattened bottleneck (the seed). Some(c): a 1x1 convolution,
    /// BatchNorm and ReLU reduce it to c channels first.
    pub reduced_channels: Option<i64>,
    pub classes: i64,
    /// Dropout after each hidden layer of the classifier (training only).
    pub dropout: f64,
    /// Training only: the loss is (1 - w) x cross-entropy + w x L1(reconstruction, input)
    /// (the seed's 0.9 / 0.1, mean absolute error: `DFD_BinClassifier_v4.use_MAE`).
    pub reconstruction_weight: f64,
}

impl UnetConfig {
    /// The seed's `Unet5_ResidualScorer(n_classes=2)`: 16..256 channels, a 512-channel
    /// bottleneck, `fc1` from the 25,088-wide flatten (~88M parameters, 350 MB in f32).
    pub fn seed() -> Self {
        Self { image_size: INPUT_SIZE, channels: [16, 32, 64, 128, 256, 512], reduced_channels: None, classes: 2, dropout: 0.3, reconstruction_weight: 0.1 }
    }

    /// The shipped network (module docs): half the seed's widths (8..256), and the bottleneck
    /// reduced to 32 channels before the flatten (`fc1` 1,568 -> 196): ~2.1M parameters.
    pub fn small() -> Self {
        Self { channels: [8, 16, 32, 64, 128, 256], reduced_channels: Some(32), ..Self::seed() }
    }

    /// Side of the bottleneck map (7 for 224).
    pub fn bottleneck_side(&self) -> i64 {
        self.image_size >> 5
    }

    /// Width of the classifier's input: the flattened (reduced) bottleneck.
    pub fn flat(&self) -> i64 {
        self.reduced_channels.unwrap_or(self.channels[5]) * self.bottleneck_side().pow(2)
    }

    /// Widths of `fc1`..`fc4`: the seed's 1/8, 1/32, 1/64 and 1/128 of [`UnetConfig::flat`].
    pub fn hidden(&self) -> [i64; 4] {
        [8, 32, 64, 128].map(|d| self.flat() / d)
    }

    /// Width of the encoding the abnormality module reads: `fc1`'s output after `bn1` and ReLU
    /// (the seed's `large_encoding = False`, which its `Abnormality_module_Encoder_v3` needs).
    pub fn encoding_width(&self) -> i64 {
        self.hidden()[0]
    }

    /// Whether `self` and `other` build the same network (training settings aside).
    pub fn same_network(&self, other: &Self) -> bool {
        Self { dropout: other.dropout, reconstruction_weight: other.reconstruction_weight, ..self.clone() } == *other
    }
}

/// The seed's weight init: Kaiming normal (fan out, ReLU) for every convolution.
fn conv_init() -> nn::Init {
    nn::Init::Kaiming { dist: nn::init::NormalOrUniform::Normal, fan: nn::init::FanInOut::FanOut, non_linearity: nn::init::NonLinearity::ReLU }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, k, nn::ConvConfig { stride, padding, ws_init: conv_init(), ..Default::default() })
}

/// [conv3 -> BN -> ReLU] x 2: the seed's `Conv_block`.
#[derive(Debug)]
struct ConvBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
}

impl ConvBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        Self {
            conv1: conv(&p / "conv1", c_in, c_out, 3, 1, 1),
            bn1: nn::batch_norm2d(&p / "bn1", c_out, Default::default()),
            conv2: conv(&p / "conv2", c_out, c_out, 3, 1, 1),
            bn2: nn::batch_norm2d(&p / "bn2", c_out, Default::default()),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train).relu()
    }
}

/// The seed's `Encoder_block_residual` with the shortcut after the pool: the block's output is
/// the skip, its 2x2 max-pool plus the shortcut (a stride-2 conv of the block's input and
/// BatchNorm: `ds_layer.0`, `ds_layer.1`) goes on down.
#[derive(Debug)]
struct EncoderBlock {
    conv: ConvBlock,
    shortcut: (nn::Conv2D, nn::BatchNorm),
}

impl EncoderBlock {
    /// `shortcut_kernel`: 1 for `e1`..`e4`, 2 for `e5` (the seed's `kernel_size=2`).
    fn new(p: nn::Path, c_in: i64, c_out: i64, shortcut_kernel: i64) -> Self {
        let ds = &p / "ds_layer";
        Self {
            conv: ConvBlock::new(&p / "conv", c_in, c_out),
            shortcut: (conv(&ds / "0", c_in, c_out, shortcut_kernel, 2, 0), nn::batch_norm2d(&ds / "1", c_out, Default::default())),
        }
    }

    /// (skip, pooled + shortcut).
    fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let skip = self.conv.forward_t(xs, train);
        let pooled = super::ops::max_pool(&skip, 2, train);
        let shortcut = xs.apply(&self.shortcut.0).apply_t(&self.shortcut.1, train);
        (skip, pooled + shortcut)
    }
}

/// The seed's `Decoder_block`: 2x2 stride-2 transposed convolution (`up`), concatenate the
/// skip, then a [`ConvBlock`] (`conv`).
#[derive(Debug)]
struct DecoderBlock {
    up: nn::ConvTranspose2D,
    conv: ConvBlock,
}

impl DecoderBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        let up = nn::ConvTransposeConfig { stride: 2, ws_init: conv_init(), ..Default::default() };
        Self { up: nn::conv_transpose2d(&p / "up", c_in, c_out, 2, up), conv: ConvBlock::new(&p / "conv", 2 * c_out, c_out) }
    }

    fn forward_t(&self, xs: &Tensor, skip: &Tensor, train: bool) -> Tensor {
        self.conv.forward_t(&Tensor::cat(&[xs.apply(&self.up), skip.shallow_clone()], 1), train)
    }
}

/// What the U-Net says about a batch.
#[derive(Debug)]
pub struct UnetOutput {
    /// `[N, classes]`; class 1 is "fake".
    pub logits: Tensor,
    /// `[N, encoding_width]`: `fc1`'s output after `bn1` and ReLU (see [`UnetConfig::encoding_width`]).
    pub encoding: Tensor,
    /// `[N, 3, S, S]` in (0, 1): the decoder's redrawing of the input.
    pub reconstruction: Tensor,
}

/// `Unet5_ResidualScorer`: `[N, 3, S, S]` pixels in [0, 1] to a [`UnetOutput`]. As a frame
/// model (`ModuleT`) it returns `[N]` logits of "fake" and skips the decoder.
#[derive(Debug)]
pub struct Unet {
    config: UnetConfig,
    encoders: Vec<EncoderBlock>,
    b: ConvBlock,
    reduce: Option<(nn::Conv2D, nn::BatchNorm)>,
    /// (`fc1`, `bn1`) .. (`fc4`, `bn4`).
    hidden: Vec<(nn::Linear, nn::BatchNorm)>,
    fc5: nn::Linear,
    decoders: Vec<DecoderBlock>,
    out: nn::Conv2D,
}

impl Unet {
    pub fn new(p: &nn::Path, cfg: &UnetConfig) -> Self {
        let c = cfg.channels;
        let encoders = (0..5).map(|i| EncoderBlock::new(p / format!("e{}", i + 1), if i == 0 { 3 } else { c[i - 1] }, c[i], if i == 4 { 2 } else { 1 })).collect();
        let reduce = cfg.reduced_channels.map(|r| (conv(p / "reduce", c[5], r, 1, 1, 0), nn::batch_norm2d(p / "reduce_bn", r, Default::default())));
        // The seed's `_init_weights_normal_module` on fc1..fc5: normal, std 0.01.
        let fc = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 }, ..Default::default() };
        let mut width = cfg.flat();
        let hidden = cfg
            .hidden()
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let layer = (nn::linear(p / format!("fc{}", i + 1), width, out, fc), nn::batch_norm1d(p / format!("bn{}", i + 1), out, Default::default()));
                width = out;
                layer
            })
            .collect();
        let decoders = (0..5).map(|i| DecoderBlock::new(p / format!("d{}", i + 1), c[5 - i], c[4 - i])).collect();
        Self {
            config: cfg.clone(),
            encoders,
            b: ConvBlock::new(p / "b", c[4], c[5]),
            reduce,
            hidden,
            fc5: nn::linear(p / "fc5", width, cfg.classes, fc),
            decoders,
            out: conv(p / "out", c[0], 3, 1, 1, 0),
        }
    }

    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// The skips `s1`..`s5` and the bottleneck.
    fn encode_t(&self, xs: &Tensor, train: bool) -> (Vec<Tensor>, Tensor) {
        let mut skips = Vec::with_capacity(self.encoders.len());
        // Contiguous first: crops arrive permuted from [N, S, S, 3], and on such an input
        // libtorch 2.11's CPU backward through `e1` (read by a 3x3 and the strided 1x1 shortcut)
        // corrupted the heap: "AdamW does not support sparse gradients", or a crash.
        let mut x = xs.contiguous();
        for block in &self.encoders {
            let (skip, pooled) = block.forward_t(&x, train);
            skips.push(skip);
            x = pooled;
        }
        (skips, self.b.forward_t(&x, train))
    }

    /// (logits, encoding) of a bottleneck.
    fn classify_t(&self, bottleneck: &Tensor, train: bool) -> (Tensor, Tensor) {
        let x = match &self.reduce {
            Some((conv, bn)) => bottleneck.apply(conv).apply_t(bn, train).relu(),
            None => bottleneck.shallow_clone(),
        };
        let mut x = x.flatten(1, -1);
        let mut encoding = None;
        for (fc, bn) in &self.hidden {
            let h = x.apply(fc).apply_t(bn, train).relu();
            x = h.dropout(self.config.dropout, train);
            encoding.get_or_insert(h);
        }
        (x.apply(&self.fc5), encoding.expect("four hidden layers"))
    }

    /// Logits, encoding and reconstruction of a batch (see [`UnetOutput`]).
    pub fn forward_all_t(&self, xs: &Tensor, train: bool) -> UnetOutput {
        let (skips, bottleneck) = self.encode_t(xs, train);
        let (logits, encoding) = self.classify_t(&bottleneck, train);
        let mut x = bottleneck;
        for (block, skip) in self.decoders.iter().zip(skips.iter().rev()) {
            x = block.forward_t(&x, skip, train);
        }
        UnetOutput { logits, encoding, reconstruction: x.apply(&self.out).sigmoid() }
    }

    /// `[N, classes]` logits without the decoder.
    pub fn logits_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.classify_t(&self.encode_t(xs, train).1, train).0
    }
}

impl ModuleT for Unet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        super::vit::fake_logit(&self.logits_t(xs, train))
    }
}

/// The reconstruction term of the training loss: mean absolute error against the input.
pub fn reconstruction_loss(reconstruction: &Tensor, input: &Tensor) -> Tensor {
    reconstruction.l1_loss(input, tch::Reduction::Mean).to_kind(Kind::Float)
}

/// What a U-Net reads: RGB pixels in [0, 1] at `cfg.image_size` (no mean/std), P(fake).
pub fn preprocess(cfg: &UnetConfig) -> Preprocess {
    Preprocess::rgb(cfg.image_size, [0.0; 3], [1.0; 3], super::weights::OutputClass::Fake)
}

// ---- Import: the rename table of `dfscan import --arch unet-seed` ----
//
// The seed's `Unet5_ResidualScorer(n_classes=2)` state_dict: its names are ours. The narrowed
// `unet` has no public checkpoint.

pub fn import_seed(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let tensors = map_torch(source);
    let cfg = UnetConfig::seed();
    let classes = tensors.get("fc5.weight").map(|w| w.size()[0]);
    ensure!(classes == Some(cfg.classes), "not the seed's two-class Unet5_ResidualScorer (fc5 has {classes:?} outputs)");
    Ok(Mapped { preprocess: preprocess(&cfg), network: NetworkConfig::Unet(cfg), tensors, layout: "FabrCas/master_thesis Unet5_ResidualScorer", left_out: Vec::new(), note: String::new() })
}

pub fn import_small(_: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    anyhow::bail!("the narrowed unet has no public checkpoint: train one with `dfscan train --arch unet`, or import the seed's with --arch unet-seed")
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    fn params(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn seed_names_and_widths() {
        let cfg = UnetConfig::seed();
        assert_eq!((cfg.flat(), cfg.hidden(), cfg.encoding_width()), (25088, [3136, 784, 392, 196], 3136));
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Unet::new(&vs.root(), &cfg);
        let vars = vs.variables();
        assert_eq!(vars["e1.conv.conv1.weight"].size(), [16, 3, 3, 3]);
        assert_eq!(vars["e1.ds_layer.0.weight"].size(), [16, 3, 1, 1]);
        assert_eq!(vars["e5.ds_layer.0.weight"].size(), [256, 128, 2, 2]);
        assert_eq!(vars["e5.ds_layer.1.running_var"].size(), [256]);
        assert_eq!(vars["b.conv2.weight"].size(), [512, 512, 3, 3]);
        assert_eq!(vars["fc1.weight"].size(), [3136, 25088]);
        assert_eq!(vars["bn4.weight"].size(), [196]);
        assert_eq!(vars["fc5.weight"].size(), [2, 196]);
        assert_eq!(vars["d1.up.weight"].size(), [512, 256, 2, 2]);
        assert_eq!(vars["d1.conv.conv1.weight"].size(), [256, 512, 3, 3]);
        assert_eq!(vars["d5.conv.conv2.weight"].size(), [16, 16, 3, 3]);
        assert_eq!(vars["out.weight"].size(), [3, 16, 1, 1]);
        assert!(!vars.keys().any(|k| k.starts_with("reduce")));
        let small = nn::VarStore::new(Device::Cpu);
        let _net = Unet::new(&small.root(), &UnetConfig::small());
        assert_eq!(small.variables()["fc1.weight"].size(), [196, 1568]);
        assert_eq!(small.variables()["reduce.weight"].size(), [32, 256, 1, 1]);
        assert!(params(&vs) > 80_000_000 && params(&small) < 2_500_000, "{} and {} parameters", params(&vs), params(&small));
        assert!(UnetConfig::small().same_network(&UnetConfig { dropout: 0.0, reconstruction_weight: 0.5, ..UnetConfig::small() }));
        assert!(!UnetConfig::small().same_network(&UnetConfig::seed()));
    }

    #[test]
    fn a_seed_state_dict_imports_by_name() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Unet::new(&vs.root(), &UnetConfig::seed());
        // As PyTorch saves it: our names, plus BatchNorm's counters.
        let mut source: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        source.insert("bn1.num_batches_tracked".into(), Tensor::from(7i64));
        let mapped = import_seed(&source).unwrap();
        assert_eq!(mapped.network.arch_name(), "unet-seed");
        let filled = super::super::import::fill_network(&mapped.network, mapped.tensors, &mapped.left_out).unwrap();
        assert_eq!(filled.len(), vs.variables().len());
        // A ten-class checkpoint (the seed's CIFAR benchmark) is not a deepfake classifier.
        source.insert("fc5.weight".into(), Tensor::zeros([10, 196], (Kind::Float, Device::Cpu)));
        assert!(import_seed(&source).is_err());
    }

    #[test]
    fn both_configs_give_two_logits_and_a_reconstruction_in_the_unit_range() {
        tch::manual_seed(1);
        let x = Tensor::rand([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        for cfg in [UnetConfig::small(), UnetConfig::seed()] {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = Unet::new(&vs.root(), &cfg);
            for train in [true, false] {
                let out = tch::no_grad(|| net.forward_all_t(&x, train));
                assert_eq!(out.logits.size(), [2, 2], "{cfg:?}");
                assert_eq!(out.encoding.size(), [2, cfg.encoding_width()]);
                assert_eq!(out.reconstruction.size(), [2, 3, 224, 224]);
                let (lo, hi) = (out.reconstruction.min().double_value(&[]), out.reconstruction.max().double_value(&[]));
                assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi), "reconstruction in [{lo}, {hi}]");
            }
            // The frame-model view skips the decoder and gives l_fake - l_real.
            let fake = tch::no_grad(|| net.forward_t(&x, false));
            let logits = tch::no_grad(|| net.forward_all_t(&x, false).logits);
            assert!(fake.allclose(&(logits.select(1, 1) - logits.select(1, 0)), 1e-5, 1e-5, false));
        }
    }
}
