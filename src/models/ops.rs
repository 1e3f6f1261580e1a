//! Small operations several networks share.
use tch::{Device, Kind, Tensor};

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

/// ReLU6, a new tensor.
pub fn relu6(xs: &Tensor) -> Tensor {
    xs.clamp(0.0, 6.0)
}

/// 6.0 as a bfloat16's bits.
const BF16_SIX_BITS: i64 = 0x40C0;

/// ReLU6 of a fresh activation: in place at inference (one pass less over memory), a new
/// tensor in training (autograd keeps the input).
pub fn relu6_t(mut xs: Tensor, train: bool) -> Tensor {
    if train {
        return relu6(&xs);
    }
    if xs.kind() == Kind::BFloat16 {
        // libtorch clamps bf16 through f32 conversions, 6x slower than an int16 clamp of the
        // same bits, which is exact: a bf16's bits as int16 are negative for a negative value
        // (-0.0 included) and order the positive ones as their values (a NaN becomes 6).
        let _ = xs.view_dtype(Kind::Int16).clamp_(0, BF16_SIX_BITS);
        return xs;
    }
    let _ = xs.clamp_(0.0, 6.0);
    xs
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn relu6_of_bf16_bits_is_the_clamp() {
        let xs = Tensor::from_slice(&[-7.0f32, -6.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 5.96875, 6.0, 6.0625, 1e4, f32::INFINITY, f32::NEG_INFINITY]);
        let xs = Tensor::cat(&[xs, Tensor::randn([4096], (Kind::Float, Device::Cpu)) * 8.0], 0).to_kind(Kind::BFloat16);
        let expected = xs.clamp(0.0, 6.0);
        let got = relu6_t(xs.copy(), false);
        assert_eq!(got.kind(), Kind::BFloat16);
        // Equal values (the clamp keeps -0.0 where the bits give 0.0: the same number).
        assert!(got.equal(&expected));
        assert_eq!(Tensor::from_slice(&[6.0f32]).to_kind(Kind::BFloat16).view_dtype(Kind::Int16).int64_value(&[0]), BF16_SIX_BITS);
    }
}
