//! dfscan's weights file: safetensors whose metadata holds a JSON [`Header`] under the key
//! "dfscan", so a file alone says how to build its network and how to feed it.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::efficientnet::{self, EfficientNetConfig};
use super::meso::MesoConfig;
use super::vit::{self, VitConfig};
use super::resnet_lstm::{self, ResnetLstmConfig};

const METADATA_KEY: &str = "dfscan";
pub const FORMAT_VERSION: u32 = 1;

/// What the network's output is (`preprocess::fake_logits_of` turns each into logits of "fake").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputClass {
    /// The logit is of P(fake) (label 1 = fake), as in the PyTorch port and dfscan's training.
    Fake,
    /// The logit is of P(real), as in the original Keras MesoNet (class 0 = deepfake).
    Real,
    /// P(fake) itself, in [0, 1] (a TorchScript module that ends in a sigmoid).
    Probability,
    /// Two logits per input, softmax over them gives the classes; `fake` is the index (0 or 1)
    /// of "fake" (a TorchScript module with a two-class head).
    TwoClass { fake: i64 },
}

/// The channel order a network reads its pixels in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Every built-in model.
    #[default]
    Rgb,
    /// OpenCV-trained networks (a TorchScript contract can say so).
    Bgr,
}

impl ChannelOrder {
    fn is_rgb(&self) -> bool {
        *self == ChannelOrder::Rgb
    }
}

fn unit() -> f64 {
    1.0
}

fn is_unit(x: &f64) -> bool {
    *x == 1.0
}

/// How pixels become network input and what the output means (`preprocess::to_network_input`):
/// u8 pixels in `channels` order, scaled so that 255 becomes `pixel_max`, then per channel
/// `(x - mean) / std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square input.
    pub input_size: i64,
    /// Per-channel mean and std (in `channels` order), applied after scaling pixels to
    /// [0, `pixel_max`].
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub output: OutputClass,
    /// RGB for every built-in model; a TorchScript contract may say BGR.
    #[serde(default, skip_serializing_if = "ChannelOrder::is_rgb")]
    pub channels: ChannelOrder,
    /// What a full-scale pixel (255) becomes before mean/std: 1 for every built-in model
    /// (pixels in [0, 1]); a TorchScript contract may say 255 (raw pixel values).
    #[serde(default = "unit", skip_serializing_if = "is_unit")]
    pub pixel_max: f64,
    /// How faces were cut for training (the crop contract); the scan cuts this model's faces
    /// the same way unless `--margin` overrides. None in files made before it was recorded
    /// and in imports: the scan's flags decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<crate::faces::crop::CropSpec>,
}

impl Preprocess {
    /// RGB pixels in [0, 1], normalised by `mean` and `std`: the input of every built-in model.
    pub fn rgb(input_size: i64, mean: [f64; 3], std: [f64; 3], output: OutputClass) -> Self {
        Self { input_size, mean, std, output, channels: ChannelOrder::Rgb, pixel_max: 1.0, crop: None }
    }

    /// The PyTorch MesoNet port: 256x256, mean 0.5, std 0.5, P(fake).
    pub fn meso_torch() -> Self {
        Self::rgb(256, [0.5; 3], [0.5; 3], OutputClass::Fake)
    }
    /// The Keras MesoNet: 256x256, pixels in [0, 1], P(real).
    pub fn meso_keras() -> Self {
        Self::rgb(256, [0.0; 3], [1.0; 3], OutputClass::Real)
    }
    /// EfficientNet-Lite at the ImageNet resolution of `cfg` (Lite0 224, Lite2 260) and the
    /// normalisation all Lite models share (see `efficientnet`), P(fake).
    pub fn efficientnet_lite(cfg: &EfficientNetConfig) -> Self {
        Self::rgb(cfg.resolution, efficientnet::MEAN_RGB, efficientnet::STD_RGB, OutputClass::Fake)
    }
    /// DeiT at 224 with timm's ImageNet mean/std (see `vit`), P(fake).
    pub fn deit() -> Self {
        Self::rgb(vit::INPUT_SIZE, vit::IMAGENET_MEAN, vit::IMAGENET_STD, OutputClass::Fake)
    }

    /// torchvision's ImageNet input, as the ResNet-LSTM source trains with: 224x224, ImageNet
    /// mean/std, P(fake).
    pub fn imagenet() -> Self {
        Self::rgb(resnet_lstm::INPUT_SIZE, resnet_lstm::IMAGENET_MEAN, resnet_lstm::IMAGENET_STD, OutputClass::Fake)
    }

    /// The spectrum detector reads crops at `input_size` (the side it was fitted at: the
    /// spectrum depends on resolution; 256 is `dfscan extract`'s default side); mean and std
    /// are unused. P(fake).
    pub fn spectrum() -> Self {
        Self::rgb(256, [0.0; 3], [1.0; 3], OutputClass::Fake)
    }

    /// MediaPipe FaceMesh: 192x192, pixels mapped to [-1, 1]; its output is points, not a class.
    pub fn facemesh() -> Self {
        // x / 127.5 - 1, as (x / 255 - 0.5) / 0.5; the output is points, not a class.
        Self::rgb(super::facemesh::INPUT_SIZE, [0.5; 3], [0.5; 3], OutputClass::Fake)
    }

    /// LRNet reads landmarks, not pixels: `input_size` is the side of the calibrated face box
    /// the landmarks are measured in (400, mapped to [-1, 1]); mean and std are unused. P(fake).
    pub fn lrnet() -> Self {
        Self::rgb(super::lrnet::FACE_SIDE, [0.0; 3], [1.0; 3], OutputClass::Fake)
    }
}

/// Architecture-specific hyper-parameters, tagged by architecture family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum NetworkConfig {
    Meso(MesoConfig),
    EfficientNet(EfficientNetConfig),
    Vit(VitConfig),
    /// A sequence model: scored by `models::SequenceModel` on face tracks, not by `FaceModel`.
    #[serde(rename = "resnet-lstm")]
    ResnetLstm(ResnetLstmConfig),
    /// A landmark-track model: scored by `models::lrnet::LrnetModel`, on 68-point landmarks.
    Lrnet(super::lrnet::LrnetConfig),
    /// The face landmarker: used by `models::facemesh::FaceMeshModel`, not scored.
    #[serde(rename = "facemesh")]
    FaceMesh(super::facemesh::FaceMeshConfig),
    /// A TorchScript module carried in the file, with its own contract: no architecture
    /// dfscan builds (`models::torchscript`).
    #[serde(rename = "torchscript")]
    TorchScript(super::torchscript::ScriptConfig),
    /// The spectrum detector (`models::spectrum`): a classifier on crops' 1-D spectra.
    Spectrum(super::spectrum::SpectrumConfig),
    /// Seed 000's U-Net reconstruction classifier (`models::unet`).
    Unet(super::unet::UnetConfig),
}

impl NetworkConfig {
    pub fn arch_name(&self) -> &'static str {
        match self {
            NetworkConfig::Meso(cfg) => match cfg.arch {
                super::meso::MesoArch::Meso4 => "meso4",
                super::meso::MesoArch::MesoInception4 => "mesoinception4",
            },
            NetworkConfig::EfficientNet(cfg) if cfg.same_network(&EfficientNetConfig::lite0()) => "efficientnet-lite0",
            NetworkConfig::EfficientNet(cfg) if cfg.same_network(&EfficientNetConfig::lite2()) => "efficientnet-lite2",
            NetworkConfig::EfficientNet(_) => "efficientnet-lite",
            // Training-only settings (stochastic depth) do not change the architecture.
            NetworkConfig::Vit(cfg) if (VitConfig { drop_path: 0.0, ..cfg.clone() }) == VitConfig::deit_tiny_distilled() => "deit-tiny",
            NetworkConfig::Vit(_) => "vit",
            NetworkConfig::ResnetLstm(_) => "resnet-lstm",
            NetworkConfig::Lrnet(_) => "lrnet",
            NetworkConfig::FaceMesh(_) => "facemesh",
            NetworkConfig::TorchScript(_) => "torchscript",
            NetworkConfig::Spectrum(_) => "spectrum",
            NetworkConfig::Unet(cfg) if cfg.same_network(&super::unet::UnetConfig::seed()) => "unet-seed",
            NetworkConfig::Unet(_) => "unet",
        }
    }

    /// Whether the network reads sequences of frames (`[N, T, 3, S, S]`) rather than single
    /// crops.
    pub fn is_sequence(&self) -> bool {
        match self {
            NetworkConfig::ResnetLstm(_) => true,
            NetworkConfig::TorchScript(cfg) => cfg.frames.is_some(),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub network: NetworkConfig,
    pub preprocess: Preprocess,
    /// Where the weights came from: the import source and its hash, or the training command.
    pub provenance: String,
    /// Out-of-distribution heads, when the file holds them: a ViT's attention VAE and
    /// abnormality module (`models::vit_ood`), or a U-Net's abnormality module
    /// (`models::unet_ood`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<super::vit_ood::OodHeads>,
}

impl Header {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).context("not a safetensors file")?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .context("no \"dfscan\" header in its metadata (convert it with `dfscan import`)")?;
        let header: Header = serde_json::from_str(json).context("malformed dfscan header")?;
        if header.format != FORMAT_VERSION {
            bail!("weights format {} (this dfscan reads {FORMAT_VERSION})", header.format);
        }
        Ok(header)
    }
}

/// Names of the tensors in a safetensors buffer.
pub fn tensor_names(bytes: &[u8]) -> Result<Vec<String>> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)?;
    Ok(metadata.tensors().into_keys().collect())
}

/// How tensors are stored: f32, or f16 for shipped files that every clone downloads (loading
/// turns them back into f32). Under f16, a tensor with values beyond f16's range (65504) stays
/// f32: BatchNorm running statistics can hold such values, and would become inf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    F32,
    F16,
}

/// The largest finite f16.
const F16_MAX: f64 = 65504.0;

/// Writes `tensors` as f32 safetensors with `header` in the metadata.
pub fn save(path: &Path, tensors: &[(String, Tensor)], header: &Header) -> Result<()> {
    save_as(path, tensors, header, Storage::F32)
}

/// Writes `tensors` in `storage` precision with `header` in the metadata.
pub fn save_as(path: &Path, tensors: &[(String, Tensor)], header: &Header, storage: Storage) -> Result<()> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let t = tensor.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().detach();
        let half = storage == Storage::F16 && (t.numel() == 0 || t.abs().max().double_value(&[]) <= F16_MAX);
        let (kind, dtype) = if half { (Kind::Half, safetensors::Dtype::F16) } else { (Kind::Float, safetensors::Dtype::F32) };
        let t = t.to_kind(kind);
        let mut bytes = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, t.numel()).with_context(|| format!("reading tensor {name}"))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), shape, dtype, bytes));
    }
    write(path, &buffers, METADATA_KEY, header)
}

/// Writes `bytes` as the one u8 tensor `name` (shape `[len]`) with `header` in the metadata:
/// how a TorchScript module travels inside a weights file (`models::torchscript`).
pub fn save_bytes(path: &Path, name: &str, bytes: &[u8], header: &Header) -> Result<()> {
    write(path, &[(name.to_string(), vec![bytes.len()], safetensors::Dtype::U8, bytes.to_vec())], METADATA_KEY, header)
}

/// The stored bytes of the tensor `name` of a safetensors buffer (any dtype, little-endian).
pub fn tensor_bytes<'a>(file: &'a [u8], name: &str) -> Result<&'a [u8]> {
    let tensors = safetensors::SafeTensors::deserialize(file).context("not a safetensors file")?;
    let view = tensors.tensor(name).with_context(|| format!("no tensor {name:?}"))?;
    Ok(view.data())
}

/// Writes (name, shape, dtype, bytes) tensors as safetensors with `header` in the metadata
/// under `key` (weights files use [`METADATA_KEY`]; the attribution file a key of its own).
pub(crate) fn write(path: &Path, buffers: &[(String, Vec<usize>, safetensors::Dtype, Vec<u8>)], key: &str, header: &impl Serialize) -> Result<()> {
    let views = buffers
        .iter()
        .map(|(name, shape, dtype, bytes)| Ok((name.as_str(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([(key.to_string(), serde_json::to_string(header)?)]);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Write beside the target and rename, so a crash never leaves half a weights file.
    let tmp = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, Some(metadata), &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
