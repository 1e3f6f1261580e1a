//! Training augmentations after the DFDC winner's albumentations recipe (selimsef,
//! `training/pipelines/train_classifier.py`, `create_train_transforms`; seed 003), applied in
//! its order: JPEG, noise, blur, flip, isotropic resize, colour, gray, shift-scale-rotate.
//! FancyPCA is left out of the colour choice; brightness/contrast and hue/saturation remain.
//!
//! [`AugmentPlan::sample`] draws every random choice once and [`AugmentPlan::apply`] is
//! deterministic (noise included: the plan holds its seed), so one plan applied to every frame of
//! a face track perturbs all of them identically, as the temporal models need.
//!
//! [`Perturbation`] holds the fixed-strength corruptions of the robustness study (seed 001).
use anyhow::Result;
use opencv::core::BORDER_CONSTANT;
use opencv::imgproc;
use opencv::prelude::MatTraitConst;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use super::pixels::Affine;
use super::pixels::{self, mat_bytes, rgb_mat};
use super::{chance, symmetric, uniform};

/// Probabilities and strengths of each augmentation; `Default` is the DFDC winner's recipe.
/// Ranges are `[min, max]`; geometric amounts are fractions of the crop side, so one config
/// suits every input size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// JPEG re-compression (`ImageCompression(60, 100, p=0.5)`).
    pub jpeg_p: f64,
    pub jpeg_quality: [i32; 2],
    /// Gaussian noise, sigma in 8-bit levels (`GaussNoise(var_limit=(10, 50), p=0.1)`).
    pub noise_p: f64,
    pub noise_sigma: [f64; 2],
    /// Gaussian blur, sigma in pixels (`GaussianBlur(blur_limit=3, p=0.05)`: sigma 0.8).
    pub blur_p: f64,
    pub blur_sigma: [f64; 2],
    /// Horizontal flip (`HorizontalFlip()`, p=0.5).
    pub flip_p: f64,
    /// Isotropic resize: down to `resize_scale` of the side with one of the winner's three
    /// interpolation pairs, then back up, or (with `resize_pad_p`) padded back with black as
    /// `PadIfNeeded` does. The winner's resize always runs, but on crops of every size; ours
    /// arrive at the input size already, so a smaller `resize_p` keeps some at full detail.
    pub resize_p: f64,
    pub resize_scale: [f64; 2],
    pub resize_pad_p: f64,
    /// One colour change, brightness/contrast or hue/saturation/value with equal chance
    /// (`OneOf([RandomBrightnessContrast(), FancyPCA(), HueSaturationValue()], p=0.7)`).
    pub colour_p: f64,
    /// Brightness offset as a fraction of 255 and contrast gain around 1 (albumentations' 0.2).
    pub brightness_limit: f64,
    pub contrast_limit: f64,
    /// Shifts in OpenCV's 8-bit HSV units (hue 0..180), albumentations' 20, 30, 20.
    pub hue_shift_limit: f64,
    pub sat_shift_limit: f64,
    pub val_shift_limit: f64,
    /// To gray, kept as three equal channels (`ToGray(p=0.2)`).
    pub gray_p: f64,
    /// `ShiftScaleRotate(shift_limit=0.1, scale_limit=0.2, rotate_limit=10, p=0.5)`, black border.
    pub ssr_p: f64,
    pub shift_limit: f64,
    pub scale_limit: f64,
    pub rotate_limit_deg: f64,
}

impl AugmentConfig {
    /// Every step off (`dfscan train --no-augment`).
    pub fn none() -> Self {
        Self {
            jpeg_p: 0.0,
            noise_p: 0.0,
            blur_p: 0.0,
            flip_p: 0.0,
            resize_p: 0.0,
            colour_p: 0.0,
            gray_p: 0.0,
            ssr_p: 0.0,
            ..Self::default()
        }
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            jpeg_p: 0.5,
            jpeg_quality: [60, 100],
            noise_p: 0.1,
            noise_sigma: [10f64.sqrt(), 50f64.sqrt()],
            blur_p: 0.05,
            blur_sigma: [0.5, 1.1],
            flip_p: 0.5,
            resize_p: 0.5,
            resize_scale: [0.5, 1.0],
            resize_pad_p: 0.1,
            colour_p: 0.7,
            brightness_limit: 0.2,
            contrast_limit: 0.2,
            hue_shift_limit: 20.0,
            sat_shift_limit: 30.0,
            val_shift_limit: 20.0,
            gray_p: 0.2,
            ssr_p: 0.5,
            shift_limit: 0.1,
            scale_limit: 0.2,
            rotate_limit_deg: 10.0,
        }
    }
}

/// Every random choice of one augmentation, drawn once. `Default` changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AugmentPlan {
    pub jpeg_quality: Option<i32>,
    pub noise: Option<Noise>,
    pub blur_sigma: Option<f64>,
    pub flip: bool,
    pub resize: Option<IsotropicResize>,
    pub colour: Option<ColourJitter>,
    pub gray: bool,
    pub shift_scale_rotate: Option<Affine>,
}

/// Gaussian noise regenerated from `seed` at each apply, so every frame gets the same pattern.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub sigma: f64,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsotropicResize {
    /// The reduced side as a fraction of the crop side.
    pub scale: f64,
    pub interpolation: Interpolation,
    /// Pad the reduced image back to size with black instead of enlarging it.
    pub pad: bool,
}

/// The DFDC winner's (down, up) interpolation pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpolation {
    AreaCubic,
    AreaLinear,
    LinearLinear,
}

impl Interpolation {
    const ALL: [Self; 3] = [Self::AreaCubic, Self::AreaLinear, Self::LinearLinear];

    fn down_up(self) -> (i32, i32) {
        match self {
            Self::AreaCubic => (imgproc::INTER_AREA, imgproc::INTER_CUBIC),
            Self::AreaLinear => (imgproc::INTER_AREA, imgproc::INTER_LINEAR),
            Self::LinearLinear => (imgproc::INTER_LINEAR, imgproc::INTER_LINEAR),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ColourJitter {
    /// out = in x `contrast` + `brightness` x 255.
    BrightnessContrast { brightness: f64, contrast: f64 },
    /// Shifts in OpenCV's 8-bit HSV units; hue wraps around, saturation and value clip.
    HueSaturationValue { hue: f64, saturation: f64, value: f64 },
}

impl AugmentPlan {
    pub fn sample(cfg: &AugmentConfig, rng: &mut impl Rng) -> Self {
        let [q_lo, q_hi] = cfg.jpeg_quality;
        Self {
            jpeg_quality: chance(rng, cfg.jpeg_p).then(|| rng.random_range(q_lo.min(q_hi)..=q_hi.max(q_lo))),
            noise: chance(rng, cfg.noise_p).then(|| Noise { sigma: uniform(rng, cfg.noise_sigma), seed: rng.random() }),
            blur_sigma: chance(rng, cfg.blur_p).then(|| uniform(rng, cfg.blur_sigma)),
            flip: chance(rng, cfg.flip_p),
            resize: chance(rng, cfg.resize_p).then(|| IsotropicResize {
                scale: uniform(rng, cfg.resize_scale),
                interpolation: *Interpolation::ALL.choose(rng).expect("not empty"),
                pad: chance(rng, cfg.resize_pad_p),
            }),
            colour: chance(rng, cfg.colour_p).then(|| {
                if chance(rng, 0.5) {
                    ColourJitter::BrightnessContrast {
                        brightness: symmetric(rng, cfg.brightness_limit),
                        contrast: 1.0 + symmetric(rng, cfg.contrast_limit),
                    }
                } else {
                    ColourJitter::HueSaturationValue {
                        hue: symmetric(rng, cfg.hue_shift_limit),
                        saturation: symmetric(rng, cfg.sat_shift_limit),
                        value: symmetric(rng, cfg.val_shift_limit),
                    }
                }
            }),
            gray: chance(rng, cfg.gray_p),
            shift_scale_rotate: chance(rng, cfg.ssr_p).then(|| Affine {
                dx: symmetric(rng, cfg.shift_limit),
                dy: symmetric(rng, cfg.shift_limit),
                scale: 1.0 + symmetric(rng, cfg.scale_limit),
                angle_deg: symmetric(rng, cfg.rotate_limit_deg),
            }),
        }
    }

    /// The augmented copy of a packed `size` x `size` RGB crop; the same plan and input always
    /// give the same bytes.
    pub fn apply(&self, rgb: &[u8], size: i32) -> Result<Vec<u8>> {
        let mut img = rgb_mat(rgb, size)?.try_clone()?;
        if let Some(quality) = self.jpeg_quality {
            img = pixels::jpeg(&img, quality)?;
        }
        if let Some(Noise { sigma, seed }) = self.noise {
            img = pixels::gaussian_noise(&img, sigma, seed)?;
        }
        if let Some(sigma) = self.blur_sigma {
            img = pixels::gaussian_blur(&img, sigma)?;
        }
        if self.flip {
            img = pixels::flip_horizontal(&img)?;
        }
        if let Some(IsotropicResize { scale, interpolation, pad }) = self.resize {
            let (down, up) = interpolation.down_up();
            img = pixels::downscale(&img, (size as f64 * scale).round() as i32, down, up, pad)?;
        }
        img = match self.colour {
            Some(ColourJitter::BrightnessContrast { brightness, contrast }) => pixels::brightness_contrast(&img, brightness, contrast)?,
            Some(ColourJitter::HueSaturationValue { hue, saturation, value }) => pixels::shift_hsv(&img, hue, saturation, value)?,
            None => img,
        };
        if self.gray {
            img = pixels::to_gray(&img)?;
        }
        if let Some(affine) = self.shift_scale_rotate {
            img = pixels::warp(&img, affine, BORDER_CONSTANT)?;
        }
        mat_bytes(&img)
    }
}

/// The corruptions of the robustness study, each at one fixed strength so that runs compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[value(rename_all = "lower")]
#[serde(rename_all = "lowercase")]
pub enum Perturbation {
    /// Rotate 15 degrees counter-clockwise about the centre, black corners.
    Rotate,
    /// Mirror left to right.
    Flip,
    /// Gaussian blur, sigma 2 pixels.
    Blur,
    /// Gaussian noise, sigma 10 levels, a fixed pattern (seed 0).
    Noise,
    /// JPEG re-compression at quality 30.
    Jpeg,
    /// Gray, as three equal channels.
    Gray,
}

impl Perturbation {
    /// The one-step plan that applies this perturbation.
    pub fn plan(self) -> AugmentPlan {
        let identity = AugmentPlan::default();
        match self {
            Self::Rotate => AugmentPlan {
                shift_scale_rotate: Some(Affine { dx: 0.0, dy: 0.0, scale: 1.0, angle_deg: 15.0 }),
                ..identity
            },
            Self::Flip => AugmentPlan { flip: true, ..identity },
            Self::Blur => AugmentPlan { blur_sigma: Some(2.0), ..identity },
            Self::Noise => AugmentPlan { noise: Some(Noise { sigma: 10.0, seed: 0 }), ..identity },
            Self::Jpeg => AugmentPlan { jpeg_quality: Some(30), ..identity },
            Self::Gray => AugmentPlan { gray: true, ..identity },
        }
    }

    pub fn apply(self, rgb: &[u8], size: i32) -> Result<Vec<u8>> {
        self.plan().apply(rgb, size)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::{astronaut, psnr};
    use super::*;

    const SIZE: i32 = 96;

    /// The default ranges with every probability at zero except those `enable` raises.
    fn only(enable: impl FnOnce(&mut AugmentConfig)) -> AugmentConfig {
        let mut cfg = AugmentConfig {
            jpeg_p: 0.0,
            noise_p: 0.0,
            blur_p: 0.0,
            flip_p: 0.0,
            resize_p: 0.0,
            resize_pad_p: 0.0,
            colour_p: 0.0,
            gray_p: 0.0,
            ssr_p: 0.0,
            ..AugmentConfig::default()
        };
        enable(&mut cfg);
        cfg
    }

    fn augmented(cfg: &AugmentConfig, seed: u64, rgb: &[u8]) -> Vec<u8> {
        AugmentPlan::sample(cfg, &mut StdRng::seed_from_u64(seed)).apply(rgb, SIZE).unwrap()
    }

    fn pixel(rgb: &[u8], x: i32, y: i32) -> &[u8] {
        let at = ((y * SIZE + x) * 3) as usize;
        &rgb[at..at + 3]
    }

    fn is_gray(rgb: &[u8]) -> bool {
        rgb.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2])
    }

    fn is_mirror(a: &[u8], b: &[u8]) -> bool {
        (0..SIZE).all(|y| (0..SIZE).all(|x| pixel(a, x, y) == pixel(b, SIZE - 1 - x, y)))
    }

    /// Sum of absolute differences between horizontal neighbours: blur lowers it.
    fn detail(rgb: &[u8]) -> u64 {
        rgb.chunks(3 * SIZE as usize)
            .flat_map(|row| row.windows(4).map(|w| w[0].abs_diff(w[3]) as u64))
            .sum()
    }

    #[test]
    fn every_augmentation_alone_keeps_the_shape_and_changes_the_image() {
        let input = astronaut(SIZE);
        let cases: [(&str, fn(&mut AugmentConfig), f64); 10] = [
            ("jpeg", |c| c.jpeg_p = 1.0, 25.0),
            ("noise", |c| c.noise_p = 1.0, 25.0),
            ("blur", |c| c.blur_p = 1.0, 20.0),
            ("flip", |c| c.flip_p = 1.0, 0.0),
            ("resize", |c| c.resize_p = 1.0, 18.0),
            ("resize+pad", |c| (c.resize_p, c.resize_pad_p) = (1.0, 1.0), 0.0),
            ("brightness/contrast", |c| (c.colour_p, c.hue_shift_limit) = (1.0, 0.0), 0.0),
            ("hue/saturation", |c| c.colour_p = 1.0, 0.0),
            ("gray", |c| c.gray_p = 1.0, 0.0),
            ("shift-scale-rotate", |c| c.ssr_p = 1.0, 0.0),
        ];
        for (name, enable, min_psnr) in cases {
            for seed in 0..4 {
                let out = augmented(&only(enable), seed, &input);
                assert_eq!(out.len(), input.len(), "{name} changed the shape");
                assert_ne!(out, input, "{name} (seed {seed}) changed nothing");
                assert!(psnr(&out, &input, SIZE) > min_psnr, "{name} (seed {seed}) is too strong");
            }
        }
    }

    #[test]
    fn each_augmentation_does_what_its_name_says() {
        let input = astronaut(SIZE);
        assert!(is_mirror(&augmented(&only(|c| c.flip_p = 1.0), 0, &input), &input));
        assert!(is_gray(&augmented(&only(|c| c.gray_p = 1.0), 0, &input)));
        assert!(!is_gray(&input));
        assert!(detail(&augmented(&only(|c| c.blur_p = 1.0), 0, &input)) < detail(&input) * 9 / 10);
        let q60 = AugmentPlan { jpeg_quality: Some(60), ..AugmentPlan::default() }.apply(&input, SIZE).unwrap();
        assert_ne!(q60, input);
        assert!(psnr(&q60, &input, SIZE) > 25.0, "JPEG q60 is too lossy: {} dB", psnr(&q60, &input, SIZE));
        // A padded resize leaves a black frame around a smaller face.
        let padded = AugmentPlan {
            resize: Some(IsotropicResize { scale: 0.5, interpolation: Interpolation::AreaCubic, pad: true }),
            ..AugmentPlan::default()
        };
        let padded = padded.apply(&input, SIZE).unwrap();
        assert_eq!(pixel(&padded, 0, 0), [0, 0, 0]);
        assert_eq!(pixel(&padded, SIZE - 1, SIZE / 2), [0, 0, 0]);
        assert_ne!(pixel(&padded, SIZE / 2, SIZE / 2), [0, 0, 0]);
    }

    #[test]
    fn a_plan_is_deterministic_and_seeds_differ() {
        let input = astronaut(SIZE);
        let everything = AugmentConfig {
            jpeg_p: 1.0,
            noise_p: 1.0,
            blur_p: 1.0,
            resize_p: 1.0,
            colour_p: 1.0,
            ssr_p: 1.0,
            ..AugmentConfig::default()
        };
        let plan = AugmentPlan::sample(&everything, &mut StdRng::seed_from_u64(7));
        assert_eq!(plan.apply(&input, SIZE).unwrap(), plan.apply(&input, SIZE).unwrap());
        assert_eq!(plan, AugmentPlan::sample(&everything, &mut StdRng::seed_from_u64(7)));
        assert_ne!(augmented(&everything, 7, &input), augmented(&everything, 8, &input));
        // Noise alone: same seed, same pattern; another seed, another pattern.
        let noise = |seed| AugmentPlan { noise: Some(Noise { sigma: 5.0, seed }), ..AugmentPlan::default() };
        assert_eq!(noise(1).apply(&input, SIZE).unwrap(), noise(1).apply(&input, SIZE).unwrap());
        assert_ne!(noise(1).apply(&input, SIZE).unwrap(), noise(2).apply(&input, SIZE).unwrap());
    }

    #[test]
    fn the_default_plan_changes_nothing_and_wrong_sizes_are_refused() {
        let input = astronaut(SIZE);
        assert_eq!(AugmentPlan::default().apply(&input, SIZE).unwrap(), input);
        assert!(AugmentPlan::default().apply(&input, SIZE + 1).is_err());
    }

    #[test]
    fn every_perturbation_keeps_the_shape_and_changes_the_image() {
        use clap::ValueEnum;
        let input = astronaut(SIZE);
        for p in Perturbation::value_variants() {
            let out = p.apply(&input, SIZE).unwrap();
            assert_eq!(out.len(), input.len(), "{p:?}");
            assert_ne!(out, input, "{p:?} changed nothing");
            assert_eq!(out, p.apply(&input, SIZE).unwrap(), "{p:?} is not deterministic");
            let name = p.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, format!("{p:?}").to_lowercase());
        }
        assert!(is_mirror(&Perturbation::Flip.apply(&input, SIZE).unwrap(), &input));
        assert!(is_gray(&Perturbation::Gray.apply(&input, SIZE).unwrap()));
        // Rotation brings black corners in; blur and JPEG at these strengths lose detail.
        assert_eq!(pixel(&Perturbation::Rotate.apply(&input, SIZE).unwrap(), 0, 0), [0, 0, 0]);
        assert!(detail(&Perturbation::Blur.apply(&input, SIZE).unwrap()) < detail(&input) * 7 / 10);
        let q30 = Perturbation::Jpeg.apply(&input, SIZE).unwrap();
        let q60_to_100 = augmented(&only(|c| c.jpeg_p = 1.0), 0, &input);
        assert!(psnr(&q30, &input, SIZE) < psnr(&q60_to_100, &input, SIZE));
    }
}
