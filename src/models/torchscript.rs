//! TorchScript modules as dfscan models: a network dfscan does not implement (the DFDC
//! winner's EfficientNet-B7, SBI's EfficientNet-B4, a team's own PyTorch model), traced or
//! scripted in Python (`scripts/export_torchscript.py`), imported with `dfscan import
//! --torchscript MODULE.pt` ([`import`]) and scanned beside the built-in models as a frame
//! model (`FaceModel`, input `[N, 3, S, S]`) or a sequence model (`SequenceModel`, input
//! `[N, T, 3, S, S]`), so ensembles and the stacker mix it with them.
//!
//! Not a row of the architecture table (`arch::ARCHS`): dfscan cannot build, train or rename
//! such a network. The file carries its own contract instead, the user's word on how the
//! module was trained: input side, crop margin, channel order, pixel scale, mean/std, what the
//! output is ([`Contract`], checked by running the module at import and again at load).
//!
//! Storage: the bytes `torch.jit.save` wrote are one u8 tensor, [`MODULE_TENSOR`], in the same
//! safetensors file as the header. One file rather than a `.pt` beside it: `--models NAME`
//! resolves one file; the JSON line's blake3, a hash of the whole file, covers the module with
//! no second hash to keep in step; a module can never be copied, swapped or lost apart from
//! its contract. The header also records the module's own blake3 ([`ScriptConfig`]), checked at
//! load, so a file whose tensor was replaced fails loudly. The cost is one copy of the bytes at
//! load (libtorch's loader reads from a buffer), small beside the network.
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, IValue, Kind, Tensor};

use super::preprocess::{fake_logits_of, to_network_input, to_sequence_input};
use super::weights::{self, ChannelOrder, Header, NetworkConfig, OutputClass, Preprocess};
use crate::faces::crop::CropSpec;
use crate::faces::DetectorKind;

/// The safetensors tensor that holds the module's bytes.
pub const MODULE_TENSOR: &str = "torchscript.module";

/// The network part of a TorchScript file's header (the rest of the contract is its
/// `Preprocess`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptConfig {
    /// The model's name; JSON lines call it "torchscript:<name>".
    pub name: String,
    /// T for a sequence module (input `[N, T, 3, S, S]`); None for a frame module (`[N, 3, S, S]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<i64>,
    /// BLAKE3 (hex) of the module's bytes, checked at load.
    pub module_blake3: String,
}

/// What a module's output is, as `import --returns` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Returns {
    /// One logit of P(fake) per input: `[N]` or `[N, 1]`.
    FakeLogit,
    /// One logit of P(real) per input.
    RealLogit,
    /// P(fake) per input, in [0, 1] (the module ends in a sigmoid).
    Probability,
    /// Two logits per input, `[N, 2]`; `fake_index` says which one is "fake".
    TwoClass,
}

/// The input contract of a module, as `dfscan import --torchscript` takes it: flags, or the same
/// fields as JSON (`--contract`), flags winning. Required: `input_size` and `returns`
/// (`fake_index` with two-class). Defaults: a frame module, RGB, pixels in [0, 1], mean 0 and
/// std 1 (no normalisation), and no margin of its own (the scan's `--margin`, 0.3 by default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub name: Option<String>,
    /// Side S of the square input.
    pub input_size: Option<i64>,
    /// T, for a sequence module.
    pub frames: Option<i64>,
    /// Fraction of the face box added on each side of the square crop, as the module was trained.
    pub margin: Option<f32>,
    pub channels: Option<ChannelOrder>,
    /// What a full-scale pixel (255) becomes: 1 for inputs in [0, 1], 255 for raw values.
    pub pixel_max: Option<f64>,
    /// Per-channel mean and std, in the module's channel order, applied after scaling.
    pub mean: Option<[f64; 3]>,
    pub std: Option<[f64; 3]>,
    pub returns: Option<Returns>,
    /// With two-class: the index (0 or 1) of "fake".
    pub fake_index: Option<i64>,
}

impl Contract {
    /// Reads `--contract`: inline JSON, or the path of a JSON file.
    pub fn parse(arg: &str) -> Result<Self> {
        let text = if arg.trim_start().starts_with('{') {
            arg.to_string()
        } else {
            std::fs::read_to_string(arg).with_context(|| format!("reading the contract {arg}"))?
        };
        serde_json::from_str(&text).with_context(|| format!("malformed contract {text}"))
    }

    /// This contract with `over`'s fields wherever `over` has them.
    pub fn overridden_by(self, over: Contract) -> Contract {
        Contract {
            name: over.name.or(self.name),
            input_size: over.input_size.or(self.input_size),
            frames: over.frames.or(self.frames),
            margin: over.margin.or(self.margin),
            channels: over.channels.or(self.channels),
            pixel_max: over.pixel_max.or(self.pixel_max),
            mean: over.mean.or(self.mean),
            std: over.std.or(self.std),
            returns: over.returns.or(self.returns),
            fake_index: over.fake_index.or(self.fake_index),
        }
    }

    /// The name, T and input preprocessing this contract stands for.
    fn resolve(&self, default_name: &str) -> Result<(String, Option<i64>, Preprocess)> {
        let size = self.input_size.context("the contract needs the input side (--input-size)")?;
        ensure!(size > 0, "input side {size}: must be positive");
        if let Some(t) = self.frames {
            ensure!(t >= 1, "frames {t}: a sequence module reads at least one frame");
        }
        let output = match (self.returns.context("the contract needs what the module returns (--returns)")?, self.fake_index) {
            (Returns::TwoClass, Some(fake @ (0 | 1))) => OutputClass::TwoClass { fake },
            (Returns::TwoClass, Some(i)) => bail!("fake index {i}: two-class logits have indices 0 and 1"),
            (Returns::TwoClass, None) => bail!("two-class logits need the index of \"fake\" (--fake-index 0 or 1)"),
            (other, Some(_)) => bail!("--fake-index applies to two-class logits, not to {other:?}"),
            (Returns::FakeLogit, None) => OutputClass::Fake,
            (Returns::RealLogit, None) => OutputClass::Real,
            (Returns::Probability, None) => OutputClass::Probability,
        };
        let std = self.std.unwrap_or([1.0; 3]);
        ensure!(std.iter().all(|s| *s != 0.0 && s.is_finite()), "std {std:?}: must be finite and non-zero");
        let pixel_max = self.pixel_max.unwrap_or(1.0);
        ensure!(pixel_max > 0.0 && pixel_max.is_finite(), "pixel max {pixel_max}: must be positive");
        if let Some(m) = self.margin {
            ensure!((0.0..=2.0).contains(&m), "margin {m}: expected a fraction of the face box in [0, 2]");
        }
        let mut pre = Preprocess::rgb(size, self.mean.unwrap_or([0.0; 3]), std, output);
        pre.channels = self.channels.unwrap_or_default();
        pre.pixel_max = pixel_max;
        // Faces are found by the scan's detector; the contract fixes how they are cut.
        pre.crop = self.margin.map(|margin| CropSpec { detector: DetectorKind::Res10, margin, side: size as i32 });
        let name = self.name.clone().unwrap_or_else(|| default_name.to_string());
        ensure!(!name.is_empty() && !name.contains('+'), "model name {name:?}: must be non-empty without '+' (ensembles join names with it)");
        Ok((name, self.frames, pre))
    }
}

/// A loaded TorchScript module, in eval mode on its device.
pub struct ScriptModel {
    module: CModule,
    frames: Option<i64>,
    device: Device,
}

impl ScriptModel {
    /// Loads the bytes `torch.jit.save` wrote onto `device` (tensors saved on a GPU are mapped
    /// to it).
    pub fn from_bytes(bytes: &[u8], frames: Option<i64>, device: Device) -> Result<Self> {
        let mut module = CModule::load_data_on_device(&mut &bytes[..], device)
            .map_err(|e| anyhow::anyhow!("not a TorchScript module (export one with scripts/export_torchscript.py): {e}"))?;
        module.f_set_eval()?;
        Ok(Self { module, frames, device })
    }

    /// The file's module, checked against its header's hash; `bytes` is the whole weights file.
    pub fn from_weights_file(bytes: &[u8], cfg: &ScriptConfig, device: Device) -> Result<Self> {
        let names = weights::tensor_names(bytes)?;
        ensure!(names == [MODULE_TENSOR], "a TorchScript file holds the one tensor {MODULE_TENSOR:?}, this one {names:?}");
        let module = weights::tensor_bytes(bytes, MODULE_TENSOR)?;
        let hash = blake3::hash(module).to_hex().to_string();
        ensure!(hash == cfg.module_blake3, "the module's bytes hash to {hash}, the header says {} (the file was altered)", cfg.module_blake3);
        Self::from_bytes(module, cfg.frames, device)
    }

    /// The module's output for network input `input` (as `to_network_input` or
    /// `to_sequence_input` make it), checked against `output`: `[N]` (one value per input,
    /// `[N, 1]` accepted) or `[N, 2]` (two-class), in a floating-point kind, on CPU.
    pub fn forward(&self, input: &Tensor, output: OutputClass) -> Result<Tensor> {
        let n = input.size()[0];
        let result = self.module.forward_is(&[IValue::Tensor(input.shallow_clone())]).map_err(|e| self.forward_error(input, e))?;
        let out = match result {
            IValue::Tensor(t) => t,
            other => bail!("it returned {}, expected one tensor", describe(&other)),
        };
        let (got, kind) = (out.size(), out.kind());
        let expected = match output {
            OutputClass::TwoClass { .. } => format!("[{n}, 2] (two-class logits)"),
            _ => format!("[{n}] or [{n}, 1] (one value per input)"),
        };
        ensure!(
            matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16),
            "it returned a {kind:?} tensor of shape {got:?}, expected floating point {expected}"
        );
        let out = match (output, got.as_slice()) {
            (OutputClass::TwoClass { .. }, [m, 2]) if *m == n => out,
            (OutputClass::TwoClass { .. }, _) => bail!("it returned shape {got:?}, expected {expected}"),
            (_, [m]) if *m == n => out,
            (_, [m, 1]) if *m == n => out.squeeze_dim(1),
            _ => bail!("it returned shape {got:?} for {n} inputs, expected {expected}"),
        };
        Ok(out.to_device(Device::Cpu).to_kind(Kind::Float))
    }

    fn forward_error(&self, input: &Tensor, e: tch::TchError) -> anyhow::Error {
        let text = e.to_string();
        let layout = if self.frames.is_some() { "N x T x 3 x S x S" } else { "N x 3 x S x S" };
        // libtorch's text is a TorchScript traceback; the line that names the error says it.
        let said = text.lines().find(|l| l.split(':').next().is_some_and(|w| w.ends_with("Error") && !w.contains(' '))).or(text.lines().next()).unwrap_or_default();
        let said: String = said.chars().take(300).collect();
        let lower = text.to_lowercase();
        if self.device == Device::Cpu && (lower.contains("cuda") || lower.contains("nvidia")) {
            return anyhow::anyhow!(
                "it needs CUDA, and here it runs on the CPU (import checks on the CPU; a scan does without a CUDA device or with --device cpu): it was probably traced on a GPU and keeps the device in its graph; trace it again on the CPU (scripts/export_torchscript.py --device cpu). libtorch said: {said}"
            );
        }
        anyhow::anyhow!("it failed on the contract's input, a {:?} float32 tensor ({layout}): {said}", input.size())
    }

    /// Runs the module on a made-up batch of the contract's shape, as the scan would feed it,
    /// and fails with what it got and what was expected unless the output is one finite value
    /// of the contract's kind per input and an input's output does not depend on its batch
    /// (a module traced in training mode would normalise over the batch). Returns what it checked.
    pub fn check(&self, pre: &Preprocess) -> Result<String> {
        let _guard = tch::no_grad_guard();
        let s = pre.input_size;
        let shape: Vec<i64> = match self.frames {
            None => vec![2, s, s, 3],
            Some(t) => vec![2, t, s, s, 3],
        };
        let pixels: Vec<u8> = (0..shape.iter().product::<i64>() as u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let crops = Tensor::from_slice(&pixels).view(shape.as_slice());
        let to_input = |c: &Tensor| match self.frames {
            None => to_network_input(c, pre, self.device),
            Some(_) => to_sequence_input(c, pre, self.device),
        };
        let both = self.forward(&to_input(&crops), pre.output)?;
        let alone = self.forward(&to_input(&crops.narrow(0, 0, 1)), pre.output)?;
        let values = Vec::<f32>::try_from(both.flatten(0, -1))?;
        ensure!(values.iter().all(|v| v.is_finite()), "it gave non-finite outputs {values:?} on a made-up batch");
        if pre.output == OutputClass::Probability {
            ensure!(values.iter().all(|p| (0.0..=1.0).contains(p)), "the contract says probability, it gave {values:?}, outside [0, 1] (a logit? then --returns fake-logit)");
        }
        let drift = (both.narrow(0, 0, 1) - &alone).abs().max().double_value(&[]);
        let scale = alone.abs().max().double_value(&[]).max(1.0);
        ensure!(
            drift <= 1e-4 * scale,
            "an input's output changes by {drift:.3e} with the rest of its batch: it normalises over the batch (traced in training mode? call model.eval() before tracing)"
        );
        let layout = self.frames.map_or(format!("[N, 3, {s}, {s}]"), |t| format!("[N, {t}, 3, {s}, {s}]"));
        let per_input = if matches!(pre.output, OutputClass::TwoClass { .. }) { "two logits" } else { "one value" };
        Ok(format!("{layout} float32 in, {per_input} per input out on a made-up batch of 2, each input's output independent of its batch"))
    }
}

fn describe(value: &IValue) -> String {
    match value {
        IValue::Tuple(items) => format!("a tuple of {}", items.len()),
        IValue::TensorList(items) => format!("a list of {} tensors", items.len()),
        IValue::GenericList(items) => format!("a list of {}", items.len()),
        IValue::GenericDict(items) => format!("a dict of {} entries", items.len()),
        IValue::None => "None".into(),
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => "a number".into(),
        _ => "something other than a tensor".into(),
    }
}

/// What `dfscan import --torchscript` did.
#[derive(Debug)]
pub struct ScriptImport {
    pub header: Header,
    pub module_bytes: usize,
    /// What the check on a made-up batch saw ([`ScriptModel::check`]).
    pub checked: String,
}

/// Imports the TorchScript module at `module` under `contract` into the dfscan weights file
/// `output`, after running it on the CPU on a batch of the contract's shape; named after
/// `output`'s stem unless the contract names it.
pub fn import(module: &Path, contract: &Contract, output: &Path) -> Result<ScriptImport> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (name, frames, preprocess) = contract.resolve(&stem)?;
    let loaded = ScriptModel::from_bytes(&bytes, frames, Device::Cpu)?;
    let checked = loaded.check(&preprocess).context("the module does not meet its contract")?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let file_name = module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: NetworkConfig::TorchScript(ScriptConfig { name, frames, module_blake3: hash.clone() }),
        preprocess,
        provenance: format!("dfscan import --torchscript {file_name} (blake3 {}, {} bytes)", &hash[..16], bytes.len()),
        ood: None,
    };
    weights::save_bytes(output, MODULE_TENSOR, &bytes, &header)?;
    Ok(ScriptImport { header, module_bytes: bytes.len(), checked })
}

/// The output of [`ScriptModel::forward`] as logits of "fake".
pub(super) fn fake_logits(model: &ScriptModel, input: &Tensor, output: OutputClass) -> Result<Tensor> {
    Ok(fake_logits_of(model.forward(input, output)?, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_json_contract_and_gaps_are_named() {
        let json = Contract::parse(r#"{"input_size": 224, "returns": "two-class", "fake_index": 1, "channels": "bgr"}"#).unwrap();
        let merged = json.overridden_by(Contract { input_size: Some(380), ..Default::default() });
        let (name, frames, pre) = merged.resolve("mine").unwrap();
        assert_eq!((name.as_str(), frames, pre.input_size, pre.channels), ("mine", None, 380, ChannelOrder::Bgr));
        assert_eq!(pre.output, OutputClass::TwoClass { fake: 1 });
        let err = |c: Contract| format!("{:#}", c.resolve("x").unwrap_err());
        assert!(err(Contract { input_size: Some(224), ..Default::default() }).contains("--returns"));
        assert!(err(Contract { input_size: Some(224), returns: Some(Returns::TwoClass), ..Default::default() }).contains("--fake-index"));
        assert!(Contract::parse(r#"{"input": 3}"#).is_err(), "unknown fields are refused");
    }
}
