//! The decode shortcuts (threads, discarding non-reference frames, seeking to the keyframe
//! before a far target) keep exactly the frames, and the pixels, of a plain decode of every
//! frame on one thread: on clips with a known GOP made here by the real ffmpeg, on the samples,
//! and on ../shared/data clips when that exists.
mod common;

use std::path::{Path, PathBuf};

use dfscan::decode::{DecodeOptions, DecodeStats, Sampler, Sampling, VideoSource};

const PLAIN: DecodeOptions = DecodeOptions { threads: 1, shortcuts: false };
const FAST: DecodeOptions = DecodeOptions { threads: 2, shortcuts: true };

/// Each kept frame's time and a hash of its RGB pixels, with the decode's counters.
fn sampled(path: &Path, sampling: Sampling, options: DecodeOptions) -> (Vec<(f64, u32, u32, String)>, DecodeStats) {
    let source = VideoSource::open_with(path, std::sync::Arc::new(|| false), options).unwrap();
    let mut sampler = Sampler::new(sampling, source.info.duration_s);
    let mut kept = Vec::new();
    let stats = source
        .sample(&mut sampler, |f| {
            kept.push((f.pts_s, f.width, f.height, blake3::hash(&f.rgb).to_hex().to_string()));
            Ok(true)
        })
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    (kept, stats)
}

/// Asserts the same frames both ways; returns the plain and the fast decode's counters.
fn same_frames(path: &Path, sampling: Sampling) -> (DecodeStats, DecodeStats) {
    let (plain, plain_stats) = sampled(path, sampling, PLAIN);
    let (fast, fast_stats) = sampled(path, sampling, FAST);
    assert!(!plain.is_empty(), "{}: no frame kept", path.display());
    let times = |v: &[(f64, u32, u32, String)]| v.iter().map(|f| f.0).collect::<Vec<_>>();
    assert_eq!(times(&plain), times(&fast), "{} {sampling:?}: other frames chosen", path.display());
    assert!(plain == fast, "{} {sampling:?}: same times, other pixels", path.display());
    (plain_stats, fast_stats)
}

/// A 12 s, 25 fps H.264 clip of moving test pattern with B-frames and a keyframe every `gop`
/// frames, made once per name.
fn gop_clip(name: &str, gop: u32, extra: &[&str]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shortcuts-{name}.mp4"));
    let keyint = format!("keyint={gop}:min-keyint={gop}:scenecut=0");
    let params = [keyint.as_str()].iter().chain(extra).copied().collect::<Vec<_>>().join(":");
    let p = path.to_string_lossy().to_string();
    common::ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=12", "-c:v", "libx264", "-preset", "veryfast", "-bf", "3",
        "-pix_fmt", "yuv420p", "-x264-params", &params, &p,
    ]);
    path
}

#[test]
fn seeking_over_short_gops_keeps_the_same_frames() {
    // Keyframe every second, 8 targets 1.5 s apart: the decoder seeks to each target's GOP.
    let clip = gop_clip("gop25", 25, &[]);
    let (plain, fast) = same_frames(&clip, Sampling::Frames(8));
    assert_eq!(plain.seeks, 0, "seeking with the shortcuts off");
    assert!(fast.seeks >= 4, "expected a seek per far target, got {fast:?}");
    assert!(fast.frames_decoded * 4 < plain.frames_decoded * 3, "plain {plain:?}, fast {fast:?}");
    // One frame per 2 s: a seek per target too.
    let (_, fast) = same_frames(&clip, Sampling::Fps(0.5));
    assert!(fast.seeks >= 3, "{fast:?}");
    // Targets closer than a GOP: no seek, only discarding; still the same frames.
    let (_, fast) = same_frames(&clip, Sampling::Frames(40));
    assert!(fast.packets_discarding > 0, "{fast:?}");
}

#[test]
fn open_gops_and_shifted_timestamps_keep_the_same_frames() {
    // Open GOPs: B-frames before a keyframe in display order follow it in decode order.
    let clip = gop_clip("open-gop", 20, &["open-gop=1"]);
    let (_, fast) = same_frames(&clip, Sampling::Frames(7));
    assert!(fast.seeks >= 3, "{fast:?}");
    // A stream starting at 2.5 s (non-zero start time).
    let shifted = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shortcuts-shifted.mp4");
    common::ffmpeg(&["-i", &clip.to_string_lossy(), "-c", "copy", "-output_ts_offset", "2.5", &shifted.to_string_lossy()]);
    let (_, fast) = same_frames(&shifted, Sampling::Frames(7));
    assert!(fast.seeks >= 3, "{fast:?}");
}

#[test]
fn one_long_gop_discards_non_reference_frames_only() {
    let clip = gop_clip("gop300", 300, &[]);
    let (plain, fast) = same_frames(&clip, Sampling::Frames(6));
    assert_eq!(fast.seeks, 0, "no keyframe to seek to");
    assert!(fast.packets_discarding > 100, "{fast:?}");
    assert!(fast.frames_decoded < plain.frames_decoded, "plain {plain:?}, fast {fast:?}");
}

#[test]
fn dense_targets_discard_past_the_decoder_delay_and_seek_forward_only() {
    // Targets every 9-10 frames, B-pyramids (x264's default), a keyframe at frame 250. The
    // decoder hands frames back a few packets late; judging a packet by the frames taken so far
    // decoded most B-frames after each target, and the seek to the keyframe at 250 landed on
    // the one at 0 (MP4's index holds decode times, its seeks take display times), decoding the
    // clip twice: 321 frames decoded for 292 shown, 167 now.
    let clip = gop_clip("gop250", 250, &[]);
    let (plain, fast) = same_frames(&clip, Sampling::Frames(32));
    assert_eq!(fast.seeks, 1, "{fast:?}");
    assert!(fast.frames_decoded * 3 < plain.frames_decoded * 2, "plain {plain:?}, fast {fast:?}");
}

#[test]
fn samples_keep_the_same_frames() {
    for name in ["astronaut_pan.mp4", "astronaut_rotated.mp4", "astronaut_selfblend.mp4", "no_face.mp4", "astronaut.jpg"] {
        for sampling in [Sampling::Frames(32), Sampling::Frames(5), Sampling::Fps(3.0)] {
            same_frames(&common::samples().join(name), sampling);
        }
    }
}

#[test]
fn shared_data_clips_keep_the_same_frames() {
    let Some(shared) = common::shared() else {
        eprintln!("shared_data_clips_keep_the_same_frames: skipped, ../shared is absent");
        return;
    };
    let clips = [
        "data/dfdc_sample5/videos/abofeumbvv.mp4",
        "data/dfdc_sample5/videos/abqwwspghj.mp4",
        "data/misc_examples/real/fsgan__conan_obrien.mp4",
        "data/deepfacelive_pairs/real/Albica_Johns_0_L.mp4",
        "data/misc_examples/real/fsgan__shinzo_abe.mp4",
    ];
    for clip in clips {
        let path = shared.join(clip);
        if !path.is_file() {
            eprintln!("skipped {clip}: absent");
            continue;
        }
        let (plain, fast) = same_frames(&path, Sampling::Frames(32));
        eprintln!("{clip}: plain {plain:?}, fast {fast:?}");
        if clip.contains("dfdc") {
            // Half the frames are non-reference B-frames: 160 of 292 decoded (185 and 292+ on
            // two threads before the decoder's delay and the MP4 seek were accounted for).
            assert!(fast.frames_decoded * 5 < plain.frames_decoded * 3, "{clip}: plain {plain:?}, fast {fast:?}");
        }
    }
}

#[test]
fn the_scan_scores_the_same_with_and_without_the_shortcuts() {
    let model = common::repo().join("models/mesoinception4.safetensors");
    let Some(model) = common::set_up_file("the_scan_scores_the_same_with_and_without_the_shortcuts", model) else { return };
    let clip = gop_clip("gop25-scan", 25, &[]);
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "-q", "--no-state", "--per-frame", "--frames", "8", "--model", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let pan = common::samples().join("astronaut_pan.mp4");
        let rotated = common::samples().join("astronaut_rotated.mp4");
        args.extend([pan.to_str().unwrap(), rotated.to_str().unwrap(), clip.to_str().unwrap()]);
        let mut lines = common::json_lines(&common::dfscan(&args));
        lines.sort_by_key(|l| l["path"].as_str().unwrap().to_string());
        lines
            .iter()
            .map(|l| {
                let frames: Vec<_> = l["frames"].as_array().map(|f| f.iter().map(|f| f["pts_s"].clone()).collect()).unwrap_or_default();
                (l["path"].clone(), l["status"].clone(), l["score"].clone(), frames)
            })
            .collect::<Vec<_>>()
    };
    let plain = scan(&["--no-decode-shortcuts", "--decode-threads", "1"]);
    let fast = scan(&[]);
    assert_eq!(plain.len(), 3);
    assert!(plain.iter().filter(|l| l.0.as_str().unwrap().contains("astronaut")).all(|l| l.2.is_f64()), "the astronaut clips score: {plain:?}");
    // The test pattern has no face, but its frames are listed: they must be the same too.
    assert!(plain.iter().all(|l| l.3.len() == 8), "{plain:?}");
    assert_eq!(plain, fast, "the shortcuts changed a score or a frame time");
}

/// Each kept frame's decoded frame number (pts x 25 fps), role and pixel hash, one decode.
fn clip_sampled(path: &Path, spread: Option<Sampling>, clips: dfscan::decode::Clips, options: DecodeOptions) -> (Vec<(usize, dfscan::decode::Role, String)>, DecodeStats) {
    let source = VideoSource::open_with(path, std::sync::Arc::new(|| false), options).unwrap();
    let mut sampler = Sampler::plan(spread, Some(clips), source.info.duration_s, source.info.frame_rate);
    let mut kept = Vec::new();
    let stats = source
        .sample(&mut sampler, |f| {
            kept.push(((f.pts_s * 25.0).round() as usize, f.role, blake3::hash(&f.rgb).to_hex().to_string()));
            Ok(true)
        })
        .unwrap();
    (kept, stats)
}

#[test]
fn clip_sampling_gives_runs_of_consecutive_frames_in_one_decode() {
    use dfscan::decode::Clips;
    // 12 s at 25 fps (300 frames), keyframe every second, B-frames.
    let clip = gop_clip("gop25", 25, &[]);
    let clips = Clips { count: 3, len: 31 };
    for spread in [None, Some(Sampling::Frames(8))] {
        let (plain, plain_stats) = clip_sampled(&clip, spread, clips, PLAIN);
        let (fast, fast_stats) = clip_sampled(&clip, spread, clips, FAST);
        assert!(plain == fast, "{spread:?}: the shortcuts changed the frames kept");
        assert_eq!(plain_stats.frames_kept, plain.len());
        // M runs of T consecutive frame numbers, spread over the video.
        let mut runs: Vec<Vec<usize>> = vec![Vec::new(); 3];
        for (frame, role, _) in &plain {
            if let Some((c, pos)) = role.clip {
                assert_eq!(pos, runs[c].len());
                runs[c].push(*frame);
            }
        }
        for run in &runs {
            assert_eq!(run.len(), 31, "{runs:?}");
            assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "not consecutive: {run:?}");
        }
        // Room 12 - 1.24 s: starts near 1.8, 5.4 and 9.0 s.
        assert_eq!(runs.iter().map(|r| r[0]).collect::<Vec<_>>(), [45, 135, 225]);
        // With the spread frames too, each frame is kept once, some for both.
        let spread_count = plain.iter().filter(|(_, r, _)| r.spread).count();
        assert_eq!(spread_count, if spread.is_some() { 8 } else { 0 });
        let mut frames: Vec<usize> = plain.iter().map(|k| k.0).collect();
        frames.dedup();
        assert_eq!(frames.len(), plain.len());
        assert!(fast_stats.frames_decoded < plain_stats.frames_decoded, "the shortcuts skipped nothing: {fast_stats:?}");
    }
}
