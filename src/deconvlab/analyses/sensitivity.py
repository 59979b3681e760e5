"""Occlusion sensitivity panels (the paper's Fig. 7) and the pointing game that checks them.

For each image, a grey square slides over it (``deconvlab.analyses.occlusion.occlusion_map``) and the
paper's panels are read off the result:

- (b) the total activation of the feature map of ``layer`` that is strongest for the unoccluded image,
  against the occluder's position;
- (d) the probability of the correct class;
- (e) the most probable label.

(Panel (c), the projection of that feature map, is made by ``deconvlab.engine.project``.)

The pointing game scores (d) against ground truth: an image is a hit when the occluder position with the
lowest correct-class probability has its centre on the object's mask. A 2x2 grid of 4x4 occluders, every
4 pixels, on an 8x8 image whose object fills the top-left quarter:

>>> import numpy as np
>>> probability = np.array([[[0.1, 0.9], [0.8, 0.7]]])
>>> mask = np.zeros((1, 8, 8), dtype=bool); mask[0, :4, :4] = True
>>> pointing_game(probability, mask, [0, 4], [0, 4], (4, 4))
([True], [(2, 2)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deconvlab.analyses.features import forward_with_features
from deconvlab.analyses.occlusion import occlusion_map


@dataclass(frozen=True)
class OcclusionPanels:
    """Fig. 7's maps for N images over Py x Px occluder positions (top-left corners in pixels)."""

    strongest_channel: np.ndarray  # (N,) the feature map of ``layer`` strongest for the unoccluded image
    strongest_position: np.ndarray  # (N, 2) where that map peaks (y, x) in the unoccluded image
    activation: np.ndarray  # (N, Py, Px) panel (b): that map's total activation
    true_probability: np.ndarray  # (N, Py, Px) panel (d)
    predicted: np.ndarray  # (N, Py, Px) panel (e)
    positions_y: np.ndarray
    positions_x: np.ndarray
    window: tuple[int, int]
    stride: tuple[int, int]


def occlusion_panels(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int],
    *,
    layer: str,
    window: int | tuple[int, int],
    stride: int | tuple[int, int],
    baseline: float = 0.0,
) -> OcclusionPanels:
    """Panels (b), (d) and (e) of Fig. 7 for every image; ``layer`` should be a rectified feature map."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must hold one label per image: {tuple(labels.shape)} for {len(images)}")
    _, features = forward_with_features(model, images, [layer])
    maps = features[layer]
    if maps.ndim != 4:
        raise ValueError(f"layer={layer!r} gives shape {tuple(maps.shape)}; Fig. 7 needs a 4D feature map")
    peak = maps.flatten(2).max(dim=2)
    strongest = peak.values.argmax(dim=1)
    flat = peak.indices[torch.arange(len(images)), strongest]
    position = torch.stack([flat // maps.shape[3], flat % maps.shape[3]], dim=1)
    result = occlusion_map(model, images, window=window, stride=stride, baseline=baseline, layer=layer)
    n = torch.arange(len(images))
    probability = result.logits.softmax(dim=-1)
    return OcclusionPanels(
        strongest.numpy(),
        position.numpy(),
        result.activations[n, :, :, strongest].double().numpy(),
        probability[n, :, :, labels].double().numpy(),
        result.logits.argmax(dim=-1).numpy(),
        np.asarray(result.positions_y),
        np.asarray(result.positions_x),
        tuple(result.window),
        tuple(result.stride),
    )


def pointing_game(
    probability: np.ndarray,
    masks: np.ndarray,
    positions_y: Sequence[int],
    positions_x: Sequence[int],
    window: tuple[int, int],
) -> tuple[list[bool], list[tuple[int, int]]]:
    """For each image: is the centre of the least-probable occluder position on the mask? And that centre.

    ``probability`` (N, Py, Px) of the correct class; ``masks`` (N, H, W) bool. The centre of an occluder
    with top-left corner (y, x) is pixel (y + window_h // 2, x + window_w // 2). Ties go to the first
    position in row-major order.
    """
    probability = np.asarray(probability)
    hits, centres = [], []
    for prob, mask in zip(probability, masks, strict=True):
        iy, ix = np.unravel_index(int(np.argmin(prob)), prob.shape)
        centre = (int(positions_y[iy]) + window[0] // 2, int(positions_x[ix]) + window[1] // 2)
        hits.append(bool(np.asarray(mask)[centre]))
        centres.append(centre)
    return hits, centres
