"""MediaPipe FaceMesh in plain PyTorch, written apart from src/models/facemesh.rs so that the two
can check each other (tests/facemesh.rs runs this). The network is facemesh.py of
github.com/thepowerfuldeez/facemesh.pytorch @ 348400fe32c60111a29e9e6891e230c0005ddd8a
(Apache-2.0), unchanged except for layout.

usage: facemesh.py WEIGHTS INPUT OUTPUT
    WEIGHTS  the port's facemesh.pth state_dict
    INPUT    safetensors of [N, 3, 192, 192] float32 batches in [-1, 1], any names
    OUTPUT   "NAME.points" [N, 1404] and "NAME.flag" [N, 1] for each batch NAME
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


class FaceMeshBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1):
        super().__init__()
        self.stride = stride
        self.channel_pad = out_channels - in_channels
        if stride == 2:
            self.max_pool = nn.MaxPool2d(kernel_size=stride, stride=stride)
            padding = 0
        else:
            padding = (kernel_size - 1) // 2
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=True),
            nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=True),
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x):
        if self.stride == 2:
            h = F.pad(x, (0, 2, 0, 2), "constant", 0)
            x = self.max_pool(x)
        else:
            h = x
        if self.channel_pad > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.channel_pad), "constant", 0)
        return self.act(self.convs(h) + x)


class FaceMesh(nn.Module):
    def __init__(self):
        super().__init__()
        B = FaceMeshBlock
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 0, bias=True), nn.PReLU(16),
            B(16, 16), B(16, 16), B(16, 32, stride=2), B(32, 32), B(32, 32), B(32, 64, stride=2), B(64, 64),
            B(64, 64), B(64, 128, stride=2), B(128, 128), B(128, 128), B(128, 128, stride=2), B(128, 128), B(128, 128),
        )
        self.coord_head = nn.Sequential(
            B(128, 128, stride=2), B(128, 128), B(128, 128), nn.Conv2d(128, 32, 1), nn.PReLU(32), B(32, 32), nn.Conv2d(32, 1404, 3)
        )
        self.conf_head = nn.Sequential(B(128, 128, stride=2), nn.Conv2d(128, 32, 1), nn.PReLU(32), B(32, 32), nn.Conv2d(32, 1, 3))

    def forward(self, x):
        x = nn.ReflectionPad2d((1, 0, 1, 0))(x)
        b = x.shape[0]
        x = self.backbone(x)
        return self.coord_head(x).reshape(b, -1), self.conf_head(x).view(b, -1)


def main():
    weights, src, dst = sys.argv[1:4]
    net = FaceMesh()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    out = {}
    with torch.no_grad():
        for name, x in load_file(src).items():
            points, flag = net(x)
            out[f"{name}.points"], out[f"{name}.flag"] = points.contiguous(), flag.contiguous()
    save_file(out, dst)


if __name__ == "__main__":
    main()
