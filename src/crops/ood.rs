//! Synthetic out-of-distribution crops: in-distribution face crops corrupted past what a scan
//! should trust. The abnormality module (`models::abnormality`) learns to give them risk 1 and
//! the untouched crops risk 0.
//!
//! The five corruptions and their strengths are the seed's (github.com/FabrCas/master_thesis
//! `dataset.py`, `ProjectDataset._ood_distortion`, with `utilities.py`'s `add_blur`,
//! `add_noise`, `add_distortion_noise`), which cycles them by sample index. The seed works on
//! [0, 1] pixels and clamps; here the same amounts are in 8-bit levels, saturated:
//! - blur: Gaussian, sigma 2.5 pixels (`gaussian(sigma=5 * 0.5)`);
//! - noise: + U[0, 1) x 0.5, i.e. + U[0, 127.5) levels (one-sided, so it also brightens);
//! - noise with a random scale: + U[0, 1) x s with s ~ U[0.9, 1.2), i.e. + U[0, 255 s) levels;
//! - rot90 then noise: k ~ {1, 2, 3} counter-clockwise quarter turns, then the noise above;
//! - JPEG at quality 10.
//!
//! As with [`super::augment`], [`OodSynthesis::sample`] draws the random choices and
//! [`OodSynthesis::apply`] is a pure function of the plan and the crop.
use anyhow::Result;
use opencv::prelude::MatTraitConst;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::pixels::{self, mat_bytes, rgb_mat};
use super::uniform;

pub const BLUR_SIGMA: f64 = 2.5;
/// The seed's `add_noise` amplitude, 0.5 on [0, 1] pixels, in levels.
pub const NOISE_LEVELS: f64 = 0.5 * 255.0;
/// The seed's `add_distortion_noise` scale range, on [0, 1] pixels.
pub const SCALED_NOISE_RANGE: [f64; 2] = [0.9, 1.2];
pub const JPEG_QUALITY: i32 = 10;

/// The seed's five corruptions, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OodKind {
    Blur,
    Noise,
    ScaledNoise,
    RotatedNoise,
    Jpeg,
}

impl OodKind {
    pub const ALL: [Self; 5] = [Self::Blur, Self::Noise, Self::ScaledNoise, Self::RotatedNoise, Self::Jpeg];

    /// Its name in reports (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Self::Blur => "blur",
            Self::Noise => "noise",
            Self::ScaledNoise => "scaled-noise",
            Self::RotatedNoise => "rotated-noise",
            Self::Jpeg => "jpeg",
        }
    }

    /// The corruption the seed gives the `index`-th crop (index mod 5), so a set of crops gets
    /// the five in equal shares.
    pub fn for_index(index: usize) -> Self {
        Self::ALL[index % Self::ALL.len()]
    }
}

/// One corruption with its random draws made.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OodSynthesis {
    /// Gaussian blur of `sigma` pixels.
    Blur { sigma: f64 },
    /// + U[0, `levels`) per channel, from a pattern fixed by `seed`.
    Noise { levels: f64, seed: u64 },
    /// `quarter_turns` x 90 degrees counter-clockwise, then noise as [`OodSynthesis::Noise`].
    RotatedNoise { quarter_turns: i32, levels: f64, seed: u64 },
    /// JPEG re-compression at `quality`.
    Jpeg { quality: i32 },
}

impl OodSynthesis {
    pub fn sample(kind: OodKind, rng: &mut impl Rng) -> Self {
        match kind {
            OodKind::Blur => Self::Blur { sigma: BLUR_SIGMA },
            OodKind::Noise => Self::Noise { levels: NOISE_LEVELS, seed: rng.random() },
            OodKind::ScaledNoise => Self::Noise { levels: 255.0 * uniform(rng, SCALED_NOISE_RANGE), seed: rng.random() },
            OodKind::RotatedNoise => {
                Self::RotatedNoise { quarter_turns: rng.random_range(1..=3), levels: NOISE_LEVELS, seed: rng.random() }
            }
            OodKind::Jpeg => Self::Jpeg { quality: JPEG_QUALITY },
        }
    }

    /// The corrupted copy of a packed `size` x `size` RGB crop (same size: rotations of a
    /// square keep it); the same plan and crop always give the same bytes.
    pub fn apply(&self, rgb: &[u8], size: i32) -> Result<Vec<u8>> {
        let img = rgb_mat(rgb, size)?.try_clone()?;
        let out = match *self {
            Self::Blur { sigma } => pixels::gaussian_blur(&img, sigma)?,
            Self::Noise { levels, seed } => pixels::uniform_noise(&img, 0.0, levels, seed)?,
            Self::RotatedNoise { quarter_turns, levels, seed } => {
                pixels::uniform_noise(&pixels::rot90(&img, quarter_turns)?, 0.0, levels, seed)?
            }
            Self::Jpeg { quality } => pixels::jpeg(&img, quality)?,
        };
        mat_bytes(&out)
    }
}

/// Corrupted copies of `crops` (packed `size` x `size` RGB), crop `i` by `kind_of(i)`, the
/// random draws seeded by `seed`: the same call gives the same bytes.
pub fn corrupt_all(crops: &[Vec<u8>], size: i32, seed: u64, kind_of: impl Fn(usize) -> OodKind) -> Result<Vec<Vec<u8>>> {
    let mut rng = StdRng::seed_from_u64(seed);
    crops.iter().enumerate().map(|(i, rgb)| OodSynthesis::sample(kind_of(i), &mut rng).apply(rgb, size)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::astronaut;
    use super::*;

    const SIZE: i32 = 64;

    #[test]
    fn every_kind_keeps_the_shape_and_changes_pixels() {
        let input = astronaut(SIZE);
        let mut rng = StdRng::seed_from_u64(3);
        for (i, kind) in OodKind::ALL.into_iter().enumerate() {
            assert_eq!(OodKind::for_index(i + 5), kind);
            let plan = OodSynthesis::sample(kind, &mut rng);
            let out = plan.apply(&input, SIZE).unwrap();
            assert_eq!(out.len(), input.len(), "{kind:?}");
            let changed = out.iter().zip(&input).filter(|(a, b)| a != b).count();
            assert!(changed * 2 > input.len(), "{kind:?} changed only {changed} of {} bytes", input.len());
            assert_eq!(plan.apply(&input, SIZE).unwrap(), out, "{kind:?} is not deterministic");
        }
    }

    #[test]
    fn noise_is_one_sided_and_rotation_counter_clockwise() {
        let input = astronaut(SIZE);
        let noisy = OodSynthesis::Noise { levels: NOISE_LEVELS, seed: 7 }.apply(&input, SIZE).unwrap();
        assert!(noisy.iter().zip(&input).all(|(n, i)| n >= i && (*n as f64) < *i as f64 + NOISE_LEVELS + 1.0));
        // No noise: the rotation alone. np.rot90: out[r][c] = in[c][size - 1 - r].
        let turned = OodSynthesis::RotatedNoise { quarter_turns: 1, levels: 0.0, seed: 0 }.apply(&input, SIZE).unwrap();
        let px = |img: &[u8], r: i32, c: i32| img[((r * SIZE + c) * 3) as usize..][..3].to_vec();
        for (r, c) in [(0, 0), (5, 17), (SIZE - 1, 3)] {
            assert_eq!(px(&turned, r, c), px(&input, c, SIZE - 1 - r));
        }
    }
}
