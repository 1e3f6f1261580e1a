//! res10 vs YuNet on ../shared/data: recall on labelled faces, false faces on inputs with
//! none, box agreement (IoU) and speed. Figures for the README; nothing here is a test.
//!
//! usage: cargo run --release --example detectors -- [DATA_DIR] [FRAMES_PER_CLIP]
//!
//! Sets: the DFDC frames that have a labelled face crop (dfdc_sample5/frames, one face each);
//! the labelled face crops themselves (dfdc_sample5/faces, dfdc_facecrops_genconvit,
//! gan_faces_deepsafe: a face must be found in each); every labelled video of all_labels.csv
//! (FRAMES_PER_CLIP frames each: frames with a face, clips with none); and inputs with no face
//! (samples/no_face.mp4 and FFmpeg's synthetic patterns, made in a temporary folder). Each
//! detector runs once at confidence 0.3; the figures are given at 0.5 (the scan's default)
//! and higher thresholds by filtering.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use dfscan::decode::Frame;
use dfscan::faces::detect::iou;
use dfscan::faces::{build_detector, Detection, DetectorKind, FaceDetector};

const THRESHOLDS: [f32; 3] = [0.5, 0.7, 0.9];

fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e.to_lowercase().as_str())))
        .collect();
    out.sort();
    out
}

/// One set's frames (grouped by input) and each detector's detections per frame.
struct Set {
    name: &'static str,
    inputs: Vec<Vec<Frame>>,
}

struct Run {
    kind: DetectorKind,
    /// [set][input][frame] detections at confidence >= 0.3.
    found: Vec<Vec<Vec<Vec<Detection>>>>,
    seconds: f64,
    frames: usize,
    pixels: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "../shared/data".into()));
    let per_clip: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    let mut sets = Vec::new();
    let load = |paths: Vec<PathBuf>, n: usize| -> Vec<Vec<Frame>> { paths.iter().filter_map(|p| common::frames_of(p, n).ok()).collect() };
    let faces_dir = data.join("dfdc_sample5/faces");
    let labelled: Vec<PathBuf> = files(&data.join("dfdc_sample5/frames"), &["png"])
        .into_iter()
        .filter(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            faces_dir.join(format!("{stem}_face00.png")).is_file()
        })
        .collect();
    sets.push(Set { name: "DFDC frames with a labelled face", inputs: load(labelled, 1) });
    let mut crops = files(&faces_dir, &["png"]);
    crops.extend(files(&data.join("dfdc_facecrops_genconvit"), &["jpg", "png"]));
    crops.extend(files(&data.join("gan_faces_deepsafe"), &["jpg", "png", "jpeg"]));
    sets.push(Set { name: "labelled face crops (whole image is a face)", inputs: load(crops, 1) });
    let clips = common::labelled_videos(&data)?;
    sets.push(Set { name: "labelled videos", inputs: load(clips, per_clip) });
    let tmp = std::env::temp_dir().join(format!("dfscan-detectors-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut empty = vec![repo.join("samples/no_face.mp4")];
    for (name, src) in [
        ("testsrc2", "testsrc2=size=640x360:rate=5:duration=4"),
        ("mandelbrot", "mandelbrot=size=640x360:rate=5"),
        ("life", "life=size=640x360:rate=5:mold=10:ratio=0.5"),
        ("cellauto", "cellauto=size=640x360:rate=5:rule=110"),
        ("smptehdbars", "smptehdbars=size=1280x720:rate=5:duration=4"),
        ("noise", "nullsrc=size=640x360:rate=5:duration=4,geq=random(1)*255:128:128"),
        ("plasma", "nullsrc=size=640x360:rate=5:duration=4,geq=r=128+100*sin(X/23+T):g=128+100*sin(Y/17+2*T):b=128+100*sin((X+Y)/31)"),
    ] {
        let out = tmp.join(format!("{name}.mp4"));
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", "4", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
            .arg(&out)
            .status()?
            .success();
        if ok {
            empty.push(out);
        }
    }
    sets.push(Set { name: "inputs with no face (synthetic)", inputs: load(empty, per_clip) });

    let public = repo.join("models/public");
    // Both detectors take turns on each frame, so a busy machine slows both alike.
    let kinds = [DetectorKind::Res10, DetectorKind::Yunet];
    let mut detectors: Vec<Box<dyn FaceDetector>> = kinds.iter().map(|k| build_detector(*k, &public, 0.3)).collect::<Result<_>>()?;
    let mut runs: Vec<Run> = kinds.iter().map(|&kind| Run { kind, found: Vec::new(), seconds: 0.0, frames: 0, pixels: 0.0 }).collect();
    for set in &sets {
        for run in runs.iter_mut() {
            run.found.push(Vec::new());
        }
        for input in &set.inputs {
            for run in runs.iter_mut() {
                run.found.last_mut().unwrap().push(Vec::new());
            }
            for frame in input {
                for (run, detector) in runs.iter_mut().zip(detectors.iter_mut()) {
                    let t = Instant::now();
                    let found = detector.detect(frame)?;
                    run.seconds += t.elapsed().as_secs_f64();
                    run.frames += 1;
                    run.pixels += (frame.width * frame.height) as f64;
                    run.found.last_mut().unwrap().last_mut().unwrap().push(found);
                }
            }
        }
    }

    println!("frames per clip: {per_clip}; data: {}", data.display());
    println!("\n| set | inputs | frames | detector@threshold | frames with a face | inputs with a face | faces per frame |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (s, set) in sets.iter().enumerate() {
        let frames: usize = set.inputs.iter().map(|i| i.len()).sum();
        for run in &runs {
            for th in THRESHOLDS {
                let keep = |d: &Vec<Detection>| d.iter().filter(|x| x.confidence >= th).count();
                let with_face = run.found[s].iter().flatten().filter(|d| keep(d) > 0).count();
                let inputs_with = run.found[s].iter().filter(|i| i.iter().any(|d| keep(d) > 0)).count();
                let faces: usize = run.found[s].iter().flatten().map(keep).sum();
                println!(
                    "| {} | {} | {} | {:?}@{th} | {with_face} ({:.1}%) | {inputs_with} ({:.1}%) | {:.2} |",
                    set.name,
                    set.inputs.len(),
                    frames,
                    run.kind,
                    100.0 * with_face as f64 / frames.max(1) as f64,
                    100.0 * inputs_with as f64 / set.inputs.len().max(1) as f64,
                    faces as f64 / frames.max(1) as f64
                );
            }
        }
    }
    println!("\n| detector | frames | ms per frame | megapixels per s |");
    println!("| --- | --- | --- | --- |");
    for run in &runs {
        println!("| {:?} | {} | {:.1} | {:.1} |", run.kind, run.frames, 1e3 * run.seconds / run.frames as f64, run.pixels / 1e6 / run.seconds);
    }
    // Box geometry: YuNet's most confident box against res10's, where both find a face (0.5).
    let (mut ious, mut side_ratio, mut dx, mut dy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in 0..sets.len() {
        for (a, b) in runs[0].found[s].iter().flatten().zip(runs[1].found[s].iter().flatten()) {
            for r in a.iter().filter(|d| d.confidence >= 0.5) {
                let best = b.iter().filter(|d| d.confidence >= 0.5).max_by(|x, y| iou(&x.bbox, &r.bbox).total_cmp(&iou(&y.bbox, &r.bbox)));
                if let Some(y) = best {
                    let v = iou(&y.bbox, &r.bbox);
                    if v > 0.0 {
                        let side = |f: &dfscan::faces::FaceBox| f.w.max(f.h);
                        ious.push(v as f64);
                        side_ratio.push((side(&y.bbox) / side(&r.bbox)) as f64);
                        dx.push((((y.bbox.x + y.bbox.w / 2.0) - (r.bbox.x + r.bbox.w / 2.0)) / side(&r.bbox)) as f64);
                        dy.push((((y.bbox.y + y.bbox.h / 2.0) - (r.bbox.y + r.bbox.h / 2.0)) / side(&r.bbox)) as f64);
                    }
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut sorted = ious.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "\nBoxes, YuNet vs res10 (both at 0.5, {} faces found by both): mean IoU {:.3}, median {:.3}, IoU < 0.5 in {:.1}%; \
         YuNet square side / res10 side mean {:.3}; centre offset (YuNet - res10) / res10 side: x {:+.3}, y {:+.3}",
        ious.len(),
        mean(&ious),
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        100.0 * ious.iter().filter(|v| **v < 0.5).count() as f64 / ious.len().max(1) as f64,
        mean(&side_ratio),
        mean(&dx),
        mean(&dy)
    );
    // The same where each finds exactly one face: the face the scan crops, box against box.
    let (mut one_iou, mut one_side, mut one_dx, mut one_dy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in 0..sets.len() {
        for (a, b) in runs[0].found[s].iter().flatten().zip(runs[1].found[s].iter().flatten()) {
            let a: Vec<_> = a.iter().filter(|d| d.confidence >= 0.5).collect();
            let b: Vec<_> = b.iter().filter(|d| d.confidence >= 0.5).collect();
            if let ([r], [y]) = (a.as_slice(), b.as_slice()) {
                let side = |f: &dfscan::faces::FaceBox| f.w.max(f.h);
                one_iou.push(iou(&y.bbox, &r.bbox) as f64);
                one_side.push((side(&y.bbox) / side(&r.bbox)) as f64);
                one_dx.push((((y.bbox.x + y.bbox.w / 2.0) - (r.bbox.x + r.bbox.w / 2.0)) / side(&r.bbox)) as f64);
                one_dy.push((((y.bbox.y + y.bbox.h / 2.0) - (r.bbox.y + r.bbox.h / 2.0)) / side(&r.bbox)) as f64);
            }
        }
    }
    let mut sorted = one_iou.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "Frames where each finds exactly one face ({}): mean IoU {:.3}, median {:.3}, IoU < 0.5 in {:.1}%; side ratio mean {:.3}; centre offset x {:+.3}, y {:+.3}",
        one_iou.len(),
        mean(&one_iou),
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        100.0 * one_iou.iter().filter(|v| **v < 0.5).count() as f64 / one_iou.len().max(1) as f64,
        mean(&one_side),
        mean(&one_dx),
        mean(&one_dy)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
