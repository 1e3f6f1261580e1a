"""Plain PyTorch networks for scripts/export_torchscript.py's examples and tests/torchscript.rs.

- MesoInception4: the PyTorch port's layout (state_dict keys of the CS188 / CatoGit checkpoints,
  ../shared/reference/mesonet-torch), written from ../shared/reference/README.md, apart from
  src/models/meso.rs, so that the TorchScript path and the built-in network check each other.
- TinyEfficientNet: a stand-in for a timm EfficientNet (timm is not in the set-up's venv):
  the same kinds of layers (BatchNorm, SiLU, depthwise convolutions, squeeze-excitation,
  residual MBConv blocks), a few channels wide. `classes` picks a one-logit or two-class head.
- TinyCnnGru: a sequence model, [N, T, 3, S, S] -> one logit per sequence: a small CNN per
  frame, then a GRU over the frames, the head on the last step.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Inception(nn.Module):
    def __init__(self, cin, a, b, c, d):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, a, 1)
        self.conv2 = nn.Conv2d(cin, b, 1)
        self.conv3 = nn.Conv2d(b, b, 3, padding=1)
        self.conv4 = nn.Conv2d(cin, c, 1)
        self.conv5 = nn.Conv2d(c, c, 3, padding=2, dilation=2)
        self.conv6 = nn.Conv2d(cin, d, 1)
        self.conv7 = nn.Conv2d(d, d, 3, padding=3, dilation=3)

    def forward(self, x):
        r = F.relu
        return torch.cat([r(self.conv1(x)), r(self.conv3(r(self.conv2(x)))), r(self.conv5(r(self.conv4(x)))),
                          r(self.conv7(r(self.conv6(x))))], 1)


class MesoInception4(nn.Module):
    """Input [N, 3, 256, 256], RGB in [0, 1] normalised by mean 0.5, std 0.5; output [N, 1], logit of P(fake)."""

    def __init__(self):
        super().__init__()
        # The checkpoints name the inception blocks' convs flat: inception1.conv1 ... (as here).
        self.inception1, self.bn1 = Inception(3, 1, 4, 4, 2), nn.BatchNorm2d(11)
        self.inception2, self.bn2 = Inception(11, 2, 4, 4, 2), nn.BatchNorm2d(12)
        self.conv1, self.bn3 = nn.Conv2d(12, 16, 5, padding=2), nn.BatchNorm2d(16)
        self.conv2, self.bn4 = nn.Conv2d(16, 16, 5, padding=2), nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(1024, 16), nn.Linear(16, 1)

    def forward(self, x):
        x = F.max_pool2d(self.bn1(F.relu(self.inception1(x))), 2)
        x = F.max_pool2d(self.bn2(F.relu(self.inception2(x))), 2)
        x = F.max_pool2d(self.bn3(self.conv1(x)), 2)
        x = F.max_pool2d(self.bn4(self.conv2(x)), 4)
        x = F.dropout(x.flatten(1), 0.5, self.training)
        x = F.dropout(F.leaky_relu(self.fc1(x), 0.1), 0.5, self.training)
        return self.fc2(x)


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride, expand=4):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.se_reduce, self.se_expand = nn.Conv2d(mid, max(1, cin // 4), 1), nn.Conv2d(max(1, cin // 4), mid, 1)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        h = h * torch.sigmoid(self.se_expand(F.silu(self.se_reduce(h.mean((2, 3), keepdim=True)))))
        h = self.project(h)
        return x + h if self.residual else h


class TinyEfficientNet(nn.Module):
    """Input [N, 3, S, S]; output [N, classes] (classes 1: a logit; 2: two-class logits)."""

    def __init__(self, classes=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.blocks = nn.Sequential(MBConv(8, 8, 1), MBConv(8, 16, 2), MBConv(16, 16, 1), MBConv(16, 24, 2))
        self.head = nn.Sequential(nn.Conv2d(24, 32, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU())
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        return self.classifier(self.head(self.blocks(self.stem(x))).mean((2, 3)))


class TinyCnnGru(nn.Module):
    """Input [N, T, 3, S, S]; output [N], one logit of P(fake) per sequence (with `probability`,
    P(fake) itself)."""

    def __init__(self, hidden=16, probability=False):
        super().__init__()
        self.probability = probability
        self.cnn = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                 nn.BatchNorm2d(16), nn.ReLU())
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):
        n, t = x.shape[0], x.shape[1]
        features = self.cnn(x.flatten(0, 1)).mean((2, 3)).view(n, t, -1)
        out, _ = self.gru(features)
        logit = self.fc(out[:, -1]).squeeze(1)
        return torch.sigmoid(logit) if self.probability else logit
