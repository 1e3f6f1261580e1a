//! What the detector examples share: frames spread over a video, and the labelled videos of
//! ../shared/data.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dfscan::decode::{Frame, Sampler, Sampling, VideoSource};

/// `n` frames spread evenly over the video at `path`.
pub fn frames_of(path: &Path, n: usize) -> Result<Vec<Frame>> {
    let source = VideoSource::open(path).with_context(|| path.display().to_string())?;
    let mut sampler = Sampler::new(Sampling::Frames(n), source.info.duration_s);
    let mut frames = Vec::new();
    source.sample(&mut sampler, |f| {
        frames.push(f);
        Ok(true)
    })?;
    Ok(frames)
}

/// Every video of `data`/all_labels.csv with a label (real or fake) that is on disk, in the
/// file's order.
pub fn labelled_videos(data: &Path) -> Result<Vec<PathBuf>> {
    let mut clips = Vec::new();
    let mut labels = csv::Reader::from_path(data.join("all_labels.csv"))?;
    for row in labels.records() {
        let row = row?;
        let path = data.join(&row[1]);
        let video = path.extension().and_then(|e| e.to_str()).is_some_and(|e| ["mp4", "avi", "mov", "webm", "mkv"].contains(&e));
        if video && &row[2] != "unknown" && path.is_file() {
            clips.push(path);
        }
    }
    Ok(clips)
}
