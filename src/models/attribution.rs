//! The attribution model (seed 002's second recipe; `crate::attribution` for the levels and
//! the rule that makes a line's `attribution`): a frozen ImageNet encoder embeds each face
//! crop, an autoencoder's encoder squeezes the standardised embedding to 64 numbers, and one
//! random forest per level turns the code into probabilities: families (level 2) and methods
//! (level 3), both fitted on fakes only by `dfscan fit-attribution` (`train::attribution`).
//!
//! Seed 002 used CLIP ViT-L/14; here the encoder is EfficientNet-Lite0 with the ImageNet
//! weights the set-up fetches (`models/public/`, imported as `dfscan train` imports them), the
//! pooled head features and, with `taps`, the mean and standard deviation of each stage's last
//! block (`EfficientNetConfig::stage_ends`). It is fixed, not the default detector's
//! fine-tuned copy: attribution does not move when the detector is retrained.
//!
//! The file: safetensors whose metadata key `dfscan-attribution` holds [`AttributionHeader`]
//! (the encoder's spec with a hash of the ImageNet weights it was fitted on, the autoencoder's
//! sizes, the class names and both forests as trees); its tensors are the standardisation
//! (`input_mean`, `input_std`) and the autoencoder's encoder (`encoder.0.*`, `encoder.2.*`).
//! It is no scan model of `--models` (it has no "dfscan" header) and says so.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use dfscan_classical::Forest;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

use super::autoencoder::{self, AutoencoderConfig};
use super::efficientnet::{EfficientNetConfig, EfficientNetLite, FEATURES};
use super::{init_from_pretrained, to_network_input, ModelId, Preprocess};
use crate::attribution::Classes;

/// The safetensors metadata key of an attribution file.
pub const METADATA_KEY: &str = "dfscan-attribution";
pub const FORMAT_VERSION: u32 = 1;

/// The frozen encoder whose embeddings the autoencoder reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// The EfficientNet-Lite, with the stage ends tapped.
    pub network: EfficientNetConfig,
    /// Its input: side, mean/std, and the crop contract of the cache it was fitted on.
    pub preprocess: Preprocess,
    /// File name of the ImageNet weights under the models folder's `public/`.
    pub weights: String,
    /// First 16 hex digits of the BLAKE3 of those weights' tensors ([`tensors_hash`]): the
    /// scan refuses other weights, whose features the forests never saw.
    pub tensors_blake3: String,
    /// All columns (the taps' statistics, then the head's pooled features); false: the head's
    /// [`FEATURES`] alone.
    pub taps: bool,
}

impl EncoderSpec {
    /// Width of the embedding.
    pub fn width(&self) -> i64 {
        if self.taps { self.network.feature_width() } else { FEATURES }
    }
}

/// What an attribution file's metadata holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionHeader {
    pub format: u32,
    pub encoder: EncoderSpec,
    pub autoencoder: AutoencoderConfig,
    pub classes: Classes,
    /// Level 2: over `classes.families`.
    pub family: Forest,
    /// Level 3: over `classes.methods`.
    pub method: Forest,
    /// The command that fitted it, and on what.
    pub provenance: String,
}

/// BLAKE3 over a safetensors file's tensors (names and values, by name): the same for two
/// files that differ only in metadata.
pub fn tensors_hash(path: &Path) -> Result<String> {
    let mut tensors = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = blake3::Hasher::new();
    for (name, t) in tensors {
        let t = t.to_kind(Kind::Float).contiguous();
        let mut bytes = vec![0u8; t.numel() * 4];
        t.f_copy_data_u8(&mut bytes, t.numel())?;
        hasher.update(name.as_bytes()).update(&bytes);
    }
    Ok(hasher.finalize().to_hex()[..16].to_string())
}

/// The frozen encoder: face crops to embeddings. Training and scan both embed through it.
pub struct FeatureEncoder {
    pub spec: EncoderSpec,
    net: EfficientNetLite,
    device: Device,
    _vs: nn::VarStore,
}

impl FeatureEncoder {
    /// The encoder of `spec` from the ImageNet weights at `weights` (an import with every
    /// tensor but the head's `_fc`), which must be the ones `spec` was fitted on, unless
    /// `spec.tensors_blake3` is empty (a spec being made). Its BatchNorms are folded: it
    /// computes in `compute` (fitting embeds in f32; a scan may use bf16, see
    /// [`super::PrecisionChoice`]).
    pub fn load(spec: &EncoderSpec, weights: &Path, device: Device, compute: Kind) -> Result<Self> {
        if !spec.tensors_blake3.is_empty() {
            let hash = tensors_hash(weights)?;
            ensure!(
                hash == spec.tensors_blake3,
                "{}: the attribution model was fitted on the embeddings of other weights (tensors {}, these {hash})",
                weights.display(),
                spec.tensors_blake3
            );
        }
        let mut vs = nn::VarStore::new(device);
        let mut net = EfficientNetLite::new(&vs.root(), &spec.network);
        let missing = init_from_pretrained(&mut vs, weights)?;
        ensure!(missing.iter().all(|m| m.starts_with("_fc.")), "{} lacks backbone tensors {missing:?}", weights.display());
        vs.freeze();
        net.backbone.fold_batch_norm(compute);
        Ok(Self { spec: spec.clone(), net, device, _vs: vs })
    }

    /// `[N, S, S, 3]` u8 RGB crops at the encoder's input side to `[N, width]` float
    /// embeddings on the CPU.
    pub fn features(&self, crops: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let input = to_network_input(crops, &self.spec.preprocess, self.device);
        let x = self.net.backbone.forward_t(&input, false).to_device(Device::Cpu).to_kind(Kind::Float);
        if self.spec.taps { x } else { x.narrow(1, x.size()[1] - FEATURES, FEATURES) }
    }
}

/// Embeddings to codes: the standardisation, then the autoencoder's encoder.
pub struct Coder {
    mean: Tensor,
    std: Tensor,
    encoder: autoencoder::Encoder,
    _vs: nn::VarStore,
}

impl Coder {
    /// From named tensors (`input_mean`, `input_std`, `encoder.*`), on the CPU.
    pub fn from_tensors(cfg: &AutoencoderConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let encoder = autoencoder::Encoder::new(&vs.root(), cfg);
        let get = |k: &str| tensors.get(k).with_context(|| format!("no tensor {k}"));
        let mut vars = vs.variables();
        let mut names: Vec<&String> = tensors.keys().filter(|k| !k.starts_with("input_")).collect();
        names.sort();
        let mut expected: Vec<&String> = vars.keys().collect();
        expected.sort();
        ensure!(names == expected, "autoencoder tensors {names:?}, expected {expected:?}");
        tch::no_grad(|| -> Result<()> {
            for (name, var) in vars.iter_mut() {
                let t = get(name)?;
                ensure!(t.size() == var.size(), "shape mismatch for {name}: {:?} vs {:?}", t.size(), var.size());
                var.copy_(&t.to_kind(Kind::Float));
            }
            Ok(())
        })?;
        vs.freeze();
        let (mean, std) = (get("input_mean")?.to_kind(Kind::Float), get("input_std")?.to_kind(Kind::Float));
        ensure!(mean.size() == [cfg.input] && std.size() == [cfg.input], "standardisation of {:?} for {} features", mean.size(), cfg.input);
        Ok(Self { mean, std, encoder, _vs: vs })
    }

    /// `[N, input]` embeddings to `[N, code]` codes.
    pub fn codes(&self, features: &Tensor) -> Tensor {
        tch::no_grad(|| self.encoder.forward(&((features.to_kind(Kind::Float) - &self.mean) / &self.std)))
    }
}

/// Per-row class probabilities of `forest` for `[N, F]` codes.
pub fn forest_proba(forest: &Forest, codes: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = codes.size()[0] as usize;
    let values: Vec<f32> = Vec::try_from(codes.contiguous().view([-1]))?;
    ensure!(n == 0 || values.len() == n * forest.features, "codes {:?} for a forest of {} features", codes.size(), forest.features);
    Ok(values.chunks(forest.features.max(1)).take(n).map(|row| forest.proba(&row.iter().map(|&v| v as f64).collect::<Vec<_>>()).into_iter().map(|p| p as f32).collect()).collect())
}

/// A loaded attribution model.
pub struct AttributionModel {
    pub id: ModelId,
    pub header: AttributionHeader,
    encoder: FeatureEncoder,
    coder: Coder,
}

/// One crop's probabilities: over the families, over the methods.
pub type CropAttribution = (Vec<f32>, Vec<f32>);

impl AttributionModel {
    /// The attribution file at `path`, with its encoder from `encoder_weights` (the ImageNet
    /// weights its header names; the caller resolves them under the models folder).
    pub fn load(path: &Path, encoder_weights: &Path, device: Device, compute: Kind) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let header = read_header(&bytes).with_context(|| format!("{} is not an attribution model (made by `dfscan fit-attribution`)", path.display()))?;
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let coder = Coder::from_tensors(&header.autoencoder, &tensors).with_context(|| path.display().to_string())?;
        let encoder = FeatureEncoder::load(&header.encoder, encoder_weights, device, compute)?;
        let (families, methods) = (header.classes.families.len(), header.classes.methods.len());
        ensure!(
            header.family.classes == families && header.method.classes == methods && header.family.features as i64 == header.autoencoder.code && header.method.features as i64 == header.autoencoder.code,
            "{}: forests of {}/{} classes on {}/{} features for {families}/{methods} classes and {}-wide codes",
            path.display(),
            header.family.classes,
            header.method.classes,
            header.family.features,
            header.method.features,
            header.autoencoder.code
        );
        let id = ModelId {
            name: "attribution".into(),
            weights: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            blake3: blake3::hash(&bytes).to_hex()[..16].to_string(),
        };
        Ok(Self { id, header, encoder, coder })
    }

    /// The side of the crops it reads.
    pub fn input_size(&self) -> i64 {
        self.header.encoder.preprocess.input_size
    }

    /// Each crop's probabilities, for `[N, S, S, 3]` u8 crops at [`Self::input_size`].
    pub fn attribute(&self, crops: &Tensor) -> Result<Vec<CropAttribution>> {
        let codes = self.coder.codes(&self.encoder.features(crops));
        let family = forest_proba(&self.header.family, &codes)?;
        let method = forest_proba(&self.header.method, &codes)?;
        Ok(family.into_iter().zip(method).collect())
    }
}

/// The header of an attribution file's bytes.
pub fn read_header(bytes: &[u8]) -> Result<AttributionHeader> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).context("not a safetensors file")?;
    let Some(json) = metadata.metadata().as_ref().and_then(|m| m.get(METADATA_KEY)) else {
        bail!("no {METADATA_KEY:?} header in its metadata");
    };
    let header: AttributionHeader = serde_json::from_str(json).context("malformed attribution header")?;
    ensure!(header.format == FORMAT_VERSION, "attribution format {} (this dfscan reads {FORMAT_VERSION})", header.format);
    Ok(header)
}

/// Writes an attribution file: `header` in the metadata, `tensors` as f32.
pub fn save(path: &Path, header: &AttributionHeader, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().detach();
        let mut bytes = vec![0u8; t.numel() * 4];
        t.f_copy_data_u8(&mut bytes, t.numel())?;
        buffers.push((name.clone(), t.size().iter().map(|&d| d as usize).collect::<Vec<_>>(), safetensors::Dtype::F32, bytes));
    }
    super::weights::write(path, &buffers, METADATA_KEY, header)
}
