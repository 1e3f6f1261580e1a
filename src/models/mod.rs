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
//! (`vae`) and the abnormality module (`abnormality`) turn into an out-of-distribution risk
//! (`vit_ood`); the U-Net (`unet`) redraws its input, and the same module reads that
//! reconstruction's residual (`unet_ood`): seed 000's two paths. The same module on an
//! EfficientNet-Lite's own features (`efficientnet_ood`) gives the default classifier its risk
//! without a second network. `ood` holds the MSP and ODIN baselines the risk is compared with.
//!
//! The folder: `arch` is the table of architectures (one row each: name, kind, training start,
//! pretrained files, rename table for import, shipped file); `preprocess` the input contract
//! shared by training and scan; `load` reads a weights file strictly into its network; `set`
//! is the group of models one scan runs; one file per network.
pub mod abnormality;
pub mod arch;
pub mod attribution;
pub mod autoencoder;
pub mod backbone;
pub mod efficientnet;
pub mod efficientnet_ood;
pub mod facemesh;
pub mod import;
mod load;
pub mod lrnet;
pub mod meso;
pub mod ood;
pub mod ops;
mod preprocess;
pub mod resnet_lstm;
mod same_conv;
pub mod set;
pub mod spectrum;
pub mod torchscript;
pub mod unet;
pub mod unet_ood;
pub mod vae;
pub mod vit;
pub mod vit_ood;
pub mod weights;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

pub use arch::{build_network, imagenet_backbone, pretrained_weights, training_spec, Arch, ArchEntry, ModelKind, ARCHS};
pub use load::{init_from_pretrained, AnyModel, CropScores, FaceModel, OodRisks, SequenceModel};
pub use preprocess::{crop_batch, example_batch, pad_sequence, sequence_windows, to_example_input, to_network_input, to_sequence_input};
pub use weights::{ChannelOrder, Header, NetworkConfig, OutputClass, Preprocess};

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

/// `--precision auto|f32|bf16`: the number format the EfficientNet-Lite backbones that are
/// folded for scoring compute in: a frame model with out-of-distribution heads (the default
/// model) and the attribution encoder. Every other network computes in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// bf16 on a CPU that computes it natively (AVX512-BF16: AMD Zen 4, Intel Cooper Lake and
    /// Sapphire Rapids on), else f32.
    Auto,
    F32,
    /// bfloat16 convolutions; on a CPU without native support slower than f32.
    Bf16,
}

impl PrecisionChoice {
    /// The tensor kind to compute in on `device`. Auto keeps f32 on a GPU: bf16 there is untested.
    pub fn resolve(self, device: Device) -> Kind {
        match self {
            PrecisionChoice::F32 => Kind::Float,
            PrecisionChoice::Bf16 => Kind::BFloat16,
            PrecisionChoice::Auto if device == Device::Cpu && cpu_computes_bf16() => Kind::BFloat16,
            PrecisionChoice::Auto => Kind::Float,
        }
    }
}

/// Whether this CPU has bfloat16 dot products (oneDNN's bf16 kernels need them to beat f32).
fn cpu_computes_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// The models/ folder of the source tree dfscan was built from: where the shipped models,
/// the set-up's public weights (`public/`) and detector files live, unless the command is
/// told otherwise (`$DFSCAN_MODELS`, read by the binary). The library takes the folder as an
/// argument and reads no environment.
pub const BUILT_IN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_auto_takes_bf16_only_on_a_cpu_that_computes_it() {
        assert_eq!(PrecisionChoice::F32.resolve(Device::Cpu), Kind::Float);
        assert_eq!(PrecisionChoice::Bf16.resolve(Device::Cpu), Kind::BFloat16);
        assert_eq!(PrecisionChoice::Bf16.resolve(Device::Cuda(0)), Kind::BFloat16);
        assert_eq!(PrecisionChoice::Auto.resolve(Device::Cuda(0)), Kind::Float);
        let native = std::fs::read_to_string("/proc/cpuinfo").map(|c| c.contains(" avx512_bf16")).unwrap_or(false);
        assert_eq!(PrecisionChoice::Auto.resolve(Device::Cpu) == Kind::BFloat16, native, "auto against /proc/cpuinfo's flags");
    }
}
