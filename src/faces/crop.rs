//! Face crops: a square around the box, widened by a margin, padded with black where it leaves
//! the frame, resized to the model's input. Training uses the same function (no drift).
use anyhow::Result;
use opencv::core::{Mat, Rect, Scalar, Size, Vec3b, BORDER_CONSTANT};
use opencv::imgproc;
use opencv::prelude::*;

use super::{DetectorKind, FaceBox};
use crate::decode::Frame;

/// The margin of models that record no crop contract (seed 001's 0.3), and `extract`'s default.
pub const DEFAULT_MARGIN: f32 = 0.3;

/// The crop contract: how a detected face becomes the pixels a model learned from. `dfscan
/// extract` records it in a crop cache (`crops.json`), training copies it into the weights
/// header, and the scan cuts each model's faces by its own contract unless `--margin` says
/// otherwise. Pixels: [`square_crop`] at `side`, then (if the network's input differs) one
/// resize to the input with the same interpolation rule, on both the training and scan sides.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropSpec {
    /// Which detector found the faces (the scan's `--detector` should match it).
    pub detector: DetectorKind,
    /// Fraction of the face box added on each side of the square.
    pub margin: f32,
    /// Side in pixels of the square as cut, before any resize to the network's input.
    pub side: i32,
}

impl CropSpec {
    /// The face at `bbox` cut by this contract: the one function scan, extract and bench use.
    pub fn cut(&self, frame: &Frame, bbox: &FaceBox) -> Result<Vec<u8>> {
        square_crop(frame, bbox, self.margin, self.side)
    }

    /// This contract's crop at a network input of side `input`: as cut when the sides agree,
    /// else resized once, as training reads a cached crop ([`read_rgb_png`]).
    pub fn to_input(&self, crop: &[u8], input: i32) -> Result<Vec<u8>> {
        if input == self.side {
            return Ok(crop.to_vec());
        }
        resize_square(crop, self.side, input)
    }
}

/// The square crop around `bbox`: side = max(w, h) x (1 + 2 x `margin`), i.e. `margin` of the
/// box added on each side (0.3 as in seed 001), resized to `size` x `size` RGB.
pub fn square_crop(frame: &Frame, bbox: &FaceBox, margin: f32, size: i32) -> Result<Vec<u8>> {
    let side = (bbox.w.max(bbox.h) * (1.0 + 2.0 * margin)).round().max(1.0) as i32;
    let cx = bbox.x + bbox.w / 2.0;
    let cy = bbox.y + bbox.h / 2.0;
    let square = Rect::new((cx - side as f32 / 2.0).round() as i32, (cy - side as f32 / 2.0).round() as i32, side, side);
    let (fw, fh) = (frame.width as i32, frame.height as i32);
    let inside = square & Rect::new(0, 0, fw, fh);
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(fh, fw, &frame.rgb)?;
    let mut padded = Mat::default();
    if inside.width <= 0 || inside.height <= 0 {
        padded = Mat::new_rows_cols_with_default(side, side, Vec3b::opencv_type(), Scalar::all(0.0))?;
    } else {
        let roi = Mat::roi(&image, inside)?;
        opencv::core::copy_make_border(
            &roi,
            &mut padded,
            inside.y - square.y,
            square.y + side - (inside.y + inside.height),
            inside.x - square.x,
            square.x + side - (inside.x + inside.width),
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
    }
    resized_bytes(&padded, size)
}

/// The whole frame as one face (`--faces none`, for pre-cropped images), resized to `size`.
pub fn whole_frame(frame: &Frame, size: i32) -> Result<Vec<u8>> {
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(frame.height as i32, frame.width as i32, &frame.rgb)?;
    resized_bytes(&image, size)
}

fn resized_bytes(image: &(impl MatTraitConst + opencv::core::ToInputArray), size: i32) -> Result<Vec<u8>> {
    if image.rows() == size && image.cols() == size {
        return Ok(image.try_clone()?.data_bytes()?.to_vec());
    }
    // Area averaging when shrinking (no aliasing), bilinear when enlarging.
    let interpolation = if image.rows() > size { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
    let mut out = Mat::default();
    imgproc::resize(image, &mut out, Size::new(size, size), 0.0, 0.0, interpolation)?;
    Ok(out.data_bytes()?.to_vec())
}

/// Resizes a square RGB crop from `from` to `to` pixels a side (same interpolation as crops).
pub fn resize_square(rgb: &[u8], from: i32, to: i32) -> Result<Vec<u8>> {
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(from, from, rgb)?;
    resized_bytes(&image, to)
}

/// Writes a square RGB crop as PNG (lossless, so cached crops equal scan-time crops).
pub fn write_rgb_png(path: &std::path::Path, rgb: &[u8], size: i32) -> Result<()> {
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(size, size, rgb)?;
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(&image, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    anyhow::ensure!(
        opencv::imgcodecs::imwrite_def(path, &bgr)?,
        "could not write {}",
        path.display()
    );
    Ok(())
}

/// Reads a PNG crop as RGB, resized to `size` x `size` if stored at another size.
pub fn read_rgb_png(path: &std::path::Path, size: i32) -> Result<Vec<u8>> {
    let rgb = read_rgb(path)?;
    if rgb.rows() != rgb.cols() {
        anyhow::bail!("{} is not a square crop", path.display());
    }
    resized_bytes(&rgb, size)
}

/// Reads any image as RGB, taken whole and resized (squashed if not square) to `size` x `size`,
/// as `--faces none` takes a frame.
pub fn read_rgb_whole(path: &std::path::Path, size: i32) -> Result<Vec<u8>> {
    resized_bytes(&read_rgb(path)?, size)
}

fn read_rgb(path: &std::path::Path) -> Result<Mat> {
    let bgr = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_COLOR)?;
    anyhow::ensure!(!bgr.empty(), "could not read {}", path.display());
    let mut rgb = Mat::default();
    imgproc::cvt_color_def(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB)?;
    Ok(rgb)
}
