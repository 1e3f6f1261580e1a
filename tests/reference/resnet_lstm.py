"""The source project's ResNet-LSTM and torchvision's MobileNetV2, in plain PyTorch, written apart
from src/models/{backbone,resnet_lstm}.rs so that the two can check each other
(tests/resnet_lstm.rs runs this). torchvision is not installed, so its resnet50 and
mobilenet_v2 are written out here with torchvision's module names (torchvision v0.15
models/resnet.py and mobilenetv2.py); ResNetLSTM follows seed 001's project
(CS188-Project-Deepfake-Detection models/resnetlstm.py, copied from CatoGit's
deepfake_detector): nn.Sequential(*list(resnet50.children())[:-2], Conv2d(2048, 128, 1,
bias=False), BatchNorm2d(128), ReLU, AdaptiveAvgPool2d(1)), LSTM(128, 512, batch_first),
fc1 512 -> 64, ReLU, fc2 64 -> 1 on the last step.

usage:
  resnet_lstm.py mobilenet_v2 WEIGHTS INPUT OUTPUT
      WEIGHTS  torchvision's mobilenet_v2 state_dict (.pth, or .safetensors under its names)
      INPUT    safetensors of [N, 3, H, W] float32 batches, already normalised, any names
      OUTPUT   for each batch NAME: "NAME.features" [N, 1280, h, w] (the output of
               `features`) and "NAME.logits" [N, 1000]
  resnet_lstm.py resnet_lstm BACKBONE WEIGHTS INPUT OUTPUT
      BACKBONE resnet50 (the source's) or mobilenetv2 (its construction with mobilenet_v2)
      WEIGHTS  a ResNetLSTM state_dict (.safetensors), loaded strictly after dropping a
               "module." prefix; num_batches_tracked, which dfscan does not keep, may be absent
      INPUT    safetensors of [N, T, 3, H, W] float32 batches
      OUTPUT   "NAME.logits" [N] for each batch NAME
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, c_in, width, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != 4 * width:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(c_in, width, stride if b == 0 else 1))
                c_in = 4 * width
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)


def conv_bn_relu6(c_in, c_out, k, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, t):
        super().__init__()
        mid = c_in * t
        layers = [] if t == 1 else [conv_bn_relu6(c_in, mid, 1)]
        layers += [conv_bn_relu6(mid, mid, 3, stride, mid), nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        features, c_in = [conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        features.append(conv_bn_relu6(c_in, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))


class ResNetLSTM(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        trunk, channels = (ResNet50(), 2048) if backbone == "resnet50" else (MobileNetV2(), 1280)
        self.resnet = nn.Sequential(*list(trunk.children())[:-2 if backbone == "resnet50" else -1],
                                    nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d((1, 1)))
        self.lstm = nn.LSTM(input_size=128, hidden_size=512, num_layers=1, batch_first=True)
        self.fc1, self.relu, self.fc2 = nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 1)

    def forward(self, x):
        n, t, c, h, w = x.size()
        out = self.resnet(x.reshape(n * t, c, h, w)).view(n, t, -1)
        r_out, _ = self.lstm(out)
        return self.fc2(self.relu(self.fc1(r_out[:, -1, :])))


def load_state(path):
    if path.endswith(".safetensors"):
        state = load_file(path)
        state = {k: v.long() if k.endswith("num_batches_tracked") else v for k, v in state.items()}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # A checkpoint saved from nn.DataParallel prefixes every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    results = {}
    if mode == "mobilenet_v2":
        weights, inp, out = args
        net = MobileNetV2()
        net.load_state_dict(load_state(weights), strict=True)
        net.eval()
        with torch.no_grad():
            for name, batch in load_file(inp).items():
                features = net.features(batch.float())
                results[f"{name}.features"] = features.contiguous()
                results[f"{name}.logits"] = net.classifier(features.mean(dim=(2, 3))).contiguous()
    elif mode == "resnet_lstm":
        backbone, weights, inp, out = args
        net = ResNetLSTM(backbone)
        state = load_state(weights)
        for key, value in net.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = torch.zeros_like(value)
        net.load_state_dict(state, strict=True)
        net.eval()
        with torch.no_grad():
            for name, batch in load_file(inp).items():
                results[f"{name}.logits"] = net(batch.float()).squeeze(1).contiguous()
    else:
        raise SystemExit(f"unknown mode {mode}")
    save_file(results, out)


if __name__ == "__main__":
    main()
