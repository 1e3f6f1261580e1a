//! Face classifiers on libtorch: one file per architecture, a weights format that carries its
//! own preprocessing, and the importer for public checkpoints.
//!
//! A frame model ([`FaceModel`]) maps a batch of RGB face crops to one logit per crop for
//! "fake"; a sequence model ([`SequenceModel`], `resnet_lstm`) maps a batch of face tracks,
//! T crops each, to one logit per track. The models stage turns logits into P(fake). Which
//! way the network's own output points, and how its input is normalised, is stored with the
//! weights (`weights::Header`), never assumed.
//!
//! The ViT classifier (`vit`) also exposes its attention and encoding, which the attention VAE
//! (`vae`) and the abnormality module (`abnormality`) turn into an out-of-distribution risk;
//! `ood` holds the MSP and ODIN baselines that risk is compared with.
pub mod abnormality;
pub mod backbone;
pub mod efficientnet;
pub mod facemesh;
pub mod import;
pub mod lrnet;
pub mod meso;
pub mod ood;
pub mod resnet_lstm;
pub mod set;
pub mod vae;
pub mod vit;
pub mod vit_ood;
pub mod weights;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

pub use weights::{Header, NetworkConfig, OutputClass, Preprocess};

/// The architectures dfscan can build (`--arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Meso4,
    Mesoinception4,
    /// EfficientNet-Lite0 with a one-logit head, from ImageNet weights.
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite2 (width 1.1, depth 1.2, 260x260) with a one-logit head, from ImageNet
    /// weights. Crops cached below 260 (`extract --size` defaults to 256) are upscaled.
    #[value(name = "efficientnet-lite2")]
    #[serde(rename = "efficientnet-lite2")]
    EfficientnetLite2,
    /// DeiT-tiny distilled (two classes), from scratch or timm's ImageNet weights.
    #[value(name = "deit-tiny")]
    #[serde(rename = "deit-tiny")]
    DeitTiny,
    /// A trunk (ResNet50 or MobileNetV2) per frame, then an LSTM over a face track's frames:
    /// seed 001's temporal model, a sequence model ([`SequenceModel`]).
    #[value(name = "resnet-lstm")]
    #[serde(rename = "resnet-lstm")]
    ResnetLstm,
    /// LRNet's two GRU streams over a face track's 68-point landmarks (`lrnet`); imported
    /// from the authors' public weights (`dfscan import --arch lrnet G1 G2`).
    Lrnet,
    /// MediaPipe FaceMesh, the face landmarker (`facemesh`); imported from the port's weights
    /// (`dfscan import --arch facemesh models/third_party/facemesh/facemesh.pth`).
    Facemesh,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Meso4 => "meso4",
            Arch::Mesoinception4 => "mesoinception4",
            Arch::EfficientnetLite0 => "efficientnet-lite0",
            Arch::EfficientnetLite2 => "efficientnet-lite2",
            Arch::DeitTiny => "deit-tiny",
            Arch::ResnetLstm => "resnet-lstm",
            Arch::Lrnet => "lrnet",
            Arch::Facemesh => "facemesh",
        }
    }
}

/// `--device auto|cpu|cuda`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => bail!("--device cuda: libtorch sees no CUDA device (build with --features cuda on a GPU machine)"),
        }
    }
}

/// What a JSON line says about the model that produced its scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelId {
    /// Architecture name, e.g. "mesoinception4".
    pub name: String,
    /// File name of the weights.
    pub weights: String,
    /// First 16 hex digits of the weights file's BLAKE3 hash: two scans agree on a model
    /// exactly when these agree.
    pub blake3: String,
}

/// A frame network with its weights, ready to score face crops.
pub struct FaceModel {
    pub id: ModelId,
    pub header: Header,
    net: FrameNet,
    device: Device,
    _vs: nn::VarStore,
}

/// What a loaded network can tell beyond its logits.
enum FrameNet {
    Plain(Box<dyn ModuleT>),
    /// A ViT: logits and where it looked.
    Vit(vit::Vit),
    /// A ViT with its attention VAE and abnormality module: also an out-of-distribution risk.
    VitOod(Box<vit_ood::VitOod>),
}

/// What a frame model says about a batch of crops.
pub struct CropScores {
    /// Logits of "fake", one per crop.
    pub logits: Vec<f32>,
    /// Out-of-distribution risk per crop in (0, 1), from a model with an abnormality module.
    pub ood_risk: Option<Vec<f32>>,
    /// `[N, S, S]` CPU attention maps scaled to a maximum of 1, from a ViT (for `--explain`).
    pub attention: Option<Tensor>,
}

/// What `dfscan eval --ood` compares on a batch of crops: the abnormality module's risk and
/// the two baselines' on the same ViT, each higher = more likely out of distribution.
pub struct OodRisks {
    /// Logits of "fake", one per crop (the classifier's own verdict).
    pub fake_logits: Vec<f32>,
    /// The abnormality module's risk.
    pub abnormality: Vec<f32>,
    /// 1 - max softmax of the class logits.
    pub msp: Vec<f32>,
    /// 1 - max softmax at ODIN's temperature of the perturbed input.
    pub odin: Vec<f32>,
}

/// Builds the network of `config` under `root`, with parameter names that match its weights.
pub fn build_network(root: &nn::Path, config: &NetworkConfig) -> Box<dyn ModuleT> {
    match config {
        NetworkConfig::Meso(cfg) => Box::new(meso::MesoNet::new(root, cfg)),
        NetworkConfig::EfficientNet(cfg) => Box::new(efficientnet::EfficientNetLite::new(root, cfg)),
        // As a frame model the ViT gives logit(softmax[.., 1]); `vit::Vit::forward_all_t` gives the rest.
        NetworkConfig::Vit(cfg) => Box::new(vit::Vit::new(root, cfg)),
        NetworkConfig::ResnetLstm(cfg) => Box::new(resnet_lstm::ResnetLstm::new(root, cfg)),
        // Blocks of landmarks in, block-score logits out; scored per track by `lrnet::LrnetModel`.
        NetworkConfig::Lrnet(cfg) => Box::new(lrnet::Lrnet::new(root, cfg)),
        // Points and face flag, `[N, 1405]`; used through `facemesh::FaceMeshModel`.
        NetworkConfig::FaceMesh(cfg) => Box::new(facemesh::FaceMesh::new(root, cfg)),
    }
}

/// The network and preprocessing that `dfscan train --arch` starts from.
pub fn training_spec(arch: Arch) -> (NetworkConfig, Preprocess) {
    match arch {
        Arch::Meso4 => (NetworkConfig::Meso(meso::MesoConfig::meso4_torch()), Preprocess::meso_torch()),
        Arch::Mesoinception4 => (NetworkConfig::Meso(meso::MesoConfig::mesoinception4_torch()), Preprocess::meso_torch()),
        // The preprocessing its ImageNet backbone was trained with (init_from_pretrained).
        Arch::EfficientnetLite0 => efficientnet_spec(efficientnet::EfficientNetConfig::lite0()),
        Arch::EfficientnetLite2 => efficientnet_spec(efficientnet::EfficientNetConfig::lite2()),
        Arch::DeitTiny => (NetworkConfig::Vit(vit::VitConfig::deit_tiny_distilled()), Preprocess::deit()),
        // MobileNetV2, the backbone whose ImageNet weights the set-up can fetch.
        Arch::ResnetLstm => (NetworkConfig::ResnetLstm(resnet_lstm::ResnetLstmConfig::mobilenetv2()), Preprocess::imagenet()),
        Arch::Lrnet => (NetworkConfig::Lrnet(lrnet::LrnetConfig::source()), Preprocess::lrnet()),
        Arch::Facemesh => (NetworkConfig::FaceMesh(facemesh::FaceMeshConfig::mediapipe()), Preprocess::facemesh()),
    }
}

fn efficientnet_spec(cfg: efficientnet::EfficientNetConfig) -> (NetworkConfig, Preprocess) {
    let preprocess = Preprocess::efficientnet_lite(&cfg);
    (NetworkConfig::EfficientNet(cfg), preprocess)
}

/// The public pretrained start of `arch`, if it has one: (the file scripts/setup.sh fetches,
/// where `dfscan import` writes its mapping onto our network). A training start, not a scan
/// model. DeiT-tiny trains from scratch (an import of timm's weights can be given to
/// `TrainConfig::pretrained`); ResNet-LSTM's trunk is MobileNetV2's ImageNet import.
pub fn pretrained_weights(arch: Arch) -> Option<(PathBuf, PathBuf)> {
    match arch {
        Arch::Meso4 | Arch::Mesoinception4 | Arch::DeitTiny | Arch::Lrnet | Arch::Facemesh => None,
        Arch::EfficientnetLite0 => Some((
            models_dir().join("public/efficientnet-lite0-57934424.safetensors"),
            models_dir().join("public/efficientnet-lite0-imagenet.safetensors"),
        )),
        Arch::EfficientnetLite2 => Some((
            models_dir().join("public/efficientnet-lite2-9656183e.safetensors"),
            models_dir().join("public/efficientnet-lite2-imagenet.safetensors"),
        )),
        Arch::ResnetLstm => imagenet_backbone(backbone::Backbone::Mobilenetv2),
    }
}

/// For a ResNet-LSTM trunk: the set-up's ImageNet checkpoint (torchvision names, as
/// safetensors) and where `dfscan import --arch resnet-lstm` puts it, a training start with
/// the trunk only. None for ResNet50, whose ImageNet weights cannot be fetched here.
pub fn imagenet_backbone(backbone: backbone::Backbone) -> Option<(PathBuf, PathBuf)> {
    match backbone {
        backbone::Backbone::Resnet50 => None,
        backbone::Backbone::Mobilenetv2 => Some((
            models_dir().join("public/mobilenet_v2-b0353104.safetensors"),
            models_dir().join("public/resnet-lstm-mobilenetv2-imagenet.safetensors"),
        )),
    }
}

/// Copies into `vs` every tensor of the safetensors file `path` (e.g. a backbone-only import)
/// and returns, sorted, the names of the variables it did not have: those keep the
/// initialisation they were built with (for an ImageNet import: the new head, `_fc.*`).
/// Training only; scan loads strictly ([`FaceModel::load`]). A tensor that `vs` lacks, or of
/// another shape, is an error: the file belongs to another network.
pub fn init_from_pretrained(vs: &mut nn::VarStore, path: &Path) -> Result<Vec<String>> {
    let stored: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading pretrained weights {}", path.display()))?
        .into_iter()
        .collect();
    let mut vars = vs.variables();
    let mut unexpected: Vec<&String> = stored.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        bail!("{}: tensors the network does not have: {unexpected:?}", path.display());
    }
    let mut missing = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            match stored.get(name) {
                None => missing.push(name.clone()),
                Some(src) if src.size() != var.size() => {
                    bail!("{}: shape mismatch for {name}: file {:?}, network {:?}", path.display(), src.size(), var.size())
                }
                Some(src) => var.f_copy_(&src.to_kind(var.kind()))?,
            }
        }
        Ok(())
    })?;
    missing.sort();
    Ok(missing)
}

/// A weights file loaded strictly into its network.
struct Loaded {
    id: ModelId,
    header: Header,
    net: FrameNet,
    vs: nn::VarStore,
}

/// Loads a dfscan weights file (safetensors with a dfscan header). Strict: every parameter of
/// the network must be in the file, with its shape, and nothing else may be. `sequence` says
/// which kind of model the caller scores with; a file of the other kind is refused.
fn load_strict(path: &Path, device: Device, sequence: bool) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
    let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
    let arch = header.network.arch_name();
    match header.network {
        NetworkConfig::Lrnet(_) => bail!("{}: lrnet reads landmark tracks, not crops: load it with models::lrnet::LrnetModel", path.display()),
        NetworkConfig::FaceMesh(_) => bail!("{}: facemesh is a landmarker, not a classifier: load it with models::facemesh::FaceMeshModel", path.display()),
        _ => {}
    }
    match (header.network.is_sequence(), sequence) {
        (true, false) => bail!("{}: {arch} is a sequence model: it scores face tracks (SequenceModel), not single crops", path.display()),
        (false, true) => bail!("{}: {arch} scores single crops (FaceModel), not face tracks", path.display()),
        _ => {}
    }
    let mut vs = nn::VarStore::new(device);
    let net = match (&header.network, &header.ood) {
        (NetworkConfig::Vit(cfg), Some(heads)) => FrameNet::VitOod(Box::new(vit_ood::VitOod::new(&vs.root(), cfg, heads))),
        (_, Some(_)) => bail!("{}: out-of-distribution heads belong to a ViT, not to {arch}", path.display()),
        (NetworkConfig::Vit(cfg), None) => FrameNet::Vit(vit::Vit::new(&vs.root(), cfg)),
        (network, None) => FrameNet::Plain(build_network(&vs.root(), network)),
    };
    let stored = weights::tensor_names(&bytes)?;
    let expected: Vec<String> = vs.variables().into_keys().collect();
    let unexpected: Vec<&String> = stored.iter().filter(|k| !expected.contains(k)).collect();
    if !unexpected.is_empty() {
        bail!("{}: tensors the {arch:?} network does not have: {unexpected:?}", path.display());
    }
    let missing: Vec<&String> = expected.iter().filter(|k| !stored.contains(k)).collect();
    if !missing.is_empty() {
        bail!(
            "{}: lacks {missing:?} of the {arch:?} network (a backbone-only import such as ImageNet weights is a starting point for `dfscan train`, not a scan model)",
            path.display()
        );
    }
    vs.load(path).with_context(|| format!("loading {}", path.display()))?;
    // Loading takes the file's precision; f16 storage (weights::Storage) computes in f32.
    vs.float();
    let id = ModelId {
        name: arch.to_string(),
        weights: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        blake3: blake3::hash(&bytes).to_hex()[..16].to_string(),
    };
    Ok(Loaded { id, header, net, vs })
}

impl FaceModel {
    /// Loads a dfscan weights file of a frame model, strictly (see [`SequenceModel`] for
    /// sequence models).
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let Loaded { id, header, net, vs } = load_strict(path, device, false)?;
        Ok(Self { id, header, net, device, _vs: vs })
    }

    pub fn input_size(&self) -> i64 {
        self.header.preprocess.input_size
    }

    /// Whether [`FaceModel::score`] gives out-of-distribution risks.
    pub fn has_ood(&self) -> bool {
        matches!(self.net, FrameNet::VitOod(_))
    }

    /// Whether [`FaceModel::score`] gives attention maps (a ViT).
    pub fn has_attention(&self) -> bool {
        matches!(self.net, FrameNet::Vit(_) | FrameNet::VitOod(_))
    }

    /// Logits of "fake" for `crops`, a `[N, S, S, 3]` u8 RGB batch at `input_size()`.
    pub fn fake_logits(&self, crops: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let input = to_network_input(crops, &self.header.preprocess, self.device);
        let output = match &self.net {
            FrameNet::Plain(net) => net.forward_t(&input, false),
            FrameNet::Vit(vit) => vit.forward_t(&input, false),
            FrameNet::VitOod(model) => model.vit.forward_t(&input, false),
        };
        fake_logits_of(output, self.header.preprocess.output)
    }

    /// Everything the model says about `crops` (as [`FaceModel::fake_logits`] takes them).
    pub fn score(&self, crops: &Tensor) -> Result<CropScores> {
        let _guard = tch::no_grad_guard();
        let input = to_network_input(crops, &self.header.preprocess, self.device);
        let to_cpu = |t: Tensor| t.to_device(Device::Cpu).to_kind(Kind::Float);
        let (output, ood_risk, attention) = match &self.net {
            FrameNet::Plain(net) => (net.forward_t(&input, false), None, None),
            FrameNet::Vit(vit) => {
                let out = vit.forward_all_t(&input, false);
                (vit::fake_logit(&out.logits), None, Some(vit_ood::normalised_attention(&out.attention)))
            }
            FrameNet::VitOod(model) => {
                let out = model.forward(&input);
                (out.classified.fake_logit, Some(Vec::<f32>::try_from(to_cpu(out.risk))?), Some(out.classified.attention))
            }
        };
        let logits = Vec::<f32>::try_from(fake_logits_of(output, self.header.preprocess.output))?;
        Ok(CropScores { logits, ood_risk, attention: attention.map(|a| to_cpu(a).squeeze_dim(1)) })
    }

    /// The three out-of-distribution risks of `crops` (as [`FaceModel::fake_logits`] takes
    /// them); only a ViT with OOD heads has all three. ODIN takes input gradients through the
    /// ViT, so this costs about three forward passes more than [`FaceModel::score`].
    pub fn ood_risks(&self, crops: &Tensor, odin: &ood::Odin) -> Result<OodRisks> {
        let FrameNet::VitOod(model) = &self.net else {
            bail!("{} has no out-of-distribution heads (add them with `dfscan train-ood`)", self.id.weights)
        };
        let input = to_network_input(crops, &self.header.preprocess, self.device);
        let out = tch::no_grad(|| model.forward(&input));
        let odin_risk = odin.risk(|x| model.vit.forward_all_t(x, false).logits, &input, Some(&self.header.preprocess.std));
        let to_vec = |t: Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float));
        Ok(OodRisks {
            fake_logits: to_vec(out.classified.fake_logit)?,
            abnormality: to_vec(out.risk)?,
            msp: to_vec(ood::msp_risk(&out.classified.logits))?,
            odin: to_vec(odin_risk)?,
        })
    }
}

/// A sequence network with its weights, ready to score face tracks: T crops of one face, in
/// the order of their frames, give one logit of "fake".
///
/// Tracks and T: the network was trained on sequences of `frames()` = T crops. A track with
/// fewer crops is padded by repeating its last crop ([`pad_sequence`]): the LSTM's last step,
/// which the head reads, then sees the face as it was last seen, and no frame is invented or
/// dropped. A longer track is cut into windows of T ([`sequence_windows`]), each scored as
/// one sequence; how window scores make a track score is the aggregate stage's choice.
pub struct SequenceModel {
    pub id: ModelId,
    pub header: Header,
    net: Box<dyn ModuleT>,
    device: Device,
    frames: i64,
    _vs: nn::VarStore,
}

impl SequenceModel {
    /// Loads a dfscan weights file of a sequence model, as strictly as [`FaceModel::load`].
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let Loaded { id, header, net, vs } = load_strict(path, device, true)?;
        let FrameNet::Plain(net) = net else { bail!("{}: not a sequence network", path.display()) };
        let frames = match &header.network {
            NetworkConfig::ResnetLstm(cfg) => cfg.frames,
            other => bail!("{}: {} is no sequence model", path.display(), other.arch_name()),
        };
        Ok(Self { id, header, net, device, frames, _vs: vs })
    }

    pub fn input_size(&self) -> i64 {
        self.header.preprocess.input_size
    }

    /// T: crops per sequence.
    pub fn frames(&self) -> i64 {
        self.frames
    }

    /// Logits of "fake" for `sequences`, a `[N, T, S, S, 3]` u8 RGB batch at `input_size()`:
    /// `[N]`, one per sequence. Pad short tracks first ([`pad_sequence`]).
    pub fn fake_logits(&self, sequences: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let input = to_sequence_input(sequences, &self.header.preprocess, self.device);
        fake_logits_of(self.net.forward_t(&input, false), self.header.preprocess.output)
    }
}

/// Either kind of model, for what takes both (a scan's model set, `eval`, `bench`): the weights
/// file's header says which.
pub enum AnyModel {
    Frame(FaceModel),
    Sequence(SequenceModel),
}

impl AnyModel {
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
        Ok(if header.network.is_sequence() {
            AnyModel::Sequence(SequenceModel::load(path, device)?)
        } else {
            AnyModel::Frame(FaceModel::load(path, device)?)
        })
    }

    pub fn id(&self) -> &ModelId {
        match self {
            AnyModel::Frame(m) => &m.id,
            AnyModel::Sequence(m) => &m.id,
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            AnyModel::Frame(m) => &m.header,
            AnyModel::Sequence(m) => &m.header,
        }
    }

    pub fn input_size(&self) -> i64 {
        self.header().preprocess.input_size
    }

    /// T of a sequence model; None for a frame model.
    pub fn sequence_frames(&self) -> Option<i64> {
        match self {
            AnyModel::Frame(_) => None,
            AnyModel::Sequence(m) => Some(m.frames()),
        }
    }

    /// Logits of "fake" for an [`example_batch`] made with [`AnyModel::sequence_frames`]: one per
    /// crop, or one per sequence.
    pub fn fake_logits(&self, batch: &Tensor) -> Tensor {
        match self {
            AnyModel::Frame(m) => m.fake_logits(batch),
            AnyModel::Sequence(m) => m.fake_logits(batch),
        }
    }
}

/// A model batch of examples, each the crops (`size` pixels a side) of one face in frame
/// order: for a frame model (`frames` None) one crop each, `[N, S, S, 3]` as [`crop_batch`];
/// for a sequence model of T = `frames`, `[N, T, S, S, 3]`, short examples padded by
/// [`pad_sequence`].
pub fn example_batch<'a, E: IntoIterator<Item = &'a Vec<u8>>>(examples: impl IntoIterator<Item = E>, size: i64, frames: Option<i64>) -> Tensor {
    match frames {
        None => crop_batch(examples.into_iter().flatten(), size),
        Some(t) => {
            let sequences: Vec<Tensor> = examples.into_iter().map(|crops| pad_sequence(&crop_batch(crops, size), t)).collect();
            Tensor::stack(&sequences, 0)
        }
    }
}

/// The network input of an [`example_batch`]: [`to_network_input`] for crops,
/// [`to_sequence_input`] for sequences.
pub fn to_example_input(batch: &Tensor, pre: &Preprocess, device: Device, frames: Option<i64>) -> Tensor {
    match frames {
        None => to_network_input(batch, pre, device),
        Some(_) => to_sequence_input(batch, pre, device),
    }
}

/// `frames`, the `[t, S, S, 3]` crops of a track with 1 <= t <= `length`, padded to `length`
/// by repeating the last crop (see [`SequenceModel`]).
pub fn pad_sequence(frames: &Tensor, length: i64) -> Tensor {
    let t = frames.size()[0];
    assert!((1..=length).contains(&t), "pad_sequence: {t} frames for a sequence of {length}");
    if t == length {
        return frames.shallow_clone();
    }
    let mut shape = frames.size();
    shape[0] = length - t;
    let last = frames.narrow(0, t - 1, 1).expand(&shape, false);
    Tensor::cat(&[frames.shallow_clone(), last], 0)
}

/// The windows a track of `frames` crops is scored in, for sequences of `length`: one window
/// (to pad) when the track is no longer than `length`; else consecutive windows of `length`,
/// the last one ending at the track's end, overlapping its predecessor rather than padded.
pub fn sequence_windows(frames: usize, length: usize) -> Vec<Range<usize>> {
    assert!(length > 0, "sequence_windows: length 0");
    if frames <= length {
        return if frames == 0 { Vec::new() } else { vec![0..frames] };
    }
    let mut windows: Vec<Range<usize>> = (0..frames / length).map(|i| i * length..(i + 1) * length).collect();
    if !frames.is_multiple_of(length) {
        windows.push(frames - length..frames);
    }
    windows
}

/// [`to_network_input`] for `[N, T, S, S, 3]` u8 sequences: `[N, T, 3, S, S]`.
pub fn to_sequence_input(sequences: &Tensor, pre: &Preprocess, device: Device) -> Tensor {
    let size = sequences.size();
    assert_eq!(size.len(), 5, "sequences are [N, T, S, S, 3], got {size:?}");
    to_network_input(&sequences.flatten(0, 1), pre, device).view([size[0], size[1], 3, size[2], size[3]])
}

/// The network's output as CPU logits of "fake", whichever class the network itself scores:
/// logit(P(fake)) = logit(1 - P(real)) = -logit(P(real)).
fn fake_logits_of(output: Tensor, class: OutputClass) -> Tensor {
    let logits = output.to_device(Device::Cpu).to_kind(Kind::Float);
    match class {
        OutputClass::Fake => logits,
        OutputClass::Real => -logits,
    }
}

/// Stacks square RGB crops, `size` pixels a side, into the `[N, size, size, 3]` u8 batch that
/// [`FaceModel::fake_logits`] and [`to_network_input`] take.
pub fn crop_batch<'a>(crops: impl IntoIterator<Item = &'a Vec<u8>>, size: i64) -> Tensor {
    let bytes: Vec<u8> = crops.into_iter().flatten().copied().collect();
    let n = bytes.len() as i64 / (size * size * 3);
    Tensor::from_slice(&bytes).view([n, size, size, 3])
}

/// The one place where u8 crops become network input, shared by scan and training so the
/// two can never disagree on scaling, channel order or normalisation.
pub fn to_network_input(crops: &Tensor, pre: &Preprocess, device: Device) -> Tensor {
    let x = crops.to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    let mean = Tensor::from_slice(&pre.mean).to_device(device).view([1, 3, 1, 1]).to_kind(Kind::Float);
    let std = Tensor::from_slice(&pre.std).to_device(device).view([1, 3, 1, 1]).to_kind(Kind::Float);
    (x - mean) / std
}

/// Where dfscan looks for models and detector files: `$DFSCAN_MODELS`, else the models/
/// folder of the source tree it was built from.
pub fn models_dir() -> PathBuf {
    std::env::var_os("DFSCAN_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// The default scan model: `models/default.safetensors`, made by `dfscan train`.
pub fn default_weights() -> PathBuf {
    models_dir().join("default.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_storage_loads_back_as_f32_with_the_same_scores() {
        tch::manual_seed(3);
        let dir = tempfile::tempdir().unwrap();
        let network = NetworkConfig::Meso(meso::MesoConfig::mesoinception4_torch());
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = build_network(&vs.root(), &network);
        let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let header = Header { format: weights::FORMAT_VERSION, network, preprocess: Preprocess::meso_torch(), provenance: "test".into(), ood: None };
        let (f32_path, f16_path) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        weights::save(&f32_path, &tensors, &header).unwrap();
        weights::save_as(&f16_path, &tensors, &header, weights::Storage::F16).unwrap();
        let half = std::fs::metadata(&f16_path).unwrap().len() as f64 / std::fs::metadata(&f32_path).unwrap().len() as f64;
        assert!(half < 0.6, "f16 file is {half} of the f32 one");
        // A value past f16's range keeps its tensor in f32 instead of turning into inf.
        let huge = Tensor::from_slice(&[1.0e6f32, -3.0]);
        weights::save_as(&dir.path().join("c.safetensors"), &[("big".into(), huge.shallow_clone())], &header, weights::Storage::F16).unwrap();
        let read = Tensor::read_safetensors(dir.path().join("c.safetensors")).unwrap();
        assert_eq!(read[0].1.kind(), Kind::Float);
        assert!(read[0].1.equal(&huge));
        let crops = Tensor::randint(256, [2, 256, 256, 3], (Kind::Uint8, Device::Cpu));
        let a = FaceModel::load(&f32_path, Device::Cpu).unwrap().fake_logits(&crops);
        let b = FaceModel::load(&f16_path, Device::Cpu).unwrap();
        assert!(b._vs.variables().values().all(|v| v.kind() == Kind::Float));
        let b = b.fake_logits(&crops);
        assert!((a - b).abs().max().double_value(&[]) < 1e-2);
    }

    #[test]
    fn short_tracks_repeat_their_last_crop() {
        let frames = Tensor::arange(2 * 2 * 2 * 3, (Kind::Uint8, Device::Cpu)).view([2, 2, 2, 3]);
        let padded = pad_sequence(&frames, 5);
        assert_eq!(padded.size(), [5, 2, 2, 3]);
        assert!(padded.narrow(0, 0, 2).equal(&frames));
        for i in 2..5 {
            assert!(padded.get(i).equal(&frames.get(1)), "frame {i}");
        }
        assert!(pad_sequence(&frames, 2).equal(&frames));
    }

    #[test]
    fn long_tracks_are_cut_into_windows() {
        assert_eq!(sequence_windows(0, 4), Vec::<Range<usize>>::new());
        assert_eq!(sequence_windows(3, 4), [0..3]);
        assert_eq!(sequence_windows(8, 4), [0..4, 4..8]);
        assert_eq!(sequence_windows(10, 4), [0..4, 4..8, 6..10]);
    }

    #[test]
    fn sequence_input_is_frame_input_per_frame() {
        let seqs = Tensor::randint(256, [2, 3, 8, 8, 3], (Kind::Uint8, Device::Cpu));
        let pre = Preprocess::imagenet();
        let x = to_sequence_input(&seqs, &pre, Device::Cpu);
        assert_eq!(x.size(), [2, 3, 3, 8, 8]);
        assert!(x.get(1).get(2).equal(&to_network_input(&seqs.get(1).narrow(0, 2, 1), &pre, Device::Cpu).get(0)));
    }
}
