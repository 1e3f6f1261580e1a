//! Which decoded frames a scan keeps: frames spread over the video for the frame models
//! (`--frames N`, `--fps F`), and runs of consecutive frames for the temporal models
//! (`--clips M --clip-len T`), served by one decode. A frame wanted by both is kept once, and
//! says what it was kept for ([`Role`]).
//!
//! The decoder asks [`Sampler::next_time`] what it may skip: before the next target, frames
//! no other frame references are discarded and far targets are sought. While a clip runs, any
//! next frame is wanted (`None`), so nothing is discarded or sought until it ends: a clip's
//! frames are consecutive decoded frames, with or without the shortcuts.

/// Timestamps are rounded to the stream's time base; a frame this close to a target meets it.
pub(super) const SLACK: f64 = 1e-6;

/// Which frames to keep for the frame models (`--frames N` or `--fps F`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// N frames evenly spread over the duration (the first N frames if it is unknown).
    Frames(usize),
    /// One frame every 1/F seconds.
    Fps(f64),
}

/// Runs of consecutive frames for the temporal models (`--clips M --clip-len T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clips {
    /// M: runs per video.
    pub count: usize,
    /// T: consecutive decoded frames per run.
    pub len: usize,
}

/// What a kept frame was kept for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Sampled for the frame models (`--frames`/`--fps`).
    pub spread: bool,
    /// Part of a clip: (clip number, position in the clip).
    pub clip: Option<(usize, usize)>,
}

/// Decides, frame by frame in presentation order, which frames are kept.
#[derive(Clone, Debug)]
pub struct Sampler {
    spread: Option<Spread>,
    clips: Option<ClipPlan>,
    kept: usize,
}

/// The frame models' plan.
#[derive(Clone, Debug)]
enum Spread {
    /// Target times; a frame is kept when it is the first at or after the next target.
    Times { targets: Vec<f64>, next: usize },
    Every { period: f64, next_t: f64 },
    FirstN { n: usize, kept: usize },
}

/// The clips' plan: start times; a clip starts at the first frame at or after its start and
/// takes the next `len - 1` decoded frames after it. A start passed while a clip runs is
/// dropped (a video too short for M separate clips gives fewer).
#[derive(Clone, Debug)]
struct ClipPlan {
    starts: Vec<f64>,
    next: usize,
    len: usize,
    /// The clip in progress: (its number, frames kept so far).
    running: Option<(usize, usize)>,
    /// Clips begun so far (their numbers).
    begun: usize,
}

impl Spread {
    fn new(sampling: Sampling, duration_s: Option<f64>) -> Self {
        match (sampling, duration_s) {
            (Sampling::Frames(n), Some(d)) if d > 0.0 => Spread::Times { targets: (0..n).map(|i| d * i as f64 / n as f64).collect(), next: 0 },
            (Sampling::Frames(n), _) => Spread::FirstN { n, kept: 0 },
            (Sampling::Fps(f), _) => Spread::Every { period: 1.0 / f, next_t: 0.0 },
        }
    }

    fn take(&mut self, t: f64) -> bool {
        match self {
            Spread::Times { targets, next } => {
                let keep = *next < targets.len() && t + SLACK >= targets[*next];
                while *next < targets.len() && targets[*next] <= t + SLACK {
                    *next += 1;
                }
                keep
            }
            Spread::Every { period, next_t } => {
                let keep = t + SLACK >= *next_t;
                if keep {
                    *next_t = ((t + SLACK) / *period).floor() * *period + *period;
                }
                keep
            }
            Spread::FirstN { n, kept } => {
                let keep = *kept < *n;
                *kept += keep as usize;
                keep
            }
        }
    }

    fn done(&self) -> bool {
        match self {
            Spread::Times { targets, next } => *next >= targets.len(),
            Spread::Every { .. } => false,
            Spread::FirstN { n, kept } => kept >= n,
        }
    }

    fn next(&self) -> Next {
        match self {
            _ if self.done() => Next::Done,
            Spread::Times { targets, next } => Next::At(targets[*next]),
            Spread::Every { next_t, .. } => Next::At(*next_t),
            Spread::FirstN { .. } => Next::Any,
        }
    }

    fn planned(&self) -> Option<usize> {
        match self {
            Spread::Times { targets, .. } => Some(targets.len()),
            Spread::Every { .. } => None,
            Spread::FirstN { n, .. } => Some(*n),
        }
    }
}

impl ClipPlan {
    /// M starts spread evenly: each clip spans about `len / fps` seconds, the clips' centres
    /// at (i + 0.5) / M of the part of the video a clip can start in. Without a duration or a
    /// frame rate, the clips follow each other from the start.
    fn new(clips: Clips, duration_s: Option<f64>, fps: Option<f64>) -> Self {
        let starts = match (duration_s, fps) {
            (Some(d), Some(fps)) if d > 0.0 && fps > 0.0 => {
                let room = (d - clips.len as f64 / fps).max(0.0);
                (0..clips.count).map(|i| room * (i as f64 + 0.5) / clips.count as f64).collect()
            }
            _ => vec![f64::NEG_INFINITY; clips.count],
        };
        Self { starts, next: 0, len: clips.len.max(1), running: None, begun: 0 }
    }

    fn take(&mut self, t: f64) -> Option<(usize, usize)> {
        if self.running.is_none() && self.next < self.starts.len() && t + SLACK >= self.starts[self.next] {
            self.running = Some((self.begun, 0));
            self.begun += 1;
            self.next += 1;
        }
        let Some((clip, pos)) = self.running else { return None };
        // Starts passed while this clip runs are dropped.
        while self.next < self.starts.len() && self.starts[self.next] <= t + SLACK && self.starts[self.next] > f64::NEG_INFINITY {
            self.next += 1;
        }
        self.running = (pos + 1 < self.len).then_some((clip, pos + 1));
        Some((clip, pos))
    }

    fn done(&self) -> bool {
        self.running.is_none() && self.next >= self.starts.len()
    }

    fn next(&self) -> Next {
        match (self.running, self.starts.get(self.next)) {
            (Some(_), _) => Next::Any,
            (None, Some(&t)) if t == f64::NEG_INFINITY => Next::Any,
            (None, Some(&t)) => Next::At(t),
            (None, None) => Next::Done,
        }
    }
}

/// The next frame a plan wants.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    /// The first frame shown at or after this time.
    At(f64),
    /// Whichever frame comes next.
    Any,
    /// None.
    Done,
}

impl Sampler {
    /// Frames for the frame models only.
    pub fn new(sampling: Sampling, duration_s: Option<f64>) -> Self {
        Self::plan(Some(sampling), None, duration_s, None)
    }

    /// Frames spread for the frame models (`spread`), clips of consecutive frames (`clips`),
    /// or both, from the video's duration and frame rate.
    pub fn plan(spread: Option<Sampling>, clips: Option<Clips>, duration_s: Option<f64>, fps: Option<f64>) -> Self {
        Self {
            spread: spread.map(|s| Spread::new(s, duration_s)),
            clips: clips.filter(|c| c.count > 0 && c.len > 0).map(|c| ClipPlan::new(c, duration_s, fps)),
            kept: 0,
        }
    }

    /// Whether to keep the frame shown at `t` seconds. Several targets that fall before the
    /// same frame are served by it once: a short clip cannot give more frames than it has.
    pub fn take(&mut self, t: f64) -> bool {
        self.take_as(t).is_some()
    }

    /// Like [`take`](Self::take), saying what the frame is kept for.
    pub fn take_as(&mut self, t: f64) -> Option<Role> {
        let spread = self.spread.as_mut().is_some_and(|s| s.take(t));
        let clip = self.clips.as_mut().and_then(|c| c.take(t));
        let role = Role { spread, clip };
        (spread || clip.is_some()).then(|| {
            self.kept += 1;
            role
        })
    }

    /// Whether the frame shown at `t` will not be kept, given a frame shown at `before` (< `t`)
    /// that comes ahead of it: no target of the frame models' plan lies in (`before`, `t`].
    /// The frame shown just before `t` is no earlier than `before`, so the window a frame is
    /// kept by is inside that one. Unlike [`next_time`](Self::next_time), this looks past the
    /// frames taken so far, which lag the packets by the decoder's delay. Only for an evenly
    /// spread plan; otherwise false (the decoder falls back on `next_time`).
    pub fn skips(&self, before: f64, t: f64) -> bool {
        match (&self.spread, &self.clips) {
            (Some(Spread::Times { targets, next }), None) => !targets[*next..].iter().any(|&target| target > before + SLACK && target <= t + SLACK),
            _ => false,
        }
    }

    /// True once no later frame can be kept, so decoding can stop early.
    pub fn done(&self) -> bool {
        self.spread.as_ref().is_none_or(Spread::done) && self.clips.as_ref().is_none_or(ClipPlan::done)
    }

    /// The time of the next frame this plan wants: no frame shown before it can be kept. None
    /// when any frame may be (the first N, a clip in progress) or none will be (done).
    pub fn next_time(&self) -> Option<f64> {
        let nexts = [self.spread.as_ref().map(Spread::next), self.clips.as_ref().map(ClipPlan::next)];
        let mut earliest: Option<f64> = None;
        for next in nexts.into_iter().flatten() {
            match next {
                Next::Any => return None,
                Next::At(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                Next::Done => {}
            }
        }
        earliest
    }

    /// How many frames this plan asks for, when that is known in advance (clips counted in
    /// full: a frame in a clip and the spread counts twice, so this is an upper bound then).
    pub fn planned(&self) -> Option<usize> {
        let spread = match &self.spread {
            Some(s) => s.planned()?,
            None => 0,
        };
        let clips = self.clips.as_ref().map_or(0, |c| c.starts.len() * c.len);
        Some(spread + clips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(sampler: &mut Sampler, times: impl Iterator<Item = f64>) -> Vec<usize> {
        times.enumerate().filter(|(_, t)| sampler.take(*t)).map(|(i, _)| i).collect()
    }

    #[test]
    fn frames_are_spread_evenly_over_the_duration() {
        // 10 s at 10 fps, 5 frames wanted: targets 0, 2, 4, 6, 8 s.
        let mut s = Sampler::new(Sampling::Frames(5), Some(10.0));
        assert_eq!(kept(&mut s, (0..100).map(|i| i as f64 / 10.0)), vec![0, 20, 40, 60, 80]);
        assert!(s.done());
    }

    #[test]
    fn a_short_clip_gives_each_frame_once() {
        // 3 frames, 32 wanted: each frame is kept once, never duplicated.
        let mut s = Sampler::new(Sampling::Frames(32), Some(0.12));
        assert_eq!(kept(&mut s, [0.0, 0.04, 0.08].into_iter()), vec![0, 1, 2]);
    }

    #[test]
    fn unknown_duration_takes_the_first_frames() {
        let mut s = Sampler::new(Sampling::Frames(3), None);
        assert_eq!(kept(&mut s, (0..10).map(|i| i as f64)), vec![0, 1, 2]);
        assert!(s.done());
    }

    #[test]
    fn fps_sampling_keeps_one_frame_per_period() {
        // 25 fps source sampled at 2 fps: frames at 0, 0.5, 1.0, 1.5 s.
        let mut s = Sampler::new(Sampling::Fps(2.0), Some(2.0));
        assert_eq!(kept(&mut s, (0..50).map(|i| i as f64 / 25.0)), vec![0, 13, 25, 38]);
    }


    /// Kept frame numbers with their roles.
    fn roles(sampler: &mut Sampler, times: impl Iterator<Item = f64>) -> Vec<(usize, Role)> {
        times.enumerate().filter_map(|(i, t)| sampler.take_as(t).map(|r| (i, r))).collect()
    }

    #[test]
    fn clips_are_runs_of_consecutive_frames_spread_over_the_video() {
        // 10 s at 10 fps, 2 clips of 5 frames: room 9.5 s, starts at 2.375 and 7.125 s.
        let mut s = Sampler::plan(None, Some(Clips { count: 2, len: 5 }), Some(10.0), Some(10.0));
        let kept = roles(&mut s, (0..100).map(|i| i as f64 / 10.0));
        let frames: Vec<usize> = kept.iter().map(|(i, _)| *i).collect();
        assert_eq!(frames, [24, 25, 26, 27, 28, 72, 73, 74, 75, 76]);
        assert_eq!(kept[0].1, Role { spread: false, clip: Some((0, 0)) });
        assert_eq!(kept[9].1, Role { spread: false, clip: Some((1, 4)) });
        assert!(s.done());
    }

    #[test]
    fn clips_and_spread_frames_share_one_pass_and_a_frame_is_kept_once() {
        // Spread frames at 0, 2.5, 5, 7.5 s; one clip of 4 frames from 4.8 s (room 9.6, centre).
        let mut s = Sampler::plan(Some(Sampling::Frames(4)), Some(Clips { count: 1, len: 4 }), Some(10.0), Some(10.0));
        assert_eq!(s.next_time(), Some(0.0));
        let kept = roles(&mut s, (0..100).map(|i| i as f64 / 10.0));
        let frames: Vec<usize> = kept.iter().map(|(i, _)| *i).collect();
        assert_eq!(frames, [0, 25, 48, 49, 50, 51, 75]);
        // Frame 50 (5.0 s) is both a spread frame and the clip's third.
        assert_eq!(kept[4].1, Role { spread: true, clip: Some((0, 2)) });
        assert_eq!(kept[2].1, Role { spread: false, clip: Some((0, 0)) });
        assert!(s.done());
    }

    #[test]
    fn a_running_clip_wants_any_next_frame_and_overlapping_starts_are_dropped() {
        // 2 s at 10 fps, 2 clips of 15: room 0.5 s, starts 0.125 and 0.375 s overlap: one clip.
        let mut s = Sampler::plan(None, Some(Clips { count: 2, len: 15 }), Some(2.0), Some(10.0));
        assert_eq!(s.next_time(), Some(0.125));
        assert!(!s.take(0.0) && !s.take(0.1));
        assert!(s.take(0.2));
        assert_eq!(s.next_time(), None, "mid-clip: no discarding, no seeking");
        let rest: Vec<bool> = (3..20).map(|i| s.take(i as f64 / 10.0)).collect();
        assert_eq!(rest.iter().filter(|&&k| k).count(), 14);
        assert!(s.done());
        // Unknown duration: the clips follow each other from the first frame.
        let mut s = Sampler::plan(None, Some(Clips { count: 2, len: 3 }), None, None);
        assert_eq!(roles(&mut s, (0..10).map(|i| i as f64)).iter().map(|(i, r)| (*i, r.clip.unwrap().0)).collect::<Vec<_>>(), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]);
    }
}
