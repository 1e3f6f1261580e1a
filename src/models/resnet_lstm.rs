//! ResNet-LSTM: a temporal face classifier. Each frame of a face track goes through an image
//! trunk, is squeezed to 128 numbers, and an LSTM reads the frames in order; its last state
//! gives one logit of "fake" for the whole sequence, so flicker between frames can count.
//!
//! Paper: Jiang, Li, Wu, Qian, Loy, "DeeperForensics-1.0: A Large-Scale Dataset for
//! Real-World Face Forgery Detection", CVPR 2020 (arXiv:2001.03024), whose baseline is a
//! ResNet50 + LSTM with 512 hidden units. Reference code, the layout we load: seed 001's
//! project, github.com/jchangz01/CS188-Project-Deepfake-Detection@7d9dd23
//! `models/resnetlstm.py`, a copy of CatoGit's deepfake_detector
//! (github.com/CatoGit/Comparing-the-Performance-of-Deepfake-Detection-Methods-on-Benchmark-Datasets,
//! `deepfake_detector/models/resnetlstm.py`, by Christopher Otto):
//!
//! ```text
//! [N, T, 3, 224, 224] -> (N*T frames) resnet.0..7  ResNet50 without avgpool and fc
//!                                     resnet.8     1x1 conv 2048 -> 128, no bias
//!                                     resnet.9     BatchNorm2d(128), ReLU, global average pool
//!                     -> [N, T, 128]  lstm         LSTM(128 -> 512, 1 layer, batch first)
//!                     -> last step    fc1          Linear 512 -> 64, ReLU
//!                                     fc2          Linear 64 -> 1: logit of fake (label 1)
//! ```
//!
//! Parameter names are that module's state_dict keys, so its checkpoints load without renaming
//! (`import::map_resnet_lstm` only strips "module." and `num_batches_tracked`). Its ResNet50
//! is a torchvision one inside `nn.Sequential(*list(resnet.children())[:-2], conv, bn, relu,
//! pool)`, which numbers the kept children: `resnet.0` conv1, `resnet.1` bn1, `resnet.4`..`7`
//! layer1..layer4 (see `backbone`). The source replaces torchvision's conv1 by a new one of the
//! same shape, which changes no name. Its labels are 1 = fake (Celeb-DF `label_data`), input
//! ImageNet mean/std at 224, T = 20 frames on Celeb-DF and 5 on DFDC.
//!
//! The MobileNetV2 backbone ([`Backbone::Mobilenetv2`]) is ours: the source's construction
//! applied to torchvision's `mobilenet_v2`, whose only kept child is `features`, so the trunk
//! is `resnet.0.*` (torchvision's `features.*`), the 1x1 conv 1280 -> 128 is `resnet.1` and its
//! BatchNorm `resnet.2`; the rest is unchanged.
use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, RNN};
use tch::{Kind, Tensor};

use super::import::{is_keras, map_torch, Mapped};
use super::weights::{NetworkConfig, Preprocess};

pub use super::backbone::{Backbone, Trunk};

/// Input side the source trains and tests at (and the ImageNet trunks were trained at).
pub const INPUT_SIZE: i64 = 224;
/// torchvision's ImageNet statistics, on RGB pixels scaled to [0, 1].
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResnetLstmConfig {
    pub backbone: Backbone,
    /// T, frames per sequence: what the model was trained on and what scan feeds it (tracks
    /// shorter than T are padded, see `models::pad_sequence`). The network itself takes any T.
    pub frames: i64,
    /// Channels of the 1x1 convolution after the trunk, the LSTM's input (source: 128).
    pub reduced: i64,
    /// LSTM hidden units (source: 512, after DeeperForensics).
    pub hidden: i64,
    /// Width of fc1 (source: 64).
    pub fc: i64,
}

impl ResnetLstmConfig {
    /// The source project's model as trained on Celeb-DF.
    pub fn resnet50() -> Self {
        Self { backbone: Backbone::Resnet50, frames: 20, reduced: 128, hidden: 512, fc: 64 }
    }
    /// The same head on MobileNetV2, whose ImageNet weights are available (scripts/setup.sh).
    pub fn mobilenetv2() -> Self {
        Self { backbone: Backbone::Mobilenetv2, ..Self::resnet50() }
    }
    pub fn with_backbone(backbone: Backbone) -> Self {
        Self { backbone, ..Self::resnet50() }
    }
}

/// After the trunk: 1x1 conv, BatchNorm, ReLU, global average pool per frame; LSTM over the
/// frames; fc1, ReLU, fc2 on its last step. Separate from the trunk so training can freeze
/// either.
#[derive(Debug)]
pub struct Head {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    lstm: nn::LSTM,
    fc1: nn::Linear,
    fc2: nn::Linear,
    reduced: i64,
}

impl Head {
    /// `root` is the model's root; the conv and BatchNorm go under `resnet`, after the trunk.
    pub fn new(root: &nn::Path, cfg: &ResnetLstmConfig) -> Self {
        let seq = root / "resnet";
        let after = cfg.backbone.children();
        let conv_cfg = nn::ConvConfig { bias: false, ..Default::default() };
        // PyTorch's nn.LSTM initialises every weight and bias uniformly in +-1/sqrt(hidden).
        let k = 1.0 / (cfg.hidden as f64).sqrt();
        let uniform = nn::Init::Uniform { lo: -k, up: k };
        let rnn_cfg = nn::RNNConfig {
            batch_first: true,
            w_ih_init: uniform,
            w_hh_init: uniform,
            b_ih_init: Some(uniform),
            b_hh_init: Some(uniform),
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(&seq / after, cfg.backbone.channels(), cfg.reduced, 1, conv_cfg),
            bn: nn::batch_norm2d(&seq / (after + 1), cfg.reduced, Default::default()),
            lstm: nn::lstm(root / "lstm", cfg.reduced, cfg.hidden, rnn_cfg),
            fc1: nn::linear(root / "fc1", cfg.hidden, cfg.fc, Default::default()),
            fc2: nn::linear(root / "fc2", cfg.fc, 1, Default::default()),
            reduced: cfg.reduced,
        }
    }

    /// Trunk maps of `n` sequences, `[N*T, C, h, w]` frame-major within each sequence, to
    /// `[N]` logits.
    pub fn forward_t(&self, maps: &Tensor, n: i64, train: bool) -> Tensor {
        let per_frame = maps.apply(&self.conv).apply_t(&self.bn, train).relu().mean_dim(&[2i64, 3][..], false, Kind::Float);
        let (states, _) = self.lstm.seq(&per_frame.view([n, -1, self.reduced]));
        states.select(1, -1).apply(&self.fc1).relu().apply(&self.fc2).squeeze_dim(1)
    }
}

/// The whole model: `[N, T, 3, S, S]` ImageNet-normalised frames to `[N]` logits of "fake".
/// S = 224 as trained; both trunks accept any S of at least 32.
#[derive(Debug)]
pub struct ResnetLstm {
    pub trunk: Trunk,
    pub head: Head,
}

impl ResnetLstm {
    pub fn new(root: &nn::Path, cfg: &ResnetLstmConfig) -> Self {
        Self { trunk: Trunk::new(&(root / "resnet"), cfg.backbone), head: Head::new(root, cfg) }
    }
}

impl ModuleT for ResnetLstm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let size = xs.size();
        assert_eq!(size.len(), 5, "ResNet-LSTM takes [N, T, 3, H, W] sequences, got {size:?}");
        // All frames of all sequences through the trunk at once, as the source does.
        let maps = self.trunk.forward_t(&xs.flatten(0, 1), train);
        self.head.forward_t(&maps, size[0], train)
    }
}

// ---- Import: the rename table of `dfscan import --arch resnet-lstm` ----
//
// Three source layouts, told apart by their keys:
// - the source project's ResNetLSTM state_dict (`resnet.*`, `lstm.*`, `fc1.*`, `fc2.*`):
//   names already ours, the backbone read off the keys;
// - torchvision's ImageNet `mobilenet_v2` (`features.*`, `classifier.1.*`), e.g.
//   mobilenet_v2-b0353104.pth from scripts/setup.sh, and
// - torchvision's ImageNet `resnet50` (`conv1`, `bn1`, `layer1`..`layer4`, `fc`): the trunk
//   only, renamed by [`torchvision_to_source`]; the ImageNet classifier is dropped and the
//   whole head (1x1 conv, BatchNorm, LSTM, fc1, fc2) left to training, like EfficientNet's.

/// The ResNet-LSTM head after a trunk, what a trunk-only import leaves to training: the 1x1
/// conv and its BatchNorm (at `resnet.{conv}` and `resnet.{conv + 1}`, after the trunk's
/// children), the LSTM, fc1 and fc2.
fn resnet_lstm_head(conv: usize) -> Vec<String> {
    let bn = conv + 1;
    [
        format!("resnet.{conv}.weight"),
        format!("resnet.{bn}.weight"),
        format!("resnet.{bn}.bias"),
        format!("resnet.{bn}.running_mean"),
        format!("resnet.{bn}.running_var"),
    ]
    .into_iter()
    .chain(["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].map(String::from))
    .collect()
}

/// A torchvision classifier's key under the source's layout (see `backbone`): the first
/// component, a child of the torchvision model, becomes its index in the source's `resnet`
/// Sequential. None for the ImageNet classifier, which the trunk does not have.
///
/// | backbone    | torchvision                         | ours                     |
/// |-------------|-------------------------------------|--------------------------|
/// | ResNet50    | `conv1`, `bn1`, `layer1`..`layer4`  | `resnet.0`, `resnet.1`, `resnet.4`..`resnet.7` |
/// | ResNet50    | `fc`                                | (dropped)                |
/// | MobileNetV2 | `features`                          | `resnet.0`               |
/// | MobileNetV2 | `classifier`                        | (dropped)                |
pub fn torchvision_to_source(backbone: Backbone, key: &str) -> Option<String> {
    let (first, rest) = key.split_once('.')?;
    let index = match (backbone, first) {
        (Backbone::Resnet50, "conv1") => 0,
        (Backbone::Resnet50, "bn1") => 1,
        (Backbone::Resnet50, layer) => 3 + layer.strip_prefix("layer")?.parse::<u32>().ok().filter(|l| (1..=4).contains(l))?,
        (Backbone::Mobilenetv2, "features") => 0,
        (Backbone::Mobilenetv2, _) => return None,
    };
    Some(format!("resnet.{index}.{rest}"))
}

pub fn import(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    ensure!(!is_keras(source), "resnet-lstm imports PyTorch state_dicts, not Keras files");
    let tensors = map_torch(source);
    let imagenet = |backbone: Backbone, classifier: &str, tensors: BTreeMap<String, Tensor>| -> Result<Mapped> {
        let fc = &tensors[classifier];
        ensure!(
            fc.size().first() == Some(&1000),
            "{classifier} has shape {:?}; the import expects ImageNet's 1000-class classifier, which it drops",
            fc.size()
        );
        let mut trunk = BTreeMap::new();
        for (name, tensor) in tensors {
            if let Some(ours) = torchvision_to_source(backbone, &name) {
                trunk.insert(ours, tensor);
            } else if !name.starts_with(classifier.split('.').next().unwrap_or_default()) {
                bail!("{name}: not a tensor of torchvision's {}", backbone.name());
            }
        }
        let head = match backbone {
            Backbone::Resnet50 => resnet_lstm_head(8),
            Backbone::Mobilenetv2 => resnet_lstm_head(1),
        };
        Ok(Mapped {
            network: NetworkConfig::ResnetLstm(ResnetLstmConfig::with_backbone(backbone)),
            preprocess: Preprocess::imagenet(),
            tensors: trunk,
            layout: match backbone {
                Backbone::Resnet50 => "torchvision-resnet50",
                Backbone::Mobilenetv2 => "torchvision-mobilenet-v2",
            },
            left_out: head,
            note: "; trunk only: ImageNet's classifier dropped, the 1x1 conv, LSTM and fc head left to \
                   training (init_from_pretrained), so a training start, not a scan model"
                .to_string(),
        })
    };
    if tensors.contains_key("classifier.1.weight") && tensors.contains_key("features.0.0.weight") {
        return imagenet(Backbone::Mobilenetv2, "classifier.1.weight", tensors);
    }
    if tensors.contains_key("fc.weight") && tensors.contains_key("layer1.0.conv1.weight") {
        return imagenet(Backbone::Resnet50, "fc.weight", tensors);
    }
    // The source project's own layout: our names. Its frames per sequence are not in a
    // state_dict; 20 is what it trains with on Celeb-DF.
    let backbone = if tensors.contains_key("resnet.4.0.conv1.weight") {
        Backbone::Resnet50
    } else if tensors.contains_key("resnet.0.0.0.weight") {
        Backbone::Mobilenetv2
    } else {
        bail!("neither a ResNet-LSTM state_dict (resnet.*, lstm.*, fc1.*, fc2.*) nor torchvision's ImageNet resnet50 or mobilenet_v2");
    };
    Ok(Mapped {
        network: NetworkConfig::ResnetLstm(ResnetLstmConfig::with_backbone(backbone)),
        preprocess: Preprocess::imagenet(),
        tensors,
        layout: match backbone {
            Backbone::Resnet50 => "resnet-lstm-state-dict",
            Backbone::Mobilenetv2 => "resnet-lstm-mobilenetv2-state-dict",
        },
        left_out: Vec::new(),
        note: "; T = 20 frames per sequence assumed (the source's Celeb-DF setting)".to_string(),
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::Device;

    fn build(cfg: &ResnetLstmConfig) -> (nn::VarStore, ResnetLstm) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResnetLstm::new(&vs.root(), cfg);
        (vs, net)
    }

    fn trainable(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// reduce conv + BatchNorm + LSTM (4 gates over input and state, two biases) + fc1 + fc2.
    fn head_parameters(c: i64) -> i64 {
        c * 128 + 2 * 128 + 4 * 512 * (128 + 512) + 2 * 4 * 512 + (512 * 64 + 64) + (64 + 1)
    }

    #[test]
    fn mobilenetv2_shapes_names_and_size() {
        let (vs, net) = build(&ResnetLstmConfig::mobilenetv2());
        let vars = vs.variables();
        // torchvision mobilenet_v2 has 3,504,872 parameters, 1,281,000 of them in its classifier.
        assert_eq!(trainable(&vs), 3_504_872 - 1_281_000 + head_parameters(1280));
        for (name, shape) in [
            ("resnet.0.0.0.weight", vec![32, 3, 3, 3]),
            ("resnet.0.1.conv.0.0.weight", vec![32, 1, 3, 3]),
            ("resnet.0.1.conv.2.running_var", vec![16]),
            ("resnet.0.17.conv.3.weight", vec![320]),
            ("resnet.0.18.0.weight", vec![1280, 320, 1, 1]),
            ("resnet.1.weight", vec![128, 1280, 1, 1]),
            ("resnet.2.running_mean", vec![128]),
            ("lstm.weight_ih_l0", vec![2048, 128]),
            ("lstm.weight_hh_l0", vec![2048, 512]),
            ("lstm.bias_hh_l0", vec![2048]),
            ("fc1.weight", vec![64, 512]),
            ("fc2.weight", vec![1, 64]),
        ] {
            assert_eq!(vars.get(name).map(|t| t.size()), Some(shape), "{name}");
        }
        assert!(!vars.contains_key("resnet.1.bias"), "the 1x1 conv has no bias");
        let xs = Tensor::randn([2, 4, 3, INPUT_SIZE, INPUT_SIZE], (Kind::Float, Device::Cpu));
        assert_eq!(tch::no_grad(|| net.forward_t(&xs, false)).size(), [2]);
    }

    #[test]
    fn resnet50_shapes_names_and_size() {
        let (vs, net) = build(&ResnetLstmConfig::resnet50());
        let vars = vs.variables();
        // torchvision resnet50 has 25,557,032 parameters, 2,049,000 of them in its fc.
        assert_eq!(trainable(&vs), 25_557_032 - 2_049_000 + head_parameters(2048));
        for (name, shape) in [
            ("resnet.0.weight", vec![64, 3, 7, 7]),
            ("resnet.1.running_mean", vec![64]),
            ("resnet.4.0.downsample.0.weight", vec![256, 64, 1, 1]),
            ("resnet.5.0.conv2.weight", vec![128, 128, 3, 3]),
            ("resnet.6.5.bn3.weight", vec![1024]),
            ("resnet.7.2.conv3.weight", vec![2048, 512, 1, 1]),
            ("resnet.8.weight", vec![128, 2048, 1, 1]),
            ("resnet.9.running_var", vec![128]),
            ("lstm.weight_ih_l0", vec![2048, 128]),
            ("fc2.bias", vec![1]),
        ] {
            assert_eq!(vars.get(name).map(|t| t.size()), Some(shape), "{name}");
        }
        assert!(!vars.contains_key("resnet.4.1.downsample.0.weight"), "only the first block projects");
        // The full model at 224 on two short sequences (ResNet50 is ~4 GFLOPs a frame).
        let xs = Tensor::randn([2, 2, 3, INPUT_SIZE, INPUT_SIZE], (Kind::Float, Device::Cpu));
        assert_eq!(tch::no_grad(|| net.forward_t(&xs, false)).size(), [2]);
    }

    #[test]
    fn the_order_of_frames_matters() {
        // An LSTM, not a pooled average: reversing a sequence changes its logit. Train mode:
        // with its initial running statistics (mean 0, variance 1) an untrained trunk
        // saturates every ReLU6 in eval mode, and all frames look alike; batch statistics do
        // not depend on the order of the frames.
        let (_vs, net) = build(&ResnetLstmConfig::mobilenetv2());
        let xs = Tensor::randn([1, 3, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (a, b) = tch::no_grad(|| (net.forward_t(&xs, true), net.forward_t(&xs.flip([1]), true)));
        assert!(f64::try_from((a - b).abs().max()).unwrap() > 1e-6);
    }

    #[test]
    fn a_few_training_steps_lower_the_loss() {
        // MobileNetV2 backbone, batch 2, T = 2, 64x64: one fake and one real sequence, the
        // same every step; Adam should fit them within a few steps.
        let (vs, net) = build(&ResnetLstmConfig::mobilenetv2());
        let xs = ((Tensor::arange(2 * 2 * 3 * 64 * 64, (Kind::Float, Device::Cpu)) * 12.9898).sin() * 43758.5453).frac() * 2.0 - 1.0;
        let xs = xs.view([2, 2, 3, 64, 64]);
        let labels = Tensor::from_slice(&[1.0f32, 0.0]);
        let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
        let mut losses = Vec::new();
        for _ in 0..8 {
            let logits = net.forward_t(&xs, true);
            let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Mean);
            opt.backward_step(&loss);
            losses.push(f64::try_from(loss).unwrap());
        }
        let last = losses[6..].iter().sum::<f64>() / 2.0;
        assert!(last < 0.5 * losses[0], "losses {losses:?}");
    }
}
#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::models::import::fill_network;

    #[test]
    fn torchvision_keys_map_to_the_source_layout() {
        let map = |b, k| torchvision_to_source(b, k);
        assert_eq!(map(Backbone::Resnet50, "conv1.weight").as_deref(), Some("resnet.0.weight"));
        assert_eq!(map(Backbone::Resnet50, "bn1.running_var").as_deref(), Some("resnet.1.running_var"));
        assert_eq!(map(Backbone::Resnet50, "layer1.0.downsample.1.bias").as_deref(), Some("resnet.4.0.downsample.1.bias"));
        assert_eq!(map(Backbone::Resnet50, "layer4.2.conv3.weight").as_deref(), Some("resnet.7.2.conv3.weight"));
        assert_eq!(map(Backbone::Resnet50, "layer5.0.conv1.weight"), None);
        assert_eq!(map(Backbone::Resnet50, "fc.weight"), None);
        assert_eq!(map(Backbone::Mobilenetv2, "features.18.1.weight").as_deref(), Some("resnet.0.18.1.weight"));
        assert_eq!(map(Backbone::Mobilenetv2, "classifier.1.weight"), None);
    }

    #[test]
    fn a_torchvision_resnet50_imports_as_a_trunk() {
        // torchvision's resnet50 state_dict, rebuilt from our trunk's names and shapes.
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _trunk = super::super::backbone::Trunk::new(&(vs.root() / "resnet"), Backbone::Resnet50);
        let rename = |ours: &str| -> String {
            let rest = ours.strip_prefix("resnet.").unwrap();
            let (index, rest) = rest.split_once('.').unwrap();
            let child = match index {
                "0" => "conv1".to_string(),
                "1" => "bn1".to_string(),
                i => format!("layer{}", i.parse::<u32>().unwrap() - 3),
            };
            format!("{child}.{rest}")
        };
        let mut source: BTreeMap<String, Tensor> = vs.variables().into_iter().map(|(k, v)| (rename(&k), v)).collect();
        source.insert("fc.weight".into(), Tensor::zeros([1000, 2048], (tch::Kind::Float, tch::Device::Cpu)));
        source.insert("fc.bias".into(), Tensor::zeros([1000], (tch::Kind::Float, tch::Device::Cpu)));
        source.insert("layer1.0.bn1.num_batches_tracked".into(), Tensor::from_slice(&[0i64]));
        let mapped = import(&source).unwrap();
        assert_eq!(mapped.layout, "torchvision-resnet50");
        assert_eq!(mapped.network, NetworkConfig::ResnetLstm(ResnetLstmConfig::resnet50()));
        let named = fill_network(&mapped.network, mapped.tensors, &mapped.left_out).unwrap();
        assert_eq!(named.len(), vs.variables().len());
        // Not ImageNet's classifier: refused rather than guessed.
        source.insert("fc.weight".into(), Tensor::zeros([2, 2048], (tch::Kind::Float, tch::Device::Cpu)));
        assert!(import(&source).is_err());
    }
}
