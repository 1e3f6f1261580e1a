//! Face classifiers on libtorch: one file per architecture, a weights format that carries its
//! own preprocessing, and the importer for public checkpoints.
//!
//! Every frame model maps a batch of RGB face crops to one logit per crop for "fake"; the models
//! stage turns logits into P(fake). Which way the network's own output points, and how its input
//! is normalised, is stored with the weights (`weights::Header`), never assumed.
//!
//! The ViT classifier (`vit`) also exposes its attention and encoding, which the attention VAE
//! (`vae`) and the abnormality module (`abnormality`) turn into an out-of-distribution risk;
//! `ood` holds the MSP and ODIN baselines that risk is compared with.
pub mod abnormality;
pub mod efficientnet;
pub mod import;
pub mod meso;
pub mod ood;
pub mod vae;
pub mod vit;
pub mod weights;

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
    /// DeiT-tiny distilled (two classes), from scratch or timm's ImageNet weights.
    #[value(name = "deit-tiny")]
    #[serde(rename = "deit-tiny")]
    DeitTiny,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Meso4 => "meso4",
            Arch::Mesoinception4 => "mesoinception4",
            Arch::EfficientnetLite0 => "efficientnet-lite0",
            Arch::DeitTiny => "deit-tiny",
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

/// A network with its weights, ready to score face crops.
pub struct FaceModel {
    pub id: ModelId,
    pub header: Header,
    net: Box<dyn ModuleT>,
    device: Device,
    _vs: nn::VarStore,
}

/// Builds the network of `config` under `root`, with parameter names that match its weights.
pub fn build_network(root: &nn::Path, config: &NetworkConfig) -> Box<dyn ModuleT> {
    match config {
        NetworkConfig::Meso(cfg) => Box::new(meso::MesoNet::new(root, cfg)),
        NetworkConfig::EfficientNet(cfg) => Box::new(efficientnet::EfficientNetLite::new(root, cfg)),
        // As a frame model the ViT gives logit(softmax[.., 1]); `vit::Vit::forward_all_t` gives the rest.
        NetworkConfig::Vit(cfg) => Box::new(vit::Vit::new(root, cfg)),
    }
}

/// The network and preprocessing that `dfscan train --arch` starts from.
pub fn training_spec(arch: Arch) -> (NetworkConfig, Preprocess) {
    match arch {
        Arch::Meso4 => (NetworkConfig::Meso(meso::MesoConfig::meso4_torch()), Preprocess::meso_torch()),
        Arch::Mesoinception4 => (NetworkConfig::Meso(meso::MesoConfig::mesoinception4_torch()), Preprocess::meso_torch()),
        // The preprocessing its ImageNet backbone was trained with (init_from_pretrained).
        Arch::EfficientnetLite0 => {
            (NetworkConfig::EfficientNet(efficientnet::EfficientNetConfig::lite0()), Preprocess::efficientnet_lite())
        }
        Arch::DeitTiny => (NetworkConfig::Vit(vit::VitConfig::deit_tiny_distilled()), Preprocess::deit()),
    }
}

/// Where `dfscan import` puts an architecture's public pretrained weights (a training start,
/// not a scan model), when it has any: see scripts/setup.sh.
pub fn pretrained_weights(arch: Arch) -> Option<PathBuf> {
    match arch {
        // DeiT-tiny trains from scratch (issue 5). An import of timm's ImageNet weights can seed
        // it through `TrainConfig::pretrained`; `dfscan train` has no flag for that yet.
        Arch::Meso4 | Arch::Mesoinception4 | Arch::DeitTiny => None,
        Arch::EfficientnetLite0 => Some(models_dir().join("public/efficientnet-lite0-imagenet.safetensors")),
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

impl FaceModel {
    /// Loads a dfscan weights file (safetensors with a dfscan header). Strict: every parameter
    /// of the network must be in the file, with its shape, and nothing else may be.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        let header = Header::from_safetensors(&bytes)
            .with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
        let mut vs = nn::VarStore::new(device);
        let net = build_network(&vs.root(), &header.network);
        let stored = weights::tensor_names(&bytes)?;
        let expected: Vec<String> = vs.variables().into_keys().collect();
        let unexpected: Vec<&String> = stored.iter().filter(|k| !expected.contains(k)).collect();
        if !unexpected.is_empty() {
            bail!("{}: tensors the {:?} network does not have: {unexpected:?}", path.display(), header.network.arch_name());
        }
        let missing: Vec<&String> = expected.iter().filter(|k| !stored.contains(k)).collect();
        if !missing.is_empty() {
            bail!(
                "{}: lacks {missing:?} of the {:?} network (a backbone-only import such as ImageNet weights is a starting point for `dfscan train`, not a scan model)",
                path.display(),
                header.network.arch_name()
            );
        }
        vs.load(path).with_context(|| format!("loading {}", path.display()))?;
        let id = ModelId {
            name: header.network.arch_name().to_string(),
            weights: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            blake3: blake3::hash(&bytes).to_hex()[..16].to_string(),
        };
        Ok(Self { id, header, net, device, _vs: vs })
    }

    pub fn input_size(&self) -> i64 {
        self.header.preprocess.input_size
    }

    /// Logits of "fake" for `crops`, a `[N, S, S, 3]` u8 RGB batch at `input_size()`.
    pub fn fake_logits(&self, crops: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let input = to_network_input(crops, &self.header.preprocess, self.device);
        let logits = self.net.forward_t(&input, false).to_device(Device::Cpu).to_kind(Kind::Float);
        match self.header.preprocess.output {
            OutputClass::Fake => logits,
            // logit(P(fake)) = logit(1 - P(real)) = -logit(P(real)).
            OutputClass::Real => -logits,
        }
    }
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
