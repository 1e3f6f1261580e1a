//! Face tracks: which detections in successive sampled frames are the same face, so that each
//! person in a video becomes one sequence for the temporal model and one score in the report.
//!
//! The method is SORT's without its Kalman filter (Bewley et al., "Simple Online and Realtime
//! Tracking", ICIP 2016): every track predicts its box in the new frame from a smoothed
//! constant velocity; a detection and a track may match only when the IoU of the detection
//! with that prediction is at least [`TrackerConfig::min_iou`] and their sizes differ by at most
//! [`TrackerConfig::max_size_ratio`]; the allowed pairs are taken greedily, highest IoU first
//! (ties: older track, then earlier detection), each track and detection at most once. A
//! detection left over starts a new track; a track left over misses the frame, and one that
//! misses more than [`TrackerConfig::max_missed`] frames in a row ends, so a face that comes
//! back later gets a new id.
//!
//! Greedy matching rather than the Hungarian method: with gating, faces of one video seldom
//! compete for a detection, and when they do the highest-IoU pair is the one to keep.
//!
//! Frames here are the sampled ones (`decode::Sampling`), not the video's: at the default
//! 32 frames per video, successive samples of a 10 s clip are 0.3 s apart, which is why the
//! IoU gate is loose and the prediction matters.
use serde::{Deserialize, Serialize};

use super::{Detection, FaceBox};

/// A track's number, unique within one video (one [`Tracker`]), counted from 0 in order of
/// first appearance.
pub type TrackId = u32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// Least IoU between a detection and a track's predicted box for the two to match.
    /// Default 0.3: a face box moving by half its width between samples still matches
    /// (IoU 1/3), one that lands beside it does not.
    pub min_iou: f32,
    /// Largest ratio between the sides (square root of the area) of a detection and of the
    /// track's last box. Default 1.5: a face does not grow or shrink by half between samples,
    /// while a detector that merges two faces, or a nested false positive, does.
    pub max_size_ratio: f32,
    /// Sampled frames in a row that a track may miss (a turned head, a blink of the
    /// detector) and still continue; one more and it ends. Default 2.
    pub max_missed: usize,
    /// Weight of the newest displacement in the smoothed velocity, in (0, 1]. Default 0.5:
    /// detector jitter is halved, a real change of direction followed within two frames.
    pub velocity_smoothing: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { min_iou: 0.3, max_size_ratio: 1.5, max_missed: 2, velocity_smoothing: 0.5 }
    }
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let w = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
    let h = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let union = a.w * a.h + b.w * b.h - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Ratio (>= 1) of the sides of two boxes, each side the square root of the box's area.
pub fn size_ratio(a: &FaceBox, b: &FaceBox) -> f32 {
    let (sa, sb) = ((a.w * a.h).max(0.0).sqrt(), (b.w * b.h).max(0.0).sqrt());
    if sa.min(sb) <= 0.0 {
        return f32::INFINITY;
    }
    sa.max(sb) / sa.min(sb)
}

#[derive(Clone, Debug)]
struct Track {
    id: TrackId,
    /// The box of its last detection.
    last: FaceBox,
    /// Smoothed displacement of the box per sampled frame, in pixels (x, y).
    velocity: (f32, f32),
    /// Sampled frames in a row without a detection.
    missed: usize,
}

impl Track {
    /// Where the face should be in the next frame: the last box moved by the velocity over
    /// the frames since it was seen.
    fn predicted(&self) -> FaceBox {
        let steps = (self.missed + 1) as f32;
        FaceBox { x: self.last.x + self.velocity.0 * steps, y: self.last.y + self.velocity.1 * steps, ..self.last }
    }
}

/// What one frame did to the tracks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameTracks {
    /// The track of each detection, in the order of the detections.
    pub ids: Vec<TrackId>,
    /// Tracks that ended at this frame (they missed one frame more than allowed), ascending:
    /// their sequences are complete.
    pub ended: Vec<TrackId>,
}

/// Associates the detections of one video's sampled frames, frame by frame, into tracks.
/// Pure: no OpenCV, no frames, only boxes.
#[derive(Clone, Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    /// Open tracks, oldest first.
    tracks: Vec<Track>,
    next_id: TrackId,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self { cfg, tracks: Vec::new(), next_id: 0 }
    }

    /// Takes the detections of the next sampled frame (a frame without faces too: it counts
    /// as a miss for every track) and returns the track of each.
    pub fn update(&mut self, detections: &[Detection]) -> FrameTracks {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            let predicted = track.predicted();
            for (d, det) in detections.iter().enumerate() {
                let overlap = iou(&predicted, &det.bbox);
                if overlap >= self.cfg.min_iou && size_ratio(&track.last, &det.bbox) <= self.cfg.max_size_ratio {
                    pairs.push((overlap, t, d));
                }
            }
        }
        // Highest IoU first; ties to the older track (lower index), then the earlier detection.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut det_track: Vec<Option<usize>> = vec![None; detections.len()];
        let mut track_taken = vec![false; self.tracks.len()];
        for (_, t, d) in pairs {
            if !track_taken[t] && det_track[d].is_none() {
                track_taken[t] = true;
                det_track[d] = Some(t);
            }
        }

        let alpha = self.cfg.velocity_smoothing.clamp(f32::EPSILON, 1.0);
        let mut ids: Vec<Option<TrackId>> = vec![None; detections.len()];
        for (d, matched) in det_track.iter().enumerate() {
            let Some(t) = *matched else { continue };
            let track = &mut self.tracks[t];
            let bbox = detections[d].bbox;
            // Displacement per sampled frame since the track was last seen.
            let steps = (track.missed + 1) as f32;
            let step = ((centre_x(&bbox) - centre_x(&track.last)) / steps, (centre_y(&bbox) - centre_y(&track.last)) / steps);
            track.velocity = (alpha * step.0 + (1.0 - alpha) * track.velocity.0, alpha * step.1 + (1.0 - alpha) * track.velocity.1);
            track.last = bbox;
            track.missed = 0;
            ids[d] = Some(track.id);
        }
        let mut ended = Vec::new();
        let max_missed = self.cfg.max_missed;
        let mut taken = track_taken.into_iter();
        self.tracks.retain_mut(|track| {
            if !taken.next().expect("one flag per track") {
                track.missed += 1;
                if track.missed > max_missed {
                    ended.push(track.id);
                    return false;
                }
            }
            true
        });
        let ids = ids
            .into_iter()
            .zip(detections)
            .map(|(id, det)| {
                id.unwrap_or_else(|| {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.tracks.push(Track { id, last: det.bbox, velocity: (0.0, 0.0), missed: 0 });
                    id
                })
            })
            .collect();
        FrameTracks { ids, ended }
    }

    /// Ids of the open tracks, oldest first.
    pub fn open(&self) -> Vec<TrackId> {
        self.tracks.iter().map(|t| t.id).collect()
    }

    /// Ends every open track (the video is over) and returns their ids, ascending.
    pub fn finish(&mut self) -> Vec<TrackId> {
        let mut ids = self.open();
        ids.sort_unstable();
        self.tracks.clear();
        ids
    }
}

fn centre_x(b: &FaceBox) -> f32 {
    b.x + b.w / 2.0
}

fn centre_y(b: &FaceBox) -> f32 {
    b.y + b.h / 2.0
}

/// Tracks for a whole video at once: the track of every detection of every frame.
pub fn track_frames(frames: &[Vec<Detection>], cfg: &TrackerConfig) -> Vec<Vec<TrackId>> {
    let mut tracker = Tracker::new(cfg.clone());
    frames.iter().map(|dets| tracker.update(dets).ids).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, side: f32) -> Detection {
        Detection { bbox: FaceBox { x, y, w: side, h: side }, confidence: 0.9, landmarks: None }
    }

    /// A few pixels of deterministic detector jitter.
    fn jitter(i: usize, k: f32) -> f32 {
        ((i as f32 * 12.9898 + k).sin() * 43758.547).fract() * 3.0
    }

    #[test]
    fn iou_and_size_ratio() {
        let a = FaceBox { x: 0.0, y: 0.0, w: 10.0, h: 10.0 };
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &FaceBox { x: 5.0, ..a }), 50.0 / 150.0);
        assert_eq!(iou(&a, &FaceBox { x: 10.0, ..a }), 0.0);
        assert_eq!(size_ratio(&a, &FaceBox { w: 20.0, h: 20.0, ..a }), 2.0);
        assert_eq!(size_ratio(&a, &FaceBox { w: 0.0, ..a }), f32::INFINITY);
    }

    #[test]
    fn a_smoothly_moving_face_is_one_track() {
        // 60 samples: right and down, growing slowly, with jitter; 30 px per sample at the
        // start is a third of the box (IoU about 0.5 without the prediction).
        let frames: Vec<Vec<Detection>> = (0..60)
            .map(|i| {
                let side = 90.0 + i as f32 + jitter(i, 1.0);
                vec![det(10.0 + 30.0 * i as f32 * (1.0 - i as f32 / 150.0) + jitter(i, 2.0), 40.0 + 4.0 * i as f32, side)]
            })
            .collect();
        let ids = track_frames(&frames, &TrackerConfig::default());
        assert!(ids.iter().all(|f| f == &[0]), "{ids:?}");
    }

    #[test]
    fn two_faces_crossing_keep_their_ids() {
        // A moves right, B left, 60 px apart vertically; they overlap in the middle frames.
        // The detector lists them in a different order every other frame.
        let mut tracker = Tracker::new(TrackerConfig::default());
        for i in 0..50 {
            let a = det(20.0 + 8.0 * i as f32 + jitter(i, 3.0), 100.0 + jitter(i, 4.0), 100.0);
            let b = det(420.0 - 8.0 * i as f32 + jitter(i, 5.0), 160.0 + jitter(i, 6.0), 104.0);
            let swapped = i % 2 == 1;
            let dets = if swapped { vec![b, a] } else { vec![a, b] };
            let out = tracker.update(&dets);
            let want = if swapped { [1, 0] } else { [0, 1] };
            assert_eq!(out.ids, want, "frame {i}");
            assert!(out.ended.is_empty());
        }
        assert_eq!(tracker.finish(), [0, 1]);
    }

    #[test]
    fn two_faces_moving_apart_keep_their_ids() {
        // Side by side, touching at first, then drifting apart.
        let frames: Vec<Vec<Detection>> = (0..30)
            .map(|i| vec![det(200.0 - 6.0 * i as f32, 80.0, 100.0), det(300.0 + 6.0 * i as f32, 80.0 + jitter(i, 7.0), 100.0)])
            .collect();
        let ids = track_frames(&frames, &TrackerConfig::default());
        assert!(ids.iter().all(|f| f == &[0, 1]), "{ids:?}");
    }

    #[test]
    fn a_face_missing_for_more_than_k_frames_gets_a_new_id() {
        let cfg = TrackerConfig::default();
        let k = cfg.max_missed;
        let face = |i: usize| vec![det(100.0 + 2.0 * i as f32, 100.0, 120.0)];
        let mut tracker = Tracker::new(cfg.clone());
        // Seen, then away for exactly K frames: the same track.
        for i in 0..5 {
            assert_eq!(tracker.update(&face(i)).ids, [0]);
        }
        for _ in 0..k {
            assert_eq!(tracker.update(&[]), FrameTracks::default());
        }
        assert_eq!(tracker.update(&face(5 + k)).ids, [0], "back after {k} missed frames");
        // Away for K + 1 frames: the track ends on the (K + 1)-th, and the face is new.
        for m in 0..=k {
            let out = tracker.update(&[]);
            assert_eq!(out.ended, if m == k { vec![0] } else { vec![] }, "miss {}", m + 1);
        }
        assert!(tracker.open().is_empty());
        assert_eq!(tracker.update(&face(20)).ids, [1]);
    }

    #[test]
    fn the_prediction_carries_a_track_over_missed_frames() {
        // Moving 40 px per sample with a box of 100: after two missed frames the face is
        // 120 px from its last box (no overlap), but where the track expects it.
        let mut tracker = Tracker::new(TrackerConfig::default());
        for i in 0..6 {
            assert_eq!(tracker.update(&[det(40.0 * i as f32, 50.0, 100.0)]).ids, [0]);
        }
        tracker.update(&[]);
        tracker.update(&[]);
        assert_eq!(tracker.update(&[det(40.0 * 8.0, 50.0, 100.0)]).ids, [0]);
    }

    #[test]
    fn a_size_jump_starts_a_new_track() {
        // Same centre, side 100 -> 170: IoU 0.35 passes the IoU gate, the size gate (1.7 >
        // 1.5) refuses it. The old track misses the frame, and ends K frames later.
        let cfg = TrackerConfig::default();
        let mut tracker = Tracker::new(cfg.clone());
        assert_eq!(tracker.update(&[det(100.0, 100.0, 100.0)]).ids, [0]);
        let big = det(65.0, 65.0, 170.0);
        assert!(iou(&FaceBox { x: 100.0, y: 100.0, w: 100.0, h: 100.0 }, &big.bbox) > cfg.min_iou);
        assert_eq!(tracker.update(&[big]).ids, [1]);
        assert_eq!(tracker.open(), [0, 1]);
        // A growth within the ratio continues the track.
        assert_eq!(tracker.update(&[det(60.0, 60.0, 180.0)]).ids, [1]);
        assert_eq!(tracker.update(&[det(60.0, 60.0, 180.0)]).ended, [0]);
    }

    #[test]
    fn a_detection_beside_a_track_is_a_new_face() {
        let ids = track_frames(&[vec![det(0.0, 0.0, 100.0)], vec![det(150.0, 0.0, 100.0)]], &TrackerConfig::default());
        assert_eq!(ids, [[0], [1]]);
    }
}
