"""Optimised images as the report and the explorer show them: 8-bit pictures and what they reach.

``deconvlab.analyses.optimize`` returns float pixels; a page shows 8-bit ones. So each optimised image is
rounded to uint8 first, and its activation is measured on those 8-bit pixels, normalised as the model's
data are: the number beside the picture is the picture's own (as ``deconvlab optimize`` writes it). The
activation is the largest value of the channel's map, the quantity a top-k scan ranks dataset images
by, so it compares directly with the channel's best dataset image.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
>>> model.input_size = (3, 16, 16)
>>> found = optimized_images(model, "0", [0, 2], steps=8)
>>> [(f.channel, f.pixels.shape, f.pixels.dtype.name, f.steps) for f in found]
[(0, (16, 16, 3), 'uint8', 8), (2, (16, 16, 3), 'uint8', 8)]
>>> ratio(3.0, 2.0), ratio(3.0, 0.0)
(1.5, None)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Optimized:
    """One channel's optimised picture (uint8 (H, W, 3)), the largest value of its map on that picture
    (``activation``), the value maximised (``objective``), the steps taken and the batch's seconds per
    channel."""

    channel: int
    pixels: np.ndarray
    activation: float
    objective: float
    steps: int
    seconds: float


def optimized_images(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    *,
    steps: int = 128,
    seed: int = 0,
    progress: bool | Callable[[int, int], object] = False,
) -> list[Optimized]:
    """Optimise one image per channel of ``layer`` in one batch (the library's default recipe and
    objective), round each to 8 bits, and measure it there."""
    from deconvlab.analyses.optimize import measure, optimize
    from deconvlab.data.transforms import normalize, statistics

    mean, std = statistics(model)
    result = optimize(
        model, layer, list(channels), steps=steps, seed=seed, mean=mean, std=std, progress=progress
    )
    pixels = to_uint8(result.pixels)
    inputs = normalize(pixels, mean, std).to(dtype=result.inputs.dtype, device=result.inputs.device)
    objective, activation = measure(model, layer, inputs, list(channels), "centre")
    seconds = result.seconds / len(result.channels)
    return [
        Optimized(channel, pixels[i], float(activation[i]), float(objective[i]), result.steps[i], seconds)
        for i, channel in enumerate(result.channels)
    ]


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), rounded.

    >>> to_uint8(torch.tensor([[[[0.0, 0.5, 1.2]]]]).expand(1, 3, 1, 3))[0, 0].tolist()
    [[0, 0, 0], [128, 128, 128], [255, 255, 255]]
    """
    scaled = pixels.detach().cpu().double().clamp(0, 1) * 255
    return scaled.round().to(torch.uint8).movedim(1, -1).contiguous().numpy()


def ratio(activation: float, dataset_max: float | None) -> float | None:
    """``activation / dataset_max``, or None where that is not a ratio (no positive dataset maximum)."""
    if dataset_max is None or not dataset_max > 0:
        return None
    return activation / dataset_max
