//! Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images",
//! CVPR 2022; https://github.com/mapooon/SelfBlendedImages): a synthetic fake made from one
//! real crop. A slightly recoloured, re-filtered and shifted copy of the face (the source) is
//! blended into the untouched crop (the target) through a soft face-shaped mask:
//! out = mask x source + (1 - mask) x target. What remains is what every face swap leaves, a
//! blending boundary with colour and frequency mismatch, and nothing of one forgery method,
//! so a detector trained on it generalises to methods it never saw.
//!
//! The source gets, as the paper's `source_transforms` and `randaffine`: an RGB shift, a hue,
//! saturation and value shift, brightness and contrast, one of blur, sharpening or
//! downscale-upscale, and a small scale and shift. The paper's mask is the convex hull of
//! facial landmarks; we have face boxes, so ours ([`MaskShape`]) starts from an ellipse in the
//! box with random size, aspect and tilt, which is then randomly eroded or dilated,
//! elastically warped and feathered, and scaled by a blend ratio drawn per sample. Like
//! [`super::augment`], a plan draws every random choice once (the warp as a seed) and applying
//! it is deterministic, so every frame of a face track gets the same blend;
//! [`SbiPlan::support`] says which pixels it may change.
mod mask;

use anyhow::Result;
use opencv::core::{self, Mat, Scalar, BORDER_REFLECT_101, CV_32F, CV_8U};
use opencv::imgproc;
use opencv::prelude::*;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use self::mask::MaskShape;
use super::pixels::{self, mat_bytes, rgb_mat, Affine};
use super::{symmetric, uniform};
use crate::faces::FaceBox;

/// The margin `faces::square_crop` adds on each side of the face box (`--margin` default,
/// seed 001): the box is then the central 1 / (1 + 2 x 0.3) of the crop.
pub const CROP_MARGIN: f32 = 0.3;

/// Source colour shifts: per-channel additive levels (the paper's `RGBShift(20, 20, 20)`),
/// hue, saturation, value in OpenCV's 8-bit HSV units (hue in half-degrees), brightness as a
/// fraction of 255, contrast around 1. Small on purpose: the fake should differ from its
/// target as much as two faces under similar light, not more.
const RGB_SHIFT_LIMIT: f64 = 20.0;
const HSV_LIMITS: [f64; 3] = [5.0, 25.0, 15.0];
const BRIGHTNESS_LIMIT: f64 = 0.1;
const CONTRAST_LIMIT: f64 = 0.1;
/// Source frequency change: Gaussian blur sigma in pixels, unsharp-mask amount at sigma 1, or
/// the side kept by a downscale before scaling back up.
const BLUR_SIGMA: [f64; 2] = [0.5, 1.5];
const SHARPEN_AMOUNT: [f64; 2] = [0.3, 1.0];
const DOWNSCALE: [f64; 2] = [0.3, 0.7];
/// Source geometry, as the paper's `randaffine`: scale within 5%, shift up to 3% of the side
/// across and 1.5% down (about 7 and 3 pixels on a 224 crop).
const SCALE_LIMIT: f64 = 0.05;
const SHIFT_LIMITS: [f64; 2] = [0.03, 0.015];
/// The paper's blend ratios: a full blend half of the time, a partial one otherwise.
const BLEND_RATIOS: [f64; 6] = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0];

/// Every random choice of one self-blend, drawn once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SbiPlan {
    /// Levels added to the source's red, green and blue.
    pub rgb_shift: [f64; 3],
    /// Hue, saturation, value shifts of the source (see `HSV_LIMITS`).
    pub hsv_shift: [f64; 3],
    pub brightness: f64,
    pub contrast: f64,
    pub frequency: Frequency,
    pub warp: Affine,
    pub mask: MaskShape,
    /// The mask's peak, so a partial blend leaves some of the target showing through.
    pub blend_ratio: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frequency {
    Blur { sigma: f64 },
    Sharpen { amount: f64 },
    /// Shrink to `scale` of the side with nearest-neighbour sampling and enlarge back
    /// bilinearly, as the paper's `RandomDownScale`: aliasing and softness together.
    Downscale { scale: f64 },
}

impl SbiPlan {
    pub fn sample(rng: &mut impl Rng) -> Self {
        let [hue, sat, val] = HSV_LIMITS;
        Self {
            rgb_shift: [(); 3].map(|_| symmetric(rng, RGB_SHIFT_LIMIT)),
            hsv_shift: [symmetric(rng, hue), symmetric(rng, sat), symmetric(rng, val)],
            brightness: symmetric(rng, BRIGHTNESS_LIMIT),
            contrast: 1.0 + symmetric(rng, CONTRAST_LIMIT),
            frequency: match rng.random_range(0..3) {
                0 => Frequency::Blur { sigma: uniform(rng, BLUR_SIGMA) },
                1 => Frequency::Sharpen { amount: uniform(rng, SHARPEN_AMOUNT) },
                _ => Frequency::Downscale { scale: uniform(rng, DOWNSCALE) },
            },
            warp: Affine {
                dx: symmetric(rng, SHIFT_LIMITS[0]),
                dy: symmetric(rng, SHIFT_LIMITS[1]),
                scale: 1.0 + symmetric(rng, SCALE_LIMIT),
                angle_deg: 0.0,
            },
            mask: MaskShape::sample(rng),
            blend_ratio: *BLEND_RATIOS.choose(rng).expect("not empty"),
        }
    }

    /// The self-blended copy of a packed `size` x `size` RGB crop made by `square_crop` with
    /// [`CROP_MARGIN`], and its mask (`size` x `size`, row-major, in [0, 1]).
    pub fn apply(&self, rgb: &[u8], size: i32) -> Result<(Vec<u8>, Vec<f32>)> {
        self.apply_in_box(rgb, size, &face_box_in_crop(size, CROP_MARGIN))
    }

    /// As [`Self::apply`], with the face box given in crop pixels. Pixels where the mask is 0
    /// are returned exactly as they came in.
    pub fn apply_in_box(&self, rgb: &[u8], size: i32, face: &FaceBox) -> Result<(Vec<u8>, Vec<f32>)> {
        let target = rgb_mat(rgb, size)?;
        let source = self.source(&target.try_clone()?)?;
        let mask = self.mask(size, face)?;
        let mut inverse = Mat::default();
        mask.convert_to(&mut inverse, CV_32F, -1.0, 1.0)?;
        // blendLinear divides by (w1 + w2 + 1e-5): where the mask is 0 that moves a level by
        // at most 0.003 before rounding, so the target's bytes come back unchanged.
        let mut blended = Mat::default();
        imgproc::blend_linear(&source, &target, &mask, &inverse, &mut blended)?;
        Ok((mat_bytes(&blended)?, mask.data_typed::<f32>()?.to_vec()))
    }

    /// The pixels (row-major) that [`Self::apply`] may change in a `size` crop: where the mask
    /// is above 0 after erosion or dilation, the elastic warp and the feather. Every other
    /// pixel comes back byte for byte.
    pub fn support(&self, size: i32) -> Result<Vec<bool>> {
        let mask = self.mask(size, &face_box_in_crop(size, CROP_MARGIN))?;
        Ok(mask.data_typed::<f32>()?.iter().map(|&m| m > 0.0).collect())
    }

    fn source(&self, target: &Mat) -> Result<Mat> {
        let [red, green, blue] = self.rgb_shift;
        let mut shifted = Mat::default();
        core::add(target, &Scalar::new(red, green, blue, 0.0), &mut shifted, &core::no_array(), CV_8U)?;
        let [hue, saturation, value] = self.hsv_shift;
        let recoloured = pixels::shift_hsv(&shifted, hue, saturation, value)?;
        let recoloured = pixels::brightness_contrast(&recoloured, self.brightness, self.contrast)?;
        let filtered = match self.frequency {
            Frequency::Blur { sigma } => pixels::gaussian_blur(&recoloured, sigma)?,
            Frequency::Sharpen { amount } => pixels::sharpen(&recoloured, amount, 1.0)?,
            Frequency::Downscale { scale } => {
                let side = (recoloured.rows() as f64 * scale).round() as i32;
                pixels::downscale(&recoloured, side, imgproc::INTER_NEAREST, imgproc::INTER_LINEAR, false)?
            }
        };
        // Reflected borders: a black edge pulled in by the shift would be a cue of its own.
        pixels::warp(&filtered, self.warp, BORDER_REFLECT_101)
    }

    /// The shape's mask with its peak at the blend ratio.
    fn mask(&self, size: i32, face: &FaceBox) -> Result<Mat> {
        let mut mask = Mat::default();
        self.mask.render(size, face)?.convert_to(&mut mask, CV_32F, self.blend_ratio.clamp(0.0, 1.0), 0.0)?;
        Ok(mask)
    }
}

/// The face box inside a `size` crop that `square_crop` made with `margin`: the central
/// 1 / (1 + 2 x `margin`) of it.
pub fn face_box_in_crop(size: i32, margin: f32) -> FaceBox {
    let side = size as f32 / (1.0 + 2.0 * margin);
    let offset = (size as f32 - side) / 2.0;
    FaceBox { x: offset, y: offset, w: side, h: side }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::astronaut;
    use super::*;

    const SIZE: i32 = 96;

    fn plan(seed: u64) -> SbiPlan {
        SbiPlan::sample(&mut StdRng::seed_from_u64(seed))
    }

    fn changed(a: &[u8], b: &[u8], pixel: usize) -> bool {
        a[pixel * 3..pixel * 3 + 3] != b[pixel * 3..pixel * 3 + 3]
    }

    #[test]
    fn the_mask_is_soft_face_shaped_and_zero_at_the_corners() {
        let input = astronaut(SIZE);
        let s = SIZE as usize;
        for seed in 0..16 {
            let (out, mask) = plan(seed).apply(&input, SIZE).unwrap();
            assert_eq!((out.len(), mask.len()), (input.len(), s * s));
            assert!(mask.iter().all(|m| (0.0..=1.0).contains(m)), "seed {seed}: mask leaves [0, 1]");
            for corner in [0, s - 1, s * (s - 1), s * s - 1] {
                assert_eq!(mask[corner], 0.0, "seed {seed}: mask reaches a corner");
            }
            let peak = mask.iter().cloned().fold(0.0, f32::max);
            assert!((peak - plan(seed).blend_ratio as f32).abs() < 1e-4, "seed {seed}: peak {peak}");
            assert!(mask[s * s / 2 + s / 2] > 0.0, "seed {seed}: the face centre is not blended");
            // Soft: some values strictly between 0 and the peak (the feathered edge).
            assert!(mask.iter().any(|&m| m > 0.05 * peak && m < 0.95 * peak), "seed {seed}: hard edge");
        }
    }

    #[test]
    fn a_blend_changes_pixels_only_inside_its_support() {
        let input = astronaut(SIZE);
        for seed in 0..64 {
            let plan = plan(seed);
            let (out, _) = plan.apply(&input, SIZE).unwrap();
            let support = plan.support(SIZE).unwrap();
            let inside = support.iter().filter(|&&s| s).count();
            assert!(inside > 0 && inside < support.len(), "seed {seed}: support of {inside} pixels");
            let stray = (0..support.len()).filter(|&i| !support[i] && changed(&out, &input, i)).count();
            assert_eq!(stray, 0, "seed {seed}: {stray} pixels changed outside the mask's support");
            assert!((0..support.len()).any(|i| changed(&out, &input, i)), "seed {seed}: nothing blended");
        }
    }

    #[test]
    fn a_full_blend_changes_most_of_the_face() {
        let input = astronaut(SIZE);
        for seed in 0..16 {
            let full = SbiPlan { blend_ratio: 1.0, ..plan(seed) };
            let (out, mask) = full.apply(&input, SIZE).unwrap();
            let inside: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.5).collect();
            let changed_inside = inside.iter().filter(|&&i| changed(&out, &input, i)).count();
            assert!(changed_inside * 2 > inside.len(), "seed {seed}: only {changed_inside}/{} face pixels changed", inside.len());
            let levels: u64 = inside.iter().flat_map(|&i| i * 3..i * 3 + 3).map(|b| out[b].abs_diff(input[b]) as u64).sum();
            let mean = levels as f64 / (inside.len() * 3) as f64;
            assert!(mean > 2.0, "seed {seed}: the face moved by {mean:.2} levels on average");
        }
    }

    #[test]
    fn the_rgb_shift_and_the_downscale_reach_the_source() {
        let input = astronaut(SIZE);
        let base = SbiPlan { rgb_shift: [0.0; 3], frequency: Frequency::Sharpen { amount: 0.0 }, blend_ratio: 1.0, ..plan(1) };
        let (plain, mask) = base.apply(&input, SIZE).unwrap();
        let face: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] == 1.0).collect();
        let variants = [
            SbiPlan { rgb_shift: [20.0, -20.0, 10.0], ..base.clone() },
            SbiPlan { frequency: Frequency::Downscale { scale: 0.4 }, ..base.clone() },
        ];
        for variant in variants {
            let (out, _) = variant.apply(&input, SIZE).unwrap();
            let moved = face.iter().filter(|&&i| changed(&out, &plain, i)).count();
            assert!(moved * 2 > face.len(), "{variant:?}: {moved}/{} face pixels differ", face.len());
        }
    }

    #[test]
    fn a_plan_is_deterministic_and_seeds_differ() {
        let input = astronaut(SIZE);
        for seed in 0..8 {
            let (first, second) = (plan(seed).apply(&input, SIZE).unwrap(), plan(seed).apply(&input, SIZE).unwrap());
            assert_eq!(first, second, "seed {seed}");
            let support: Vec<bool> = first.1.iter().map(|&m| m > 0.0).collect();
            assert_eq!(plan(seed).support(SIZE).unwrap(), support, "seed {seed}: support is not the applied mask's");
        }
        assert_ne!(plan(3).apply(&input, SIZE).unwrap().0, plan(4).apply(&input, SIZE).unwrap().0);
        assert!(plan(3).apply(&input, SIZE + 1).is_err());
    }

    #[test]
    fn an_explicit_face_box_places_the_mask() {
        let input = astronaut(SIZE);
        let s = SIZE as usize;
        let top_left = FaceBox { x: 8.0, y: 8.0, w: 30.0, h: 30.0 };
        let (_, mask) = plan(5).apply_in_box(&input, SIZE, &top_left).unwrap();
        assert!(mask[23 * s + 23] > 0.0);
        assert!((s / 2..s).all(|y| (s / 2..s).all(|x| mask[y * s + x] == 0.0)), "mask outside its box");
    }

    #[test]
    fn the_implied_box_is_the_centre_of_a_margin_crop() {
        let face = face_box_in_crop(160, 0.3);
        for (got, want) in [(face.x, 30.0), (face.y, 30.0), (face.w, 100.0), (face.h, 100.0)] {
            assert!((got - want).abs() < 1e-3, "{face:?}");
        }
    }
}
