//! The detectors read our RGB frames directly (no full-size BGR copy): res10's blob made from
//! RGB with swapRB, and the Haar cascade's grey image from RGB, are bit for bit what the BGR
//! copy gave, on a real 1080p-style frame and on the samples.
mod common;

use dfscan::decode::{Sampler, Sampling, VideoSource};
use opencv::core::{Mat, Scalar, Size, Vec3b, CV_32F};
use opencv::prelude::*;
use opencv::{dnn, imgproc};

fn bytes(m: &Mat) -> Vec<u8> {
    m.data_bytes().unwrap().to_vec()
}

#[test]
fn rgb_input_gives_the_same_detector_input_as_a_bgr_copy() {
    let mut clips = vec![common::samples().join("astronaut_pan.mp4"), common::samples().join("astronaut.jpg")];
    if let Some(shared) = common::shared() {
        clips.push(shared.join("data/misc_examples/real/fsgan__conan_obrien.mp4"));
    }
    let mut checked = 0;
    for clip in clips.iter().filter(|c| c.is_file()) {
        let source = VideoSource::open(clip).unwrap();
        let mut sampler = Sampler::new(Sampling::Frames(2), source.info.duration_s);
        source
            .sample(&mut sampler, |f| {
                let rgb = Mat::new_rows_cols_with_bytes::<Vec3b>(f.height as i32, f.width as i32, &f.rgb).unwrap();
                let mut bgr = Mat::default();
                imgproc::cvt_color_def(&rgb, &mut bgr, imgproc::COLOR_RGB2BGR).unwrap();
                let mean = Scalar::new(104.0, 177.0, 123.0, 0.0);
                let old = dnn::blob_from_image(&bgr, 1.0, Size::new(300, 300), mean, false, false, CV_32F).unwrap();
                let new = dnn::blob_from_image(&rgb, 1.0, Size::new(300, 300), mean, true, false, CV_32F).unwrap();
                assert!(bytes(&old) == bytes(&new), "{}: res10 blob differs", clip.display());
                let (mut g_old, mut g_new) = (Mat::default(), Mat::default());
                imgproc::cvt_color_def(&bgr, &mut g_old, imgproc::COLOR_BGR2GRAY).unwrap();
                imgproc::cvt_color_def(&rgb, &mut g_new, imgproc::COLOR_RGB2GRAY).unwrap();
                assert!(bytes(&g_old) == bytes(&g_new), "{}: grey differs", clip.display());
                checked += 1;
                Ok(true)
            })
            .unwrap();
    }
    assert!(checked >= 3);
}
