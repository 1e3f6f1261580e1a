//! The spectrum detector (seed 004): a face crop's azimuthally averaged amplitude spectrum and
//! a classical classifier on it. Durall, Keuper, Pfreundt and Keuper, "Unmasking DeepFakes
//! with simple Features", arXiv 1911.00686; reference code
//! <https://github.com/cc-hpc-itwm/DeepFakeDetection> (`radialProfile.azimuthalAverage`, then
//! `griddata` onto N points and division by the first).
//!
//! Features ([`spectrum`]): grayscale (0..255) -> 2-D DFT (OpenCV) -> log amplitude
//! 20 ln(|F| + 1e-8) -> mean over rings of equal integer radius about the zero frequency (the
//! reference's `r.astype(int)` after `fftshift`; here measured from the zero frequency
//! exactly) -> resampled onto N = 300 evenly spaced radii -> divided by the first point (the
//! zero frequency). Two departures from the reference, both about resampling: linear instead
//! of cubic interpolation (no overshoot between rings), and radii measured from the DC term
//! rather than from the array's geometric centre. The spectrum depends on the crop's
//! resolution, so a model records the side it was fitted at (`Preprocess::input_size`) and
//! the scan cuts its crops at that side.
//!
//! Classifier ([`SpectrumNet`]): the features standardised with the training set's mean and
//! std, then a logistic regression (`logit = z . w + b`) or an SVM's decision function
//! (`b + sum_i a_i K(s_i, z)` over support vectors `s_i` with signed dual coefficients `a_i`),
//! both fitted by smartcore (`train::spectrum`). Its output is the logit of "fake" (for an
//! SVM, the decision function: a margin, not a calibrated log-odds).
use anyhow::{bail, ensure, Result};
use opencv::core::{self, Mat, Vec3b, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::import::Mapped;

/// N: points of the 1-D spectrum, as in the seed and the paper.
pub const BINS: usize = 300;
/// Added to the amplitude before the logarithm.
pub const EPSILON: f64 = 1e-8;

/// The log amplitude spectrum of a grayscale image (`CV_32F`, any size), averaged over rings:
/// element r is the mean of 20 ln(|F(u, v)| + 1e-8) over the frequencies (u, v) (in cycles per
/// image, signed, so the zero frequency is the centre) with floor(sqrt(u^2 + v^2)) = r.
/// Radii run from 0 to the corner's.
pub fn radial_profile(gray: &Mat) -> Result<Vec<f64>> {
    ensure!(gray.typ() == CV_32F && gray.rows() > 1 && gray.cols() > 1, "radial_profile takes a CV_32F image of at least 2x2");
    let mut freq = Mat::default();
    core::dft(gray, &mut freq, core::DFT_COMPLEX_OUTPUT, 0)?;
    let (rows, cols) = (gray.rows(), gray.cols());
    // The signed frequency of index k along a side of n: k below n/2, else k - n.
    let signed = |k: i32, n: i32| if k <= n / 2 { k } else { k - n } as f64;
    let max_radius = ((rows / 2) as f64).hypot((cols / 2) as f64).floor() as usize;
    let (mut sum, mut count) = (vec![0.0f64; max_radius + 1], vec![0usize; max_radius + 1]);
    for y in 0..rows {
        let row = freq.at_row::<core::Vec2f>(y)?;
        let fy = signed(y, rows);
        for (x, c) in row.iter().enumerate() {
            let r = fy.hypot(signed(x as i32, cols)).floor() as usize;
            let amplitude = (c[0] as f64).hypot(c[1] as f64);
            sum[r] += 20.0 * (amplitude + EPSILON).ln();
            count[r] += 1;
        }
    }
    Ok(sum.iter().zip(&count).map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 }).collect())
}

/// `profile` resampled linearly onto `bins` evenly spaced radii from its first to its last,
/// then divided by its first value (the zero frequency's log amplitude), as the reference does.
pub fn resample(profile: &[f64], bins: usize) -> Vec<f32> {
    assert!(profile.len() >= 2 && bins >= 2, "resample: {} radii to {bins} bins", profile.len());
    let last = (profile.len() - 1) as f64;
    let first = if profile[0].abs() > f64::EPSILON { profile[0] } else { 1.0 };
    (0..bins)
        .map(|i| {
            let t = i as f64 * last / (bins - 1) as f64;
            let k = (t.floor() as usize).min(profile.len() - 2);
            let frac = t - k as f64;
            ((profile[k] * (1.0 - frac) + profile[k + 1] * frac) / first) as f32
        })
        .collect()
}

/// The 1-D spectrum of a packed `side` x `side` RGB crop: `bins` values, the first 1.
pub fn spectrum(rgb: &[u8], side: i32, bins: usize) -> Result<Vec<f32>> {
    let expected = side as usize * side as usize * 3;
    ensure!(side > 1 && rgb.len() == expected, "a {side}x{side} RGB crop has {expected} bytes, got {}", rgb.len());
    let view = Mat::new_rows_cols_with_bytes::<Vec3b>(side, side, rgb)?;
    let (mut gray, mut gray_f) = (Mat::default(), Mat::default());
    imgproc::cvt_color_def(&view, &mut gray, imgproc::COLOR_RGB2GRAY)?;
    gray.convert_to_def(&mut gray_f, CV_32F)?;
    Ok(resample(&radial_profile(&gray_f)?, bins))
}

/// The spectra of a `[N, S, S, 3]` u8 RGB batch: `[N, bins]` float, on the CPU.
pub fn spectra(crops: &Tensor, bins: usize) -> Result<Tensor> {
    let size = crops.size();
    ensure!(size.len() == 4 && size[1] == size[2] && size[3] == 3 && crops.kind() == Kind::Uint8, "crops are [N, S, S, 3] u8, got {size:?} {:?}", crops.kind());
    let (n, side) = (size[0], size[1]);
    let bytes = Vec::<u8>::try_from(crops.to_device(Device::Cpu).contiguous().view([-1]))?;
    let crop_bytes = (side * side * 3) as usize;
    let mut rows = Vec::with_capacity(n as usize * bins);
    for crop in bytes.chunks_exact(crop_bytes) {
        rows.extend(spectrum(crop, side as i32, bins)?);
    }
    Ok(Tensor::from_slice(&rows).view([n, bins as i64]))
}

/// An SVM kernel on standardised features: the fit's own type (`dfscan_classical`), so the
/// fitted kernel and the scan's decision function cannot disagree on a parameter.
pub use dfscan_classical::Kernel;

/// K(x_i, s_j) for rows of `x` `[N, F]` and `s` `[M, F]`: `[N, M]`, in libtorch.
pub fn kernel_matrix(kernel: &Kernel, x: &Tensor, s: &Tensor) -> Tensor {
    let dot = x.matmul(&s.tr());
    match *kernel {
        Kernel::Linear => dot,
        Kernel::Polynomial { degree, gamma, coef0 } => (dot * gamma + coef0).pow_tensor_scalar(degree),
        Kernel::Rbf { gamma } => {
            let sq = x.square().sum_dim_intlist(1, true, Kind::Float) + s.square().sum_dim_intlist(1, false, Kind::Float).unsqueeze(0) - dot * 2.0;
            (sq.clamp_min(0.0) * -gamma).exp()
        }
        Kernel::Sigmoid { gamma, coef0 } => (dot * gamma + coef0).tanh(),
    }
}

/// The fitted classifier, as the weights header records it (its tensors are in the file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Classifier {
    /// L2-penalised logistic regression (`alpha`: smartcore's penalty). Tensors `weight` `[F]`,
    /// `bias` `[1]`.
    Logistic { alpha: f64 },
    /// C-SVM. Tensors `support_vectors` `[M, F]`, `dual_coef` `[M]` (alpha times the +1/-1
    /// label, fake = +1), `bias` `[1]`.
    Svm { kernel: Kernel, c: f64, support_vectors: i64 },
}

/// `--classifier`: which classifier `dfscan train --arch spectrum` and `dfscan cv --spectrum` fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierKind {
    SvmPoly,
    SvmRbf,
    SvmLinear,
    SvmSigmoid,
    Logistic,
}

impl ClassifierKind {
    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::SvmPoly => "svm-poly",
            ClassifierKind::SvmRbf => "svm-rbf",
            ClassifierKind::SvmLinear => "svm-linear",
            ClassifierKind::SvmSigmoid => "svm-sigmoid",
            ClassifierKind::Logistic => "logistic",
        }
    }

    /// The kernel for `features` standardised columns, with scikit-learn's defaults as the
    /// seed used them (`SVC(kernel=...)`): gamma "scale" = 1 / (F var(X)) = 1 / F on
    /// standardised columns, degree 3, coef0 0. None for the logistic regression.
    pub fn kernel(self, features: usize) -> Option<Kernel> {
        let gamma = 1.0 / features.max(1) as f64;
        match self {
            ClassifierKind::SvmPoly => Some(Kernel::Polynomial { degree: 3.0, gamma, coef0: 0.0 }),
            ClassifierKind::SvmRbf => Some(Kernel::Rbf { gamma }),
            ClassifierKind::SvmLinear => Some(Kernel::Linear),
            ClassifierKind::SvmSigmoid => Some(Kernel::Sigmoid { gamma, coef0: 0.0 }),
            ClassifierKind::Logistic => None,
        }
    }
}

/// The spectrum detector's network config (the weights header's `network`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumConfig {
    /// N: points of the 1-D spectrum.
    pub bins: usize,
    pub classifier: Classifier,
}

impl SpectrumConfig {
    /// The seed's detector before fitting: N = 300, an SVM with the polynomial kernel (its best).
    pub fn seed() -> Self {
        let kernel = ClassifierKind::SvmPoly.kernel(BINS).expect("an SVM");
        Self { bins: BINS, classifier: Classifier::Svm { kernel, c: 1.0, support_vectors: 0 } }
    }

    /// Columns the classifier reads.
    pub fn features(&self) -> i64 {
        self.bins as i64
    }
}

/// The classifier on spectra: `[N, F]` float features (from [`spectra`]) to `[N]` logits of
/// "fake". Tensor names are the file's: `mean`, `std`, then the classifier's.
pub struct SpectrumNet {
    pub config: SpectrumConfig,
    mean: Tensor,
    std: Tensor,
    head: Head,
}

enum Head {
    Logistic { weight: Tensor, bias: Tensor },
    Svm { kernel: Kernel, support_vectors: Tensor, dual_coef: Tensor, bias: Tensor },
}

impl SpectrumNet {
    pub fn new(p: &nn::Path, config: &SpectrumConfig) -> Self {
        let f = config.features();
        let fixed = |name: &str, shape: &[i64]| p.zeros_no_train(name, shape);
        let head = match &config.classifier {
            Classifier::Logistic { .. } => Head::Logistic { weight: fixed("weight", &[f]), bias: fixed("bias", &[1]) },
            Classifier::Svm { kernel, support_vectors, .. } => Head::Svm {
                kernel: *kernel,
                support_vectors: fixed("support_vectors", &[*support_vectors, f]),
                dual_coef: fixed("dual_coef", &[*support_vectors]),
                bias: fixed("bias", &[1]),
            },
        };
        Self { config: config.clone(), mean: fixed("mean", &[f]), std: p.ones_no_train("std", &[f]), head }
    }

    /// The standardised features.
    fn standardise(&self, xs: &Tensor) -> Tensor {
        (xs.to_kind(Kind::Float).to_device(self.mean.device()) - &self.mean) / &self.std
    }
}

impl std::fmt::Debug for SpectrumNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectrumNet").field("config", &self.config).finish()
    }
}

impl ModuleT for SpectrumNet {
    /// `xs`: `[N, F]` spectra (not pixels: [`spectra`] makes them from crops).
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let z = self.standardise(xs);
        match &self.head {
            Head::Logistic { weight, bias } => z.matmul(weight) + bias,
            Head::Svm { kernel, support_vectors, dual_coef, bias } => kernel_matrix(kernel, &z, support_vectors).matmul(dual_coef) + bias,
        }
    }
}

/// Nothing to import: no public checkpoint exists; `dfscan train --arch spectrum` fits one.
pub fn import(_: &std::collections::BTreeMap<String, Tensor>) -> Result<Mapped> {
    bail!("spectrum has no public checkpoint to import: fit one with `dfscan train --arch spectrum --classifier ...`")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `side` x `side` gray image as RGB bytes from `f(x, y)` in 0..=255.
    fn image(side: i32, f: impl Fn(f64, f64) -> f64) -> Vec<u8> {
        let mut rgb = Vec::with_capacity((side * side * 3) as usize);
        for y in 0..side {
            for x in 0..side {
                let v = f(x as f64, y as f64).round().clamp(0.0, 255.0) as u8;
                rgb.extend([v, v, v]);
            }
        }
        rgb
    }

    fn gray(rgb: &[u8], side: i32) -> Mat {
        let view = Mat::new_rows_cols_with_bytes::<Vec3b>(side, side, rgb).unwrap();
        let (mut g, mut f) = (Mat::default(), Mat::default());
        imgproc::cvt_color_def(&view, &mut g, imgproc::COLOR_RGB2GRAY).unwrap();
        g.convert_to_def(&mut f, CV_32F).unwrap();
        f
    }

    /// A `side` x `side` float image from `f(x, y)`, unquantised.
    fn float_image(side: i32, f: impl Fn(f64, f64) -> f64) -> Mat {
        let mut m = Mat::new_rows_cols_with_default(side, side, CV_32F, core::Scalar::all(0.0)).unwrap();
        for y in 0..side {
            for x in 0..side {
                *m.at_2d_mut::<f32>(y, x).unwrap() = f(x as f64, y as f64) as f32;
            }
        }
        m
    }

    /// A radial wave of `k` cycles per image side under a radial Hann window: its spectrum is
    /// a ring of radius `k` (windowed, so no edge leaks energy onto the axes).
    fn radial_wave(side: i32, k: f64) -> impl Fn(f64, f64) -> f64 {
        let c = side as f64 / 2.0;
        move |x: f64, y: f64| {
            let r = (x - c).hypot(y - c);
            let window = if r < c { 0.5 * (1.0 + (std::f64::consts::PI * r / c).cos()) } else { 0.0 };
            128.0 + 100.0 * window * (2.0 * std::f64::consts::PI * k * r / side as f64).cos()
        }
    }

    #[test]
    fn a_radial_wave_puts_its_energy_on_the_ring_of_its_frequency() {
        let side = 64;
        for k in [6.0, 10.0, 17.0] {
            let profile = radial_profile(&float_image(side, radial_wave(side, k))).unwrap();
            // Rings reach the corner: floor(sqrt(32^2 + 32^2)) = 45.
            assert_eq!(profile.len(), 46);
            let peak = (1..profile.len()).max_by(|&a, &b| profile[a].total_cmp(&profile[b])).unwrap();
            assert!((peak as f64 - k).abs() <= 1.0, "k {k}: peak at ring {peak}: {profile:?}");
            // Far from the ring, tens of decibels less.
            assert!(profile[peak] > profile[(k as usize) * 2] + 20.0, "k {k}: {profile:?}");
        }
        // Through 8-bit pixels and resampled to N points: ring 10 of 45 radii is point
        // 10 * 299 / 45 = 66.4.
        let wave = radial_wave(side, 10.0);
        let mut rgb = Vec::new();
        for y in 0..side {
            for x in 0..side {
                rgb.extend([wave(x as f64, y as f64).round() as u8; 3]);
            }
        }
        let s = spectrum(&rgb, side, BINS).unwrap();
        assert_eq!(s.len(), BINS);
        assert_eq!(s[0], 1.0);
        // Points below ring 1 (299 / 45 = 6.6) are interpolated with the zero frequency.
        let peak = (7..BINS).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
        assert!((60..=73).contains(&peak), "peak at {peak}: {s:?}");
    }

    #[test]
    fn a_checkerboard_lives_at_the_corner_frequency() {
        // Alternating pixels: all the non-DC energy at (side/2, side/2), the outermost ring.
        let side = 32;
        let rgb = image(side, |x, y| if (x as i32 + y as i32) % 2 == 0 { 200.0 } else { 50.0 });
        let profile = radial_profile(&gray(&rgb, side)).unwrap();
        let last = profile.len() - 1;
        assert_eq!(last, 22);
        let peak = (1..profile.len()).max_by(|&a, &b| profile[a].total_cmp(&profile[b])).unwrap();
        assert_eq!(peak, last);
    }

    #[test]
    fn upsampling_and_jpeg_drain_the_high_frequency_tail() {
        // Fine texture (seeded noise) at 128; the same downscaled by 2 and upscaled back, then
        // JPEG-compressed: the top third of the spectrum falls by a clear margin.
        let side = 128;
        let mut rng = core::RNG::new(5).unwrap();
        let mut noise = Mat::new_rows_cols_with_default(side, side, core::CV_8UC3, core::Scalar::all(0.0)).unwrap();
        rng.fill(&mut noise, core::RNG_UNIFORM, &core::Scalar::all(0.0), &core::Scalar::all(256.0), false).unwrap();
        let original = noise.data_bytes().unwrap().to_vec();
        let (mut small, mut up) = (Mat::default(), Mat::default());
        imgproc::resize(&noise, &mut small, core::Size::new(side / 2, side / 2), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
        imgproc::resize(&small, &mut up, core::Size::new(side, side), 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
        let mut buf = core::Vector::<u8>::new();
        let params = core::Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 75]);
        assert!(opencv::imgcodecs::imencode(".jpg", &up, &mut buf, &params).unwrap());
        let jpeg = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR).unwrap();
        let degraded = jpeg.data_bytes().unwrap().to_vec();
        let tail = |s: &[f32]| s[2 * BINS / 3..].iter().sum::<f32>() / (BINS / 3) as f32;
        let (a, b) = (spectrum(&original, side, BINS).unwrap(), spectrum(&degraded, side, BINS).unwrap());
        // Normalised by the DC's log amplitude (about 20 ln(128^2 * 128) = 337): the tail of
        // white noise sits near 0.6, the upsampled copy's well below.
        assert!(tail(&a) - tail(&b) > 0.1, "tails {} vs {}", tail(&a), tail(&b));
        // The low frequencies stay close.
        assert!((a[10] - b[10]).abs() < 0.1, "{} vs {}", a[10], b[10]);
    }

    #[test]
    fn spectra_of_a_batch_are_the_spectra_of_its_crops() {
        let crops = Tensor::randint(256, [3, 20, 20, 3], (Kind::Uint8, Device::Cpu));
        let x = spectra(&crops, 50).unwrap();
        assert_eq!(x.size(), [3, 50]);
        let one = Vec::<u8>::try_from(crops.get(2).contiguous().view([-1])).unwrap();
        assert!(x.get(2).allclose(&Tensor::from_slice(&spectrum(&one, 20, 50).unwrap()), 1e-6, 1e-6, false));
        assert!(spectra(&crops.to_kind(Kind::Float), 50).is_err());
    }

    #[test]
    fn kernels_match_their_formulas() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let s = Tensor::from_slice(&[4.0f32, 5.0, 6.0, 0.0, 0.0, 0.0]).view([2, 3]);
        let k = |kernel: Kernel| Vec::<f32>::try_from(kernel_matrix(&kernel, &x, &s).view([-1])).unwrap();
        assert_eq!(k(Kernel::Linear), [32.0, 0.0]);
        let poly = k(Kernel::Polynomial { degree: 2.0, gamma: 0.5, coef0: 1.0 });
        assert!((poly[0] - 289.0).abs() < 1e-3 && (poly[1] - 1.0).abs() < 1e-6);
        let rbf = k(Kernel::Rbf { gamma: 0.055 });
        assert!((rbf[0] - 0.2265).abs() < 1e-4, "{rbf:?}");
        let sig = k(Kernel::Sigmoid { gamma: 0.01, coef0: 0.0 });
        assert!((sig[0] - 0.32f32.tanh()).abs() < 1e-6);
    }
}
