//! The self-blend mask: a face-shaped region of the crop, drawn as the ellipse in the face
//! box (until a landmarker gives the paper's convex hull), then randomly eroded or dilated,
//! elastically warped and feathered, as the reference code's `random_erode_dilate`,
//! `ElasticTransform` and `get_blend_mask` do to the hull.
use anyhow::Result;
use opencv::core::{self, Mat, Point, Scalar, Size, BORDER_CONSTANT, CV_32F, CV_32FC1};
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::super::{symmetric, uniform};
use crate::faces::FaceBox;

/// Ellipse size relative to the inscribed ellipse of the face box, width/height ratio, tilt.
const SCALE: [f64; 2] = [0.85, 1.05];
const ASPECT: [f64; 2] = [0.9, 1.1];
const TILT_DEG: f64 = 10.0;
/// Largest erosion or dilation kernel side as a fraction of the crop side: the reference code
/// draws up to 21 pixels on its 380-pixel crops.
const MORPH_LIMIT: f64 = 0.05;
/// Elastic warp: a `ELASTIC_GRID` x `ELASTIC_GRID` lattice of random offsets, each within
/// the drawn amplitude (a fraction of the crop side), interpolated smoothly over the crop.
/// Five nodes across bend the face outline in two or three places.
const ELASTIC: [f64; 2] = [0.01, 0.04];
const ELASTIC_GRID: i32 = 5;
/// The blur kernel that feathers the edge, as a fraction of the crop side.
const FEATHER: [f64; 2] = [0.04, 0.12];

/// The ellipse inscribed in the face box, scaled by `scale`, stretched by `aspect` (width over
/// height), tilted by `tilt_deg`; then eroded (`morph` < 0) or dilated (`morph` > 0) by a
/// square kernel of |`morph`| of the crop side, warped by a smooth displacement field of up to
/// `elastic` of the side drawn from `elastic_seed`, and its edge blurred over `feather` of
/// the side. The seed, not the field, is kept: the plan stays small and every frame of a
/// track gets the same field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskShape {
    pub scale: f64,
    pub aspect: f64,
    pub tilt_deg: f64,
    pub morph: f64,
    pub elastic: f64,
    pub elastic_seed: u64,
    pub feather: f64,
}

impl MaskShape {
    pub fn sample(rng: &mut impl Rng) -> Self {
        Self {
            scale: uniform(rng, SCALE),
            aspect: uniform(rng, ASPECT),
            tilt_deg: symmetric(rng, TILT_DEG),
            morph: symmetric(rng, MORPH_LIMIT),
            elastic: uniform(rng, ELASTIC),
            elastic_seed: rng.random(),
            feather: uniform(rng, FEATHER),
        }
    }

    /// The mask for a `size` x `size` crop with the face at `face` (crop pixels): CV_32FC1 in
    /// [0, 1], 1 inside the face away from its edge, exactly 0 beyond the feather.
    pub(super) fn render(&self, size: i32, face: &FaceBox) -> Result<Mat> {
        let region = self.elastic_warp(&self.erode_or_dilate(&self.ellipse(size, face)?)?)?;
        // An explicit odd kernel bounds the feather: beyond its radius the mask stays exactly 0.
        let kernel = odd_kernel(size, self.feather).max(3);
        let sigma = kernel as f64 / 6.0;
        let mut soft = Mat::default();
        imgproc::gaussian_blur(&region, &mut soft, Size::new(kernel, kernel), sigma, sigma, BORDER_CONSTANT)?;
        // Float sums may overshoot 1 by an ulp.
        let mut clipped = Mat::default();
        imgproc::threshold(&soft, &mut clipped, 1.0, 1.0, imgproc::THRESH_TRUNC)?;
        Ok(clipped)
    }

    fn ellipse(&self, size: i32, face: &FaceBox) -> Result<Mat> {
        let mut ellipse = Mat::new_rows_cols_with_default(size, size, CV_32FC1, Scalar::all(0.0))?;
        let centre = Point::new((face.x + face.w / 2.0).round() as i32, (face.y + face.h / 2.0).round() as i32);
        let stretch = self.aspect.sqrt();
        let axes = Size::new(
            (face.w as f64 / 2.0 * self.scale * stretch).round().max(1.0) as i32,
            (face.h as f64 / 2.0 * self.scale / stretch).round().max(1.0) as i32,
        );
        imgproc::ellipse(&mut ellipse, centre, axes, self.tilt_deg, 0.0, 360.0, Scalar::all(1.0), imgproc::FILLED, imgproc::LINE_8, 0)?;
        Ok(ellipse)
    }

    /// A square kernel, as the reference code's `np.ones((ksize, ksize))`: it squares off the
    /// ellipse a little when dilating, one more way the outline varies.
    fn erode_or_dilate(&self, region: &Mat) -> Result<Mat> {
        let kernel = odd_kernel(region.rows(), self.morph.abs());
        if kernel < 3 {
            return Ok(region.try_clone()?);
        }
        let element = imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(kernel, kernel), Point::new(-1, -1))?;
        let (anchor, border) = (Point::new(-1, -1), imgproc::morphology_default_border_value()?);
        let mut out = Mat::default();
        if self.morph < 0.0 {
            imgproc::erode(region, &mut out, &element, anchor, 1, BORDER_CONSTANT, border)?;
        } else {
            imgproc::dilate(region, &mut out, &element, anchor, 1, BORDER_CONSTANT, border)?;
        }
        Ok(out)
    }

    /// out(x, y) = in(x + dx(x, y), y + dy(x, y)), with (dx, dy) the lattice of offsets
    /// upsampled bicubically: smooth, so the outline bends instead of fraying.
    fn elastic_warp(&self, region: &Mat) -> Result<Mat> {
        let size = region.rows();
        let amplitude = self.elastic * size as f64;
        // A private generator, not cv::theRNG(): the field depends on the seed alone.
        let mut rng = core::RNG::new(self.elastic_seed)?;
        let mut maps = Vec::with_capacity(2);
        for identity in identity_maps(size)? {
            let mut lattice = Mat::new_rows_cols_with_default(ELASTIC_GRID, ELASTIC_GRID, CV_32FC1, Scalar::all(0.0))?;
            rng.fill(&mut lattice, core::RNG_UNIFORM, &Scalar::all(-amplitude), &Scalar::all(amplitude), false)?;
            let (mut offsets, mut map) = (Mat::default(), Mat::default());
            imgproc::resize(&lattice, &mut offsets, Size::new(size, size), 0.0, 0.0, imgproc::INTER_CUBIC)?;
            core::add(&identity, &offsets, &mut map, &core::no_array(), CV_32F)?;
            maps.push(map);
        }
        // Samples from outside the crop read 0: the face never reaches the edge anyway.
        let mut out = Mat::default();
        imgproc::remap_def(region, &mut out, &maps[0], &maps[1], imgproc::INTER_LINEAR)?;
        Ok(out)
    }
}

/// An odd kernel side of about `fraction` of `size` (1 when that rounds to under 2).
fn odd_kernel(size: i32, fraction: f64) -> i32 {
    (size as f64 * fraction).round() as i32 / 2 * 2 + 1
}

/// The x and y coordinates of every pixel of a `size` x `size` image, as CV_32FC1 Mats.
fn identity_maps(size: i32) -> Result<[Mat; 2]> {
    let ramp: Vec<f32> = (0..size).map(|i| i as f32).collect();
    let row = Mat::from_slice(&ramp)?;
    let xs = core::repeat(&row, size, 1)?;
    let ys = core::repeat(&row.t()?.to_mat()?, 1, size)?;
    Ok([xs, ys])
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const SIZE: i32 = 96;
    const FACE: FaceBox = FaceBox { x: 18.0, y: 18.0, w: 60.0, h: 60.0 };

    fn plain() -> MaskShape {
        MaskShape { scale: 1.0, aspect: 1.0, tilt_deg: 0.0, morph: 0.0, elastic: 0.0, elastic_seed: 0, feather: 0.04 }
    }

    fn area(shape: &MaskShape) -> usize {
        let mask = shape.render(SIZE, &FACE).unwrap();
        mask.data_typed::<f32>().unwrap().iter().filter(|&&m| m > 0.0).count()
    }

    #[test]
    fn the_identity_maps_hold_pixel_coordinates() {
        let [xs, ys] = identity_maps(7).unwrap();
        assert_eq!((*xs.at_2d::<f32>(2, 5).unwrap(), *ys.at_2d::<f32>(2, 5).unwrap()), (5.0, 2.0));
        assert_eq!((xs.rows(), xs.cols(), ys.rows(), ys.cols()), (7, 7, 7, 7));
    }

    #[test]
    fn dilation_grows_the_mask_and_erosion_shrinks_it() {
        let [eroded, plain_area, dilated] = [-0.05, 0.0, 0.05].map(|morph| area(&MaskShape { morph, ..plain() }));
        // A 5-pixel kernel moves the outline 2 pixels, on a circle of radius ~30: about 13%.
        assert!(eroded < plain_area && plain_area < dilated, "{eroded} {plain_area} {dilated}");
        assert!(dilated as f64 > 1.1 * plain_area as f64 && (eroded as f64) < 0.9 * plain_area as f64);
    }

    #[test]
    fn the_elastic_warp_bends_the_outline_by_its_seed_alone() {
        let support = |shape: MaskShape| -> Vec<bool> {
            let mask = shape.render(SIZE, &FACE).unwrap();
            mask.data_typed::<f32>().unwrap().iter().map(|&m| m > 0.0).collect()
        };
        let unwarped = support(plain());
        let warped = |seed| support(MaskShape { elastic: 0.04, elastic_seed: seed, ..plain() });
        assert_eq!(warped(7), warped(7));
        assert_ne!(warped(7), warped(8));
        for seed in 0..8 {
            let moved = warped(seed).iter().zip(&unwarped).filter(|(a, b)| a != b).count();
            let inside = unwarped.iter().filter(|&&s| s).count();
            // Bent, not scrambled: some outline pixels move, the bulk of the face stays.
            assert!(moved > 20 && moved * 5 < inside, "seed {seed}: {moved} of {inside} pixels moved");
        }
    }

    #[test]
    fn sampled_masks_differ_in_area_and_shape() {
        let mut rng = StdRng::seed_from_u64(0);
        let shapes: Vec<MaskShape> = (0..16).map(|_| MaskShape::sample(&mut rng)).collect();
        let areas: Vec<usize> = shapes.iter().map(area).collect();
        let (min, max) = (*areas.iter().min().unwrap(), *areas.iter().max().unwrap());
        assert!(max as f64 > 1.2 * min as f64, "areas {areas:?}");
        let mut distinct = areas.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 14, "areas {areas:?}");
        // Not only a resized ellipse: each outline departs from its own undeformed ellipse.
        for shape in &shapes {
            let undeformed = MaskShape { morph: 0.0, elastic: 0.0, ..*shape };
            let (a, b) = (shape.render(SIZE, &FACE).unwrap(), undeformed.render(SIZE, &FACE).unwrap());
            let differ = a.data_typed::<f32>().unwrap().iter().zip(b.data_typed::<f32>().unwrap()).filter(|(x, y)| (**x > 0.0) != (**y > 0.0)).count();
            assert!(differ > 20, "{shape:?}: only {differ} pixels left the ellipse");
        }
    }
}
