"""EfficientNet-Lite0 and -Lite2 in plain PyTorch, written apart from src/models/efficientnet.rs
so that the two can check each other (tests/efficientnet.rs runs this). It follows the TF reference
(tensorflow/tpu models/official/efficientnet/lite) as ported by ml-illustrated's
EfficientNet-Lite-PyTorch: TF "SAME" padding (extra row/column at the bottom/right when the
total is odd), BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, residual on stride-1 blocks
with equal in/out channels. Lite2 scales the blocks as efficientnet_lite_builder.py does:
round_filters (multiple of 8, never 10% down) on the channels, ceil on the repeats, except
that the stem (32), the head (1280) and the first and last stage's repeats stay fixed.

usage: python3 efficientnet_lite.py VARIANT WEIGHTS INPUT OUTPUT
  VARIANT  lite0 or lite2
  WEIGHTS  the lukemelas-layout state_dict (.pth, or .safetensors under the same names)
  INPUT    safetensors of [N, 3, H, W] float32 batches, already normalised, any names
  OUTPUT   for each batch NAME: "NAME.features" [N, 1280] (pooled, before _fc) and
           "NAME.logits" [N, 1000]
"""
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

# (repeats, kernel, stride, expand ratio, in, out), from efficientnet_lite_builder.py.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# efficientnet_lite_params: (width, depth); resolution and dropout do not change the weights.
VARIANTS = {"lite0": (1.0, 1.0), "lite2": (1.1, 1.2)}


def round_filters(c, width):
    c *= width
    rounded = max(8, int(c + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * c else rounded


class SameConv(nn.Conv2d):
    def __init__(self, c_in, c_out, k, stride=1, groups=1):
        super().__init__(c_in, c_out, k, stride, padding=0, groups=groups, bias=False)

    def forward(self, x):
        pads = []
        for size in reversed(x.shape[-2:]):  # F.pad wants (left, right, top, bottom)
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, k, stride, expand, c_in, c_out):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv, self._bn0 = SameConv(c_in, mid, 1), bn(mid)
        self._depthwise_conv, self._bn1 = SameConv(mid, mid, k, stride, groups=mid), bn(mid)
        self._project_conv, self._bn2 = SameConv(mid, c_out, 1), bn(c_out)
        self.expand, self.skip = expand, stride == 1 and c_in == c_out

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite(nn.Module):
    def __init__(self, width, depth):
        super().__init__()
        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2), bn(32)
        blocks = []
        for s, (repeats, k, stride, expand, c_in, c_out) in enumerate(STAGES):
            c_in = 32 if s == 0 else round_filters(c_in, width)
            c_out = round_filters(c_out, width)
            if 0 < s < len(STAGES) - 1:
                repeats = int(math.ceil(depth * repeats))
            for i in range(repeats):
                blocks.append(MBConv(k, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv(c_out, 1280, 1), bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))


def main():
    variant, weights, inp, out = sys.argv[1:]
    if weights.endswith(".safetensors"):
        state = load_file(weights)
        state = {k: v.long() if k.endswith("num_batches_tracked") else v for k, v in state.items()}
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    net = Lite(*VARIANTS[variant])
    net.load_state_dict(state, strict=True)
    net.eval()
    results = {}
    with torch.no_grad():
        for name, batch in load_file(inp).items():
            features = net.features(batch.float())
            results[f"{name}.features"] = features.contiguous()
            results[f"{name}.logits"] = net._fc(features).contiguous()
    save_file(results, out)


if __name__ == "__main__":
    main()
