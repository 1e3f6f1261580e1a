//! Landmark calibration as LRNet's source does it (github.com/frederickszk/LRNet@9a172a0,
//! `demo/utils/landmark_utils.py`, `detect_frames_track`): the 68 points of each consecutive
//! frame of one face become the [-1, 1] rows LRNet reads, steadied by optical flow.
//!
//! 1. Per frame, the detected points as integers (the source truncates FAN's output). A frame
//!    without points, or whose face jumps (centre moves by more than half the face size, size
//!    changes by more than 30%), takes the previous frame's points.
//! 2. A stable square box: side 1.2 x the mean landmark extent of the track (even), centred on
//!    the landmarks' extent, the centre held still unless it moves by 1.42 px or more; the box
//!    cut from the frame (clipped at the frame's edge) and resized to 400x400 (cubic when
//!    enlarging, area when shrinking); points mapped into it and rounded.
//! 3. Frame to frame: pyramidal Lucas-Kanade (window 15, 3 levels) forward from the tracked
//!    points, started at the next detection, and back; a point whose round trip misses by more
//!    than 2 px, or that LK loses, keeps its detection. The others merge the flow and the
//!    detection with a per-point Kalman filter (process variance 0.3, measurement variance the
//!    ratio of detected to tracked motion), truncated to integers as the source's int arrays do.
//! 4. x, y mapped to [-1, 1] as (p - 200) / 200.
use anyhow::{ensure, Result};
use opencv::core::{Mat, Point2f, Rect, Size, TermCriteria, TermCriteria_Type, Vec3b, Vector};
use opencv::{imgproc, video};
use serde::{Deserialize, Serialize};

use crate::decode::Frame;

/// Points per face.
pub const POINTS: usize = 68;

/// Which landmarks LRNet reads: calibrated as its source did (the default), or raw: the
/// landmarker's points put in the same stable 400x400 box and [-1, 1] scale, without the
/// Lucas-Kanade / Kalman steadying (`--landmark-calibration off`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    #[default]
    On,
    Off,
}

impl Calibration {
    /// The source's settings, with or without tracking.
    pub fn config(self) -> CalibrationConfig {
        CalibrationConfig { track: self == Calibration::On, ..CalibrationConfig::default() }
    }

    /// "calibrated" or "raw", as tables and the landmark cache name the two kinds of rows.
    pub fn rows_name(self) -> &'static str {
        match self {
            Calibration::On => "calibrated",
            Calibration::Off => "raw",
        }
    }
}

/// One run of consecutive frames of one face track (within a clip), as LRNet's rows: one row
/// of 136 numbers (x0 y0 x1 y1 ..., in [-1, 1]) per frame, calibrated and raw. A kind that was
/// not computed is empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LandmarkRun {
    /// The clip it belongs to, and its first frame's position in the clip.
    pub clip: usize,
    pub start: usize,
    pub calibrated: Vec<Vec<f32>>,
    pub raw: Vec<Vec<f32>>,
}

impl LandmarkRun {
    /// The rows of one kind.
    pub fn rows(&self, calibration: Calibration) -> &[Vec<f32>] {
        match calibration {
            Calibration::On => &self.calibrated,
            Calibration::Off => &self.raw,
        }
    }
}

/// A face track's landmark runs, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackLandmarks {
    pub id: u32,
    pub runs: Vec<LandmarkRun>,
}

/// The source's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationConfig {
    /// Box side over the landmarks' extent.
    pub scale: f32,
    /// Side of the normalised face.
    pub face_side: i32,
    /// The box centre moves only when the landmarks' centre moves this far (px).
    pub shift_threshold: f32,
    /// Lucas-Kanade window and pyramid levels above the base.
    pub lk_window: i32,
    pub lk_levels: i32,
    /// Largest forward-backward round-trip error (px of the normalised face) for a tracked point.
    pub round_trip: f32,
    /// Kalman process variance.
    pub process_variance: f32,
    /// Whether to track at all: false gives the box and normalisation only (raw landmarks).
    pub track: bool,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self { scale: 1.2, face_side: 400, shift_threshold: 1.42, lk_window: 15, lk_levels: 3, round_trip: 2.0, process_variance: 0.3, track: true }
    }
}

type Shape = Vec<[i32; 2]>;

fn extent(shape: &[[i32; 2]]) -> ([i32; 2], [i32; 2]) {
    let min = [shape.iter().map(|p| p[0]).min().unwrap(), shape.iter().map(|p| p[1]).min().unwrap()];
    let max = [shape.iter().map(|p| p[0]).max().unwrap(), shape.iter().map(|p| p[1]).max().unwrap()];
    (min, max)
}

fn size_of(shape: &[[i32; 2]]) -> f32 {
    let (min, max) = extent(shape);
    (max[0] - min[0]).max(max[1] - min[1]) as f32
}

fn centroid(shape: &[[i32; 2]]) -> [f32; 2] {
    let n = shape.len() as f32;
    [shape.iter().map(|p| p[0] as f32).sum::<f32>() / n, shape.iter().map(|p| p[1] as f32).sum::<f32>() / n]
}

/// Step 1: integer shapes, gaps and jumps filled with the previous frame's. Frames before the
/// first detection are dropped: returns (frames skipped at the start, shapes).
fn steady_shapes(landmarks: &[Option<Vec<[f32; 2]>>]) -> (usize, Vec<Shape>) {
    let mut skipped = 0;
    let mut shapes: Vec<Shape> = Vec::new();
    for points in landmarks {
        let detected: Option<Shape> = points.as_ref().map(|p| p.iter().map(|&[x, y]| [x as i32, y as i32]).collect());
        let shape = match (detected, shapes.last()) {
            (None, None) => {
                skipped += 1;
                continue;
            }
            (None, Some(prev)) => prev.clone(),
            (Some(s), None) => s,
            (Some(s), Some(prev)) => {
                let (c0, c1) = (centroid(prev), centroid(&s));
                let distance = ((c0[0] - c1[0]).powi(2) + (c0[1] - c1[1]).powi(2)).sqrt();
                let (size0, size1) = (size_of(prev), size_of(&s));
                if distance > 0.5 * size0 || size1 < 0.7 * size0 || size1 > 1.3 * size0 {
                    prev.clone()
                } else {
                    s
                }
            }
        };
        shapes.push(shape);
    }
    (skipped, shapes)
}

/// Step 2's box for one shape: (x1, y1, side) and the centre to hold for the next frame.
fn face_box(shape: &[[i32; 2]], width: i32, height: i32, cfg: &CalibrationConfig, stable_size: i32, centre_prev: Option<[i32; 2]>) -> (i32, i32, i32, [i32; 2]) {
    let (min, max) = extent(shape);
    let mut centre = [(min[0] + max[0]).div_euclid(2), (min[1] + max[1]).div_euclid(2)];
    if let Some(prev) = centre_prev {
        let d = (((prev[0] - centre[0]).pow(2) + (prev[1] - centre[1]).pow(2)) as f32).sqrt();
        if d < cfg.shift_threshold {
            centre = prev;
        }
    }
    let side = ((stable_size as f32 * cfg.scale) as i32) / 2 * 2;
    let x1 = (centre[0] - side / 2).max(0);
    let y1 = (centre[1] - side / 2).max(0);
    let side = side.min(width - x1).min(height - y1);
    (x1, y1, side, centre)
}

/// The face at (x1, y1, side) of `frame`, resized to `out` x `out` RGB as the source does.
fn normalised_face(frame: &Frame, x1: i32, y1: i32, side: i32, out: i32) -> Result<Mat> {
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(frame.height as i32, frame.width as i32, &frame.rgb)?;
    let roi = Mat::roi(&image, Rect::new(x1, y1, side, side))?;
    let interpolation = if side < out { imgproc::INTER_CUBIC } else { imgproc::INTER_AREA };
    let mut face = Mat::default();
    imgproc::resize(&roi, &mut face, Size::new(out, out), 0.0, 0.0, interpolation)?;
    Ok(face)
}

fn to_points(shape: &[[i32; 2]]) -> Vector<Point2f> {
    shape.iter().map(|p| Point2f::new(p[0] as f32, p[1] as f32)).collect()
}

fn round(p: Point2f) -> [i32; 2] {
    [p.x.round_ties_even() as i32, p.y.round_ties_even() as i32]
}

/// Calibrated, normalised landmarks of one face over consecutive `frames`: one row of 136
/// numbers (x0 y0 x1 y1 ..., in [-1, 1]) per frame from the first with landmarks on.
/// `landmarks[i]` holds frame i's 68 points in frame pixels, None where none were found.
pub fn calibrate(frames: &[Frame], landmarks: &[Option<Vec<[f32; 2]>>], cfg: &CalibrationConfig) -> Result<Vec<Vec<f32>>> {
    ensure!(frames.len() == landmarks.len(), "{} frames but {} landmark sets", frames.len(), landmarks.len());
    ensure!(landmarks.iter().flatten().all(|p| p.len() == POINTS), "calibration takes {POINTS} points per face");
    let (skipped, shapes) = steady_shapes(landmarks);
    if shapes.is_empty() {
        return Ok(Vec::new());
    }
    // The source averages the previous frame's size over frames 1.. (frame 0's alone for one frame).
    let sizes: Vec<f32> = if shapes.len() > 1 { shapes[..shapes.len() - 1].iter().map(|s| size_of(s)).collect() } else { vec![size_of(&shapes[0])] };
    let stable_size = (sizes.iter().sum::<f32>() / sizes.len() as f32).round_ties_even() as i32;
    let out = cfg.face_side;
    let mut faces = Vec::with_capacity(shapes.len());
    let mut locations: Vec<Shape> = Vec::with_capacity(shapes.len());
    let mut centre_prev = None;
    for (shape, frame) in shapes.iter().zip(&frames[skipped..]) {
        let (x1, y1, side, centre) = face_box(shape, frame.width as i32, frame.height as i32, cfg, stable_size, centre_prev);
        ensure!(side > 0, "the face box leaves the frame");
        centre_prev = Some(centre);
        if cfg.track {
            faces.push(normalised_face(frame, x1, y1, side, out)?);
        }
        let scale = out as f32 / side as f32;
        locations.push(shape.iter().map(|p| [(((p[0] - x1) as f32) * scale).round_ties_even() as i32, (((p[1] - y1) as f32) * scale).round_ties_even() as i32]).collect());
    }
    let tracked = if cfg.track { track(&faces, &locations, cfg)? } else { locations };
    let half = (out / 2) as f32;
    Ok(tracked.iter().map(|shape| shape.iter().flat_map(|p| [(p[0] as f32 - half) / half, (p[1] as f32 - half) / half]).collect()).collect())
}

/// Step 3 over all frames: the tracked shapes.
fn track(faces: &[Mat], locations: &[Shape], cfg: &CalibrationConfig) -> Result<Vec<Shape>> {
    let criteria = TermCriteria::new(TermCriteria_Type::EPS as i32 | TermCriteria_Type::COUNT as i32, 10, 0.03)?;
    let window = Size::new(cfg.lk_window, cfg.lk_window);
    let mut tracked = vec![locations[0].clone()];
    let mut p_predict = [0.0f32; POINTS];
    for i in 0..locations.len() - 1 {
        let start = to_points(&tracked[i]);
        let mut forward = to_points(&locations[i + 1]);
        let (mut status_fw, mut err_fw) = (Vector::<u8>::new(), Vector::<f32>::new());
        video::calc_optical_flow_pyr_lk(&faces[i], &faces[i + 1], &start, &mut forward, &mut status_fw, &mut err_fw, window, cfg.lk_levels, criteria, video::OPTFLOW_USE_INITIAL_FLOW, 1e-4)?;
        let mut back = start.clone();
        let (mut status_fb, mut err_fb) = (Vector::<u8>::new(), Vector::<f32>::new());
        video::calc_optical_flow_pyr_lk(&faces[i + 1], &faces[i], &forward, &mut back, &mut status_fb, &mut err_fb, window, cfg.lk_levels, criteria, video::OPTFLOW_USE_INITIAL_FLOW, 1e-4)?;
        let mut merged = locations[i + 1].clone();
        for k in 0..POINTS {
            let base = tracked[i][k];
            let (fw, fb) = (round(forward.get(k)?), round(back.get(k)?));
            let dist = |a: [i32; 2], b: [i32; 2]| (((a[0] - b[0]).pow(2) + (a[1] - b[1]).pow(2)) as f32).sqrt();
            let ok = dist(fb, base) <= cfg.round_trip && status_fw.get(k)? != 0 && status_fb.get(k)? != 0;
            if !ok {
                continue;
            }
            let detect = dist(locations[i + 1][k], locations[i][k]);
            let predict = match dist(fw, base) {
                d if d == 0.0 => 1.0,
                d => d,
            };
            p_predict[k] += cfg.process_variance;
            let gain = p_predict[k] / (p_predict[k] + detect / predict);
            let target = locations[i + 1][k];
            // Truncated toward zero, as numpy stores a float into the source's int array.
            merged[k] = [
                (fw[0] as f32 + gain * (target[0] - fw[0]) as f32) as i32,
                (fw[1] as f32 + gain * (target[1] - fw[1]) as f32) as i32,
            ];
            p_predict[k] *= 1.0 - gain;
        }
        tracked.push(merged);
    }
    Ok(tracked)
}

/// Mean frame-to-frame movement of the points of `rows` (136-number rows), in the rows' units.
pub fn jitter(rows: &[Vec<f32>]) -> f32 {
    let mut total = 0.0;
    let mut count = 0;
    for pair in rows.windows(2) {
        for (a, b) in pair[0].chunks(2).zip(pair[1].chunks(2)) {
            total += ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
            count += 1;
        }
    }
    if count == 0 {
        0.0
    } else {
        total / count as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_jumps_take_the_previous_shape() {
        let square = |x: f32, s: f32| Some((0..POINTS).map(|i| [x + s * (i % 2) as f32, 10.0 + s * ((i / 2) % 2) as f32]).collect::<Vec<_>>());
        let (skipped, shapes) = steady_shapes(&[None, square(10.0, 50.0), None, square(200.0, 50.0), square(11.0, 80.0), square(12.0, 52.0)]);
        assert_eq!(skipped, 1);
        assert_eq!(shapes.len(), 5);
        assert_eq!(shapes[1], shapes[0], "a gap");
        assert_eq!(shapes[2], shapes[0], "a jump of the centre");
        assert_eq!(shapes[3], shapes[0], "a jump of the size");
        assert_eq!(shapes[4][0], [12, 10]);
    }

    #[test]
    fn the_box_centre_holds_still_under_small_moves() {
        let cfg = CalibrationConfig::default();
        let shape: Shape = vec![[100, 100], [200, 220]];
        let (x1, y1, side, c) = face_box(&shape, 640, 480, &cfg, 120, None);
        assert_eq!((x1, y1, side, c), (150 - 72, 160 - 72, 144, [150, 160]));
        let moved: Shape = vec![[101, 100], [201, 220]];
        assert_eq!(face_box(&moved, 640, 480, &cfg, 120, Some(c)).3, c, "a 1 px move keeps the centre");
        let moved: Shape = vec![[104, 100], [204, 220]];
        assert_eq!(face_box(&moved, 640, 480, &cfg, 120, Some(c)).3, [154, 160]);
        // Clipped at the frame's edge: still square, smaller.
        let (x1, _, side, _) = face_box(&[[600, 100], [639, 200]], 640, 480, &cfg, 120, None);
        assert_eq!((x1, side), (619 - 72, 640 - (619 - 72)));
    }
}
