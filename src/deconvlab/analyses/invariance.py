"""Invariance sweeps (the paper's Fig. 5): how features and the output change as an image moves.

Zeiler & Fergus translated 5 images vertically (-60 to +60 pixels of 224), scaled them (1 to 1.8) and
rotated them (0 to 350 degrees), and plotted, against the transformation's amount,

- the Euclidean distance of the layer-1 and layer-7 feature vectors from the untransformed image's, and
- the probability of the true class.

The transformations here act on normalised (N, C, H, W) tensors with ``grid_sample`` (bilinear,
``align_corners=False``); pixels brought in from outside the image are 0, the dataset mean. Integer
translations and quarter turns of square images move pixel centres onto pixel centres, so they are exact:

>>> import torch
>>> x = torch.arange(16.0).view(1, 1, 4, 4)
>>> translate(x, 1)[0, 0]  # down by one pixel
tensor([[ 0.,  0.,  0.,  0.],
        [ 0.,  1.,  2.,  3.],
        [ 4.,  5.,  6.,  7.],
        [ 8.,  9., 10., 11.]])
>>> torch.allclose(rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.analyses.features import forward_with_features


def translate(images: torch.Tensor, dy: float, dx: float = 0.0) -> torch.Tensor:
    """Move the content down by ``dy`` and right by ``dx`` pixels."""
    h, w = images.shape[-2:]
    # output(p) = input(p - d); one pixel is 2 / size in grid_sample's [-1, 1] coordinates
    return _affine(images, torch.eye(2), (-2.0 * dx / w, -2.0 * dy / h))


def scale(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Magnify the content about the image centre by ``factor`` (> 1 enlarges)."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive; got {factor!r}")
    return _affine(images, torch.eye(2) / factor, (0.0, 0.0))


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate the content about the image centre by ``degrees``, counter-clockwise as displayed."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # grid (x, y) with y pointing down: sampling at R(-t)-rotated points turns the picture by +t on screen
    return _affine(images, torch.tensor([[c, -s], [s, c]]), (0.0, 0.0))


def _affine(images: torch.Tensor, matrix: torch.Tensor, shift: tuple[float, float]) -> torch.Tensor:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
    theta = torch.cat([matrix, torch.tensor(shift).view(2, 1)], dim=1).to(images.dtype)
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


TRANSFORMS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "translation": translate,
    "scale": scale,
    "rotation": rotate,
}


def default_values(kind: str, image_size: int) -> list[float]:
    """The paper's sweep ranges, translation scaled from its 224-pixel images to ``image_size``."""
    if kind == "translation":
        reach = round(60 / 224 * image_size)
        return [float(v) for v in np.linspace(-reach, reach, 9).round()]
    if kind == "scale":
        return [float(v) for v in np.linspace(1.0, 1.8, 9)]
    if kind == "rotation":
        return [float(v) for v in range(0, 360, 30)]
    raise ValueError(f"kind must be one of {sorted(TRANSFORMS)}; got {kind!r}")


@dataclass(frozen=True)
class InvarianceCurves:
    """One sweep: ``distances[tap]`` and ``true_probability`` are (images, values)."""

    kind: str
    values: list[float]
    distances: dict[str, np.ndarray]
    true_probability: np.ndarray

    def as_dict(self) -> dict:
        """JSON-ready numbers."""
        return {
            "kind": self.kind,
            "values": list(self.values),
            "distances": {tap: d.tolist() for tap, d in self.distances.items()},
            "true_probability": self.true_probability.tolist(),
        }


def invariance_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int],
    kind: str,
    values: Sequence[float],
    taps: Sequence[str],
    *,
    batch_size: int = 64,
) -> InvarianceCurves:
    """Feature distances at ``taps`` and the true class's probability for every transformed image.

    Features are rectified (``max(x, 0)``) and flattened before the Euclidean distance is taken.
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"kind must be one of {sorted(TRANSFORMS)}; got {kind!r}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must hold one label per image: {tuple(labels.shape)} for {len(images)}")
    n, v = len(images), len(values)
    swept = torch.cat([TRANSFORMS[kind](images, value) for value in values])  # value-major
    _, reference = forward_with_features(model, images, taps, batch_size=batch_size)
    logits, features = forward_with_features(model, swept, taps, batch_size=batch_size)
    distances = {}
    for tap in taps:
        moved = features[tap].clamp_min(0).flatten(1).view(v, n, -1)
        still = reference[tap].clamp_min(0).flatten(1)
        distances[tap] = (moved - still).norm(dim=2).T.double().numpy()
    probability = logits.softmax(dim=1).view(v, n, -1)[:, torch.arange(n), labels].T
    return InvarianceCurves(kind, [float(x) for x in values], distances, probability.double().numpy())
