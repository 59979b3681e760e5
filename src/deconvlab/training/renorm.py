"""The paper's filter renormalisation (Zeiler & Fergus 2014, Sec. 3).

"We renormalize each filter in the convolutional layers whose RMS value exceeds a fixed radius of
1e-1 to this fixed radius", for input pixels in about [-128, 128]. Our input is normalised with
ImageNet's mean and std, so pixels lie in [-r, r] with r = ``input_half_range()`` = 2.64. A ReLU
network is positively homogeneous: dividing the input by 128 / r and multiplying the first layer's
weights by the same factor computes the same function. So the first conv layer's threshold is
``0.1 * 128 / r`` (= 4.85), and the deeper layers, whose inputs keep the paper's scale, keep 0.1.

>>> import torch
>>> conv = torch.nn.Conv2d(1, 2, 2)
>>> with torch.no_grad():
...     _ = conv.weight.copy_(torch.tensor([3.0, 4.0, 0.0, 0.0] + [0.01] * 4).view(2, 1, 2, 2))
>>> renormalize_filter_rms(conv.weight, 0.5)  # filter 0 has RMS 2.5: scaled by 0.5 / 2.5
1
>>> conv.weight[0].flatten().tolist(), conv.weight[1, 0, 0, 0].item()
([0.6000000238418579, 0.800000011920929, 0.0, 0.0], 0.009999999776482582)
"""

from __future__ import annotations

import torch
from torch import nn

from deconvlab.data.transforms import input_half_range

PAPER_RADIUS = 0.1
PAPER_INPUT_HALF_RANGE = 128.0


def rms_thresholds(model: nn.Module) -> dict[str, float]:
    """Threshold per conv layer (by module name): scaled for the first, the paper's for the rest."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    first = PAPER_RADIUS * PAPER_INPUT_HALF_RANGE / input_half_range()
    return {name: first if index == 0 else PAPER_RADIUS for index, name in enumerate(names)}


@torch.no_grad()
def renormalize_filter_rms(weight: torch.Tensor, threshold: float) -> int:
    """Scale every filter (``weight[k]``) whose RMS exceeds ``threshold`` back to it; return how many."""
    rms = weight.flatten(1).pow(2).mean(dim=1).sqrt()
    too_large = rms > threshold
    scale = torch.where(too_large, threshold / rms, torch.ones_like(rms))
    weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))
    return int(too_large.sum())


def renormalize_model(model: nn.Module, thresholds: dict[str, float]) -> int:
    """Apply ``renormalize_filter_rms`` to each named conv layer; return the number of filters scaled."""
    modules = dict(model.named_modules())
    return sum(renormalize_filter_rms(modules[name].weight, limit) for name, limit in thresholds.items())
