//! The scan's settings as data: what changes a result (sampling, faces, aggregation,
//! thresholds), apart from how it is computed (models, device, threads). `scan` builds them from
//! its flags; `submit` puts them into each job, and `worker` scans the job with them, so one
//! conversion to [`ScanConfig`] serves both and a job scanned on a cluster is scanned as
//! `scan` would. Serialised as JSON with the flags' names and values (`"aggregate":"mean"`);
//! a field left out takes `scan`'s default, an unknown one is refused.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::ScanConfig;
use crate::aggregate::{AcrossTracks, Strategy, DEFAULT_OOD_THRESHOLD};
use crate::decode::{Clips, DecodeOptions, Sampling};
use crate::faces::calibrate::Calibration;
use crate::faces::DetectorKind;
use crate::models::set::ModelSet;

/// Clips per video when a landmark model is in the set and `clips` is not given.
pub const DEFAULT_CLIPS: usize = 2;
/// Crops per forward pass (`--batch-size`) on `device`, for networks that compute in
/// `compute` ([`ModelSet::compute_kind`]). On CPU, with one libtorch thread (see
/// `ThreadSplit`), batching buys little per crop and large batches cost: a batch of 8 at
/// 224 px already makes EfficientNet-Lite0's f32 activations larger than glibc's 32 MB mmap
/// ceiling, so each pass maps and zero-fills fresh pages. The default scan of the bench clips
/// in f32 took 44.3 CPU seconds (5.5 in the kernel) at 8, 43.8 at 4 and 40.0 (0.7 in the
/// kernel) at 2; MesoInception4's scan still pays 0.5 s more kernel time at 4 than at 2. bf16
/// activations take half the bytes, and oneDNN's bf16 kernels run a batch of 4 faster (README,
/// "Speed"). A GPU wants large batches.
pub fn default_batch_size(device: tch::Device, compute: tch::Kind) -> usize {
    match (device.is_cuda(), compute) {
        (true, _) => 32,
        (false, tch::Kind::BFloat16) => 4,
        (false, _) => 2,
    }
}

/// `--faces`: how faces are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FacesMode {
    /// Detect faces with --detector.
    Auto,
    /// Take the whole frame as one face (for pre-cropped face images).
    None,
}

/// The settings that change a scan's result; the defaults are `dfscan scan`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanSettings {
    /// Frames sampled evenly over each video (unless `fps`).
    pub frames: usize,
    /// Frames per second instead of `frames`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Runs of consecutive frames for the models that read motion (None: 2 with a landmark
    /// model, else none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clips: Option<usize>,
    pub clip_len: usize,
    pub landmarks: bool,
    /// What a landmark model reads: calibrated (`on`) or raw (`off`) landmarks.
    pub landmark_calibration: Calibration,
    pub faces: FacesMode,
    pub detector: DetectorKind,
    pub min_face_confidence: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f32>,
    pub aggregate: Strategy,
    pub across_tracks: AcrossTracks,
    pub threshold: f32,
    pub ood_threshold: f32,
    /// An OOD model that is no member reads every Nth face of each track.
    pub ood_every: usize,
    /// Below it, the attribution's family or method is "unknown".
    pub attribution_floor: f32,
    /// The attribution model reads the first N faces of each track.
    pub attribution_faces: usize,
    pub per_frame: bool,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            frames: 32,
            fps: None,
            clips: None,
            clip_len: 61,
            landmarks: false,
            landmark_calibration: Calibration::On,
            faces: FacesMode::Auto,
            detector: DetectorKind::Yunet320,
            min_face_confidence: 0.5,
            margin: None,
            aggregate: Strategy::Confident,
            across_tracks: AcrossTracks::Max,
            threshold: 0.5,
            ood_threshold: DEFAULT_OOD_THRESHOLD,
            ood_every: 4,
            attribution_floor: crate::attribution::DEFAULT_FLOOR,
            attribution_faces: crate::attribution::DEFAULT_FACES,
            per_frame: false,
        }
    }
}

/// How a run computes, which changes no result: decoder threads and shortcuts, the threads of
/// OpenCV's and libtorch's pools, crops per forward pass, and where `--explain` writes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub decode: DecodeOptions,
    pub threads: super::ThreadSplit,
    pub batch_size: usize,
    pub explain: Option<std::path::PathBuf>,
}

impl ScanSettings {
    /// Refuses settings no scan can run with (the flags' own checks).
    pub fn check(&self) -> Result<()> {
        match self.fps {
            Some(fps) if !(fps > 0.0 && fps.is_finite()) => bail!("--fps must be positive, got {fps}"),
            None if self.frames == 0 => bail!("--frames must be at least 1"),
            _ => {}
        }
        if self.clips.is_some_and(|c| c > 0) && self.clip_len == 0 {
            bail!("--clip-len must be at least 1");
        }
        for (name, value) in [("--min-face-confidence", self.min_face_confidence), ("--threshold", self.threshold), ("--ood-threshold", self.ood_threshold)] {
            if !value.is_finite() {
                bail!("{name} must be a number, got {value}");
            }
        }
        if self.ood_every == 0 {
            bail!("--ood-every must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.attribution_floor) {
            bail!("--attribution-floor must be in [0, 1], got {}", self.attribution_floor);
        }
        if self.attribution_faces == 0 {
            bail!("--attribution-faces must be at least 1");
        }
        if let Some(margin) = self.margin.filter(|m| !(m.is_finite() && *m >= 0.0)) {
            bail!("--margin must be a number from 0, got {margin}");
        }
        Ok(())
    }

    /// The face source and detector, as the state database's settings key names them.
    pub fn faces_key(&self) -> String {
        match self.faces {
            FacesMode::None => "whole-frame".to_string(),
            FacesMode::Auto => format!("{:?}@{}", self.detector, self.min_face_confidence),
        }
    }

    /// The pipeline's configuration for these settings with these models.
    pub fn config(&self, set: &ModelSet, run: RunOptions) -> Result<ScanConfig> {
        self.check()?;
        let clips = match (self.clips, set.needs_landmarks()) {
            (Some(0), _) => None,
            (Some(count), _) => Some(Clips { count, len: self.clip_len }),
            (None, true) => Some(Clips { count: DEFAULT_CLIPS, len: self.clip_len }),
            (None, false) => None,
        };
        if clips.is_some() && self.clip_len == 0 {
            bail!("--clip-len must be at least 1");
        }
        Ok(ScanConfig {
            clips,
            landmarks: self.landmarks,
            landmark_calibration: self.landmark_calibration,
            keep_landmarks: false,
            sampling: match self.fps {
                Some(fps) => Sampling::Fps(fps),
                None => Sampling::Frames(self.frames),
            },
            decode: run.decode,
            threads: run.threads,
            margin: self.margin,
            detector: self.detector,
            aggregate: self.aggregate,
            across_tracks: self.across_tracks,
            threshold: self.threshold,
            batch_size: run.batch_size.max(1),
            per_frame: self.per_frame,
            ood_threshold: self.ood_threshold,
            ood_every: self.ood_every,
            attribution_floor: self.attribution_floor,
            attribution_faces: self.attribution_faces,
            explain: run.explain,
        })
    }

    /// [`ScanConfig::settings_key`] of these settings with these models: what, besides the
    /// file and the model's weights, decides a result.
    pub fn settings_key(&self, cfg: &ScanConfig, set: &ModelSet) -> String {
        let key = cfg.settings_key(&self.faces_key(), set.ood_model().map(|m| m.id.blake3.as_str()));
        let attribution = set.attribution.as_ref().map_or("none".to_string(), |a| format!("{}@{}x{}", a.id.blake3, self.attribution_floor, self.attribution_faces));
        format!("{key} attribution={attribution}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_flags_and_leaves_out_defaults_it_may() {
        let settings = ScanSettings { frames: 4, aggregate: Strategy::Mean, across_tracks: AcrossTracks::Pooled, ..Default::default() };
        let json = serde_json::to_string(&settings).unwrap();
        assert!(json.contains("\"aggregate\":\"mean\"") && json.contains("\"across_tracks\":\"pooled\"") && json.contains("\"detector\":\"yunet320\""), "{json}");
        assert_eq!(serde_json::from_str::<ScanSettings>(&json).unwrap(), settings);
        assert_eq!(serde_json::from_str::<ScanSettings>(r#"{"frames":4}"#).unwrap(), ScanSettings { frames: 4, ..Default::default() });
    }

    #[test]
    fn models_in_bf16_take_four_crops_a_pass_on_cpu() {
        use tch::{Device, Kind};
        assert_eq!(default_batch_size(Device::Cpu, Kind::Float), 2);
        assert_eq!(default_batch_size(Device::Cpu, Kind::BFloat16), 4);
        assert_eq!(default_batch_size(Device::Cuda(0), Kind::BFloat16), 32);
    }

    #[test]
    fn unknown_settings_and_impossible_values_are_refused() {
        assert!(serde_json::from_str::<ScanSettings>(r#"{"frames":4,"shell":"rm -rf /"}"#).is_err());
        assert!(serde_json::from_str::<ScanSettings>(r#"{"detector":"magic"}"#).is_err());
        assert!(ScanSettings { frames: 0, ..Default::default() }.check().is_err());
        assert!(ScanSettings { fps: Some(-1.0), ..Default::default() }.check().is_err());
        assert!(ScanSettings { margin: Some(f32::NAN), ..Default::default() }.check().is_err());
        assert!(ScanSettings { attribution_floor: 1.5, ..Default::default() }.check().is_err());
        assert!(ScanSettings { attribution_faces: 0, ..Default::default() }.check().is_err());
        assert!(ScanSettings::default().check().is_ok());
    }
}
