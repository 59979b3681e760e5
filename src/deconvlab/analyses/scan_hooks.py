"""Forward hooks for scans: each layer's strongest value and position per image and channel.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False))
>>> with torch.no_grad():
...     _ = model[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
>>> image = torch.tensor([[[[0.0, 3.0], [3.0, -5.0]]]])
>>> with channel_maxima(model, ["0"]) as seen, torch.no_grad():
...     _ = model(image)
>>> values, positions = seen.maxima["0"]
>>> values.tolist(), positions.tolist()  # channel 0: the first 3.0 (row 0, column 1); channel 1: -(-5)
([[3.0, 5.0]], [[[0, 1], [1, 1]]])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


class StopForward(Exception):
    """Raised by the last hooked layer: the rest of the network is not needed for a scan."""


def strongest_positions(output: Tensor, name: str, floor: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per image and channel: the maximum (B, C) and its (y, x), (B, C, 2); the first maximum in
    row-major order wins a tie, so the position is deterministic.

    With ``floor`` (C,), the positions are found only where the maximum is not below its channel's floor
    (a scan's current k-th value: nothing below it can enter the lists), and are (0, 0) elsewhere: the
    maxima alone cost a fifth of maxima with their positions.
    """
    if not isinstance(output, Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"layer={name!r}: output {shape} has no spatial axes; a top-k scan needs (N, C, H, W) maps"
        )
    maps = output.detach().flatten(2).float()
    values = maps.amax(dim=2)
    flat = torch.zeros(values.shape, dtype=torch.long, device=values.device)
    wanted = ~(values < floor.to(values.device)) if floor is not None else torch.ones_like(values, dtype=bool)
    rows, channels = wanted.nonzero(as_tuple=True)
    flat[rows, channels] = maps[rows, channels].argmax(dim=1)
    width = output.shape[3]
    positions = torch.stack([flat // width, flat % width], dim=-1)
    return values.cpu(), positions.cpu()


@dataclass
class Seen:
    """What the hooks saw in the current forward pass: maxima per layer, and the order they ran in."""

    maxima: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    floors: dict[str, Tensor] = field(default_factory=dict)  # per layer (C,): see strongest_positions

    def clear(self) -> None:
        self.maxima.clear()
        self.order.clear()


@contextmanager
def channel_maxima(model: nn.Module, layers: Sequence[str], stop_after: str | None = None) -> Iterator[Seen]:
    """Hook ``layers`` of ``model``; each forward pass fills ``Seen.maxima`` (clear it between passes).

    After ``stop_after`` has run, ``StopForward`` ends the forward pass early. The hooks are removed on
    exit, also after an error.
    """
    seen = Seen()

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if name in seen.maxima:
                raise ValueError(
                    f"layer={name!r}: runs more than once per forward pass; choose another layer"
                )
            seen.maxima[name] = strongest_positions(output, name, seen.floors.get(name))
            seen.shapes[name] = tuple(output.shape[1:])
            seen.order.append(name)
            if name == stop_after:
                raise StopForward

        return hook

    handles = [model.get_submodule(name).register_forward_hook(hook_for(name)) for name in layers]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode, and every submodule back in its own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
