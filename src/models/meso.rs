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
use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;
use tch::nn::{self, ModuleT};

use super::import::{is_keras, map_torch, Mapped};
use super::ops::max_pool;
use super::weights::{NetworkConfig, Preprocess};

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
            Body::Meso4 { conv1, conv2 } => {
                let x1 = max_pool(&xs.apply(conv1).relu().apply_t(&self.bn1, train), 2, train);
                max_pool(&x1.apply(conv2).relu().apply_t(&self.bn2, train), 2, train)
            }
            // The port applies ReLU again after the concatenation; it is a no-op on ReLU'd
            // branches, so one forward serves both lineages.
            Body::MesoInception4 { inception1, inception2 } => {
                let x1 = max_pool(&inception1.forward(xs).apply_t(&self.bn1, train), 2, train);
                max_pool(&inception2.forward(&x1).apply_t(&self.bn2, train), 2, train)
            }
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
        let x3 = max_pool(&tail(&x2, &self.tail_conv1).apply_t(&self.bn3, train), 2, train);
        let x4 = max_pool(&tail(&x3, &self.tail_conv2).apply_t(&self.bn4, train), 4, train);
        let hidden = x4.flatten(1, -1).dropout(0.5, train).apply(&self.fc1);
        leaky_relu_0_1(&hidden).dropout(0.5, train).apply(&self.fc2).squeeze_dim(1)
    }
}

// ---- Import: the rename table of `dfscan import --arch meso4|mesoinception4` ----
//
// Two source layouts:
// - the PyTorch port's state_dict (names already ours; `num_batches_tracked` dropped);
// - the original Keras .h5, whose layer names are numbered per Keras session, so layers are
//   matched by their order within each kind (conv2d, batch_normalization, dense), kernels
//   go from HWIO to OIHW, and fc1's inputs from Keras' HWC flatten order to our CHW order.

pub fn import_meso4(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    map_meso(MesoArch::Meso4, source)
}

pub fn import_mesoinception4(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    map_meso(MesoArch::MesoInception4, source)
}

fn map_meso(arch: MesoArch, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let keras = is_keras(source);
    let (config, preprocess, tensors, layout) = if keras {
        (MesoConfig::keras(arch), Preprocess::meso_keras(), map_keras(arch, source)?, "keras-h5")
    } else {
        let config = match arch {
            MesoArch::Meso4 => MesoConfig::meso4_torch(),
            MesoArch::MesoInception4 => MesoConfig::mesoinception4_torch(),
        };
        (config, Preprocess::meso_torch(), map_torch(source), "pytorch-state-dict")
    };
    Ok(Mapped { network: NetworkConfig::Meso(config), preprocess, tensors, layout, left_out: Vec::new(), note: String::new() })
}

/// Keras layers of one kind, in model order: numbered names sorted by their number.
fn keras_layers<'a>(source: &'a BTreeMap<String, Tensor>, kind: &str) -> Vec<(u64, BTreeMap<&'a str, &'a Tensor>)> {
    let mut layers: BTreeMap<u64, BTreeMap<&str, &Tensor>> = BTreeMap::new();
    for (name, tensor) in source {
        // e.g. "conv2d_5/conv2d_5/kernel:0" (kind "conv2d", number 5, field "kernel").
        let layer = name.split('/').next().unwrap_or_default();
        let number = match layer.strip_prefix(kind) {
            Some("") => 0,
            Some(rest) => match rest.strip_prefix('_').and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => continue, // another kind sharing the prefix
            },
            None => continue,
        };
        let field = name.rsplit('/').next().unwrap_or_default().trim_end_matches(":0");
        layers.entry(number).or_default().insert(field, tensor);
    }
    layers.into_iter().collect()
}

fn map_keras(arch: MesoArch, source: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let conv_names: Vec<String> = match arch {
        MesoArch::Meso4 => (1..=4).map(|i| format!("conv{i}")).collect(),
        // Per inception block: a 1x1, b 1x1, b 3x3, c 1x1, c 3x3 dil 2, d 1x1, d 3x3 dil 3.
        MesoArch::MesoInception4 => (1..=2)
            .flat_map(|b| (1..=7).map(move |i| format!("inception{b}.conv{i}")))
            .chain(["conv1".to_string(), "conv2".to_string()])
            .collect(),
    };
    let convs = keras_layers(source, "conv2d");
    let bns = keras_layers(source, "batch_normalization");
    let denses = keras_layers(source, "dense");
    ensure!(
        convs.len() == conv_names.len() && bns.len() == 4 && denses.len() == 2,
        "Keras file has {} conv2d, {} batch_normalization and {} dense layers; {} needs {}, 4 and 2",
        convs.len(),
        bns.len(),
        denses.len(),
        NetworkConfig::Meso(MesoConfig::keras(arch)).arch_name(),
        conv_names.len()
    );
    let field = |layer: &BTreeMap<&str, &Tensor>, f: &str| -> Result<Tensor> {
        layer.get(f).map(|t| t.shallow_clone()).with_context(|| format!("Keras layer without {f}"))
    };
    let mut out = BTreeMap::new();
    for (name, (_, layer)) in conv_names.iter().zip(&convs) {
        out.insert(format!("{name}.weight"), field(layer, "kernel")?.permute([3, 2, 0, 1]).contiguous());
        out.insert(format!("{name}.bias"), field(layer, "bias")?);
    }
    for (i, (_, layer)) in bns.iter().enumerate() {
        let p = format!("bn{}", i + 1);
        out.insert(format!("{p}.weight"), field(layer, "gamma")?);
        out.insert(format!("{p}.bias"), field(layer, "beta")?);
        out.insert(format!("{p}.running_mean"), field(layer, "moving_mean")?);
        out.insert(format!("{p}.running_var"), field(layer, "moving_variance")?);
    }
    // fc1 reads the last feature map, 8x8x16, flattened HWC by Keras and CHW by us.
    let fc1 = field(&denses[0].1, "kernel")?; // [1024 = h*w*c, 16]
    let fc1 = fc1.view([8, 8, 16, 16]).permute([3, 2, 0, 1]).reshape([16, 1024]);
    out.insert("fc1.weight".into(), fc1.contiguous());
    out.insert("fc1.bias".into(), field(&denses[0].1, "bias")?);
    out.insert("fc2.weight".into(), field(&denses[1].1, "kernel")?.transpose(0, 1).contiguous());
    out.insert("fc2.bias".into(), field(&denses[1].1, "bias")?);
    Ok(out)
}

