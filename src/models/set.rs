//! The models one scan runs (`--models a,b`): frame and sequence models side by side over the
//! same decoded frames and face crops, each with a weight in the ensemble, plus the model whose
//! abnormality module gives every verdict its out-of-distribution risk.
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use tch::{Device, Kind};

use super::{AnyModel, FaceModel, ModelId};
use crate::faces::crop::{CropSpec, DEFAULT_MARGIN};
use crate::faces::DetectorKind;

/// What a JSON line says about each model of the set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberId {
    #[serde(flatten)]
    pub id: ModelId,
    /// "frame" or "sequence".
    pub kind: &'static str,
    /// Its share of the ensemble's score (the weights sum to 1).
    pub weight: f32,
}

/// Which model `ModelSet::load` takes the out-of-distribution risk from.
#[derive(Clone, Copy, Debug)]
pub enum OodChoice<'a> {
    /// The first member that has an abnormality module, if any.
    FromMembers,
    /// This file (which must have one), run beside the members.
    File(&'a Path),
    /// The first member that has one; when none has, this file (the default scan: the shipped
    /// classifier's own heads, else the shipped ViT's).
    MembersElse(&'a Path),
    /// None: every line's `ood_risk` is null.
    Off,
}

/// Where the out-of-distribution risk comes from.
pub enum OodSource {
    /// A member of the set that has the heads (a ViT trained with `dfscan train-ood`).
    Member(usize),
    /// A model run only for its risk (`--ood-model`).
    Extra(FaceModel),
}

pub struct ModelSet {
    /// Frame and sequence models, in `--models` order.
    pub members: Vec<AnyModel>,
    /// Normalised ensemble weights, one per member.
    pub weights: Vec<f32>,
    pub ood: Option<OodSource>,
    /// A learned, calibrated combination of the members (`scan --ensemble`), in place of the
    /// weighted mean.
    pub stacker: Option<crate::aggregate::Stacker>,
    /// The face landmarker, when a member reads landmarks or the scan shows them
    /// (`--landmarks`); the pipeline runs it in the faces stage.
    pub landmarker: Option<super::facemesh::FaceMeshModel>,
    /// The attribution model (a fake's family and method), run on the first few faces of each
    /// track (`ScanConfig::attribution_faces`).
    pub attribution: Option<super::attribution::AttributionModel>,
}

/// See [`ModelSet::crop_plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct CropPlan {
    /// The distinct crops the faces stage makes of every face, in this order.
    pub crops: Vec<PlannedCrop>,
    /// Per member, the index of its crop in `crops` ([`CropPlan::NONE`] for a landmark model,
    /// which reads no crop).
    pub members: Vec<usize>,
    /// The index of the extra OOD model's crop (`OodSource::Extra`).
    pub ood: Option<usize>,
    /// The index of the attribution model's crop.
    pub attribution: Option<usize>,
}

/// One crop of every face: cut by a contract, at a network's input side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedCrop {
    pub spec: CropSpec,
    /// The network input's side: the cut, resized once if `spec.side` differs
    /// ([`CropSpec::to_input`]), as training reads its cached crops.
    pub input: i32,
}

impl CropPlan {
    /// A member's crop index when it reads none.
    pub const NONE: usize = usize::MAX;

    /// Index of this crop in `crops`, added if new. Specs match on geometry: all faces of one
    /// scan come from one detector, whichever a model's header names.
    fn index_of(&mut self, spec: CropSpec, input: i64) -> usize {
        let input = input as i32;
        let same = |c: &PlannedCrop| c.spec.margin == spec.margin && c.spec.side == spec.side && c.input == input;
        self.crops.iter().position(same).unwrap_or_else(|| {
            self.crops.push(PlannedCrop { spec, input });
            self.crops.len() - 1
        })
    }
}

fn spec_of(preprocess: &super::Preprocess, margin: Option<f32>, detector: DetectorKind) -> CropSpec {
    let own = preprocess.crop.unwrap_or(CropSpec { detector, margin: DEFAULT_MARGIN, side: preprocess.input_size as i32 });
    CropSpec { margin: margin.unwrap_or(own.margin), ..own }
}

/// A `--models` entry: a path to a weights file, or the name of a shipped model
/// (`<models_dir>/<name>.safetensors`; "default" is the default model).
pub fn resolve(models_dir: &Path, entry: &str) -> PathBuf {
    let path = PathBuf::from(entry);
    if path.extension().is_some() || path.components().count() > 1 {
        return path;
    }
    models_dir.join(format!("{entry}.safetensors"))
}

impl ModelSet {
    /// Loads `paths` with `weights` (None: equal), and the OOD model as `ood` says; models that
    /// can compute in `compute` do ([`super::PrecisionChoice`]).
    pub fn load(paths: &[PathBuf], weights: Option<&[f32]>, ood: OodChoice, device: Device, compute: Kind) -> Result<Self> {
        ensure!(!paths.is_empty(), "no model to scan with");
        let members = paths.iter().map(|p| AnyModel::load(p, device, compute)).collect::<Result<Vec<_>>>()?;
        let weights = match weights {
            None => vec![1.0 / members.len() as f32; members.len()],
            Some(w) => {
                ensure!(w.len() == members.len(), "{} weights for {} models", w.len(), members.len());
                ensure!(w.iter().all(|&x| x >= 0.0 && x.is_finite()) && w.iter().sum::<f32>() > 0.0, "model weights must be non-negative with a positive sum, got {w:?}");
                let sum: f32 = w.iter().sum();
                w.iter().map(|x| x / sum).collect()
            }
        };
        let member = members.iter().position(|m| matches!(m, AnyModel::Frame(f) if f.has_ood())).map(OodSource::Member);
        let ood = match ood {
            OodChoice::Off => None,
            OodChoice::FromMembers => member,
            OodChoice::MembersElse(_) if member.is_some() => member,
            OodChoice::File(path) | OodChoice::MembersElse(path) => {
                let model = FaceModel::load_in(path, device, compute)?;
                if !model.has_ood() {
                    bail!("--ood-model {}: it has no abnormality module (make one with `dfscan train-ood`)", path.display());
                }
                Some(OodSource::Extra(model))
            }
        };
        Ok(Self { members, weights, ood, stacker: None, landmarker: None, attribution: None })
    }

    /// The crops a scan makes of each face, one per distinct contract and input side, and
    /// which one each model reads: a model's own contract (its header's `crop`, recorded at training), else the
    /// scan's margin at the model's input side. `margin` (`--margin`) overrides every model's
    /// margin, never its side.
    pub fn crop_plan(&self, margin: Option<f32>, detector: DetectorKind) -> CropPlan {
        let mut plan = CropPlan { crops: Vec::new(), members: Vec::new(), ood: None, attribution: None };
        for member in &self.members {
            if matches!(member, AnyModel::Landmarks(_)) {
                plan.members.push(CropPlan::NONE);
                continue;
            }
            let k = plan.index_of(spec_of(&member.header().preprocess, margin, detector), member.input_size());
            plan.members.push(k);
        }
        if let Some(OodSource::Extra(model)) = &self.ood {
            plan.ood = Some(plan.index_of(spec_of(&model.header.preprocess, margin, detector), model.input_size()));
        }
        if let Some(a) = &self.attribution {
            plan.attribution = Some(plan.index_of(spec_of(&a.header.encoder.preprocess, margin, detector), a.input_size()));
        }
        plan
    }

    /// What the members' convolutions compute in: bf16 when every member does, else f32.
    pub fn compute_kind(&self) -> Kind {
        if !self.members.is_empty() && self.members.iter().all(|m| m.compute_kind() == Kind::BFloat16) { Kind::BFloat16 } else { Kind::Float }
    }

    /// Whether a member reads face landmarks over consecutive frames (LRNet).
    pub fn needs_landmarks(&self) -> bool {
        self.members.iter().any(|m| matches!(m, AnyModel::Landmarks(_)))
    }

    /// Whether a member (or the OOD model) reads the frames spread over the video
    /// (`--frames`/`--fps`): every model but the landmark ones, which read clips.
    pub fn reads_spread_frames(&self) -> bool {
        matches!(self.ood, Some(OodSource::Extra(_))) || self.members.iter().any(|m| !matches!(m, AnyModel::Landmarks(_)))
    }

    pub fn member_ids(&self) -> Vec<MemberId> {
        self.members
            .iter()
            .zip(&self.weights)
            .map(|(m, &weight)| MemberId { id: m.id().clone(), kind: if matches!(m, AnyModel::Frame(_)) { "frame" } else { "sequence" }, weight })
            .collect()
    }

    /// The model that gives the risk, if any.
    pub fn ood_model(&self) -> Option<&FaceModel> {
        match &self.ood {
            Some(OodSource::Member(i)) => match &self.members[*i] {
                AnyModel::Frame(m) => Some(m),
                AnyModel::Sequence(_) | AnyModel::Landmarks(_) => None,
            },
            Some(OodSource::Extra(m)) => Some(m),
            None => None,
        }
    }

    /// The model whose attention `--explain` draws: the OOD model if it is a ViT, else the
    /// first ViT member.
    pub fn attention_model(&self) -> Option<&FaceModel> {
        let member = self.members.iter().find_map(|m| match m {
            AnyModel::Frame(f) if f.has_attention() => Some(f),
            _ => None,
        });
        self.ood_model().filter(|m| m.has_attention()).or(member)
    }

    /// One identity for the scoring models (the JSON line's `model`, the state database's
    /// key): the single member's own, or for an ensemble the members' names and files joined
    /// by "+" with a hash over their hashes and weights. The OOD model has its own field.
    pub fn id(&self) -> ModelId {
        if self.members.len() == 1 && self.stacker.is_none() {
            return self.members[0].id().clone();
        }
        let ids: Vec<&ModelId> = self.members.iter().map(AnyModel::id).collect();
        let mut hasher = blake3::Hasher::new();
        for (id, weight) in ids.iter().zip(&self.weights) {
            hasher.update(id.blake3.as_bytes()).update(&weight.to_le_bytes());
        }
        if let Some(stacker) = &self.stacker {
            for w in stacker.weights.iter().chain([&stacker.bias]) {
                hasher.update(&w.to_le_bytes());
            }
        }
        let join = |f: fn(&ModelId) -> &str| ids.iter().map(|id| f(id)).collect::<Vec<_>>().join("+");
        ModelId { name: join(|id| &id.name), weights: join(|id| &id.weights), blake3: hasher.finalize().to_hex()[..16].to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_shipped_files_and_paths_stay_paths() {
        let dir = Path::new("m");
        assert_eq!(resolve(dir, "mesoinception4"), dir.join("mesoinception4.safetensors"));
        assert_eq!(resolve(dir, "default"), dir.join("default.safetensors"));
        assert_eq!(resolve(dir, "w/x.safetensors"), PathBuf::from("w/x.safetensors"));
        assert_eq!(resolve(dir, "x.safetensors"), PathBuf::from("x.safetensors"));
    }
}
