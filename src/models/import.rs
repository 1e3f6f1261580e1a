//! `dfscan import`: public checkpoints -> dfscan weights. Reading pickles and HDF5 is left to
//! Python's torch and h5py (scripts/read_checkpoint.py); each architecture's rename table (its
//! checkpoint layouts and how their keys become ours) lives in its own model file and is named
//! in the architecture table (`arch::ArchEntry::import`):
//! - MesoNet: `meso::import_meso4`, `meso::import_mesoinception4` (PyTorch port, Keras .h5);
//! - EfficientNet-Lite0/2: `efficientnet::import_lite0`, `import_lite2` (lukemelas layout);
//! - DeiT-tiny: `vit::import_deit_tiny` (timm);
//! - ResNet-LSTM: `resnet_lstm::import` (the source project's, torchvision's ResNet50 and
//!   MobileNetV2);
//! - LRNet: `lrnet::import`, the authors' g1 and g2 state_dicts into one file;
//! - FaceMesh: `facemesh::import`, the facemesh.pytorch port's state_dict.
//!
//! Here: reading the source, the shared helpers of the tables, and the check that the mapped
//! tensors fill the network exactly ([`fill_network`]).
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use tch::{nn, Tensor};

use super::weights::{self, Header, NetworkConfig, Preprocess};
use super::arch::Importer;
use super::Arch;

const READ_CHECKPOINT_PY: &str = include_str!("../../scripts/read_checkpoint.py");

/// The set-up's virtual environment, whose Python has torch (the binary lets
/// `$DFSCAN_PYTHON` override it).
pub const BUILT_IN_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python3");

#[derive(Debug)]
pub struct ImportSummary {
    pub layout: &'static str,
    pub tensors: usize,
    pub header: Header,
}

/// Imports `inputs` (one checkpoint, or the pair an [`Importer::Pair`] architecture takes)
/// as `arch` into the dfscan weights file `output`.
pub fn import(arch: Arch, inputs: &[&Path], output: &Path, python: &Path) -> Result<ImportSummary> {
    let mut sources = Vec::with_capacity(inputs.len());
    let mut named_inputs = Vec::with_capacity(inputs.len());
    for input in inputs {
        sources.push(read_source(input, python).with_context(|| format!("reading {}", input.display()))?);
        let hash = blake3::hash(&std::fs::read(input)?).to_hex()[..16].to_string();
        named_inputs.push(format!("{} (blake3 {hash})", input.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    }
    let mapped = match (arch.entry().import, sources.as_slice()) {
        (Importer::One(map), [source]) => map(source)?,
        (Importer::Pair(map), [first, second]) => map(first, second)?,
        (Importer::One(_), _) => bail!("{} imports one checkpoint, got {}", arch.name(), inputs.len()),
        (Importer::Pair(_), _) => bail!("{} imports two files (e.g. lrnet: G1 then G2), got {}", arch.name(), inputs.len()),
    };
    let named = fill_network(&mapped.network, mapped.tensors, &mapped.left_out)?;
    let header = Header {
        format: weights::FORMAT_VERSION,
        network: mapped.network,
        preprocess: mapped.preprocess,
        provenance: format!("dfscan import --arch {} {} ({}){}", arch.name(), named_inputs.join(" "), mapped.layout, mapped.note),
        ood: None,
    };
    weights::save(output, &named, &header)?;
    Ok(ImportSummary { layout: mapped.layout, tensors: named.len(), header })
}

/// A source checkpoint mapped onto one of our networks: what an architecture's rename table
/// (`ArchEntry::import`, in its model file) returns.
pub struct Mapped {
    pub network: NetworkConfig,
    pub preprocess: Preprocess,
    /// Our parameter names -> tensors.
    pub tensors: BTreeMap<String, Tensor>,
    pub layout: &'static str,
    /// Parameters of the network the import leaves out on purpose (left to training).
    pub left_out: Vec<String>,
    /// Appended to the provenance.
    pub note: String,
}

/// Whether `source` was read from a Keras .h5 file (TensorFlow names end in ":0").
pub fn is_keras(source: &BTreeMap<String, Tensor>) -> bool {
    source.keys().any(|k| k.ends_with(":0"))
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

/// A PyTorch state_dict whose names are already ours: `num_batches_tracked` and DataParallel's
/// `module.` prefix dropped.
pub fn map_torch(source: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    source
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        // Checkpoints saved from nn.DataParallel prefix every key with "module.".
        .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(k).to_string(), v.shallow_clone()))
        .collect()
}

/// Copies `tensors` into a freshly built network, failing on any missing, unexpected or
/// mis-shaped tensor, and returns the network's parameters by name, except those in
/// `left_out` (which `tensors` must not have either).
pub(super) fn fill_network(network: &NetworkConfig, mut tensors: BTreeMap<String, Tensor>, left_out: &[String]) -> Result<Vec<(String, Tensor)>> {
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

