"""AlexNet and VGG16 with torchvision's module and parameter names, so its weight files load unchanged.

torchvision itself is not a dependency: these classes rebuild ``torchvision.models.alexnet`` and
``torchvision.models.vgg16`` (configuration "D", without batch norm) layer for layer, with the same
initialisation. Their ``avgpool`` is ``AdaptiveAvgPool2d`` as in torchvision, an identity at the
documented input size (224x224: AlexNet's maps are 6x6, VGG16's 7x7, before it).
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


@register_model("alexnet")
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's ``alexnet`` (61 M parameters with 1000 classes)."""
    return AlexNet(num_classes, dropout)


@register_model("vgg16")
def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """torchvision's ``vgg16`` (138 M parameters with 1000 classes)."""
    return VGG(VGG16_CONFIG, num_classes, dropout)
