//! Small operations several networks share.
use tch::{Device, Tensor};

/// `k x k` max pooling at stride `k`, no padding, the remainder dropped (as
/// `max_pool2d_default(k)`). At inference on the CPU it is the elementwise maximum of the k²
/// strided views: the same values, but libtorch's CPU max_pool2d always tracks argmax indices
/// and ran 6-8x slower at MesoInception4's sizes (11 x 256 x 256, batch 2, one thread), a
/// quarter of that model's scan time. Training keeps max_pool2d for its backward.
pub fn max_pool(xs: &Tensor, k: i64, train: bool) -> Tensor {
    if train || xs.device() != Device::Cpu || k == 1 {
        return xs.max_pool2d_default(k);
    }
    let (h, w) = (xs.size()[2] / k * k, xs.size()[3] / k * k);
    let view = |i: i64, j: i64| xs.slice(2, i, h, k).slice(3, j, w, k);
    let mut out = view(0, 0).maximum(&view(0, 1));
    for (i, j) in (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).skip(2) {
        out = out.maximum(&view(i, j));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn max_pool_matches_libtorch_at_inference() {
        tch::manual_seed(3);
        for (shape, k) in [([2, 3, 16, 16], 2), ([1, 4, 17, 9], 2), ([2, 2, 32, 32], 4), ([1, 1, 10, 11], 3)] {
            let xs = Tensor::randn(shape, (Kind::Float, Device::Cpu));
            let want = xs.max_pool2d_default(k);
            let got = max_pool(&xs, k, false);
            assert_eq!(got.size(), want.size(), "{shape:?} k={k}");
            assert!(got.equal(&want), "{shape:?} k={k}");
        }
    }
}
