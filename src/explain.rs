//! `--explain DIR`: for each scanned face, a PNG of its crop with the ViT's attention laid
//! over it (red where the classifier looked most), so a user can look instead of read.
//!
//! Names lead back from a JSON line: the line's `explain` is the input's folder,
//! `DIR/<file stem>-<8 hex of the path's BLAKE3>` (two inputs with the same name in different
//! folders do not collide), and each face's `explain` is its file there,
//! `frame<index>-track<id>-face<n>.png`.
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use opencv::core::{Mat, Size, Vec3b, CV_8U};
use opencv::{core, imgcodecs, imgproc};

/// How much of each pixel is heat map (the rest is the face).
const HEAT_WEIGHT: f64 = 0.45;

/// The folder of one input's overlays under `root`.
pub fn input_dir(root: &Path, input: &Path) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into());
    // Keep names portable: anything but letters, digits, '-', '_' and '.' becomes '_'.
    let stem: String = stem.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let hash = blake3::hash(input.as_os_str().as_bytes()).to_hex();
    root.join(format!("{stem}-{}", &hash[..8]))
}

/// The file name of one face's overlay.
pub fn face_file(frame: usize, track: u32, face: usize) -> String {
    format!("frame{frame:06}-track{track}-face{face}.png")
}

/// Writes `rgb` (a `size` x `size` crop) with `attention` (a `map_size` x `map_size` map in
/// [0, 1], row-major) as a JET heat map over it.
pub fn write_overlay(path: &Path, rgb: &[u8], size: i32, attention: &[f32], map_size: i32) -> Result<()> {
    ensure!(attention.len() == (map_size * map_size) as usize, "attention map of {} values for {map_size}x{map_size}", attention.len());
    let crop = Mat::new_rows_cols_with_bytes::<Vec3b>(size, size, rgb)?;
    let mut face = Mat::default();
    imgproc::cvt_color_def(&crop, &mut face, imgproc::COLOR_RGB2BGR)?;
    let levels: Vec<u8> = attention.iter().map(|&a| (a.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let map = Mat::new_rows_cols_with_bytes::<u8>(map_size, map_size, &levels)?;
    let mut resized = Mat::default();
    imgproc::resize(&map, &mut resized, Size::new(size, size), 0.0, 0.0, imgproc::INTER_LINEAR)?;
    let mut heat = Mat::default();
    imgproc::apply_color_map(&resized, &mut heat, imgproc::COLORMAP_JET)?;
    let mut blended = Mat::default();
    core::add_weighted(&face, 1.0 - HEAT_WEIGHT, &heat, HEAT_WEIGHT, 0.0, &mut blended, CV_8U)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    ensure!(imgcodecs::imwrite_def(path, &blended)?, "could not write {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use opencv::prelude::*;

    use super::*;

    #[test]
    fn the_hot_corner_turns_red_and_the_cold_one_blue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x").join(face_file(12, 1, 0));
        let grey = vec![128u8; 32 * 32 * 3];
        // Hot top-left quarter, cold elsewhere.
        let attention: Vec<f32> = (0..16 * 16).map(|i| if i % 16 < 8 && i / 16 < 8 { 1.0 } else { 0.0 }).collect();
        write_overlay(&path, &grey, 32, &attention, 16).unwrap();
        let bgr = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert_eq!((bgr.rows(), bgr.cols()), (32, 32));
        let hot = *bgr.at_2d::<Vec3b>(2, 2).unwrap();
        let cold = *bgr.at_2d::<Vec3b>(29, 29).unwrap();
        assert!(hot[2] > hot[0] + 50, "hot pixel {hot:?} should be red");
        assert!(cold[0] > cold[2] + 50, "cold pixel {cold:?} should be blue");
        assert!(path.file_name().unwrap().to_str().unwrap() == "frame000012-track1-face0.png");
    }

    #[test]
    fn inputs_with_one_name_in_two_folders_get_two_folders() {
        let root = Path::new("/out");
        let (a, b) = (input_dir(root, Path::new("/a/clip.mp4")), input_dir(root, Path::new("/b/clip.mp4")));
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("clip-"));
        assert!(input_dir(root, Path::new("/a/we ird?.mp4")).to_str().unwrap().contains("we_ird_-"));
    }
}
