//! MesoNet: Meso4 and MesoInception4, compact networks for face-forgery detection.
//!
//! Paper: Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video Forgery
//! Detection Network", WIFS 2018 (arXiv:1809.00888). Reference code: the original Keras model
//! (github.com/DariusAf/MesoNet@2144d56) and its PyTorch port used by seed 001
//! (github.com/jchangz01/CS188-Project-Deepfake-Detection, `pretrained_weights/`).
//!
//! Layer names are the port's state_dict keys (`inception1.conv1`, `bn1`, `conv1`, `fc1`, ...),
//! so its checkpoints load without renaming. The two lineages differ in three details, which
//! [`MesoConfig`] carries: BatchNorm epsilon, ReLU after the two 5x5 tail convolutions, and
//! (outside the network, in `weights::Preprocess`) input normalisation and output polarity.
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MesoArch {
    Meso4,
    MesoInception4,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MesoConfig {
    pub arch: MesoArch,
    /// 1e-5 in the PyTorch port (PyTorch's default), 1e-3 in the Keras original.
    pub bn_eps: f64,
    /// MesoInception4 only: Keras applies ReLU after the two 5x5 tail convolutions, the port
    /// does not. Meso4 always has it (both lineages agree).
    pub relu_after_tail_convs: bool,
}

impl MesoConfig {
    /// The PyTorch port's MesoInception4 (the layout of the CS188 checkpoints).
    pub fn mesoinception4_torch() -> Self {
        Self { arch: MesoArch::MesoInception4, bn_eps: 1e-5, relu_after_tail_convs: false }
    }
    /// The original Keras model's hyper-parameters, for either architecture.
    pub fn keras(arch: MesoArch) -> Self {
        Self { arch, bn_eps: 1e-3, relu_after_tail_convs: true }
    }
    /// Meso4 as we train it: the Keras body with PyTorch's BatchNorm epsilon.
    pub fn meso4_torch() -> Self {
        Self { arch: MesoArch::Meso4, bn_eps: 1e-5, relu_after_tail_convs: true }
    }
}

/// Input side length, fixed by the flatten size of fc1 (16 channels x 8 x 8 = 1024).
pub const INPUT_SIZE: i64 = 256;

fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, dilation: i64) -> nn::Conv2D {
    // 'same' padding for odd kernels at stride 1, as Keras' padding='same'.
    let cfg = nn::ConvConfig { padding: dilation * (kernel / 2), dilation, ..Default::default() };
    nn::conv2d(p, c_in, c_out, kernel, cfg)
}

fn batch_norm(p: nn::Path, channels: i64, eps: f64) -> nn::BatchNorm {
    nn::batch_norm2d(p, channels, nn::BatchNormConfig { eps, ..Default::default() })
}

fn leaky_relu_0_1(xs: &Tensor) -> Tensor {
    xs.maximum(&(xs * 0.1))
}

/// Four parallel branches: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 dilated 2 | 1x1 -> 3x3 dilated 3,
/// ReLU after every convolution, concatenated on channels (a + b + c + d outputs).
#[derive(Debug)]
struct Inception {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    conv3: nn::Conv2D,
    conv4: nn::Conv2D,
    conv5: nn::Conv2D,
    conv6: nn::Conv2D,
    conv7: nn::Conv2D,
}

impl Inception {
    fn new(p: nn::Path, c_in: i64, a: i64, b: i64, c: i64, d: i64) -> Self {
        Self {
            conv1: conv(&p / "conv1", c_in, a, 1, 1),
            conv2: conv(&p / "conv2", c_in, b, 1, 1),
            conv3: conv(&p / "conv3", b, b, 3, 1),
            conv4: conv(&p / "conv4", c_in, c, 1, 1),
            conv5: conv(&p / "conv5", c, c, 3, 2),
            conv6: conv(&p / "conv6", c_in, d, 1, 1),
            conv7: conv(&p / "conv7", d, d, 3, 3),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let a = xs.apply(&self.conv1).relu();
        let b = xs.apply(&self.conv2).relu().apply(&self.conv3).relu();
        let c = xs.apply(&self.conv4).relu().apply(&self.conv5).relu();
        let d = xs.apply(&self.conv6).relu().apply(&self.conv7).relu();
        Tensor::cat(&[a, b, c, d], 1)
    }
}

/// The four convolutional stages before the dense head differ between the two networks.
#[derive(Debug)]
enum Body {
    Meso4 { conv1: nn::Conv2D, conv2: nn::Conv2D },
    MesoInception4 { inception1: Inception, inception2: Inception },
}

/// Meso4 or MesoInception4: input `[N, 3, 256, 256]` normalised as its weights say, output
/// `[N]` logits of the network's positive class (see `weights::Preprocess::output`).
#[derive(Debug)]
pub struct MesoNet {
    config: MesoConfig,
    body: Body,
    bn1: nn::BatchNorm,
    bn2: nn::BatchNorm,
    /// Meso4 calls its last two convolutions conv3 and conv4, MesoInception4 conv1 and conv2.
    tail_conv1: nn::Conv2D,
    tail_conv2: nn::Conv2D,
    bn3: nn::BatchNorm,
    bn4: nn::BatchNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl MesoNet {
    pub fn new(p: &nn::Path, config: &MesoConfig) -> Self {
        let eps = config.bn_eps;
        let (body, c2, tail_names) = match config.arch {
            MesoArch::Meso4 => (
                Body::Meso4 { conv1: conv(p / "conv1", 3, 8, 3, 1), conv2: conv(p / "conv2", 8, 8, 5, 1) },
                8,
                ["conv3", "conv4"],
            ),
            MesoArch::MesoInception4 => (
                Body::MesoInception4 {
                    inception1: Inception::new(p / "inception1", 3, 1, 4, 4, 2),
                    inception2: Inception::new(p / "inception2", 11, 2, 4, 4, 2),
                },
                12,
                ["conv1", "conv2"],
            ),
        };
        let c1 = match config.arch {
            MesoArch::Meso4 => 8,
            MesoArch::MesoInception4 => 11,
        };
        Self {
            config: config.clone(),
            body,
            bn1: batch_norm(p / "bn1", c1, eps),
            bn2: batch_norm(p / "bn2", c2, eps),
            tail_conv1: conv(p / tail_names[0], c2, 16, 5, 1),
            tail_conv2: conv(p / tail_names[1], 16, 16, 5, 1),
            bn3: batch_norm(p / "bn3", 16, eps),
            bn4: batch_norm(p / "bn4", 16, eps),
            fc1: nn::linear(p / "fc1", 16 * 8 * 8, 16, Default::default()),
            fc2: nn::linear(p / "fc2", 16, 1, Default::default()),
        }
    }

    pub fn config(&self) -> &MesoConfig {
        &self.config
    }
}

impl ModuleT for MesoNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x2 = match &self.body {
            Body::Meso4 { conv1, conv2 } => xs
                .apply(conv1)
                .relu()
                .apply_t(&self.bn1, train)
                .max_pool2d_default(2)
                .apply(conv2)
                .relu()
                .apply_t(&self.bn2, train)
                .max_pool2d_default(2),
            // The port applies ReLU again after the concatenation; it is a no-op on ReLU'd
            // branches, so one forward serves both lineages.
            Body::MesoInception4 { inception1, inception2 } => inception2
                .forward(&inception1.forward(xs).apply_t(&self.bn1, train).max_pool2d_default(2))
                .apply_t(&self.bn2, train)
                .max_pool2d_default(2),
        };
        let relu_tail = self.config.arch == MesoArch::Meso4 || self.config.relu_after_tail_convs;
        let tail = |x: &Tensor, conv: &nn::Conv2D| {
            let y = x.apply(conv);
            if relu_tail {
                y.relu()
            } else {
                y
            }
        };
        let x3 = tail(&x2, &self.tail_conv1).apply_t(&self.bn3, train).max_pool2d_default(2);
        let x4 = tail(&x3, &self.tail_conv2).apply_t(&self.bn4, train).max_pool2d_default(4);
        let hidden = x4.flatten(1, -1).dropout(0.5, train).apply(&self.fc1);
        leaky_relu_0_1(&hidden).dropout(0.5, train).apply(&self.fc2).squeeze_dim(1)
    }
}
