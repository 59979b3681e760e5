"""ZFNet (Zeiler & Fergus 2014, Fig. 3) and ``zfnet-mini``, the same pattern for 64x64 images.

Module names follow torchvision's AlexNet (``features``, ``classifier``), so layers are addressed as
``"features.0"`` (conv1), ``"features.4"`` (conv2), ... Every layer is one of the modules the mirror
deconvnet understands: ``Conv2d``, ``ReLU``, ``MaxPool2d`` (3x3, stride 2), ``LocalResponseNorm``,
``Dropout``, ``Linear``.

Feature-map widths of ``zfnet`` at 224x224 input (the paper's 110, 55, 26, 13, 13, 13, 6), with
PyTorch's ``o = floor((i + 2p - k) / s) + 1`` (``ceil`` for the pools)::

    conv1 7x7/2 pad 1:  (224 + 2 - 7) // 2 + 1 = 110
    pool  3x3/2 ceil:   ceil((110 - 3) / 2) + 1 = 55
    conv2 5x5/2 pad 0:  (55 - 5) // 2 + 1      = 26
    pool  3x3/2 ceil:   ceil((26 - 3) / 2) + 1  = 13
    conv3-5 3x3 pad 1:                           13
    pool  3x3/2:        (13 - 3) // 2 + 1       = 6   -> 6 * 6 * 256 = 9216 inputs to fc6

Contrast normalisation: the paper does not give its parameters; we use AlexNet's (Krizhevsky et al.
2012): across 5 neighbouring channels, k = 2, beta = 0.75 and alpha = 1e-4 as written in PyTorch's
``LocalResponseNorm`` (which divides alpha by the size, as Caffe does).
"""

from __future__ import annotations

import torch
from torch import nn

from deconvlab.arithmetic.shapes import conv_output_shape
from deconvlab.models._registry import register_model

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


def contrast_norm() -> nn.LocalResponseNorm:
    """The contrast normalisation after conv1 and conv2 (parameters: see the module docstring)."""
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


def pool() -> nn.MaxPool2d:
    """3x3 max-pool, stride 2, ``ceil_mode=True`` (overlapping, keeps the last partial window)."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class ZFNet(nn.Module):
    """The ZFNet layer pattern: 5 conv layers, 3 pools, 2 contrast norms, 3 fully connected layers.

    ``widths`` are the filter counts of conv1..conv5, ``conv_specs`` their (kernel, stride, padding)
    and ``hidden`` the width of fc6 and fc7. ``features`` indices::

        0 conv1, 1 relu, 2 pool, 3 norm, 4 conv2, 5 relu, 6 pool, 7 norm,
        8 conv3, 9 relu, 10 conv4, 11 relu, 12 conv5, 13 relu, 14 pool

    and ``classifier``: 0 fc6, 1 relu, 2 dropout, 3 fc7, 4 relu, 5 dropout, 6 fc8 (the logits).
    Dropout acts on the outputs of fc6 and fc7, as in the paper and Caffe's AlexNet (torchvision's
    AlexNet drops the inputs of fc6 and fc7 instead; dropping half of the conv features before fc6
    kept zfnet-mini at chance for the first hundreds of steps).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        widths: tuple[int, int, int, int, int],
        conv_specs: tuple[tuple[int, int, int], ...],
        hidden: int,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        channels = (3, *widths)
        convs = [nn.Conv2d(channels[i], channels[i + 1], k, s, p) for i, (k, s, p) in enumerate(conv_specs)]
        self.features = nn.Sequential(
            convs[0], nn.ReLU(), pool(), contrast_norm(),
            convs[1], nn.ReLU(), pool(), contrast_norm(),
            convs[2], nn.ReLU(), convs[3], nn.ReLU(), convs[4], nn.ReLU(), pool(),
        )  # fmt: skip
        side = feature_map_sizes(image_size, conv_specs)[-1]
        self.classifier = nn.Sequential(
            nn.Linear(widths[-1] * side * side, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip
        self.input_size = (3, image_size, image_size)
        self._initialise()

    def _initialise(self) -> None:
        """He initialisation (fan-in, ReLU gain) for every conv and hidden linear layer, N(0, 0.01) for
        the logits, zero biases. The paper draws every weight from N(0, 0.01), which multiplies the
        signal's variance by fan_in * 1e-4 / 2 < 1 per layer (0.04 for zfnet-mini's conv2), so it
        vanishes through 7 layers; even PyTorch's default initialisation left zfnet-mini at chance
        (loss ln 12) after 3 epochs."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier[-1].weight, 0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def feature_map_sizes(image_size: int, conv_specs: tuple[tuple[int, int, int], ...]) -> list[int]:
    """Widths after conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5 (square maps).

    >>> feature_map_sizes(224, ZFNET_CONVS)
    [110, 55, 26, 13, 13, 13, 13, 6]
    """
    sizes, side = [], image_size
    for index, (kernel, stride, padding) in enumerate(conv_specs):
        side = conv_output_shape(side, kernel, stride=stride, padding=padding)
        sizes.append(side)
        if index in (0, 1, 4):  # pools after conv1, conv2 and conv5
            side = _pool_output(side)
            sizes.append(side)
    return sizes


def _pool_output(side: int) -> int:
    # 3x3 stride 2 with ceil_mode: ceil((i - 3) / 2) + 1, PyTorch drops a window starting past the input
    return -(-(side - 3) // 2) + 1


ZFNET_CONVS = ((7, 2, 1), (5, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1))
MINI_CONVS = ((7, 2, 3), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))


@register_model("zfnet")
def zfnet(num_classes: int = 1000, dropout: float = 0.5) -> ZFNet:
    """The paper's Fig. 3 network for 224x224 input (about 62 M parameters with 1000 classes)."""
    return ZFNet(num_classes, 224, (96, 256, 384, 384, 256), ZFNET_CONVS, 4096, dropout)


@register_model("zfnet-mini")
def zfnet_mini(num_classes: int = 1000, image_size: int = 64, dropout: float = 0.5) -> ZFNet:
    """ZFNet's pattern for small images (64x64 by default), trainable on a laptop CPU in minutes.

    conv1 is 7x7 stride 2 as in the paper; conv2 keeps stride 1 so that conv3-5 still see 8x8 maps
    at 64x64 input (ZFNet's are 13x13). Feature-map widths at 64x64: 32, 16, 16, 8, 8, 8, 8, 4.

    >>> feature_map_sizes(64, MINI_CONVS)
    [32, 16, 16, 8, 8, 8, 8, 4]
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size={image_size!r}: zfnet-mini needs an int of at least 32 pixels")
    return ZFNet(num_classes, image_size, (32, 64, 96, 96, 64), MINI_CONVS, 512, dropout)
