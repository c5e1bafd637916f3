"""An independent re-implementation, for the tests, of the AGW/CAJ reference network ``embed_net``
(mangye16/Cross-Modal-Re-ID-baseline, ``model.py``), written from its description: the same module
names (so its ``state_dict`` has the reference's keys) and the same forward arithmetic:

- two whole ResNet-50s for the modality stems (``visible_module.visible``, ``thermal_module.thermal``)
  of which conv1/bn1/relu/maxpool run; one ResNet-50 (``base_resnet.base``) whose layer1..4 run, with
  last stride 1;
- non-local blocks ``NL_2`` (2 blocks, after blocks 2 and 3 of layer2) and ``NL_3`` (3 blocks, after
  blocks 3, 4 and 5 of layer3): ``g`` a Sequential(conv), ``theta``/``phi`` convs, ``f = theta^T phi / N``
  (no softmax), ``z = W(y) + x`` with ``W`` = Sequential(conv, BN); ``inter_channels`` 1 by default;
- GeM ``(mean(x^3) + 1e-12)^(1/3)`` over positions (no clamp), BatchNorm1d ``bottleneck``, bias-free
  ``classifier``; in eval mode the test feature is ``l2norm(bottleneck(pooled))``.

Nothing here imports vireid: it is the yardstick vireid's conversion is measured against.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def _resnet50_last_stride_1() -> nn.Module:
    net = torchvision.models.resnet50(weights=None)
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    return net


class NonLocal(nn.Module):
    def __init__(self, channels: int, inter: int = 1):
        super().__init__()
        self.inter = inter
        self.g = nn.Sequential(nn.Conv2d(channels, inter, 1))
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = self.g(x).view(b, self.inter, -1).permute(0, 2, 1)
        theta = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi = self.phi(x).view(b, self.inter, -1)
        f = torch.matmul(theta, phi)
        y = torch.matmul(f / f.shape[-1], g).permute(0, 2, 1).contiguous().view(b, self.inter, *x.shape[2:])
        return self.W(y) + x


class _Holder(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        setattr(self, name, _resnet50_last_stride_1())


class ReferenceEmbedNet(nn.Module):
    def __init__(self, num_classes: int, inter: int = 1):
        super().__init__()
        self.thermal_module = _Holder("thermal")
        self.visible_module = _Holder("visible")
        self.base_resnet = _Holder("base")
        self.NL_1 = nn.ModuleList()
        self.NL_2 = nn.ModuleList([NonLocal(512, inter) for _ in range(2)])
        self.NL_3 = nn.ModuleList([NonLocal(1024, inter) for _ in range(3)])
        self.NL_4 = nn.ModuleList()
        self.bottleneck = nn.BatchNorm1d(2048)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(2048, num_classes, bias=False)

    @staticmethod
    def _stem(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.maxpool(net.relu(net.bn1(net.conv1(x))))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, modal: int = 0):
        if modal == 1:
            x = self._stem(self.visible_module.visible, x1)
        elif modal == 2:
            x = self._stem(self.thermal_module.thermal, x2)
        else:
            x = torch.cat([self._stem(self.visible_module.visible, x1), self._stem(self.thermal_module.thermal, x2)])
        base = self.base_resnet.base
        for layer, nls in ((base.layer1, self.NL_1), (base.layer2, self.NL_2), (base.layer3, self.NL_3),
                           (base.layer4, self.NL_4)):
            first = len(layer) - len(nls)
            for i, block in enumerate(layer):
                x = block(x)
                if i >= first:
                    x = nls[i - first](x)
        b, c = x.shape[:2]
        pooled = (torch.mean(x.view(b, c, -1) ** 3, dim=-1) + 1e-12) ** (1 / 3)
        feat = self.bottleneck(pooled)
        if self.training:
            return pooled, self.classifier(feat)
        return nn.functional.normalize(pooled, dim=1), nn.functional.normalize(feat, dim=1)


def randomised_reference(num_classes: int = 7, *, inter: int = 1, seed: int = 0) -> ReferenceEmbedNet:
    """A reference network with every weight and BN statistic random (non-local W's BN non-zero, so the
    blocks act), in eval mode."""
    torch.manual_seed(seed)
    net = ReferenceEmbedNet(num_classes, inter)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for m in net.modules():  # small residual branches keep 16 random blocks' activations finite
            if isinstance(m, torchvision.models.resnet.Bottleneck):
                m.bn3.weight.uniform_(0.05, 0.2)
        for nl in [*net.NL_2, *net.NL_3]:
            nl.W[1].weight.uniform_(0.2, 0.5)
    return net.eval()


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def reference_features(net: ReferenceEmbedNet, images: torch.Tensor, modality: str) -> torch.Tensor:
    """The reference test feature (after the BNNeck, L2-normalised) of images in [0, 1], normalised
    with the ImageNet statistics as the reference's transform does."""
    x = (images - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        return net(x, x, 1 if modality == "visible" else 2)[1]
