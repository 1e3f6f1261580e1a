//! The attribution's autoencoder (seed 002's second recipe, step 2): a fixed encoder's
//! embedding, standardised, squeezed to a 64-dimensional code that the random forests read.
//!
//! Seed 002 reduced CLIP ViT-L/14's 768 dimensions to 64 (and 32, "with similar results") with
//! an autoencoder before a random forest; the seed gives no layer sizes, so this one is the
//! plainest that works: one hidden ReLU layer each way, a linear code, mean squared error on
//! standardised inputs. `dfscan fit-attribution` trains it (`train::attribution`); a weights
//! file keeps the encoder half only (`encoder.0`, `encoder.2`), which is all the scan runs.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

/// The seed's code size.
pub const CODE: i64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Width of the embedding it reads.
    pub input: i64,
    pub hidden: i64,
    /// Width of the code.
    pub code: i64,
}

impl AutoencoderConfig {
    /// For `input` features: a hidden layer of 512 (or the input's width, if narrower), a
    /// 64-dimensional code.
    pub fn seed(input: i64) -> Self {
        Self { input, hidden: 512.min(input), code: CODE }
    }
}

/// The encoder half: `[N, input]` standardised features to `[N, code]`. Names as PyTorch's
/// `nn.Sequential(Linear, ReLU, Linear)` under `encoder`.
#[derive(Debug)]
pub struct Encoder {
    l0: nn::Linear,
    l2: nn::Linear,
}

impl Encoder {
    pub fn new(p: &nn::Path, cfg: &AutoencoderConfig) -> Self {
        let p = p / "encoder";
        Self { l0: nn::linear(&p / 0, cfg.input, cfg.hidden, Default::default()), l2: nn::linear(&p / 2, cfg.hidden, cfg.code, Default::default()) }
    }
}

impl Module for Encoder {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.l0).relu().apply(&self.l2)
    }
}

/// Encoder and decoder, for training: the decoder mirrors the encoder back to `input`.
#[derive(Debug)]
pub struct Autoencoder {
    pub encoder: Encoder,
    d0: nn::Linear,
    d2: nn::Linear,
}

impl Autoencoder {
    pub fn new(p: &nn::Path, cfg: &AutoencoderConfig) -> Self {
        let d = p / "decoder";
        Self {
            encoder: Encoder::new(p, cfg),
            d0: nn::linear(&d / 0, cfg.code, cfg.hidden, Default::default()),
            d2: nn::linear(&d / 2, cfg.hidden, cfg.input, Default::default()),
        }
    }

    /// The reconstruction of `xs` from its code.
    pub fn reconstruct(&self, xs: &Tensor) -> Tensor {
        self.encoder.forward(xs).apply(&self.d0).relu().apply(&self.d2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn the_code_has_64_dimensions_and_the_reconstruction_the_input_width() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = AutoencoderConfig::seed(300);
        let ae = Autoencoder::new(&vs.root(), &cfg);
        let x = Tensor::randn([5, 300], (Kind::Float, Device::Cpu));
        assert_eq!(ae.encoder.forward(&x).size(), [5, 64]);
        assert_eq!(ae.reconstruct(&x).size(), [5, 300]);
        let mut names: Vec<String> = vs.variables().into_keys().filter(|k| k.starts_with("encoder.")).collect();
        names.sort();
        assert_eq!(names, ["encoder.0.bias", "encoder.0.weight", "encoder.2.bias", "encoder.2.weight"]);
    }
}
