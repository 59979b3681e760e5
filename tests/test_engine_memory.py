"""Nothing stays alive after a call: no forward graph, no layer output, no growth of the process.

The leak this guards against: a ``saved_tensors_hooks`` pack that returned the saved tensor itself kept
every forward graph alive in a cycle through C++ that ``gc.collect()`` cannot see (about 130 MB per
``project`` call on torchvision's resnet50).
"""

from __future__ import annotations

import gc
import os
import weakref
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.analyses.occlusion import occlusion_map
from deconvlab.engine import project, receptive_field, strongest_units


class Net(nn.Module):
    """Module and functional ReLUs, an in-place one, overlapping max-pool, a classifier."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))))


@contextmanager
def outputs_seen(model: nn.Module):
    """Weak references to every module output of every forward pass run inside the context."""
    seen: list[weakref.ref] = []

    def hook(_module, _inputs, output):
        seen.append(weakref.ref(output))

    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


CALLS = {
    "project-autograd": lambda model, x: project(model, x, "relu2", [[0, 1, 2, 2], [1, 3, 1, 4]]),
    "project-autograd-guided": lambda model, x: project(model, x, "head.2", [[0, 1]], rule="guided"),
    "project-mirror": lambda model, x: project(model, x, "conv2", [[0, 1, 2, 2]], engine="mirror"),
    "strongest_units": lambda model, x: strongest_units(model, x, "conv2"),
    "receptive_field": lambda model, x: receptive_field(model, "conv2", tuple(x.shape[1:])),
    "occlusion_map": lambda model, x: occlusion_map(model, x, window=4, stride=4, layer="conv2"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_no_forward_pass_output_outlives_the_call(call):
    torch.manual_seed(0)
    model = Net()
    inputs = torch.randn(2, 3, 16, 16)
    with outputs_seen(model) as seen:
        for _ in range(3):
            result = CALLS[call](model, inputs)
            del result
    gc.collect()
    assert seen, "the model ran"
    alive = sum(ref() is not None for ref in seen)
    assert alive == 0, f"{alive} of {len(seen)} module outputs still alive after {call}"


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="resident memory read from Linux /proc")
@pytest.mark.parametrize("engine", ["autograd", "mirror"])
def test_resident_memory_does_not_grow_with_calls(engine):
    # the leak this guards against kept about 5 MiB per call here (measured: 60 MiB over 12 calls; two
    # forward passes of 32-channel 96 x 96 maps per call), so 10 leaked calls exceed the allowance 4x
    torch.manual_seed(0)
    model = Net(width=32)
    inputs = torch.randn(1, 3, 96, 96)
    units = [[0, 5, 20, 20]]
    for _ in range(2):  # warm up: allocator pools, lazily loaded kernels
        project(model, inputs, "relu2", units, engine=engine)
    gc.collect()
    before = resident_mib()
    for _ in range(10):
        result = project(model, inputs, "relu2", units, engine=engine)
        del result
        gc.collect()
    assert resident_mib() - before < 12
