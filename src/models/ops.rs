//! Small operations several networks share.
use tch::{Device, Tensor};

/// `k x k` max pooling at stride `k`, no padding, the remainder dropped (as
/// `max_pool2d_default(k)`). At inference on the CPU it is elementwise maxima of strided views,
/// first of k rows (whole rows: vectorised), then of k columns: the same values, but
/// libtorch's CPU max_pool2d always tracks argmax indices and ran 13-18x slower at
/// MesoInception4's sizes (11 x 256 x 256, batch 2, one thread), a quarter of that model's scan
/// time. Training keeps max_pool2d for its backward.
pub fn max_pool(xs: &Tensor, k: i64, train: bool) -> Tensor {
    if train || xs.device() != Device::Cpu || k == 1 {
        return xs.max_pool2d_default(k);
    }
    let (h, w) = (xs.size()[2] / k * k, xs.size()[3] / k * k);
    let rows = (1..k).fold(xs.slice(2, 0, h, k), |m, i| m.maximum(&xs.slice(2, i, h, k)));
    (1..k).fold(rows.slice(3, 0, w, k), |m, j| m.maximum(&rows.slice(3, j, w, k)))
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
