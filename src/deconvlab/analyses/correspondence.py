"""Correspondence analysis (the paper's section 4.3, Table 1): does a network locate object parts?

Occlude the same part (say the left eye) in several images of one class. For image i and layer l, let
``eps_i = x_i - x~_i`` be the layer's features of the original minus those of the occluded image. If the
layer represents the part consistently, the occlusion changes the features the same way in every image,
so the sign vectors ``sign(eps_i)`` agree. The paper's measure is

    Delta_l = sum over pairs i != j of Hamming(sign(eps_i), sign(eps_j)),

reported normalised, as a mean feature sign change. Here each pair's Hamming distance is divided by the
number of features, and the table gives the mean and the standard deviation over the unordered pairs
i < j (each unordered pair counts once; the ordered sum of the paper is twice the same numbers).
Occluding random regions is the control: a part that the network locates gives a lower Delta.

Three images with four features; the pair (0, 1) differs in one sign of four, (0, 2) in two, (1, 2) in
three:

>>> import numpy as np
>>> eps = np.array([[1.0, -2.0, 0.0, 3.0], [1.0, -1.0, 0.0, -3.0], [1.0, 2.0, 1.0, 3.0]])
>>> mean, std = sign_change(eps)
>>> round(mean, 4), round(std, 4)  # mean of 1/4, 2/4, 3/4
(0.5, 0.2041)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from deconvlab.analyses.features import layer_features

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


def pairwise_sign_changes(eps) -> np.ndarray:
    """Normalised Hamming distance of ``sign(eps_i)`` and ``sign(eps_j)`` for every pair i < j.

    ``eps`` is (N, ...) with N >= 2; every sample is flattened to D features.
    """
    eps = np.asarray(eps.detach().cpu() if hasattr(eps, "detach") else eps, dtype=np.float64)
    if eps.ndim < 2 or len(eps) < 2:
        raise ValueError(f"eps must hold at least 2 samples as (N, features...); got shape {eps.shape}")
    signs = np.sign(eps.reshape(len(eps), -1))
    i, j = np.triu_indices(len(signs), k=1)
    return (signs[i] != signs[j]).mean(axis=1)


def sign_change(eps) -> tuple[float, float]:
    """Mean and standard deviation over pairs of the normalised sign change (see module docstring)."""
    changes = pairwise_sign_changes(eps)
    return float(changes.mean()), float(changes.std())


def occlude(images: torch.Tensor, boxes: Sequence[Box], value: float = 0.0) -> torch.Tensor:
    """A copy of ``images`` (N, C, H, W) with box i of each image i set to ``value``."""
    if len(boxes) != len(images):
        raise ValueError(f"boxes must hold one box per image: {len(boxes)} boxes for {len(images)} images")
    out = images.clone()
    for image, (y0, y1, x0, x1) in zip(out, boxes, strict=True):
        image[:, y0:y1, x0:x1] = value
    return out


def random_boxes(sizes: Sequence[tuple[int, int]], regions: Sequence[Box], *, seed: int = 0) -> list[Box]:
    """One box per image, of the given (height, width), placed uniformly at random inside a region.

    The region of image i (y0, y1, x0, x1) bounds the whole box when it is large enough; otherwise the box
    is centred on it. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    boxes = []
    for (h, w), (ry0, ry1, rx0, rx1) in zip(sizes, regions, strict=True):
        y0 = int(rng.integers(ry0, ry1 - h + 1)) if ry1 - ry0 >= h else (ry0 + ry1 - h) // 2
        x0 = int(rng.integers(rx0, rx1 - w + 1)) if rx1 - rx0 >= w else (rx0 + rx1 - w) // 2
        boxes.append((y0, y0 + h, x0, x0 + w))
    return boxes


def correspondence_table(
    model: nn.Module,
    images: torch.Tensor,
    part_boxes: Mapping[str, Sequence[Box]],
    taps: Sequence[str],
    *,
    random_draws: Sequence[Sequence[Box]] = (),
    baseline: float = 0.0,
) -> list[dict]:
    """Rows ``{"layer", "part", "mean", "std"}``: the sign change of each part's occlusion at each tap.

    ``part_boxes[part][i]`` is the box of that part in image i. ``random_draws`` holds draws of random
    boxes (one box per image each, see :func:`random_boxes`) for the control row ``"random"``: the pairs
    of every draw are pooled, so its mean estimates the expected sign change of a random occlusion with
    less noise than one draw. Features are rectified (``max(x, 0)``), as the paper's layers are after
    their ReLU.
    """
    original = _rectified(layer_features(model, images, taps))
    groups = {part: [boxes] for part, boxes in part_boxes.items()}
    if random_draws:
        groups["random"] = list(random_draws)
    rows = []
    for part, draws in groups.items():
        changes = {tap: [] for tap in taps}
        for boxes in draws:
            occluded = _rectified(layer_features(model, occlude(images, boxes, baseline), taps))
            for tap in taps:
                changes[tap].append(pairwise_sign_changes(original[tap] - occluded[tap]))
        for tap in taps:
            pooled = np.concatenate(changes[tap])
            rows.append(
                {"layer": tap, "part": part, "mean": float(pooled.mean()), "std": float(pooled.std())}
            )
    return rows


def _rectified(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {tap: value.clamp_min(0) for tap, value in features.items()}
