//! The architecture table: one row per network dfscan can build, train, import and scan with.
//! Adding an architecture is its model file (config, layers named by checkpoint keys, its
//! rename table for `dfscan import`) plus one [`Arch`] variant and one [`ARCHS`] row here.
//!
//! A TorchScript module (`dfscan import --torchscript`, `super::torchscript`) is not a row:
//! dfscan neither builds nor trains nor renames it. Its file carries the module and its own
//! contract (input side, margin, channel order, scaling, mean/std, what the output is, T), and
//! it scans as a frame or sequence model beside the rows' networks.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::import::Mapped;
use super::weights::{NetworkConfig, Preprocess};
use super::{efficientnet, facemesh, lrnet, meso, resnet_lstm, spectrum, unet, vit};

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
    /// seed 001's temporal model, a sequence model ([`super::SequenceModel`]).
    #[value(name = "resnet-lstm")]
    #[serde(rename = "resnet-lstm")]
    ResnetLstm,
    /// LRNet's two GRU streams over a face track's 68-point landmarks (`lrnet`); imported
    /// from the authors' public weights (`dfscan import --arch lrnet G1 G2`).
    Lrnet,
    /// MediaPipe FaceMesh, the face landmarker (`facemesh`); imported from the port's weights
    /// (`dfscan import --arch facemesh models/third_party/facemesh/facemesh.pth`).
    Facemesh,
    /// Seed 004's spectrum detector: a crop's 1-D amplitude spectrum into an SVM or a logistic
    /// regression (`spectrum`), fitted by smartcore (`dfscan train --arch spectrum --classifier`).
    Spectrum,
    /// Seed 000's U-Net reconstruction classifier, narrowed to ship (`unet::UnetConfig::small`).
    Unet,
    /// The same U-Net in the seed's exact configuration (`unet::UnetConfig::seed`, 350 MB).
    #[value(name = "unet-seed")]
    #[serde(rename = "unet-seed")]
    UnetSeed,
}

/// What a model scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// One face crop at a time ([`super::FaceModel`]).
    Frame,
    /// A face track's crops in frame order ([`super::SequenceModel`]).
    Sequence,
    /// A face track's landmarks in frame order ([`super::lrnet::LrnetModel`]).
    LandmarkTrack,
    /// No verdict: finds face landmarks ([`super::facemesh::FaceMeshModel`]).
    Landmarker,
}

/// How `dfscan import` renames a public checkpoint onto the network: the model file's rename
/// table, over one source file or a pair.
#[derive(Clone, Copy)]
pub enum Importer {
    One(fn(&BTreeMap<String, Tensor>) -> Result<Mapped>),
    /// Two files that make one network (LRNet's g1 and g2 streams), in this order.
    Pair(fn(&BTreeMap<String, Tensor>, &BTreeMap<String, Tensor>) -> Result<Mapped>),
}

/// Everything dfscan knows about one architecture.
pub struct ArchEntry {
    pub arch: Arch,
    /// As `--arch` and the JSON lines name it.
    pub name: &'static str,
    pub kind: ModelKind,
    /// The network and input contract `dfscan train --arch` starts from.
    pub training: fn() -> (NetworkConfig, Preprocess),
    /// The public pretrained start, under the models folder: (the file scripts/setup.sh
    /// fetches, where `dfscan import` writes its mapping onto our network). A training start,
    /// not a scan model.
    pub pretrained: Option<(&'static str, &'static str)>,
    /// `dfscan import --arch`: a public checkpoint's tensors renamed onto this network (the
    /// rename table, in the model's own file).
    pub import: Importer,
    /// The shipped weights of this architecture in the models folder, if any.
    pub shipped: Option<&'static str>,
}

/// The table. Order is `--arch`'s.
pub const ARCHS: [ArchEntry; 11] = [
    ArchEntry {
        arch: Arch::Meso4,
        name: "meso4",
        kind: ModelKind::Frame,
        training: || (NetworkConfig::Meso(meso::MesoConfig::meso4_torch()), Preprocess::meso_torch()),
        pretrained: None,
        import: Importer::One(meso::import_meso4),
        shipped: None,
    },
    ArchEntry {
        arch: Arch::Mesoinception4,
        name: "mesoinception4",
        kind: ModelKind::Frame,
        training: || (NetworkConfig::Meso(meso::MesoConfig::mesoinception4_torch()), Preprocess::meso_torch()),
        pretrained: None,
        import: Importer::One(meso::import_mesoinception4),
        shipped: Some("mesoinception4.safetensors"),
    },
    ArchEntry {
        arch: Arch::EfficientnetLite0,
        name: "efficientnet-lite0",
        kind: ModelKind::Frame,
        // The preprocessing its ImageNet backbone was trained with.
        training: || efficientnet_spec(efficientnet::EfficientNetConfig::lite0()),
        pretrained: Some(("public/efficientnet-lite0-57934424.safetensors", "public/efficientnet-lite0-imagenet.safetensors")),
        import: Importer::One(efficientnet::import_lite0),
        shipped: Some("default.safetensors"),
    },
    ArchEntry {
        arch: Arch::EfficientnetLite2,
        name: "efficientnet-lite2",
        kind: ModelKind::Frame,
        training: || efficientnet_spec(efficientnet::EfficientNetConfig::lite2()),
        pretrained: Some(("public/efficientnet-lite2-9656183e.safetensors", "public/efficientnet-lite2-imagenet.safetensors")),
        import: Importer::One(efficientnet::import_lite2),
        shipped: None,
    },
    ArchEntry {
        arch: Arch::DeitTiny,
        name: "deit-tiny",
        kind: ModelKind::Frame,
        // Trains from scratch; an import of timm's weights can be given to `TrainConfig::pretrained`.
        training: || (NetworkConfig::Vit(vit::VitConfig::deit_tiny_distilled()), Preprocess::deit()),
        pretrained: None,
        import: Importer::One(vit::import_deit_tiny),
        shipped: Some("vit.safetensors"),
    },
    ArchEntry {
        arch: Arch::ResnetLstm,
        name: "resnet-lstm",
        kind: ModelKind::Sequence,
        // MobileNetV2, the backbone whose ImageNet weights the set-up can fetch.
        training: || (NetworkConfig::ResnetLstm(resnet_lstm::ResnetLstmConfig::mobilenetv2()), Preprocess::imagenet()),
        pretrained: Some(("public/mobilenet_v2-b0353104.safetensors", "public/resnet-lstm-mobilenetv2-imagenet.safetensors")),
        import: Importer::One(resnet_lstm::import),
        shipped: Some("resnet-lstm.safetensors"),
    },
    ArchEntry {
        arch: Arch::Lrnet,
        name: "lrnet",
        kind: ModelKind::LandmarkTrack,
        // Trains on a landmark cache (`dfscan extract --landmarks`), from a public pair imported
        // from models/third_party/lrnet (`train --lrnet-start`; two files, so not `pretrained`).
        training: || (NetworkConfig::Lrnet(lrnet::LrnetConfig::source()), Preprocess::lrnet()),
        pretrained: None,
        import: Importer::Pair(lrnet::import),
        // The authors' DeeperForensics pair, imported (models/lrnet.md says why not a fine-tune).
        shipped: Some("lrnet.safetensors"),
    },
    ArchEntry {
        arch: Arch::Facemesh,
        name: "facemesh",
        kind: ModelKind::Landmarker,
        training: || (NetworkConfig::FaceMesh(facemesh::FaceMeshConfig::mediapipe()), Preprocess::facemesh()),
        pretrained: None,
        import: Importer::One(facemesh::import),
        shipped: None,
    },
    ArchEntry {
        arch: Arch::Spectrum,
        name: "spectrum",
        kind: ModelKind::Frame,
        // Fitted, not trained by gradient: the classifier and the side come from `dfscan train`.
        training: || (NetworkConfig::Spectrum(spectrum::SpectrumConfig::seed()), Preprocess::spectrum()),
        pretrained: None,
        import: Importer::One(spectrum::import),
        shipped: Some("spectrum.safetensors"),
    },
    ArchEntry {
        arch: Arch::Unet,
        name: "unet",
        kind: ModelKind::Frame,
        training: || unet_spec(unet::UnetConfig::small()),
        pretrained: None,
        import: Importer::One(unet::import_small),
        shipped: Some("unet.safetensors"),
    },
    ArchEntry {
        arch: Arch::UnetSeed,
        name: "unet-seed",
        kind: ModelKind::Frame,
        training: || unet_spec(unet::UnetConfig::seed()),
        pretrained: None,
        import: Importer::One(unet::import_seed),
        shipped: None,
    },
];

impl Arch {
    /// This architecture's row of [`ARCHS`].
    pub fn entry(self) -> &'static ArchEntry {
        ARCHS.iter().find(|e| e.arch == self).expect("every Arch has a row in ARCHS")
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }
}

fn unet_spec(cfg: unet::UnetConfig) -> (NetworkConfig, Preprocess) {
    (NetworkConfig::Unet(cfg.clone()), unet::preprocess(&cfg))
}

fn efficientnet_spec(cfg: efficientnet::EfficientNetConfig) -> (NetworkConfig, Preprocess) {
    let preprocess = Preprocess::efficientnet_lite(&cfg);
    (NetworkConfig::EfficientNet(cfg), preprocess)
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
        // Not built: its module is loaded from the file's bytes (`load` checks first).
        NetworkConfig::TorchScript(cfg) => panic!("build_network: {:?} is a TorchScript module, loaded with models::torchscript, not built", cfg.name),
        // Spectra in (`spectrum::spectra` of the crops), logits out; `FaceModel` makes the spectra.
        NetworkConfig::Spectrum(cfg) => Box::new(spectrum::SpectrumNet::new(root, cfg)),
        // As a frame model the U-Net gives logit(softmax[.., 1]) without its decoder.
        NetworkConfig::Unet(cfg) => Box::new(unet::Unet::new(root, cfg)),
    }
}

/// The network and preprocessing that `dfscan train --arch` starts from.
pub fn training_spec(arch: Arch) -> (NetworkConfig, Preprocess) {
    (arch.entry().training)()
}

/// The public pretrained start of `arch` under `models_dir`, if it has one: (the file the
/// set-up fetched, where its import goes).
pub fn pretrained_weights(models_dir: &Path, arch: Arch) -> Option<(PathBuf, PathBuf)> {
    arch.entry().pretrained.map(|(raw, imported)| (models_dir.join(raw), models_dir.join(imported)))
}

/// For a ResNet-LSTM trunk: the set-up's ImageNet checkpoint (torchvision names, as
/// safetensors) and where `dfscan import --arch resnet-lstm` puts it, a training start with
/// the trunk only. None for ResNet50, whose ImageNet weights cannot be fetched here.
pub fn imagenet_backbone(models_dir: &Path, backbone: super::backbone::Backbone) -> Option<(PathBuf, PathBuf)> {
    match backbone {
        super::backbone::Backbone::Resnet50 => None,
        super::backbone::Backbone::Mobilenetv2 => pretrained_weights(models_dir, Arch::ResnetLstm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_has_one_row_whose_network_it_names() {
        use clap::ValueEnum;
        assert_eq!(Arch::value_variants().len(), ARCHS.len());
        for entry in &ARCHS {
            assert_eq!(ARCHS.iter().filter(|e| e.arch == entry.arch).count(), 1, "{}", entry.name);
            // The name is clap's, and the network trained from the row says it is this one.
            assert_eq!(entry.arch.to_possible_value().unwrap().get_name(), entry.name);
            let (network, _) = (entry.training)();
            assert_eq!(network.arch_name(), entry.name);
            assert_eq!(network.is_sequence(), entry.kind == ModelKind::Sequence, "{}", entry.name);
        }
    }
}
