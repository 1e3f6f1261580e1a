//! What `dfscan train` minimises, per network, in one place: for every classifier the
//! class-balanced binary cross-entropy of its "fake" logit (for a two-class head, l_fake -
//! l_real, this is the two-class cross-entropy); for the U-Net (seed 000's CNN path) that
//! weighted by 1 - w plus w times the mean absolute error of its reconstruction against its own
//! input, w = `UnetConfig::reconstruction_weight` (the seed's `DFD_BinClassifier_v4`: 0.9 and
//! 0.1, MAE).
use tch::nn::{self, ModuleT};
use tch::{Reduction, Tensor};

use crate::models::unet::{self, Unet};
use crate::models::{self, NetworkConfig};

/// The network being trained, as its loss needs it.
pub enum Objective {
    /// Scored by its "fake" logit alone.
    Classify(Box<dyn ModuleT>),
    /// Also scored by how well it redraws its input.
    Reconstruct(Box<Unet>),
}

impl Objective {
    /// Builds the network of `config` under `root` (as `models::build_network` names it).
    pub fn build(root: &nn::Path, config: &NetworkConfig) -> Self {
        match config {
            NetworkConfig::Unet(cfg) => Objective::Reconstruct(Box::new(Unet::new(root, cfg))),
            other => Objective::Classify(models::build_network(root, other)),
        }
    }

    /// The network as a frame or sequence model: `[N]` logits of "fake".
    pub fn module(&self) -> &dyn ModuleT {
        match self {
            Objective::Classify(net) => net.as_ref(),
            Objective::Reconstruct(net) => net.as_ref(),
        }
    }

    /// The training loss of a batch (train mode): `input` is the network input, `targets` the
    /// `[N]` labels (1 = fake), `pos_weight` the weight of the fake class.
    pub fn loss(&self, input: &Tensor, targets: &Tensor, pos_weight: &Tensor) -> Tensor {
        let bce = |fake_logits: Tensor| fake_logits.binary_cross_entropy_with_logits::<&Tensor>(targets, None, Some(pos_weight), Reduction::Mean);
        match self {
            Objective::Classify(net) => bce(net.forward_t(input, true)),
            Objective::Reconstruct(net) => {
                let out = net.forward_all_t(input, true);
                let w = net.config().reconstruction_weight;
                bce(models::vit::fake_logit(&out.logits)) * (1.0 - w) + unet::reconstruction_loss(&out.reconstruction, input) * w
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    use super::*;
    use crate::models::unet::UnetConfig;

    #[test]
    fn the_unet_reconstruction_loss_falls_over_a_few_steps() {
        tch::manual_seed(0);
        // The shipped widths at 64 px (two halvings fewer would not fit five levels): quick.
        let cfg = UnetConfig { image_size: 64, ..UnetConfig::small() };
        let vs = nn::VarStore::new(Device::Cpu);
        let objective = Objective::build(&vs.root(), &NetworkConfig::Unet(cfg));
        let Objective::Reconstruct(net) = &objective else { panic!("a U-Net is trained with its reconstruction") };
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        // A smooth batch (a decoder learns those first), two of each class.
        let ramp = Tensor::linspace(0.0, 1.0, 64, (Kind::Float, Device::Cpu));
        let image = (ramp.view([1, 1, 1, 64]) * ramp.view([1, 1, 64, 1])).expand([4, 3, 64, 64], false);
        let input = image * Tensor::from_slice(&[1.0f32, 0.8, 0.6, 0.4]).view([4, 1, 1, 1]);
        // Strided as the trainer's input is (crops permuted from [N, S, S, 3]).
        let input = input.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        assert!(!input.is_contiguous());
        let targets = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0]);
        let pos_weight = Tensor::from(1.0f32);
        let reconstruction = || tch::no_grad(|| unet::reconstruction_loss(&net.forward_all_t(&input, true).reconstruction, &input).double_value(&[]));
        let before = reconstruction();
        let mut losses = Vec::new();
        for _ in 0..12 {
            let loss = objective.loss(&input, &targets, &pos_weight);
            losses.push(loss.double_value(&[]));
            opt.backward_step(&loss);
        }
        let after = reconstruction();
        assert!(after < 0.9 * before, "reconstruction L1 {before:.4} -> {after:.4}");
        assert!(losses[11] < losses[0], "total loss {losses:?}");
        // The frame-model view is the classifier's fake logit alone.
        assert_eq!(objective.module().forward_t(&input, false).size(), [4]);
    }
}
