//! Faces: find them in a frame (detect), cut each into a square model input (crop), and
//! follow each face across sampled frames (track).
//!
//! This stage knows our `decode::Frame`, never FFmpeg types, and hands the models stage
//! plain u8 RGB crops.
pub mod calibrate;
pub mod crop;
pub mod detect;
pub mod track;

use serde::{Deserialize, Serialize};

pub use crop::{square_crop, whole_frame};
pub use detect::{build_detector, DetectorKind, FaceDetector};
pub use track::{TrackId, Tracker, TrackerConfig};

/// A face box in pixels of the upright frame; serialised as `[x, y, w, h]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f32; 4]", from = "[f32; 4]")]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl From<FaceBox> for [f32; 4] {
    fn from(b: FaceBox) -> Self {
        [b.x, b.y, b.w, b.h]
    }
}

impl From<[f32; 4]> for FaceBox {
    fn from([x, y, w, h]: [f32; 4]) -> Self {
        Self { x, y, w, h }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub bbox: FaceBox,
    /// The detector's own score in [0, 1]; Haar cascades have none and report 1.
    pub confidence: f32,
    /// Five facial keypoints in frame pixels, from detectors that give them (YuNet): right
    /// eye, left eye, nose tip, right and left mouth corner (the subject's right and left).
    pub landmarks: Option<[[f32; 2]; 5]>,
}
