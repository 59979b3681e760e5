"""Top-9 projections: engines, receptive-field boxes and energy fractions against direct computation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deconvlab.analyses.topgrid import (
    energy_fractions,
    project_dataset_units,
    project_fast,
    strongest_channels,
)
from deconvlab.engine import project


class Doubling(nn.Module):
    """A module the mirror engine does not know (autograd handles anything)."""

    def forward(self, x):
        return 2 * x


def small_net(extra: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)]
    layers += [extra] if extra is not None else []
    layers += [nn.Conv2d(4, 5, 3), nn.ReLU()]
    return nn.Sequential(*layers)


class ToyData:
    """Dataset-like: ``data[i] -> (image, label)`` and ``mask(i)``."""

    def __init__(self, n: int = 4, size: int = 12) -> None:
        self.images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
        self.masks = np.zeros((n, size, size), dtype=bool)
        self.masks[:, 2:8, 3:9] = True

    def __getitem__(self, i):
        return self.images[i], 0

    def __len__(self):
        return len(self.images)

    def mask(self, i):
        return self.masks[i]


def test_project_fast_equals_the_autograd_engine_with_and_without_mirror_support():
    x = torch.randn(2, 3, 12, 12)
    units = torch.tensor([[0, 1, 1, 2], [1, 4, 2, 0], [1, 0, 0, 0]])
    for net, layer in [(small_net(), "3"), (small_net(Doubling()), "4")]:
        for rule in ("deconvnet", "guided"):
            expected = project(net, x, layer, units, rule=rule, engine="autograd")
            torch.testing.assert_close(
                project_fast(net, x, layer, units, rule=rule), expected, rtol=1e-5, atol=1e-6
            )


def test_project_dataset_units_measures_fractions_inside_boxes_and_masks():
    net, data = small_net(), ToyData()
    units = np.array([[2, 1, 0, 0], [0, 3, 2, 2], [2, 4, 1, 3]])  # dataset indices, in any order
    found = project_dataset_units(net, data, "3", units, rules=("deconvnet", "gradient"))
    # conv1 3x3 pad 1, pool 3/2, conv2 3x3: size 1 + 2 + 2 + 2 * 2 = 9, jump 2, offset -1 (the padding)
    assert found.field_size == (9, 9)

    def clipped(position):
        start = -1 + 2 * position
        return max(start, 0), min(start + 9, 12)

    expected = [(*clipped(y), *clipped(x)) for _, _, y, x in units]
    np.testing.assert_array_equal(found.boxes, expected)
    for m, (image, channel, y, x) in enumerate(units):
        direct = project(net, data.images[image : image + 1], "3", [[0, channel, y, x]], engine="autograd")[0]
        torch.testing.assert_close(found.projections["deconvnet"][m], direct, rtol=1e-5, atol=1e-6)
        energy = (direct.double() ** 2).sum(0)
        y0, y1, x0, x1 = found.boxes[m]
        np.testing.assert_allclose(
            found.fraction_in_field[m], energy[y0:y1, x0:x1].sum() / energy.sum(), rtol=1e-6
        )
        np.testing.assert_allclose(
            found.fraction_on_object[m], energy[2:8, 3:9].sum() / energy.sum(), rtol=1e-6
        )
        np.testing.assert_allclose(found.object_share_of_field[m], data.masks[0][y0:y1, x0:x1].mean())
    np.testing.assert_allclose(found.fraction_in_field, 1.0, rtol=1e-6)  # exact backward: zero outside
    assert set(found.projections) == {"deconvnet", "gradient"}


def test_energy_fractions_and_strongest_channels_by_hand():
    projection = torch.zeros(3, 3, 3)
    projection[:, 0, 0] = 1.0  # energy 3 at (0, 0)
    projection[0, 2, 2] = 1.0  # energy 1 at (2, 2)
    mask = np.zeros((3, 3), dtype=bool)
    mask[2, 2] = True
    assert energy_fractions(projection, (0, 1, 0, 1), mask) == (0.75, 0.25)
    assert energy_fractions(torch.zeros(3, 2, 2), (0, 1, 0, 1)) == (0.0, None)
    assert strongest_channels(np.array([1.0, 5.0, 5.0, 2.0]), None) == [1, 2, 3, 0]  # ties keep channel order
