//! FFmpeg decoding: open anything libavformat reads (video files and still images), decode the
//! best video stream, keep the frames the [`Sampler`] picks, convert them to upright RGB.
//!
//! Only the kept frames pay for colour conversion. The decoder runs on several threads (frame
//! and slice threading, [`DecodeOptions::threads`]), and with [`DecodeOptions::shortcuts`] it
//! decodes less: frames that no other frame references are discarded when no sampled target
//! lies between them and a frame shown before them, and when the keyframe before the next
//! target is further on in the file, the demuxer seeks to it. Neither changes which frames are
//! kept, nor their pixels: a discarded frame could not have been kept, and decoding from the
//! keyframe before a target gives that target's frame exactly (tests/decode_shortcuts.rs
//! compares both ways).
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;

mod sampler;
pub use sampler::{Clips, Role, Sampler, Sampling};
use sampler::SLACK;

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
    /// What it was kept for: the spread frames, a clip, or both.
    pub role: Role,
}


/// How the decoder works; none of it changes which frames are kept or their pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// FFmpeg decoder threads (frame and slice threading); 1 decodes on the calling thread.
    pub threads: usize,
    /// Discard non-reference frames before the next target and seek to the keyframe before a
    /// far target. Off, every frame is decoded (the reference the shortcuts are tested against).
    pub shortcuts: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { threads: default_threads(), shortcuts: true }
    }
}

/// Most decoder threads: FFmpeg's frame threads each hold frames in flight.
pub const MAX_THREADS: usize = 8;

/// One decoder thread per core, at most [`MAX_THREADS`]: for decoding alone (extract, training).
/// A scan, where detection and the models share the cores, takes its count from
/// `pipeline::ThreadSplit`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, MAX_THREADS)
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
    /// Frames per second the stream says it averages, if it says.
    pub frame_rate: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    /// Frames the decoder returned (discarded ones and those skipped by a seek are not).
    pub frames_decoded: usize,
    pub frames_kept: usize,
    /// Seeks to the keyframe before a target (the shortcuts).
    pub seeks: usize,
    /// Packets sent while non-reference frames were being discarded (the shortcuts).
    pub packets_discarding: usize,
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
    options: DecodeOptions,
    pub info: VideoInfo,
}

impl VideoSource {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_interruptible(path, Arc::new(|| false))
    }

    /// Like [`open`](Self::open), but opening and [`sample`](Self::sample) fail as soon as
    /// `interrupt` returns true (a timeout or a signal): the decode is abandoned, not killed.
    pub fn open_interruptible(path: &Path, interrupt: Interrupt) -> Result<Self> {
        Self::open_with(path, interrupt, DecodeOptions::default())
    }

    /// Like [`open_interruptible`](Self::open_interruptible), decoding as `options` say.
    pub fn open_with(path: &Path, interrupt: Interrupt, options: DecodeOptions) -> Result<Self> {
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
        let rate = stream.avg_frame_rate();
        let frame_rate = (rate.numerator() > 0 && rate.denominator() > 0).then(|| f64::from(rate));
        let mut context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?;
        // SAFETY: the context is not opened yet; these fields are read when it is.
        unsafe {
            let ctx = context.as_mut_ptr();
            (*ctx).thread_count = options.threads.max(1) as i32;
            (*ctx).thread_type = ffmpeg::ffi::FF_THREAD_FRAME | ffmpeg::ffi::FF_THREAD_SLICE;
        }
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
            frame_rate,
        };
        Ok(Self { _file: file, interrupt, input, stream_index, decoder, time_base, start_pts, stream_duration_s, options, info })
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
        // The latest time of a packet whose frame may have been discarded (shortcuts).
        let mut last_discarded_t = f64::NEG_INFINITY;
        let mut decode_error = None;
        let mut at_eof = false;
        let mut seek = SeekState::default();
        // Presentation timestamps of the packets read so far.
        let mut shown = std::collections::BTreeSet::new();
        let mut discarding = false;
        let mut packets_sent = 0usize;
        while !at_eof {
            // FFmpeg polls the interrupt only when it reads; a slow decoder is caught here.
            if (self.interrupt)() {
                bail!("interrupted after {} frames", stats.frames_decoded);
            }
            if self.options.shortcuts {
                if let Some(target) = sampler.next_time() {
                    if self.seek_towards(target, &mut seek)? {
                        stats.seeks += 1;
                    }
                }
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream_index => {
                    if let (Some(pts), Some(dts)) = (packet.pts(), packet.dts()) {
                        seek.max_delay = seek.max_delay.max(pts - dts);
                    }
                    if let Some(lookup) = seek.verify.take() {
                        // A seek must land on a keyframe shown no later than the target's frame,
                        // or a frame it should keep could lie before it: go back further.
                        if !(packet.is_key() && packet.pts().is_some_and(|p| p <= lookup)) {
                            self.seek_back_from(&packet, lookup, &mut seek)?;
                            continue;
                        }
                    }
                    if packet.position() >= 0 {
                        seek.last_pos = packet.position() as i64;
                    }
                    if self.options.shortcuts {
                        let time = |p: i64| (p - self.start_pts) as f64 * self.time_base;
                        let t = packet.pts().map(time);
                        // A frame shown before the next target cannot be kept; nor can one with
                        // no target between it and a frame shown before it (read earlier).
                        let before = packet.pts().and_then(|p| shown.range(..p).next_back().copied());
                        let discard = match (t, sampler.next_time()) {
                            (Some(t), Some(target)) if t + 2.0 * SLACK < target => true,
                            (Some(t), _) => before.is_some_and(|b| sampler.skips(time(b), t)),
                            _ => false,
                        };
                        shown.extend(packet.pts());
                        if discard != discarding {
                            self.set_discard_nonref(discard);
                            discarding = discard;
                        }
                        if discard {
                            stats.packets_discarding += 1;
                            last_discarded_t = last_discarded_t.max(t.expect("discard needs a time"));
                        }
                    }
                    packets_sent += 1;
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
            loop {
                match self.decoder.receive_frame(&mut decoded) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Eof) | Err(ffmpeg::Error::Other { errno: ffmpeg::util::error::EAGAIN }) => break,
                    // Frame threads report a packet's decoding error here, not when it is sent.
                    Err(e) => {
                        decode_error = Some(e);
                        break;
                    }
                }
                stats.frames_decoded += 1;
                let pts = decoded.timestamp().or(decoded.pts()).unwrap_or(0);
                let t = (pts - self.start_pts) as f64 * self.time_base;
                if let Some(prev) = last_t {
                    last_step = t - prev;
                }
                last_t = Some(t);
                let Some(role) = sampler.take_as(t) else { continue };
                let key = (decoded.format(), decoded.width(), decoded.height());
                if scaler.as_ref().map(|(_, k)| *k) != Some(key) {
                    let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::RGB24, key.1, key.2, scaling::Flags::BILINEAR)?;
                    scaler = Some((ctx, key));
                }
                let mut rgb = ffmpeg::frame::Video::empty();
                scaler.as_mut().expect("set above").0.run(&decoded, &mut rgb)?;
                let frame = upright(packed_rgb(&rgb), self.info.rotation, stats.frames_kept, t, role);
                stats.frames_kept += 1;
                if !on_frame(frame)? || sampler.done() {
                    return Ok(stats);
                }
            }
        }
        if stats.frames_decoded == 0 {
            match decode_error {
                Some(e) => bail!("no decodable video frame: {e}"),
                // Frame threads can drop a bad packet without an error.
                None if packets_sent > 0 => bail!("no decodable video frame in {packets_sent} packets"),
                None => bail!("no video frame in the stream (empty or truncated)"),
            }
        }
        if let (Some(d), Some(t)) = (self.stream_duration_s, last_t) {
            // The container promised d seconds but the data ran out well before: truncated.
            // The last frame's own duration counts, or a 3-frame clip at 1 fps would be short.
            let t = t.max(last_discarded_t);
            if t + last_step.max(0.0) < 0.9 * d - 0.5 {
                bail!("truncated: video data ends at {t:.2} s of a declared {d:.2} s");
            }
        }
        Ok(stats)
    }

    /// Seeks to the keyframe before `target` (seconds) when the container's index places it
    /// further on than the last packet read; true if it did. Once per target.
    fn seek_towards(&mut self, target: f64, seek: &mut SeekState) -> Result<bool> {
        if seek.given_up || seek.sought_for == Some(target.to_bits()) || seek.verify.is_some() {
            return Ok(false);
        }
        if seek.last_pos < 0 {
            // Nothing read yet: the first packets are where decoding starts anyway.
            return Ok(false);
        }
        seek.sought_for = Some(target.to_bits());
        let lookup = self.first_tick_at(target);
        // Index times may be decode times, up to the reorder delay before the display time.
        let wanted = lookup - seek.max_delay;
        let stream = self.input.stream(self.stream_index).expect("the decoded stream");
        // SAFETY: the stream belongs to the open input; the entry is read before any other
        // call on the input can invalidate it.
        let entry = unsafe {
            let e = ffmpeg::ffi::avformat_index_get_entry_from_timestamp(stream.as_ptr() as *mut _, wanted, ffmpeg::ffi::AVSEEK_FLAG_BACKWARD);
            (!e.is_null()).then(|| (*e).pos)
        };
        let Some(pos) = entry else { return Ok(false) };
        if pos <= seek.last_pos {
            return Ok(false);
        }
        // To `lookup`, not to the entry's own time: that is a decode time in MP4's index, and
        // MP4 seeks by display time, so seeking to it landed one keyframe early (at the start
        // of a 10 s DFDC clip, decoding it twice).
        self.seek_to(lookup)?;
        seek.verify = Some(lookup);
        Ok(true)
    }

    /// The first tick (stream time base) whose frame [`Sampler::take`] would keep for a target
    /// at `target` seconds: every frame it can keep is shown at or after it.
    fn first_tick_at(&self, target: f64) -> i64 {
        let at = |tick: i64| (tick - self.start_pts) as f64 * self.time_base + SLACK >= target;
        let mut tick = self.start_pts + ((target - SLACK) / self.time_base).ceil() as i64;
        while at(tick - 1) {
            tick -= 1;
        }
        while !at(tick) {
            tick += 1;
        }
        tick
    }

    /// After a seek landed past `lookup`: seek to the keyframe before the packet it landed on,
    /// and after a few tries to the start (always safe: frames before a target are not kept).
    fn seek_back_from(&mut self, landed: &ffmpeg::Packet, lookup: i64, seek: &mut SeekState) -> Result<()> {
        seek.retries += 1;
        match landed.dts().or(landed.pts()) {
            Some(ts) if seek.retries < 4 => {
                self.seek_to(ts - 1)?;
                seek.verify = Some(lookup);
            }
            _ => {
                let stream = self.input.stream(self.stream_index).expect("the decoded stream");
                // SAFETY: as in seek_towards; the first entry is the first keyframe.
                let first = unsafe {
                    let e = ffmpeg::ffi::avformat_index_get_entry(stream.as_ptr() as *mut _, 0);
                    if e.is_null() { self.start_pts } else { (*e).timestamp }
                };
                self.seek_to(first)?;
                seek.given_up = true;
                seek.last_pos = -1;
            }
        }
        Ok(())
    }

    /// Seeks the demuxer to the keyframe at or before `ts` (stream time base) and empties the
    /// decoder, whose frames in flight all come before the target being sought.
    fn seek_to(&mut self, ts: i64) -> Result<()> {
        // SAFETY: the input context is open and owned by self.
        let ret = unsafe { ffmpeg::ffi::av_seek_frame(self.input.as_mut_ptr(), self.stream_index as i32, ts, ffmpeg::ffi::AVSEEK_FLAG_BACKWARD) };
        if ret < 0 {
            bail!("seek failed: {}", ffmpeg::Error::from(ret));
        }
        self.decoder.flush();
        Ok(())
    }

    /// Makes the decoder drop frames no other frame references (or stop dropping them).
    fn set_discard_nonref(&mut self, discard: bool) {
        // SAFETY: a plain field of the open decoder; frame threads copy it for each packet.
        unsafe {
            (*self.decoder.as_mut_ptr()).skip_frame =
                if discard { ffmpeg::ffi::AVDiscard::AVDISCARD_NONREF } else { ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT };
        }
    }
}

/// What [`VideoSource::sample`] remembers about seeking.
#[derive(Debug)]
struct SeekState {
    /// Largest display-minus-decode time of the packets read so far (stream time base).
    max_delay: i64,
    /// File position of the last packet read.
    last_pos: i64,
    /// The target (as f64 bits) last sought for: one seek per target.
    sought_for: Option<u64>,
    /// Set after a seek: the first packet must be a keyframe shown at or before this tick.
    verify: Option<i64>,
    retries: usize,
    /// Seeking did not land where it should in this file: no more seeks.
    given_up: bool,
}

impl Default for SeekState {
    fn default() -> Self {
        Self { max_delay: 0, last_pos: -1, sought_for: None, verify: None, retries: 0, given_up: false }
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

fn upright((rgb, width, height): (Vec<u8>, u32, u32), rotation: u32, index: usize, pts_s: f64, role: Role) -> Frame {
    let (rgb, width, height) = rotate_clockwise(rgb, width, height, rotation / 90);
    Frame { index, pts_s, width, height, rgb, role }
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
