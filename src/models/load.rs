//! Loading a dfscan weights file into its network, strictly, as a frame model
//! ([`FaceModel`]) or a sequence model ([`SequenceModel`]); and, for training only, copying a
//! pretrained start into a fresh network ([`init_from_pretrained`]).
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::preprocess::{fake_logits_of, to_network_input, to_sequence_input};
use super::weights::{self, Header, NetworkConfig};
use super::torchscript::{self, ScriptModel};
use super::{build_network, efficientnet_ood, ood, spectrum, unet_ood, vit, vit_ood, ModelId};

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
    /// A U-Net with its abnormality module: also an out-of-distribution risk.
    UnetOod(Box<unet_ood::UnetOod>),
    /// An EfficientNet-Lite with an abnormality module on its features: also a risk.
    EfficientNetOod(Box<efficientnet_ood::EfficientNetOod>),
    /// A TorchScript module with its own contract (`torchscript`).
    Script(ScriptModel),
    /// The spectrum detector: reads the crops' spectra, not normalised pixels.
    Spectrum(spectrum::SpectrumNet),
}

impl FrameNet {
    /// Logits of "fake" for network input `input`.
    fn fake_logits(&self, input: &Tensor, output: weights::OutputClass) -> Result<Tensor> {
        Ok(match self {
            FrameNet::Plain(net) => fake_logits_of(net.forward_t(input, false), output),
            FrameNet::Vit(vit) => fake_logits_of(vit.forward_t(input, false), output),
            FrameNet::VitOod(model) => fake_logits_of(model.vit.forward_t(input, false), output),
            FrameNet::UnetOod(model) => fake_logits_of(model.unet.forward_t(input, false), output),
            FrameNet::EfficientNetOod(model) => fake_logits_of(model.net.forward_t(input, false), output),
            FrameNet::Script(model) => torchscript::fake_logits(model, input, output)?,
            FrameNet::Spectrum(_) => anyhow::bail!("the spectrum detector reads crops, not network input"),
        })
    }
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
/// the two baselines' on the same classifier (ViT or U-Net), each higher = more likely out of
/// distribution.
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

/// A weights file of a network used outside `FaceModel`/`SequenceModel` (LRNet, FaceMesh),
/// loaded as strictly: `build` makes the network from the header's config (or refuses another
/// architecture), then the file must hold exactly its parameters.
pub(super) fn load_network<N>(path: &Path, device: Device, build: impl FnOnce(&nn::Path, &NetworkConfig) -> Result<N>) -> Result<(ModelId, Header, N, nn::VarStore)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
    let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
    let mut vs = nn::VarStore::new(device);
    let net = build(&vs.root(), &header.network).with_context(|| path.display().to_string())?;
    let mut stored = weights::tensor_names(&bytes)?;
    let mut expected: Vec<String> = vs.variables().into_keys().collect();
    stored.sort();
    expected.sort();
    let arch = header.network.arch_name();
    ensure!(stored == expected, "{}: tensors {stored:?}, {arch} has {expected:?}", path.display());
    vs.load(path).with_context(|| format!("loading {}", path.display()))?;
    vs.float();
    let id = ModelId {
        name: arch.to_string(),
        weights: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        blake3: blake3::hash(&bytes).to_hex()[..16].to_string(),
    };
    Ok((id, header, net, vs))
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
/// which kind of model the caller scores with; a file of the other kind is refused. `compute`
/// is the kind an EfficientNet with heads scores in ([`super::PrecisionChoice`]); other
/// networks compute in f32.
fn load_strict(path: &Path, device: Device, sequence: bool, compute: Kind) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
    let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
    let arch = header.network.arch_name();
    let id = |name: String| ModelId {
        name,
        weights: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        blake3: blake3::hash(&bytes).to_hex()[..16].to_string(),
    };
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
    if let NetworkConfig::TorchScript(cfg) = &header.network {
        // The module is checked again here, on the scan's device: one that needs CUDA fails
        // at load on a CPU machine, not on every input.
        let model = ScriptModel::from_weights_file(&bytes, cfg, device)
            .and_then(|m| m.check(&header.preprocess).map(|_| m))
            .with_context(|| format!("{}: TorchScript module {:?}", path.display(), cfg.name))?;
        let id = id(format!("torchscript:{}", cfg.name));
        return Ok(Loaded { id, header, net: FrameNet::Script(model), vs: nn::VarStore::new(device) });
    }
    let mut vs = nn::VarStore::new(device);
    let mut net = match (&header.network, &header.ood) {
        (NetworkConfig::Vit(cfg), Some(heads)) => FrameNet::VitOod(Box::new(vit_ood::VitOod::new(&vs.root(), cfg, heads).with_context(|| path.display().to_string())?)),
        (NetworkConfig::Unet(cfg), Some(heads)) => FrameNet::UnetOod(Box::new(unet_ood::UnetOod::new(&vs.root(), cfg, heads).with_context(|| path.display().to_string())?)),
        (NetworkConfig::EfficientNet(cfg), Some(heads)) => {
            FrameNet::EfficientNetOod(Box::new(efficientnet_ood::EfficientNetOod::new(&vs.root(), cfg, heads).with_context(|| path.display().to_string())?))
        }
        (_, Some(_)) => bail!("{}: out-of-distribution heads belong to a ViT, a U-Net or an EfficientNet, not to {arch}", path.display()),
        (NetworkConfig::Vit(cfg), None) => FrameNet::Vit(vit::Vit::new(&vs.root(), cfg)),
        (NetworkConfig::Spectrum(cfg), None) => FrameNet::Spectrum(spectrum::SpectrumNet::new(&vs.root(), cfg)),
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
    if let FrameNet::EfficientNetOod(model) = &mut net {
        // Scoring only from here on (a FaceModel is never trained).
        model.net.backbone.fold_batch_norm(compute);
    }
    let id = id(arch.to_string());
    Ok(Loaded { id, header, net, vs })
}

impl FaceModel {
    /// Loads a dfscan weights file of a frame model, strictly (see [`SequenceModel`] for
    /// sequence models), to compute in f32.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        Self::load_in(path, device, Kind::Float)
    }

    /// [`FaceModel::load`], computing in `compute` where the network can (an EfficientNet
    /// with heads: see [`super::PrecisionChoice`]).
    pub fn load_in(path: &Path, device: Device, compute: Kind) -> Result<Self> {
        let Loaded { id, header, net, vs } = load_strict(path, device, false, compute)?;
        Ok(Self { id, header, net, device, _vs: vs })
    }

    /// What its convolutions compute in: `load_in`'s kind for an EfficientNet with heads, f32
    /// for every other network.
    pub fn compute_kind(&self) -> Kind {
        match &self.net {
            FrameNet::EfficientNetOod(model) => model.net.backbone.compute_kind(),
            _ => Kind::Float,
        }
    }

    pub fn input_size(&self) -> i64 {
        self.header.preprocess.input_size
    }

    /// Whether [`FaceModel::score`] gives out-of-distribution risks.
    pub fn has_ood(&self) -> bool {
        matches!(self.net, FrameNet::VitOod(_) | FrameNet::UnetOod(_) | FrameNet::EfficientNetOod(_))
    }

    /// Whether [`FaceModel::score`] gives attention maps (a ViT).
    pub fn has_attention(&self) -> bool {
        matches!(self.net, FrameNet::Vit(_) | FrameNet::VitOod(_))
    }

    /// Logits of "fake" for `crops`, a `[N, S, S, 3]` u8 RGB batch at `input_size()`.
    pub fn fake_logits(&self, crops: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        match &self.net {
            // Like a network fed a batch of the wrong shape, a malformed batch is a bug: panic.
            FrameNet::Spectrum(net) => fake_logits_of(net.forward_t(&self.spectra(net, crops).unwrap_or_else(|e| panic!("{e:#}")), false), self.header.preprocess.output),
            _ => {
                let input = to_network_input(crops, &self.header.preprocess, self.device);
                // A TorchScript module can fail here; like a built-in network's libtorch error, it
                // panics (the scan's models stage catches a panic into the input's error line).
                self.net.fake_logits(&input, self.header.preprocess.output).unwrap_or_else(|e| panic!("{}: {e:#}", self.id.name))
            }
        }
    }

    /// The spectra of `crops` on the model's device (the spectrum detector's input).
    fn spectra(&self, net: &spectrum::SpectrumNet, crops: &Tensor) -> Result<Tensor> {
        Ok(spectrum::spectra(crops, net.config.bins).context("the spectra of the crops")?.to_device(self.device))
    }

    /// Everything the model says about `crops` (as [`FaceModel::fake_logits`] takes them).
    pub fn score(&self, crops: &Tensor) -> Result<CropScores> {
        let _guard = tch::no_grad_guard();
        let input = || to_network_input(crops, &self.header.preprocess, self.device);
        let to_cpu = |t: Tensor| t.to_device(Device::Cpu).to_kind(Kind::Float);
        let output = self.header.preprocess.output;
        let (logits, ood_risk, attention) = match &self.net {
            FrameNet::Plain(_) | FrameNet::Script(_) => (self.net.fake_logits(&input(), output)?, None, None),
            FrameNet::Vit(vit) => {
                let out = vit.forward_all_t(&input(), false);
                (fake_logits_of(vit::fake_logit(&out.logits), output), None, Some(vit_ood::normalised_attention(&out.attention)))
            }
            FrameNet::VitOod(model) => {
                let out = model.forward(&input());
                (fake_logits_of(out.classified.fake_logit, output), Some(Vec::<f32>::try_from(to_cpu(out.risk))?), Some(out.classified.attention))
            }
            FrameNet::UnetOod(model) => {
                let out = model.forward(&input());
                (fake_logits_of(out.fake_logit, output), Some(Vec::<f32>::try_from(to_cpu(out.risk))?), None)
            }
            FrameNet::EfficientNetOod(model) => {
                let out = model.forward(&input());
                (fake_logits_of(out.fake_logit, output), Some(Vec::<f32>::try_from(to_cpu(out.risk))?), None)
            }
            FrameNet::Spectrum(net) => (fake_logits_of(net.forward_t(&self.spectra(net, crops)?, false), output), None, None),
        };
        let logits = Vec::<f32>::try_from(logits)?;
        Ok(CropScores { logits, ood_risk, attention: attention.map(|a| to_cpu(a).squeeze_dim(1)) })
    }

    /// The three out-of-distribution risks of `crops` (as [`FaceModel::fake_logits`] takes
    /// them); only a ViT, a U-Net or an EfficientNet with OOD heads has all three. ODIN takes
    /// input gradients through the classifier, so this costs about three forward passes more
    /// than [`FaceModel::score`].
    pub fn ood_risks(&self, crops: &Tensor, odin: &ood::Odin) -> Result<OodRisks> {
        let input = to_network_input(crops, &self.header.preprocess, self.device);
        let std = Some(&self.header.preprocess.std[..]);
        // (fake logits, abnormality risk, class logits, ODIN risk)
        let (fake, risk, logits, odin_risk) = match &self.net {
            FrameNet::VitOod(model) => {
                let out = tch::no_grad(|| model.forward(&input));
                let odin_risk = odin.risk(|x| model.vit.forward_all_t(x, false).logits, &input, std);
                (out.classified.fake_logit, out.risk, out.classified.logits, odin_risk)
            }
            FrameNet::UnetOod(model) => {
                let out = tch::no_grad(|| model.forward(&input));
                // The class logits need no decoder.
                let odin_risk = odin.risk(|x| model.unet.logits_t(x, false), &input, std);
                (out.fake_logit, out.risk, out.logits, odin_risk)
            }
            FrameNet::EfficientNetOod(model) => {
                let out = tch::no_grad(|| model.forward(&input));
                let odin_risk = odin.risk(|x| efficientnet_ood::class_logits(&model.net.forward_t(x, false)), &input, std);
                (out.fake_logit, out.risk, out.logits, odin_risk)
            }
            _ => bail!("{} has no out-of-distribution heads (add them with `dfscan train-ood`)", self.id.weights),
        };
        let to_vec = |t: Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float));
        Ok(OodRisks { fake_logits: to_vec(fake)?, abnormality: to_vec(risk)?, msp: to_vec(ood::msp_risk(&logits))?, odin: to_vec(odin_risk)? })
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
    /// A built-in network or a TorchScript module.
    net: FrameNet,
    device: Device,
    frames: i64,
    _vs: nn::VarStore,
}

impl SequenceModel {
    /// Loads a dfscan weights file of a sequence model, as strictly as [`FaceModel::load`].
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let Loaded { id, header, net, vs } = load_strict(path, device, true, Kind::Float)?;
        ensure!(matches!(net, FrameNet::Plain(_) | FrameNet::Script(_)), "{}: not a sequence network", path.display());
        let frames = match &header.network {
            NetworkConfig::ResnetLstm(cfg) => cfg.frames,
            NetworkConfig::TorchScript(cfg) => cfg.frames.with_context(|| format!("{}: the module's contract has no T", path.display()))?,
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
        // As in FaceModel::fake_logits: only a TorchScript module can fail here, and panics.
        self.net.fake_logits(&input, self.header.preprocess.output).unwrap_or_else(|e| panic!("{}: {e:#}", self.id.name))
    }
}

/// Either kind of model, for what takes both (a scan's model set, `eval`, `bench`): the weights
/// file's header says which.
pub enum AnyModel {
    Frame(FaceModel),
    Sequence(SequenceModel),
    /// A model of a face track's landmarks over consecutive frames (LRNet): it reads no crop.
    Landmarks(super::lrnet::LrnetModel),
}

impl AnyModel {
    /// The model of `path`; a frame model computes in `compute` where it can ([`FaceModel::load_in`]).
    pub fn load(path: &Path, device: Device, compute: Kind) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        let header = Header::from_safetensors(&bytes).with_context(|| format!("{} is not a dfscan weights file", path.display()))?;
        Ok(if matches!(header.network, NetworkConfig::Lrnet(_)) {
            AnyModel::Landmarks(super::lrnet::LrnetModel::load(path, device)?)
        } else if header.network.is_sequence() {
            AnyModel::Sequence(SequenceModel::load(path, device)?)
        } else {
            AnyModel::Frame(FaceModel::load_in(path, device, compute)?)
        })
    }

    pub fn id(&self) -> &ModelId {
        match self {
            AnyModel::Frame(m) => &m.id,
            AnyModel::Sequence(m) => &m.id,
            AnyModel::Landmarks(m) => &m.id,
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            AnyModel::Frame(m) => &m.header,
            AnyModel::Sequence(m) => &m.header,
            AnyModel::Landmarks(m) => &m.header,
        }
    }

    pub fn input_size(&self) -> i64 {
        self.header().preprocess.input_size
    }

    /// What its convolutions compute in: f32 but for a frame model loaded in bf16.
    pub fn compute_kind(&self) -> Kind {
        match self {
            AnyModel::Frame(m) => m.compute_kind(),
            AnyModel::Sequence(_) | AnyModel::Landmarks(_) => Kind::Float,
        }
    }

    /// T of a sequence model; None for a frame model.
    pub fn sequence_frames(&self) -> Option<i64> {
        match self {
            AnyModel::Frame(_) | AnyModel::Landmarks(_) => None,
            AnyModel::Sequence(m) => Some(m.frames()),
        }
    }

    /// Logits of "fake" for an [`example_batch`] made with [`AnyModel::sequence_frames`]: one per
    /// crop, or one per sequence; for LRNet, one per `[N, 30, 136]` block of landmarks.
    pub fn fake_logits(&self, batch: &Tensor) -> Tensor {
        match self {
            AnyModel::Frame(m) => m.fake_logits(batch),
            AnyModel::Sequence(m) => m.fake_logits(batch),
            AnyModel::Landmarks(m) => tch::no_grad(|| nn::ModuleT::forward_t(&m.net, batch, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::meso;
    use crate::models::weights::Preprocess;

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
}
