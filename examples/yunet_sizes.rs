//! YuNet on downscaled frames against res10 on the labelled videos of ../shared/data: speed
//! per input size, frames with a face, and the box geometry (square side, centre) against
//! res10's, from which `faces::detect::RES10_FROM_YUNET` was fitted. Figures for the README;
//! nothing here is a test.
//!
//! usage: cargo run --release --example yunet_sizes -- [DATA_DIR] [FRAMES_PER_CLIP] [EVERY_NTH_CLIP] [FIRST_CLIP]
//!
//! Clips: every EVERY_NTH_CLIP-th labelled video of all_labels.csv from FIRST_CLIP (default
//! 2 and 0: the fit reads the even ones, a check the odd ones). One OpenCV thread, as in the
//! scan. Geometry on the frames where res10 and the YuNet size each find exactly one face at
//! 0.5: side ratio = YuNet side / res10 side (side = max(w, h)), offsets = (YuNet centre -
//! res10 centre) / res10 side; after mapping, the same for the mapped box.
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use dfscan::decode::Frame;
use dfscan::faces::detect::{iou, Res10, Yunet};
use dfscan::faces::{Detection, FaceBox, FaceDetector};

fn side(b: &FaceBox) -> f32 {
    b.w.max(b.h)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "../shared/data".into()));
    let per_clip: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let every: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let first: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let public = repo.join("models/public");
    opencv::core::set_num_threads(1)?;

    let clips = common::labelled_videos(&data)?;
    let clips: Vec<PathBuf> = clips.into_iter().skip(first).step_by(every.max(1)).collect();
    let frames: Vec<Frame> = clips.iter().filter_map(|p| common::frames_of(p, per_clip).ok()).flatten().collect();
    let pixels: f64 = frames.iter().map(|f| (f.width * f.height) as f64).sum::<f64>() / frames.len().max(1) as f64;
    println!("{} clips (every {every}th from {first}), {} frames, mean {:.0} kpixels", clips.len(), frames.len(), pixels / 1000.0);

    let run = |det: &mut dyn FaceDetector| -> Result<(Vec<Vec<Detection>>, f64)> {
        let started = Instant::now();
        let found = frames.iter().map(|f| det.detect(f)).collect::<Result<Vec<_>>>()?;
        Ok((found, started.elapsed().as_secs_f64() * 1000.0 / frames.len().max(1) as f64))
    };
    let yunet_path = dfscan::faces::detect::yunet_path(&public);
    let (res10, res10_ms) = run(&mut Res10::load(&public, 0.5)?)?;
    let with_face = |found: &[Vec<Detection>]| found.iter().filter(|d| !d.is_empty()).count();
    println!("| detector | ms/frame | frames with a face | one face in both: n | IoU mean / median | side ratio | dx | dy | mapped: IoU mean / median | side ratio | dx | dy |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!("| res10 | {res10_ms:.1} | {} of {} | | | | | | | | | |", with_face(&res10), frames.len());
    for long_side in [0, 640, 480, 320, 256] {
        let mut det = Yunet::load(&yunet_path, 0.5)?;
        if long_side > 0 {
            det = det.at_long_side(long_side);
        }
        let (found, ms) = run(&mut det)?;
        let name = if long_side == 0 { "YuNet 640x640 square".to_string() } else { format!("YuNet, long side {long_side}") };
        let geometry = |map: bool| {
            let (mut ious, mut ratio, mut dx, mut dy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (r, y) in res10.iter().zip(&found) {
                if let ([r], [y]) = (r.as_slice(), y.as_slice()) {
                    let b = if map { dfscan::faces::detect::RES10_FROM_YUNET.apply(&y.bbox) } else { y.bbox };
                    let s = side(&r.bbox);
                    ious.push(iou(&r.bbox, &b) as f64);
                    ratio.push((side(&b) / s) as f64);
                    dx.push((((b.x + b.w / 2.0) - (r.bbox.x + r.bbox.w / 2.0)) / s) as f64);
                    dy.push((((b.y + b.h / 2.0) - (r.bbox.y + r.bbox.h / 2.0)) / s) as f64);
                }
            }
            (ious, ratio, dx, dy)
        };
        let (ious, ratio, dx, dy) = geometry(false);
        let (mious, mratio, mdx, mdy) = geometry(true);
        println!(
            "| {name} | {ms:.1} | {} of {} | {} | {:.3} / {:.3} | {:.4} (median {:.4}) | {:+.4} ({:+.4}) | {:+.4} ({:+.4}) | {:.3} / {:.3} | {:.4} | {:+.4} | {:+.4} |",
            with_face(&found),
            frames.len(),
            ious.len(),
            mean(&ious),
            median(&ious),
            mean(&ratio),
            median(&ratio),
            mean(&dx),
            median(&dx),
            mean(&dy),
            median(&dy),
            mean(&mious),
            median(&mious),
            mean(&mratio),
            mean(&mdx),
            mean(&mdy),
        );
    }
    Ok(())
}
