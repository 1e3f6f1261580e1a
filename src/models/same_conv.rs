//! TF "SAME" convolutions and the BatchNorm after each, as EfficientNet-Lite's checkpoints
//! lay them out (`_conv_stem` + `_bn0`, ...), foldable into one convolution for inference.
use tch::nn;
use tch::{Kind, Tensor};

/// Padding (before, after) of one spatial axis under TF "SAME": the output has
/// ceil(size / stride) positions and the odd pixel of an odd total goes after.
pub fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// A bias-free convolution with TF "SAME" padding, computed from each input's size.
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig { stride, groups, bias: false, ..Default::default() };
        Self { conv: nn::conv2d(p, c_in, c_out, kernel, cfg), kernel, stride, groups }
    }

    /// The convolution with these weights and bias (`conv.ws` and none, or BatchNorm folded in).
    fn forward_with(&self, xs: &Tensor, ws: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let (h, w) = (xs.size()[2], xs.size()[3]);
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        let conv = |x: &Tensor, pad: [i64; 2]| x.conv2d(ws, bias, [self.stride; 2], pad, [1, 1], self.groups);
        if top == bottom && left == right {
            // Symmetric (every stride-1 layer): the convolution pads by itself, without a copy.
            conv(xs, [top, left])
        } else {
            conv(&xs.constant_pad_nd([left, right, top, bottom]), [0, 0])
        }
    }
}

fn batch_norm(p: nn::Path, channels: i64, eps: f64) -> nn::BatchNorm {
    // TF's momentum 0.99 keeps 99% of the running statistics; PyTorch's 0.01 means the same.
    nn::batch_norm2d(p, channels, nn::BatchNormConfig { eps, momentum: 0.01, ..Default::default() })
}

/// A SAME convolution and the BatchNorm after it. Folded ([`ConvBn::fold`], for inference),
/// the BatchNorm's running statistics and affine live in the convolution's weights and a bias:
/// one pass over the activations instead of two (about an eighth of Lite0's CPU time).
#[derive(Debug)]
pub(super) struct ConvBn {
    conv: SameConv,
    bn: nn::BatchNorm,
    eps: f64,
    /// (weights, bias) with the BatchNorm folded in; used in eval mode only.
    folded: Option<(Tensor, Tensor)>,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(conv: nn::Path, bn: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64, eps: f64) -> Self {
        Self { conv: SameConv::new(conv, c_in, c_out, kernel, stride, groups), bn: batch_norm(bn, c_out, eps), eps, folded: None }
    }

    pub(super) fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match (&self.folded, train) {
            (Some((ws, bias)), false) => self.conv.forward_with(xs, ws, Some(bias)),
            _ => self.conv.forward_with(xs, &self.conv.conv.ws, None).apply_t(&self.bn, train),
        }
    }

    /// The kind it computes in at inference: its folded weights', else f32.
    pub(super) fn kind(&self) -> Kind {
        self.folded.as_ref().map_or(Kind::Float, |(ws, _)| ws.kind())
    }

    /// bn(conv(x, w)) = conv(x, w * s) + (beta - mean * s), s = gamma / sqrt(var + eps), per
    /// output channel, computed in f32 and stored as `kind`. Frozen weights only: later changes
    /// to either layer are not seen.
    pub(super) fn fold(&mut self, kind: Kind) {
        let _guard = tch::no_grad_guard();
        let bn = &self.bn;
        let (gamma, beta) = (bn.ws.as_ref().expect("affine BatchNorm"), bn.bs.as_ref().expect("affine BatchNorm"));
        let scale = gamma / (&bn.running_var + self.eps).sqrt();
        let ws = &self.conv.conv.ws * scale.view([-1, 1, 1, 1]);
        let bias = beta - &bn.running_mean * scale;
        self.folded = Some((ws.to_kind(kind), bias.to_kind(kind)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tf_same() {
        // Even inputs at stride 2 pad one more after than before; odd ones symmetrically.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(14, 5, 1), (2, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }
}
