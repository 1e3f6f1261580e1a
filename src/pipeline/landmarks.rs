//! Landmarks for the models that read them (LRNet): the faces stage runs the landmarker on each
//! face of the frames that need it and, on clip frames, cuts a region of the frame around the
//! face ([`Region`]); the models stage collects each track's landmarks and regions over each
//! clip ([`ClipTracks`]), calibrates them as LRNet's source did (`faces::calibrate`) when the
//! clip ends, and at the input's end scores the calibrated rows with LRNet, block by block.
//!
//! Memory: calibration needs the pixels of consecutive frames (Lucas-Kanade flow inside the
//! face box), but holding a clip's whole frames (60 x 6 MB at 1080p) for every input in flight
//! is more than the face needs. So each face of a clip frame keeps only a square region of its
//! frame, [`REGION`] x the face box's longer side, centred on the box (clipped at the frame's
//! edge), and only until its clip ends: at most `--clip-len` regions per track of the current
//! clip of each input (a 200-pixel face: 0.75 MB a frame, 45 MB for a clip of 61). Calibration
//! then runs on one canvas per frame, the union of the run's regions, with the landmarks moved
//! into the canvas's coordinates. LRNet's stable box is 1.2 x the landmarks' extent around
//! their centre, well inside a region 2.5 face boxes wide, so it reads the same pixels as on
//! the whole frame; where the face box is clipped at the frame's edge, so is the region, and
//! the canvas edge is the frame's. Only a face that jumps within one track (the calibration
//! then holds the previous shape) could have its box reach past its region, onto black.
use std::collections::BTreeMap;

use anyhow::Result;

use crate::aggregate::judge::TrackWindows;
use crate::decode::Frame;
use crate::faces::calibrate::{calibrate, Calibration, CalibrationConfig, LandmarkRun, TrackLandmarks};
use crate::faces::FaceBox;
use crate::models::lrnet::LrnetModel;

/// A clip face's region side over the face box's longer side.
pub const REGION: f32 = 2.5;

/// A square of a frame around a face (clipped at the frame's edge), RGB.
#[derive(Clone, Debug)]
pub(super) struct Region {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub rgb: Vec<u8>,
}

impl Region {
    pub(super) fn cut(frame: &Frame, bbox: &FaceBox) -> Self {
        let side = bbox.w.max(bbox.h) * REGION;
        let (cx, cy) = (bbox.x + bbox.w / 2.0, bbox.y + bbox.h / 2.0);
        let (fw, fh) = (frame.width as i32, frame.height as i32);
        let x0 = ((cx - side / 2.0).floor() as i32).clamp(0, fw);
        let y0 = ((cy - side / 2.0).floor() as i32).clamp(0, fh);
        let x1 = ((cx + side / 2.0).ceil() as i32).clamp(x0, fw);
        let y1 = ((cy + side / 2.0).ceil() as i32).clamp(y0, fh);
        let (w, h) = (x1 - x0, y1 - y0);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in y0..y1 {
            let row = (y * fw) as usize * 3;
            rgb.extend_from_slice(&frame.rgb[row + x0 as usize * 3..row + x1 as usize * 3]);
        }
        Self { x: x0, y: y0, w, h, rgb }
    }
}

/// One face of a clip frame, waiting for its clip to end.
struct ClipFace {
    /// Its position in the clip.
    pos: usize,
    landmarks: Vec<[f32; 2]>,
    region: Region,
}

/// One input's landmark tracks, clip by clip.
pub(super) struct ClipTracks {
    /// The rows LRNet reads: calibrated, or raw (`--landmark-calibration`).
    calibration: Calibration,
    /// Compute both kinds of rows of every run, for the landmark cache (`extract --landmarks`).
    both: bool,
    /// The clip being collected, and its faces per track.
    clip: Option<usize>,
    faces: BTreeMap<u32, Vec<ClipFace>>,
    /// Per track: each run of consecutive frames (within a clip).
    runs: BTreeMap<u32, Vec<LandmarkRun>>,
    error: Option<String>,
}

impl ClipTracks {
    pub(super) fn new(calibration: Calibration, both: bool) -> Self {
        Self { calibration, both, clip: None, faces: BTreeMap::new(), runs: BTreeMap::new(), error: None }
    }

    /// Files one face of frame `pos` of clip `clip`; the first face of a later clip closes the
    /// one before.
    pub(super) fn add(&mut self, clip: usize, pos: usize, track: u32, landmarks: Vec<[f32; 2]>, region: Region) {
        if self.clip != Some(clip) {
            self.close();
            self.clip = Some(clip);
        }
        self.faces.entry(track).or_default().push(ClipFace { pos, landmarks, region });
    }

    /// Calibrates the current clip's tracks, run by run, and lets go of their pixels.
    pub(super) fn close(&mut self) {
        let clip = self.clip.unwrap_or(0);
        let kinds: Vec<Calibration> = if self.both { vec![Calibration::On, Calibration::Off] } else { vec![self.calibration] };
        for (track, faces) in std::mem::take(&mut self.faces) {
            let mut start = 0;
            for end in 1..=faces.len() {
                if end == faces.len() || faces[end].pos != faces[end - 1].pos + 1 {
                    let mut run = LandmarkRun { clip, start: faces[start].pos, ..Default::default() };
                    for &kind in &kinds {
                        match calibrate_run(&faces[start..end], &kind.config()) {
                            Ok(rows) if kind == Calibration::On => run.calibrated = rows,
                            Ok(rows) => run.raw = rows,
                            Err(e) => {
                                self.error.get_or_insert_with(|| format!("landmark calibration of track {track}: {e:#}"));
                            }
                        }
                    }
                    self.runs.entry(track).or_default().push(run);
                    start = end;
                }
            }
        }
    }

    /// Closes the last clip and scores every track's runs: the P(fake) of each block, in
    /// order; a track without a run of enough frames gets LRNet's "too short" note instead.
    pub(super) fn windows(&mut self, model: &LrnetModel) -> Result<Vec<TrackWindows>> {
        self.close();
        if let Some(e) = &self.error {
            anyhow::bail!("{e}");
        }
        let tracks = self.runs.iter().map(|(&id, runs)| (id, runs.iter().map(|r| r.rows(self.calibration)).collect::<Vec<_>>()));
        tracks.map(|(id, runs)| crate::models::lrnet::track_windows(&model.net, id, &runs)).collect()
    }

    /// Closes the last clip and hands over every track's runs (the landmark cache's record).
    pub(super) fn take(&mut self) -> Vec<TrackLandmarks> {
        self.close();
        std::mem::take(&mut self.runs).into_iter().map(|(id, runs)| TrackLandmarks { id, runs }).collect()
    }
}

/// A run's calibrated rows, from one canvas per frame: the union of the run's regions.
fn calibrate_run(faces: &[ClipFace], cfg: &CalibrationConfig) -> Result<Vec<Vec<f32>>> {
    let x0 = faces.iter().map(|f| f.region.x).min().unwrap_or(0);
    let y0 = faces.iter().map(|f| f.region.y).min().unwrap_or(0);
    let x1 = faces.iter().map(|f| f.region.x + f.region.w).max().unwrap_or(0);
    let y1 = faces.iter().map(|f| f.region.y + f.region.h).max().unwrap_or(0);
    let (w, h) = ((x1 - x0).max(1), (y1 - y0).max(1));
    let mut frames = Vec::with_capacity(faces.len());
    let mut landmarks = Vec::with_capacity(faces.len());
    for (i, face) in faces.iter().enumerate() {
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let r = &face.region;
        for y in 0..r.h {
            let src = (y * r.w * 3) as usize;
            let dst = (((r.y - y0 + y) * w + (r.x - x0)) * 3) as usize;
            rgb[dst..dst + (r.w * 3) as usize].copy_from_slice(&r.rgb[src..src + (r.w * 3) as usize]);
        }
        frames.push(Frame { index: i, pts_s: 0.0, width: w as u32, height: h as u32, rgb, role: Default::default() });
        landmarks.push(Some(face.landmarks.iter().map(|&[x, y]| [x - x0 as f32, y - y0 as f32]).collect()));
    }
    calibrate(&frames, &landmarks, cfg)
}
