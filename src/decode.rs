//! FFmpeg decoding: open anything libavformat reads (video files and still images), decode the
//! best video stream, keep the frames the [`Sampler`] picks, convert them to upright RGB.
//!
//! Only the kept frames pay for colour conversion; the decoder still decodes every frame,
//! because inter-coded frames need their references.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;

/// An upright RGB24 frame, rows packed without padding.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Position among the sampled frames of its video (0, 1, ...).
    pub index: usize,
    /// Presentation time in seconds from the start of the stream.
    pub pts_s: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Which frames to keep (`--frames N` or `--fps F`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// N frames evenly spread over the duration (the first N frames if it is unknown).
    Frames(usize),
    /// One frame every 1/F seconds.
    Fps(f64),
}

/// Decides, frame by frame in presentation order, which frames are kept.
#[derive(Clone, Debug)]
pub struct Sampler {
    plan: Plan,
    kept: usize,
}

#[derive(Clone, Debug)]
enum Plan {
    /// Target times; a frame is kept when it is the first at or after the next target.
    Times { targets: Vec<f64>, next: usize },
    Every { period: f64, next_t: f64 },
    FirstN(usize),
}

impl Sampler {
    pub fn new(sampling: Sampling, duration_s: Option<f64>) -> Self {
        let plan = match (sampling, duration_s) {
            (Sampling::Frames(n), Some(d)) if d > 0.0 => {
                Plan::Times { targets: (0..n).map(|i| d * i as f64 / n as f64).collect(), next: 0 }
            }
            (Sampling::Frames(n), _) => Plan::FirstN(n),
            (Sampling::Fps(f), _) => Plan::Every { period: 1.0 / f, next_t: 0.0 },
        };
        Self { plan, kept: 0 }
    }

    /// Whether to keep the frame shown at `t` seconds. Several targets that fall before the
    /// same frame are served by it once: a short clip cannot give more frames than it has.
    pub fn take(&mut self, t: f64) -> bool {
        // Timestamps are rounded to the stream's time base; allow that much slack.
        const SLACK: f64 = 1e-6;
        let keep = match &mut self.plan {
            Plan::Times { targets, next } => {
                let keep = *next < targets.len() && t + SLACK >= targets[*next];
                while *next < targets.len() && targets[*next] <= t + SLACK {
                    *next += 1;
                }
                keep
            }
            Plan::Every { period, next_t } => {
                let keep = t + SLACK >= *next_t;
                if keep {
                    *next_t = ((t + SLACK) / *period).floor() * *period + *period;
                }
                keep
            }
            Plan::FirstN(n) => self.kept < *n,
        };
        self.kept += keep as usize;
        keep
    }

    /// True once no later frame can be kept, so decoding can stop early.
    pub fn done(&self) -> bool {
        match &self.plan {
            Plan::Times { targets, next } => *next >= targets.len(),
            Plan::Every { .. } => false,
            Plan::FirstN(n) => self.kept >= *n,
        }
    }

    /// How many frames this plan asks for, when that is known in advance.
    pub fn planned(&self) -> Option<usize> {
        match &self.plan {
            Plan::Times { targets, .. } => Some(targets.len()),
            Plan::Every { .. } => None,
            Plan::FirstN(n) => Some(*n),
        }
    }
}

/// What the container says about the video stream.
#[derive(Clone, Debug)]
pub struct VideoInfo {
    /// Upright size, after `rotation`.
    pub width: u32,
    pub height: u32,
    pub duration_s: Option<f64>,
    /// Clockwise rotation applied to show the frames upright (0, 90, 180 or 270).
    pub rotation: u32,
    pub codec: String,
}

#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    pub frames_decoded: usize,
    pub frames_kept: usize,
}

/// Must run once before any decoding; cheap to call again.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ffmpeg::init().expect("FFmpeg failed to initialise");
        // Errors reach the user through our JSON lines, not libav's stderr chatter.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Polled while FFmpeg reads and between packets; true means give up on this input now.
pub type Interrupt = Arc<dyn Fn() -> bool + Send + Sync>;

/// An opened input with its best video stream's decoder.
pub struct VideoSource {
    // Keeps the descriptor behind /proc/self/fd/N open while FFmpeg reads it.
    _file: File,
    interrupt: Interrupt,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    time_base: f64,
    start_pts: i64,
    stream_duration_s: Option<f64>,
    pub info: VideoInfo,
}

impl VideoSource {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_interruptible(path, Arc::new(|| false))
    }

    /// Like [`open`](Self::open), but opening and [`sample`](Self::sample) fail as soon as
    /// `interrupt` returns true (a timeout or a signal): the decode is abandoned, not killed.
    pub fn open_interruptible(path: &Path, interrupt: Interrupt) -> Result<Self> {
        init();
        // Regular files only: opening a FIFO blocks until a writer comes, and a device such as
        // /dev/zero never ends; FFmpeg's interrupt cannot reach a read blocked in the kernel.
        let meta = std::fs::metadata(path).context("cannot open")?;
        let kind = meta.file_type();
        if kind.is_dir() {
            bail!("is a directory");
        }
        if !kind.is_file() {
            let what = if kind.is_fifo() { "a FIFO" } else if kind.is_socket() { "a socket" } else { "a device" };
            bail!("not a regular file ({what})");
        }
        // Opening the file ourselves gives plain "permission denied" errors, and FFmpeg gets a
        // UTF-8 name even when the real one is not.
        let file = File::open(path).context("cannot open")?;
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let poll = interrupt.clone();
        let input = ffmpeg::format::input_with_interrupt(&proc_path, move || poll())
            .map_err(|e| anyhow!("not a readable video or image: {e}"))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| anyhow!("no video stream (audio-only or not a video)"))?;
        let stream_index = stream.index();
        let time_base = f64::from(stream.time_base());
        let start_pts = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE { 0 } else { stream.start_time() };
        let stream_duration_s = (stream.duration() > 0).then(|| stream.duration() as f64 * time_base);
        let container_duration_s = (input.duration() > 0).then(|| input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE));
        let rotation = display_rotation(&stream);
        let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?;
        let decoder = context.decoder().video().map_err(|e| anyhow!("no decoder for this video codec: {e}"))?;
        let (width, height) = match rotation {
            90 | 270 => (decoder.height(), decoder.width()),
            _ => (decoder.width(), decoder.height()),
        };
        let info = VideoInfo {
            width,
            height,
            duration_s: stream_duration_s.or(container_duration_s),
            rotation,
            codec: decoder.codec().map(|c| c.name().to_string()).unwrap_or_default(),
        };
        Ok(Self { _file: file, interrupt, input, stream_index, decoder, time_base, start_pts, stream_duration_s, info })
    }

    /// Decodes to the end (or until the sampler is done), handing each kept frame to
    /// `on_frame`, which returns false to stop early.
    pub fn sample(mut self, sampler: &mut Sampler, mut on_frame: impl FnMut(Frame) -> Result<bool>) -> Result<DecodeStats> {
        let mut stats = DecodeStats::default();
        let mut scaler: Option<(scaling::Context, (Pixel, u32, u32))> = None;
        let mut decoded = ffmpeg::frame::Video::empty();
        let mut last_t = None;
        // Gap between the last two frames: the last frame is shown for about that long.
        let mut last_step = 0.0;
        let mut decode_error = None;
        let mut at_eof = false;
        while !at_eof {
            // FFmpeg polls the interrupt only when it reads; a slow decoder is caught here.
            if (self.interrupt)() {
                bail!("interrupted after {} frames", stats.frames_decoded);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream_index => {
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        decode_error = Some(e);
                    }
                }
                Ok(()) => continue,
                Err(ffmpeg::Error::Eof) => {
                    let _ = self.decoder.send_eof();
                    at_eof = true;
                }
                Err(e) => bail!("read error after {} frames (corrupt or truncated?): {e}", stats.frames_decoded),
            }
            while self.decoder.receive_frame(&mut decoded).is_ok() {
                stats.frames_decoded += 1;
                let pts = decoded.timestamp().or(decoded.pts()).unwrap_or(0);
                let t = (pts - self.start_pts) as f64 * self.time_base;
                if let Some(prev) = last_t {
                    last_step = t - prev;
                }
                last_t = Some(t);
                if !sampler.take(t) {
                    continue;
                }
                let key = (decoded.format(), decoded.width(), decoded.height());
                if scaler.as_ref().map(|(_, k)| *k) != Some(key) {
                    let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::RGB24, key.1, key.2, scaling::Flags::BILINEAR)?;
                    scaler = Some((ctx, key));
                }
                let mut rgb = ffmpeg::frame::Video::empty();
                scaler.as_mut().expect("set above").0.run(&decoded, &mut rgb)?;
                let frame = upright(packed_rgb(&rgb), self.info.rotation, stats.frames_kept, t);
                stats.frames_kept += 1;
                if !on_frame(frame)? || sampler.done() {
                    return Ok(stats);
                }
            }
        }
        if stats.frames_decoded == 0 {
            match decode_error {
                Some(e) => bail!("no decodable video frame: {e}"),
                None => bail!("no video frame in the stream (empty or truncated)"),
            }
        }
        if let (Some(d), Some(t)) = (self.stream_duration_s, last_t) {
            // The container promised d seconds but the data ran out well before: truncated.
            // The last frame's own duration counts, or a 3-frame clip at 1 fps would be short.
            if t + last_step.max(0.0) < 0.9 * d - 0.5 {
                bail!("truncated: video data ends at {t:.2} s of a declared {d:.2} s");
            }
        }
        Ok(stats)
    }
}

/// The clockwise rotation that shows the stream upright, from its display matrix.
fn display_rotation(stream: &ffmpeg::format::stream::Stream) -> u32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix && side.data().len() >= 36 {
            // SAFETY: a display matrix is nine i32 values; the length is checked above.
            let ccw = unsafe { ffmpeg::ffi::av_display_rotation_get(side.data().as_ptr() as *const i32) };
            if ccw.is_finite() {
                // FFmpeg's autorotate turns by -ccw; round to the nearest quarter turn.
                return ((-ccw / 90.0).round() as i64).rem_euclid(4) as u32 * 90;
            }
        }
    }
    0
}

fn packed_rgb(rgb: &ffmpeg::frame::Video) -> (Vec<u8>, u32, u32) {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (data, stride) = (rgb.data(0), rgb.stride(0));
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + w * 3]);
    }
    (out, w as u32, h as u32)
}

fn upright((rgb, width, height): (Vec<u8>, u32, u32), rotation: u32, index: usize, pts_s: f64) -> Frame {
    let (rgb, width, height) = rotate_clockwise(rgb, width, height, rotation / 90);
    Frame { index, pts_s, width, height, rgb }
}

/// Rotates a packed RGB image clockwise by `quarter_turns` x 90 degrees.
pub fn rotate_clockwise(rgb: Vec<u8>, width: u32, height: u32, quarter_turns: u32) -> (Vec<u8>, u32, u32) {
    let (w, h) = (width as usize, height as usize);
    let turns = quarter_turns % 4;
    if turns == 0 {
        return (rgb, width, height);
    }
    let (ow, oh) = if turns == 2 { (w, h) } else { (h, w) };
    let mut out = vec![0u8; rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let (ox, oy) = match turns {
                1 => (h - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let (src, dst) = ((y * w + x) * 3, (oy * ow + ox) * 3);
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    (out, ow as u32, oh as u32)
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

    #[test]
    fn rotation_moves_pixels_clockwise() {
        // 2x1 image [A B] turned clockwise becomes 1x2 [A; B].
        let (out, w, h) = rotate_clockwise(vec![1, 1, 1, 2, 2, 2], 2, 1, 1);
        assert_eq!((w, h), (1, 2));
        assert_eq!(out, vec![1, 1, 1, 2, 2, 2]);
        let (out, _, _) = rotate_clockwise(vec![1, 1, 1, 2, 2, 2], 2, 1, 2);
        assert_eq!(out, vec![2, 2, 2, 1, 1, 1]);
        let (out, w, h) = rotate_clockwise(vec![1, 1, 1, 2, 2, 2], 2, 1, 3);
        assert_eq!((w, h, out), (1, 2, vec![2, 2, 2, 1, 1, 1]));
    }
}
