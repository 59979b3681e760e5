"""Top-9 grids (the paper's Fig. 2): project a dataset's strongest activations and measure where they fall.

The streaming scan (``deconvlab.analyses.scan``) finds, for each channel, the k dataset images and
positions with the strongest activations. This module projects those units to pixel space with the
deconvnet (and, as an option, guided backpropagation and the gradient), finds each unit's receptive
field, and measures two things the paper's figures only show:

- ``fraction_in_field``: the share of the projection's energy (sum of squares over colour channels)
  inside the unit's receptive field. The exact backward pass is zero outside it, so this checks the
  receptive-field arithmetic against the engine and is 1 up to rounding;
- ``fraction_on_object``: the share of the energy on the object's mask (where the dataset has masks),
  against ``object_share_of_field``, the share of the receptive field the object covers, which is what
  a projection spread evenly over the field would give.

>>> import torch
>>> projection = torch.zeros(3, 4, 4)
>>> projection[0, 1, 1], projection[1, 3, 3] = 3.0, 1.0  # energies 9 and 1
>>> mask = torch.zeros(4, 4, dtype=torch.bool)
>>> mask[:2, :2] = True
>>> energy_fractions(projection, (0, 2, 0, 2), mask)
(0.9, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deconvlab.engine import project, receptive_field

Box = tuple[int, int, int, int]


def energy_fractions(projection: torch.Tensor, box: Box, mask=None) -> tuple[float, float | None]:
    """Shares of a projection's energy (C, H, W) inside ``box`` (y0, y1, x0, x1) and on ``mask`` (H, W)."""
    energy = (projection.double() ** 2).sum(dim=0)
    total = float(energy.sum())
    if total == 0.0:
        return 0.0, (0.0 if mask is not None else None)
    y0, y1, x0, x1 = box
    inside = float(energy[y0:y1, x0:x1].sum()) / total
    on_object = None if mask is None else float(energy[torch.as_tensor(mask, dtype=torch.bool)].sum()) / total
    return inside, on_object


def strongest_channels(top_values: np.ndarray, count: int | None) -> list[int]:
    """The ``count`` channels whose strongest activation is largest (all channels when None), strongest first.

    >>> strongest_channels(np.array([0.5, 3.0, 1.0]), 2)
    [1, 2]
    """
    order = np.argsort(-np.asarray(top_values, dtype=np.float64), kind="stable")
    return [int(c) for c in (order if count is None else order[:count])]


@dataclass
class UnitProjections:
    """Projections of units of one layer, which live in dataset images.

    ``units`` (M, 4): dataset image index, channel, y, x. ``boxes`` (M, 4): each unit's receptive field
    (y0, y1, x0, x1), clipped to the image; ``field_size`` its unclipped (height, width).
    ``projections[rule]`` (M, C, H, W).
    """

    layer: str
    units: np.ndarray
    values: np.ndarray
    boxes: np.ndarray
    projections: dict[str, torch.Tensor]
    fraction_in_field: np.ndarray
    fraction_on_object: np.ndarray | None = None
    object_share_of_field: np.ndarray | None = None
    field_size: tuple[int, int] = (0, 0)

    def summary(self) -> dict:
        """Mean fractions over the units, JSON-ready."""
        out = {"units": len(self.units), "fraction_in_field": float(np.mean(self.fraction_in_field))}
        if self.fraction_on_object is not None:
            out["fraction_on_object"] = float(np.mean(self.fraction_on_object))
            out["object_share_of_field"] = float(np.mean(self.object_share_of_field))
        return out


def project_dataset_units(
    model: nn.Module,
    dataset,
    layer: str,
    units: np.ndarray,
    values: np.ndarray | None = None,
    *,
    rules: Sequence[str] = ("deconvnet",),
) -> UnitProjections:
    """Project units (M rows of dataset image index, channel, y, x) of ``layer`` with each rule.

    Each distinct image is loaded once (``dataset[i][0]``); masks come from ``dataset.mask(i)`` when
    the dataset has them. Fractions are measured on the first rule's projections.
    """
    units = np.asarray(units, dtype=np.int64).reshape(-1, 4)
    images, local = np.unique(units[:, 0], return_inverse=True)
    batch = torch.stack([dataset[int(i)][0] for i in images])
    rows = np.column_stack([local, units[:, 1:]])
    projections = {rule: project_fast(model, batch, layer, rows, rule=rule).detach().cpu() for rule in rules}
    field_of = receptive_field(model, layer, tuple(batch.shape[1:]))
    boxes = np.array([field_of.box(int(y), int(x)) for y, x in units[:, 2:]], dtype=np.int64).reshape(-1, 4)
    masks = _masks(dataset, images)
    first = projections[rules[0]]
    in_field, on_object, share = [], [], []
    for m, box in enumerate(boxes):
        mask = None if masks is None else masks[local[m]]
        inside, on = energy_fractions(first[m], tuple(box), mask)
        in_field.append(inside)
        if mask is not None:
            on_object.append(on)
            y0, y1, x0, x1 = box
            share.append(float(mask[y0:y1, x0:x1].float().mean()) if y1 > y0 and x1 > x0 else 0.0)
    has_masks = masks is not None
    return UnitProjections(
        layer,
        units,
        np.zeros(len(units)) if values is None else np.asarray(values, dtype=np.float64),
        boxes,
        projections,
        np.array(in_field),
        np.array(on_object) if has_masks else None,
        np.array(share) if has_masks else None,
        tuple(int(v) for v in field_of.size),
    )


def project_fast(model: nn.Module, inputs: torch.Tensor, layer: str, units, *, rule: str = "deconvnet"):
    """``deconvlab.engine.project`` with the batched ``"mirror"`` engine where the model allows it.

    The mirror engine projects all units of a chunk in one pass (tens of times faster than the
    per-unit autograd engine on small networks); for a model with a module the mirror does not know,
    it raises a ValueError and the autograd engine, which handles any model, is used instead. The two
    engines agree to float32 tolerance (``deconvlab.engine``'s tests).
    """
    try:
        return project(model, inputs, layer, units, rule=rule, engine="mirror")
    except ValueError:
        return project(model, inputs, layer, units, rule=rule, engine="autograd")


def _masks(dataset, images: np.ndarray) -> list[torch.Tensor] | None:
    if not hasattr(dataset, "mask"):
        return None
    return [torch.as_tensor(np.asarray(dataset.mask(int(i))), dtype=torch.bool) for i in images]
