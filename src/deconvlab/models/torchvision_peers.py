"""AlexNet, VGG16 and ResNet-18 with torchvision's module and parameter names, so its weight files load
unchanged.

torchvision itself is not a dependency: these classes rebuild ``torchvision.models.alexnet``,
``torchvision.models.vgg16`` (configuration "D", without batch norm) and ``torchvision.models.resnet18``
layer for layer, with the same initialisation. AlexNet's and VGG16's ``avgpool`` is
``AdaptiveAvgPool2d`` as in torchvision, an identity at the documented input size (224x224: AlexNet's
maps are 6x6, VGG16's 7x7, before it). ResNet-18 is the residual case: each block adds its input to its
output and calls its one in-place ``relu`` module twice, which the autograd engine handles (the mirror
engine, which needs a chain of modules, does not).
"""

from __future__ import annotations

import torch
from torch import nn

from deconvlab.models._registry import register_model

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class AlexNet(nn.Module):
    """torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 filters)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        self.input_size = (3, 224, 224)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGG(nn.Module):
    """torchvision's VGG without batch norm, built from a configuration such as ``VGG16_CONFIG``."""

    def __init__(self, config: tuple, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        self.input_size = (3, 224, 224)
        self._initialise()

    def _initialise(self) -> None:
        """torchvision's VGG initialisation: He (fan-out) for convs, N(0, 0.01) for linears, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-bn-relu-conv-bn, plus the (downsampled) input, relu."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks; ``blocks`` per stage, e.g. (2, 2, 2, 2) for ResNet-18."""

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
            stride = 1 if stage == 1 else 2
            rest = [BasicBlock(planes, planes) for _ in range(count - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(BasicBlock(inplanes, planes, stride), *rest))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        self.input_size = (3, 224, 224)
        for module in self.modules():  # torchvision's initialisation (the Linear keeps PyTorch's default)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("alexnet")
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's ``alexnet`` (61 M parameters with 1000 classes)."""
    return AlexNet(num_classes, dropout)


@register_model("vgg16")
def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """torchvision's ``vgg16`` (138 M parameters with 1000 classes)."""
    return VGG(VGG16_CONFIG, num_classes, dropout)


@register_model("resnet18")
def resnet18(num_classes: int = 1000) -> ResNet:
    """torchvision's ``resnet18`` (11.7 M parameters with 1000 classes)."""
    return ResNet((2, 2, 2, 2), num_classes)
