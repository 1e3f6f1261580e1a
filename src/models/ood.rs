//! Out-of-distribution baselines on a classifier's logits, as risks (higher = more likely out
//! of distribution) that rank against the abnormality module's in `eval::metrics::OodMetrics`.
//!
//! - MSP: Hendrycks, Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
//!   Examples", ICLR 2017 (arXiv:1610.02136): risk = 1 - max softmax.
//! - ODIN: Liang, Li, Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection
//!   in Neural Networks", ICLR 2018 (arXiv:1706.02690); reference code
//!   github.com/facebookresearch/odin `code/calData.py`. The input moves by epsilon against the
//!   gradient of the temperature-scaled cross-entropy of the predicted class, which raises its
//!   softmax score, more for in-distribution inputs than for others; risk = 1 - max softmax at
//!   temperature T of the moved input. As in the reference code, epsilon is in units of [0, 1]
//!   pixels: on normalised input the step is epsilon / std per channel. (The seed's
//!   `odin_perturbations` steps along the sign of the summed logits' gradient instead, which is
//!   not ODIN's direction; we follow the paper.)
use tch::{Kind, Tensor};

/// 1 - max softmax(logits / temperature), `[N, classes]` -> `[N]`.
pub fn max_softmax_risk(logits: &Tensor, temperature: f64) -> Tensor {
    let probs = (logits.to_kind(Kind::Float) / temperature).softmax(-1, Kind::Float);
    1.0 - probs.amax(-1i64, false)
}

/// MSP risk: 1 - max softmax(logits), `[N, classes]` -> `[N]`.
pub fn msp_risk(logits: &Tensor) -> Tensor {
    max_softmax_risk(logits, 1.0)
}

/// ODIN's two hyper-parameters; the default is the paper's (T = 1000, epsilon = 0.0012).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Odin {
    pub temperature: f64,
    /// Step in [0, 1]-pixel units (see the module docs).
    pub epsilon: f64,
}

impl Default for Odin {
    fn default() -> Self {
        Self { temperature: 1000.0, epsilon: 0.0012 }
    }
}

impl Odin {
    /// The input moved by epsilon in the gradient-sign direction that raises the temperature
    /// scaled softmax score of each sample's predicted class. `net` maps `xs` (the network's
    /// normalised input, `[N, C, ..]`) to logits `[N, classes]` and must treat samples
    /// independently (inference mode); `input_std` is the per-channel std of the normalisation
    /// (None: `xs` are pixels). Gradients are taken w.r.t. the input only, even under no_grad.
    pub fn perturb(&self, net: impl Fn(&Tensor) -> Tensor, xs: &Tensor, input_std: Option<&[f64]>) -> Tensor {
        let xs = xs.detach();
        let grad = tch::with_grad(|| {
            let input = xs.copy().set_requires_grad(true);
            let log_probs = (net(&input) / self.temperature).log_softmax(-1, Kind::Float);
            let predicted = log_probs.argmax(-1, true);
            // Summed over the batch: each sample's input only reaches its own loss term.
            let loss = -log_probs.gather(-1, &predicted, false).sum(Kind::Float);
            Tensor::run_backward(&[loss], &[&input], false, false).remove(0)
        });
        let step = match input_std {
            Some(std) => {
                let mut shape = vec![1i64; xs.dim()];
                shape[1] = std.len() as i64;
                Tensor::from_slice(std).to_kind(xs.kind()).to_device(xs.device()).view(shape.as_slice()).reciprocal() * self.epsilon
            }
            None => Tensor::from(self.epsilon).to_kind(xs.kind()).to_device(xs.device()),
        };
        // Descending the loss is ascending the predicted class's score.
        xs - grad.sign() * step
    }

    /// ODIN risk `[N]`: 1 - max softmax at temperature T of the perturbed input's logits.
    pub fn risk(&self, net: impl Fn(&Tensor) -> Tensor, xs: &Tensor, input_std: Option<&[f64]>) -> Tensor {
        let moved = self.perturb(&net, xs, input_std);
        tch::no_grad(|| max_softmax_risk(&net(&moved), self.temperature))
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, Module};
    use tch::Device;

    use super::super::vit::{Vit, VitConfig};
    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn msp_on_hand_made_logits() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0, -1.0, 3.0]).view([3, 2]);
        let risk = values(&msp_risk(&logits));
        // 1 - sigmoid(2), 1 - 1/2, 1 - sigmoid(4).
        let expected = [1.0 - 1.0 / (1.0 + (-2.0f64).exp()), 0.5, 1.0 - 1.0 / (1.0 + (-4.0f64).exp())];
        for (r, e) in risk.iter().zip(expected) {
            assert!((r - e).abs() < 1e-6, "{risk:?}");
        }
        // Temperature flattens the softmax: logits (2000, 0) at T = 1000 are (2, 0) at T = 1.
        let hot = Tensor::from_slice(&[2000.0f32, 0.0]).view([1, 2]);
        assert!((values(&max_softmax_risk(&hot, 1000.0))[0] - expected[0]).abs() < 1e-6);
    }

    #[test]
    fn odin_on_hand_made_logits() {
        // The identity "network": logits = input. For x = (1, 0.5) the predicted class is 0 and
        // the cross-entropy's gradient is (-(1 - p0), p1): the step raises x0 and lowers x1.
        let xs = Tensor::from_slice(&[1.0f32, 0.5]).view([1, 2]);
        let odin = Odin { temperature: 1.0, epsilon: 0.1 };
        let moved = values(&odin.perturb(|x: &Tensor| x.shallow_clone(), &xs, None));
        assert!((moved[0] - 1.1).abs() < 1e-6 && (moved[1] - 0.4).abs() < 1e-6, "{moved:?}");
        let risk = values(&odin.risk(|x: &Tensor| x.shallow_clone(), &xs, None))[0];
        assert!((risk - (1.0 - 1.0 / (1.0 + (-0.7f64).exp()))).abs() < 1e-6);
        // The paper's T and epsilon: margin 0.5 + 2 x 0.0012 at T = 1000.
        let risk = values(&Odin::default().risk(|x: &Tensor| x.shallow_clone(), &xs, None))[0];
        let expected = 1.0 - 1.0 / (1.0 + (-0.5024f64 / 1000.0).exp());
        assert!((risk - expected).abs() < 1e-6, "{risk} vs {expected}");
        // On normalised input the step is epsilon / std per channel. Logits (x0, -x1) predict
        // class 0 at x = (0.1, 0); raising either input raises p0.
        let img = Tensor::from_slice(&[0.1f32, 0.0]).view([1, 2, 1, 1]);
        let net = |x: &Tensor| x.view([1, 2]) * Tensor::from_slice(&[1.0f32, -1.0]);
        let moved = values(&Odin { temperature: 1.0, epsilon: 0.1 }.perturb(net, &img, Some(&[0.5, 0.25])));
        assert!((moved[0] - 0.3).abs() < 1e-6 && (moved[1] - 0.4).abs() < 1e-6, "{moved:?}");
    }

    #[test]
    fn odin_perturbation_raises_the_max_softmax() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let vit = Vit::new(&vs.root(), &VitConfig { depth: 2, ..VitConfig::deit_tiny_distilled() });
        let net = |x: &Tensor| vit.forward_all_t(x, false).logits;
        let xs = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let odin = Odin::default();
        let std = super::super::vit::IMAGENET_STD;
        let _guard = tch::no_grad_guard(); // perturb must take its gradient anyway
        let moved = odin.perturb(net, &xs, Some(&std));
        assert_eq!(moved.size(), xs.size());
        let step = (&moved - &xs).abs().amax([1i64, 2, 3].as_slice(), false);
        assert!(values(&step).iter().all(|s| (s - 0.0012 / 0.224).abs() < 1e-6), "largest step {step:?}");
        let clean = values(&max_softmax_risk(&net(&xs), odin.temperature));
        let perturbed = values(&max_softmax_risk(&net(&moved), odin.temperature));
        for (c, p) in clean.iter().zip(&perturbed) {
            assert!(p <= c, "risk after the step {p} > before {c}");
        }
        // A linear probe at T = 1, where no temperature flattens the softmax: the step still helps.
        let lin = nn::linear(vs.root() / "probe", 6, 3, Default::default());
        let x6 = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let t1 = Odin { temperature: 1.0, epsilon: 0.05 };
        let moved = t1.perturb(|x: &Tensor| lin.forward(x), &x6, None);
        let (before, after) = (values(&msp_risk(&lin.forward(&x6))), values(&msp_risk(&lin.forward(&moved))));
        assert!(before.iter().zip(&after).all(|(b, a)| a < b), "{before:?} -> {after:?}");
    }
}
