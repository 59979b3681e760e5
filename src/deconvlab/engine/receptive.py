"""Receptive fields computed from the model: which input pixels a unit of a layer can see.

Along each spatial axis a chain of convolutions and pools maps unit ``y`` of a layer to the input
interval ``[offset + y * jump, offset + y * jump + size)``. Going up one window layer with kernel ``k``,
stride ``s``, padding ``p`` and dilation ``d`` (Dumoulin & Visin 2016; Araujo et al. 2019)::

    size   += d * (k - 1) * jump      # the window spans d(k-1)+1 positions of the layer below
    offset -= p * jump                # padding shifts the first window up/left
    jump   *= s                       # neighbouring units are s positions apart below

Element-wise modules (ReLU, BatchNorm, Dropout, local response norm) change nothing. A Linear,
flatten or adaptive pool sees the whole image (its ``jump`` is 0).

>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
>>> field = receptive_field(model, "2", (3, 224, 224))
>>> field.size, field.jump, field.offset          # 7 + 2*(3-1) = 11; jump 2*2 = 4; offset -1
((11, 11), (4, 4), (-1, -1))
>>> field.box(0, 0), field.box(10, 53)             # half-open (y0, y1, x0, x1), clipped to the image
((0, 10, 0, 10), (39, 50, 211, 222))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from deconvlab.arithmetic.shapes import as_tuple
from deconvlab.engine._model import frozen_eval
from deconvlab.engine.trace import Call, trace_chain

POINTWISE = (
    nn.ReLU, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
    nn.LocalResponseNorm, nn.CrossMapLRN2d,
)  # fmt: skip
WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
GLOBAL = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Per spatial axis (y, x): ``size``, ``jump`` and ``offset``; ``input_size`` (H, W) of the image.

    Unit ``y`` sees input rows ``[offset + y * jump, offset + y * jump + size)``, clipped by ``box``.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]

    def box(self, y: int = 0, x: int = 0) -> tuple[int, int, int, int]:
        """Input box ``(y0, y1, x0, x1)`` of unit (y, x), half-open and clipped to the image."""
        (y0, y1), (x0, x1) = (
            self._interval(position, axis) for axis, position in enumerate((int(y), int(x)))
        )
        return y0, y1, x0, x1

    def _interval(self, position: int, axis: int) -> tuple[int, int]:
        start = self.offset[axis] + position * self.jump[axis]
        end = start + self.size[axis]
        limit = self.input_size[axis]
        return min(max(start, 0), limit), min(max(end, 0), limit)


def receptive_field(model: nn.Module, layer: str, input_size: Sequence[int]) -> ReceptiveField:
    """The receptive field of the units of ``layer`` for images of ``input_size`` (C, H, W).

    Computed by following one forward pass of a zero image through the model's modules (a chain of
    modules, as for the mirror engine); raises a ValueError naming any module whose geometry is unknown.
    """
    channels, height, width = _check_input_size(input_size)
    with frozen_eval(model), torch.no_grad():
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else None
        calls, _ = trace_chain(model, torch.zeros(1, channels, height, width, device=device), layer)
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    for call in calls:
        geometry = _geometry(call)
        if geometry == "global":
            return ReceptiveField((height, width), (0, 0), (0, 0), (height, width))
        for axis, (kernel, stride, padding, dilation) in enumerate(geometry):
            size[axis] += dilation * (kernel - 1) * jump[axis]
            offset[axis] -= padding * jump[axis]
            jump[axis] *= stride
    return ReceptiveField(tuple(size), tuple(jump), tuple(offset), (height, width))


def _geometry(call: Call):
    """Per-axis (kernel, stride, padding, dilation) of a call, or "global" for whole-image modules."""
    module = call.module
    if module is None:  # a reshape between modules
        return "global" if call.input_shape[1:] != call.output_shape[1:] else ()
    if isinstance(module, POINTWISE):
        return ()
    if isinstance(module, GLOBAL):
        return "global"
    if isinstance(module, WINDOWED):
        return tuple(zip(*window_parameters(module, call.input_shape[-2:]), strict=True))
    raise ValueError(
        f"module {call.name!r} ({type(module).__name__}): receptive_field does not know how this module "
        f"type maps positions; known: {', '.join(t.__name__ for t in (*WINDOWED, *POINTWISE, *GLOBAL))}"
    )


def window_parameters(module: nn.Module, input_size: Sequence[int]):
    """(kernel, stride, padding-before, dilation), each a (y, x) pair, of a Conv2d or 2D pool."""
    kernel = as_tuple(module.kernel_size, 2, "kernel_size")
    stride = as_tuple(module.stride if module.stride is not None else kernel, 2, "stride")
    dilation = as_tuple(getattr(module, "dilation", 1), 2, "dilation")
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # PyTorch pads d(k-1)//2 before, the rest after
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return kernel, stride, as_tuple(padding, 2, "padding"), dilation


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(input_size) if isinstance(input_size, Sequence | torch.Size) else ()
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(
            f"input_size={input_size!r}: expected (channels, height, width), three positive ints"
        )
    return values
