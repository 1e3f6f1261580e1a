//! Face crops as data, below both training and evaluation: labelled inputs -> cached face
//! crops ([`extract`], [`dataset`]), and the image work on them (the packed `size` x `size` RGB
//! bytes that [`crate::faces::square_crop`] produces): augmentations that make a detector
//! robust to re-encoding and capture conditions ([`augment`]), self-blended images, fakes made
//! from real faces ([`sbi`]), and synthetic out-of-distribution crops for the abnormality
//! module ([`ood`]).
//!
//! Augmentations and blends draw their random choices into a plan first and apply it
//! deterministically, so one plan perturbs every frame of a face track the same way. `pixels`
//! holds the OpenCV operations they compose.
pub mod augment;
pub mod dataset;
pub mod extract;
pub mod landmarks;
pub mod ood;
mod pixels;
pub mod sbi;

use rand::Rng;

/// True with probability `p`; any `p` is accepted (<= 0 never, >= 1 always), unlike
/// `Rng::random_bool`, which panics outside [0, 1] and would turn a config typo into a crash.
fn chance(rng: &mut impl Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Uniform in [lo, hi); a reversed or empty range gives its bounds instead of panicking.
fn uniform(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Uniform in [-limit, limit).
fn symmetric(rng: &mut impl Rng, limit: f64) -> f64 {
    uniform(rng, [-limit, limit])
}

/// Test input: the public-domain astronaut portrait (a real, asymmetric face) at `size`.
#[cfg(test)]
pub(crate) fn astronaut(size: i32) -> Vec<u8> {
    use opencv::{core::{Mat, Size}, imgcodecs, imgproc, prelude::*};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/astronaut.jpg");
    let bgr = imgcodecs::imread(path, imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!bgr.empty(), "cannot read {path}");
    let (mut rgb, mut resized) = (Mat::default(), Mat::default());
    imgproc::cvt_color_def(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB).unwrap();
    imgproc::resize(&rgb, &mut resized, Size::new(size, size), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    pixels::mat_bytes(&resized).unwrap()
}

/// Peak signal-to-noise ratio in dB between two crops of the same size.
#[cfg(test)]
fn psnr(a: &[u8], b: &[u8], size: i32) -> f64 {
    opencv::core::psnr(&pixels::rgb_mat(a, size).unwrap(), &pixels::rgb_mat(b, size).unwrap(), 255.0).unwrap()
}
