//! dfscan's classical classifiers, fitted by smartcore (<https://smartcorelib.org>): a C-SVM
//! with a linear, polynomial, RBF or sigmoid kernel, and an L2-penalised logistic regression,
//! on a dense row-major matrix with labels fake/real; and a random forest over any number of
//! classes ([`forest`], the attribution's classifier).
//!
//! Why a crate of its own: smartcore's solvers are generic, so they are compiled in the crate
//! that names their types. Here, with the root manifest's
//! `[profile.dev.package.dfscan-classical] opt-level = 3`, they run optimised in dev builds
//! too (unoptimised, an SVM fit on a few thousand spectra takes tens of minutes).
//!
//! What comes out is plain numbers, so the caller can store and evaluate them anywhere:
//! smartcore's SVC keeps its support vectors, dual coefficients and bias in private fields
//! and cannot predict once deserialised (its kernel is a borrowed parameter), so they are read
//! from its serde form ([`Svm::from_smartcore`]); [`Svm::decision`] evaluates them, and a
//! test holds it equal to smartcore's own decision function.
pub mod forest;
pub use forest::{Forest, ForestParams};

use serde::Serialize;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::svm::svc::{SVCParameters, SVC};
use smartcore::svm::{Kernel as _, Kernels};

/// An SVM kernel (scikit-learn's and smartcore's definitions), as the fit takes it and a
/// weights header records it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kernel {
    /// <x, y>
    Linear,
    /// (gamma <x, y> + coef0)^degree
    Polynomial { degree: f64, gamma: f64, coef0: f64 },
    /// exp(-gamma |x - y|^2)
    Rbf { gamma: f64 },
    /// tanh(gamma <x, y> + coef0)
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    fn smartcore(self) -> Kernels {
        match self {
            Kernel::Linear => Kernels::linear(),
            Kernel::Polynomial { degree, gamma, coef0 } => Kernels::polynomial().with_degree(degree).with_gamma(gamma).with_coef0(coef0),
            Kernel::Rbf { gamma } => Kernels::rbf().with_gamma(gamma),
            Kernel::Sigmoid { gamma, coef0 } => Kernels::sigmoid().with_gamma(gamma).with_coef0(coef0),
        }
    }
}

/// Rows of features, row-major, with a label per row (true = fake, the positive class).
pub struct Data<'a> {
    pub x: &'a [f64],
    pub rows: usize,
    pub cols: usize,
    pub fake: &'a [bool],
}

impl Data<'_> {
    fn check(&self) -> Result<(DenseMatrix<f64>, Vec<i32>), String> {
        if self.x.len() != self.rows * self.cols || self.fake.len() != self.rows {
            return Err(format!("{} values and {} labels for {} x {}", self.x.len(), self.fake.len(), self.rows, self.cols));
        }
        let n_fake = self.fake.iter().filter(|&&f| f).count();
        if n_fake == 0 || n_fake == self.rows {
            return Err(format!("a classifier needs both real and fake examples ({n_fake} fake of {})", self.rows));
        }
        let matrix = DenseMatrix::new(self.rows, self.cols, self.x.to_vec(), false).map_err(|e| e.to_string())?;
        Ok((matrix, self.fake.iter().map(|&f| f as i32).collect()))
    }
}

/// A fitted C-SVM: decision(x) = bias + sum_i dual_coef[i] K(support_vectors[i], x), positive
/// for fake.
#[derive(Clone, Debug, PartialEq)]
pub struct Svm {
    pub kernel: Kernel,
    pub support_vectors: Vec<Vec<f64>>,
    /// alpha_i times the label (+1 fake, -1 real).
    pub dual_coef: Vec<f64>,
    pub bias: f64,
}

impl Svm {
    /// Fits a C-SVM with `kernel` and `c`; `seed` fixes smartcore's sample order.
    ///
    /// smartcore 0.7 keeps only the first `rows` values of each row when there are fewer rows
    /// than columns (its optimiser reads rows with `take(n_rows)`), so such a fit is refused.
    pub fn fit(data: &Data, kernel: Kernel, c: f64, seed: u64) -> Result<Self, String> {
        if data.rows < data.cols {
            return Err(format!("an SVM needs at least as many rows as features: {} rows of {} (smartcore 0.7 truncates rows to the row count)", data.rows, data.cols));
        }
        let (matrix, y) = data.check()?;
        let params = SVCParameters::default().with_c(c).with_kernel(kernel.smartcore()).with_seed(Some(seed));
        let svc = SVC::fit(&matrix, &y, &params).map_err(|e| format!("smartcore SVC: {e}"))?;
        Self::from_smartcore(&svc, kernel)
    }

    /// The parts of a fitted smartcore SVC, from its serde form (see the crate's note).
    fn from_smartcore<S: Serialize>(svc: &S, kernel: Kernel) -> Result<Self, String> {
        let value = serde_json::to_value(svc).map_err(|e| e.to_string())?;
        let field = |name: &str| value.get(name).cloned().ok_or_else(|| format!("smartcore's SVC no longer serialises with {name:?}"));
        let parse = |e: serde_json::Error| e.to_string();
        let support_vectors: Vec<Vec<f64>> = serde_json::from_value(field("instances")?).map_err(parse)?;
        let dual_coef: Vec<f64> = serde_json::from_value(field("w")?).map_err(parse)?;
        let bias: f64 = serde_json::from_value(field("b")?).map_err(parse)?;
        // Classes sorted, (real 0, fake 1): a positive decision is the second.
        let classes: (i32, i32) = serde_json::from_value(field("classes")?).map_err(parse)?;
        if classes != (0, 1) || support_vectors.len() != dual_coef.len() {
            return Err(format!("unexpected SVC: classes {classes:?}, {} support vectors, {} coefficients", support_vectors.len(), dual_coef.len()));
        }
        Ok(Self { kernel, support_vectors, dual_coef, bias })
    }

    /// The decision function at `x` (one row).
    pub fn decision(&self, x: &[f64]) -> f64 {
        let k = self.kernel.smartcore();
        let x = x.to_vec();
        self.bias + self.support_vectors.iter().zip(&self.dual_coef).map(|(s, a)| a * k.apply(s, &x).expect("kernel parameters set")).sum::<f64>()
    }
}

/// A fitted logistic regression: logit of fake = x . weight + bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Logistic {
    pub weight: Vec<f64>,
    pub bias: f64,
}

impl Logistic {
    /// Fits with smartcore's L-BFGS; `alpha` is the L2 penalty on the summed log loss
    /// (alpha 1 is scikit-learn's C = 1).
    pub fn fit(data: &Data, alpha: f64) -> Result<Self, String> {
        let (matrix, y) = data.check()?;
        let params = LogisticRegressionParameters::default().with_alpha(alpha);
        let model: LogisticRegression<f64, i32, DenseMatrix<f64>, Vec<i32>> = LogisticRegression::fit(&matrix, &y, params).map_err(|e| format!("smartcore logistic regression: {e}"))?;
        // Two classes sorted (real 0, fake 1): sigmoid(x . w + b) > 1/2 is the second.
        let weight = (0..data.cols).map(|j| *model.coefficients().get((0, j))).collect();
        Ok(Self { weight, bias: *model.intercept().get((0, 0)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` x `cols`: fakes shifted along the first two columns, a deterministic jitter.
    fn data(rows: usize, cols: usize) -> (Vec<f64>, Vec<bool>) {
        let fake: Vec<bool> = (0..rows).map(|i| i % 3 == 0).collect();
        let x = (0..rows * cols)
            .map(|k| {
                let (i, j) = (k / cols, k % cols);
                let jitter = ((k as f64 * 12.9898).sin() * 43758.5453).fract();
                jitter + if fake[i] && j < 2 { 1.5 } else { 0.0 }
            })
            .collect();
        (x, fake)
    }

    #[test]
    fn our_decision_function_is_smartcores() {
        let (x, fake) = data(90, 4);
        let d = Data { x: &x, rows: 90, cols: 4, fake: &fake };
        let (matrix, y) = d.check().unwrap();
        for kernel in [Kernel::Linear, Kernel::Rbf { gamma: 0.25 }, Kernel::Polynomial { degree: 3.0, gamma: 0.25, coef0: 1.0 }, Kernel::Sigmoid { gamma: 0.1, coef0: 0.0 }] {
            let params = SVCParameters::default().with_c(1.0).with_kernel(kernel.smartcore()).with_seed(Some(3));
            let svc = SVC::fit(&matrix, &y, &params).unwrap();
            let theirs = svc.decision_function(&matrix).unwrap();
            let ours = Svm::from_smartcore(&svc, kernel).unwrap();
            for (i, want) in theirs.iter().enumerate() {
                let got = ours.decision(&x[i * 4..(i + 1) * 4]);
                assert!((got - want).abs() < 1e-9 * (1.0 + want.abs()), "{kernel:?} row {i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn both_separate_shifted_classes_with_fake_positive() {
        let (x, fake) = data(120, 4);
        let d = Data { x: &x, rows: 120, cols: 4, fake: &fake };
        let svm = Svm::fit(&d, Kernel::Rbf { gamma: 0.25 }, 1.0, 1).unwrap();
        let logistic = Logistic::fit(&d, 1.0).unwrap();
        let row = |i: usize| &x[i * 4..(i + 1) * 4];
        let logit = |i: usize| row(i).iter().zip(&logistic.weight).map(|(a, b)| a * b).sum::<f64>() + logistic.bias;
        let right = |f: &dyn Fn(usize) -> f64| (0..120).filter(|&i| (f(i) > 0.0) == fake[i]).count();
        assert!(right(&|i| svm.decision(row(i))) > 110 && right(&logit) > 110);
        // One class alone, and fewer rows than columns for the SVM, are refused.
        assert!(Logistic::fit(&Data { x: &x, rows: 120, cols: 4, fake: &[false; 120] }, 1.0).is_err());
        assert!(Svm::fit(&Data { x: &x[..12], rows: 3, cols: 4, fake: &fake[..3] }, Kernel::Linear, 1.0, 1).is_err());
    }
}
