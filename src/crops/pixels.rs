//! The OpenCV pixel operations that [`super::augment`] and [`super::sbi`] compose, on 8-bit
//! RGB Mats of any size. Each returns a new Mat and draws nothing at random.
use anyhow::{ensure, Result};
use opencv::boxed_ref::BoxedRef;
use opencv::core::{self, Mat, Point2f, Scalar, Size, Vec3b, Vector, BORDER_CONSTANT, CV_32FC3, CV_8U};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use serde::{Deserialize, Serialize};

/// A rotation by `angle_deg` (counter-clockwise) and scaling about the centre, then a shift by
/// (`dx`, `dy`) fractions of the side.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    pub dx: f64,
    pub dy: f64,
    pub scale: f64,
    pub angle_deg: f64,
}

/// Views a packed `size` x `size` RGB crop as an OpenCV Mat, without copying.
pub(super) fn rgb_mat(rgb: &[u8], size: i32) -> Result<BoxedRef<'_, Mat>> {
    ensure!(size > 0, "crop size must be positive, got {size}");
    let expected = size as usize * size as usize * 3;
    ensure!(rgb.len() == expected, "a {size}x{size} RGB crop has {expected} bytes, got {}", rgb.len());
    Ok(Mat::new_rows_cols_with_bytes::<Vec3b>(size, size, rgb)?)
}

/// The packed bytes of a Mat, copying through a clone when OpenCV left padding between rows.
pub(super) fn mat_bytes(mat: &Mat) -> Result<Vec<u8>> {
    if mat.is_continuous() {
        return Ok(mat.data_bytes()?.to_vec());
    }
    Ok(mat.try_clone()?.data_bytes()?.to_vec())
}

/// Encodes as JPEG at `quality` (0..=100) and decodes again.
pub(super) fn jpeg(rgb: &Mat, quality: i32) -> Result<Mat> {
    // libjpeg takes BGR: chroma subsampling must see the real chroma channels.
    let (mut bgr, mut buf) = (Mat::default(), Vector::<u8>::new());
    imgproc::cvt_color_def(rgb, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality.clamp(0, 100)]);
    ensure!(imgcodecs::imencode(".jpg", &bgr, &mut buf, &params)?, "JPEG encoding failed");
    let decoded = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)?;
    let mut out = Mat::default();
    imgproc::cvt_color_def(&decoded, &mut out, imgproc::COLOR_BGR2RGB)?;
    Ok(out)
}

/// Adds independent Gaussian noise of `sigma` levels to each channel; `seed` fixes the pattern.
pub(super) fn gaussian_noise(img: &Mat, sigma: f64, seed: u64) -> Result<Mat> {
    let mut pattern = Mat::new_rows_cols_with_default(img.rows(), img.cols(), CV_32FC3, Scalar::all(0.0))?;
    // A private generator, not cv::theRNG(): the pattern depends on the seed alone.
    core::RNG::new(seed)?.fill(&mut pattern, core::RNG_NORMAL, &Scalar::all(0.0), &Scalar::all(sigma), false)?;
    let mut out = Mat::default();
    core::add(img, &pattern, &mut out, &core::no_array(), CV_8U)?;
    Ok(out)
}

/// Adds independent noise drawn uniformly from [`low`, `high`) levels to each channel,
/// saturating at 0 and 255; `seed` fixes the pattern.
pub(super) fn uniform_noise(img: &Mat, low: f64, high: f64, seed: u64) -> Result<Mat> {
    let mut pattern = Mat::new_rows_cols_with_default(img.rows(), img.cols(), CV_32FC3, Scalar::all(0.0))?;
    core::RNG::new(seed)?.fill(&mut pattern, core::RNG_UNIFORM, &Scalar::all(low), &Scalar::all(high), false)?;
    let mut out = Mat::default();
    core::add(img, &pattern, &mut out, &core::no_array(), CV_8U)?;
    Ok(out)
}

/// Rotates by `quarter_turns` x 90 degrees counter-clockwise (as `np.rot90`, `torch.rot90`).
pub(super) fn rot90(img: &Mat, quarter_turns: i32) -> Result<Mat> {
    let code = match quarter_turns.rem_euclid(4) {
        0 => return Ok(img.try_clone()?),
        1 => core::ROTATE_90_COUNTERCLOCKWISE,
        2 => core::ROTATE_180,
        _ => core::ROTATE_90_CLOCKWISE,
    };
    let mut out = Mat::default();
    core::rotate(img, &mut out, code)?;
    Ok(out)
}

pub(super) fn gaussian_blur(img: &Mat, sigma: f64) -> Result<Mat> {
    let mut out = Mat::default();
    imgproc::gaussian_blur(img, &mut out, Size::new(0, 0), sigma, sigma, core::BORDER_REFLECT_101)?;
    Ok(out)
}

/// Unsharp masking: out = in + `amount` x (in - blur(in, `sigma`)).
pub(super) fn sharpen(img: &Mat, amount: f64, sigma: f64) -> Result<Mat> {
    let blurred = gaussian_blur(img, sigma)?;
    let mut out = Mat::default();
    core::add_weighted(img, 1.0 + amount, &blurred, -amount, 0.0, &mut out, -1)?;
    Ok(out)
}

pub(super) fn flip_horizontal(img: &Mat) -> Result<Mat> {
    let mut out = Mat::default();
    core::flip(img, &mut out, 1)?;
    Ok(out)
}

/// Shrinks a square image to `side` with `down` interpolation, then either enlarges it back
/// with `up` or, when `pad`, centres it on black at the old size.
pub(super) fn downscale(img: &Mat, side: i32, down: i32, up: i32, pad: bool) -> Result<Mat> {
    let size = img.rows();
    let side = side.clamp(1, size);
    let (mut small, mut out) = (Mat::default(), Mat::default());
    imgproc::resize(img, &mut small, Size::new(side, side), 0.0, 0.0, down)?;
    if pad {
        let (before, after) = ((size - side) / 2, size - side - (size - side) / 2);
        core::copy_make_border(&small, &mut out, before, after, before, after, BORDER_CONSTANT, Scalar::all(0.0))?;
    } else {
        imgproc::resize(&small, &mut out, Size::new(size, size), 0.0, 0.0, up)?;
    }
    Ok(out)
}

/// out = in x `contrast` + `brightness` x 255, saturated.
pub(super) fn brightness_contrast(img: &Mat, brightness: f64, contrast: f64) -> Result<Mat> {
    let mut out = Mat::default();
    img.convert_to(&mut out, CV_8U, contrast, brightness * 255.0)?;
    Ok(out)
}

/// Shifts in OpenCV's 8-bit HSV units: hue (half-degrees, 0..180) wraps around, saturation and
/// value clip at 0 and 255.
pub(super) fn shift_hsv(rgb: &Mat, hue: f64, saturation: f64, value: f64) -> Result<Mat> {
    let (mut hsv, mut shifted, mut out) = (Mat::default(), Mat::default(), Mat::default());
    imgproc::cvt_color_def(rgb, &mut hsv, imgproc::COLOR_RGB2HSV)?;
    let clip = |level: i32, shift: f64| (level + shift.round() as i32).clamp(0, 255) as u8;
    let table: Vec<Vec3b> = (0..256)
        .map(|i| Vec3b::from([(i + hue.round() as i32).rem_euclid(180) as u8, clip(i, saturation), clip(i, value)]))
        .collect();
    core::lut(&hsv, &Mat::from_slice(&table)?, &mut shifted)?;
    imgproc::cvt_color_def(&shifted, &mut out, imgproc::COLOR_HSV2RGB)?;
    Ok(out)
}

/// Gray as three equal channels, so the models' input shape stays the same.
pub(super) fn to_gray(rgb: &Mat) -> Result<Mat> {
    let (mut gray, mut out) = (Mat::default(), Mat::default());
    imgproc::cvt_color_def(rgb, &mut gray, imgproc::COLOR_RGB2GRAY)?;
    imgproc::cvt_color_def(&gray, &mut out, imgproc::COLOR_GRAY2RGB)?;
    Ok(out)
}

/// Applies `affine` about the image centre; `border` (an OpenCV border mode) fills what comes
/// in from outside, black for `BORDER_CONSTANT`.
pub(super) fn warp(img: &Mat, affine: Affine, border: i32) -> Result<Mat> {
    let (w, h) = (img.cols() as f64, img.rows() as f64);
    let centre = Point2f::new((w / 2.0 - 0.5) as f32, (h / 2.0 - 0.5) as f32);
    let mut m = imgproc::get_rotation_matrix_2d(centre, affine.angle_deg, affine.scale)?;
    *m.at_2d_mut::<f64>(0, 2)? += affine.dx * w;
    *m.at_2d_mut::<f64>(1, 2)? += affine.dy * h;
    let mut out = Mat::default();
    imgproc::warp_affine(img, &mut out, &m, img.size()?, imgproc::INTER_LINEAR, border, Scalar::all(0.0))?;
    Ok(out)
}
