"""Receptive fields computed from the model: which input pixels a unit of a layer can see.

Along each spatial axis unit ``y`` of a layer sees the input interval
``[offset + y * jump, offset + y * jump + size)``. Going up one window (a convolution or pool) with
kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (Dumoulin & Visin 2016; Araujo et al. 2019)::

    size   += d * (k - 1) * jump      # the window spans d(k-1)+1 positions of the layer below
    offset -= p * jump                # padding shifts the first window up/left
    jump   *= s                       # neighbouring units are s positions apart below

The fields are followed through the graph of one forward pass of a zero image (``deconvlab.engine.graph``:
every torch function called on a tensor computed from the image), so any model works, chain or not:
modules or ``F.relu``, residual additions, concatenations. Each such value gets its field; a function's
output gets:

- ``conv2d``, ``max_pool2d``, ``avg_pool2d``: the window rule above; ``pad`` (what a Conv2d with
  ``padding_mode="reflect"`` calls first) shifts the offset by the padding before;
- the same map size as its inputs (ReLU, BatchNorm, local response norm, dropout, an addition, a
  concatenation of channels, ...): the union of its inputs' fields, so a residual block sees as far as
  its wider branch (and after a concatenation every channel gets the widest branch's field); a
  permutation of the axes (ConvNeXt's channels-last blocks: ``permute``, then ``layer_norm`` and
  ``linear`` over the channels) keeps the field and moves the map's axes;
- a normalisation by statistics over every position (``group_norm``, ``instance_norm``, a
  ``layer_norm`` over the map's axes): the whole image, which each of its units depends on;
- no map any more, or a global one (flatten, linear, adaptive or global pooling, a mean): the whole
  image, as does anything an input seeing the whole image enters;
- a map of another size by any other function (interpolate, cropping, transposed convolution): a
  ValueError naming the function.

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
from deconvlab.engine._model import axes_after, frozen_eval
from deconvlab.engine.graph import Graph, Node, Value, capture

# torch functions that slide a window: the names of their arguments after the input, with defaults
WINDOW_ARGUMENTS = {
    "conv2d": (("weight", None), ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1)),
    "max_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1)),
    "max_pool2d_with_indices": (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1)),
    "avg_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0)),
}


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

    Follows the graph of one forward pass of a zero image up to the layer's first call (see the module
    docstring); raises a ValueError naming any function that changes a map's size in a way it does not know.
    """
    graph = _capture(model, layer, input_size)
    if graph.output is None:
        raise ValueError(f"layer={layer!r}: its output does not depend on the input image")
    field = _fields(graph)[graph.output]
    if isinstance(field, str):
        raise ValueError(field)
    return _as_receptive_field(field, graph.shapes[0][2:])


def receptive_fields(model: nn.Module, input_size: Sequence[int]) -> dict[str, ReceptiveField | str]:
    """The field of every module's first output in one forward pass (``receptive_field`` for all).

    A module whose field cannot be followed maps to the one-line reason instead, as does every module
    whose output depends on the first function whose geometry is unknown.

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Conv2d(8, 8, 3), nn.Flatten())
    >>> fields = receptive_fields(model, (3, 15, 15))
    >>> fields["1"].size, fields["1"].jump, fields["2"].size
    ((7, 7), (2, 2), (15, 15))
    """
    graph = _capture(model, "", input_size)
    fields, image_size = _fields(graph), graph.shapes[0][2:]
    found: dict[str, ReceptiveField | str] = {}
    for name, value in graph.module_outputs.items():
        if not name:
            continue
        if value is None:
            found[name] = "its output does not depend on the input image"
        elif isinstance(fields[value], str):
            found[name] = fields[value].splitlines()[0]
        else:
            found[name] = _as_receptive_field(fields[value], image_size)
    return found


def _capture(model: nn.Module, layer: str, input_size: Sequence[int]) -> Graph:
    """The graph of one forward pass of a zero image of ``input_size`` up to ``layer``."""
    channels, height, width = _check_input_size(input_size)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    with frozen_eval(model), torch.no_grad():
        return capture(model, torch.zeros(1, channels, height, width, device=device), layer)


def _as_receptive_field(field, input_size: tuple[int, int]) -> ReceptiveField:
    size, jump, offset = field
    if jump is None:  # the whole image
        return ReceptiveField(input_size, (0, 0), (0, 0), input_size)
    return ReceptiveField(size, jump, offset, input_size)


WHOLE_IMAGE = (None, None, None)  # the field of a value that depends on every pixel
PERMUTATIONS = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"}
STATISTICS_OF_THE_MAP = {"group_norm", "instance_norm"}  # a mean and variance over all positions


def _normalises_map(args, kwargs, axes: tuple[int, int]) -> bool:
    """Whether a layer_norm's statistics run over a map axis (its normalized_shape covers one)."""
    shape = args[1] if len(args) > 1 else kwargs["normalized_shape"]
    return 4 - len(tuple(shape) if isinstance(shape, list | tuple) else (shape,)) <= max(axes)


def _fields(graph: Graph) -> list:
    """Each value's field ``(size, jump, offset)``, each a (y, x) pair, or ``WHOLE_IMAGE`` (see the module
    docstring), or the reason it is unknown (a string), in the graph's nodes' order."""
    fields: list = [None] * len(graph.shapes)
    fields[0] = ((1, 1), (1, 1), (0, 0))
    axes = {}  # a permuted map's (row axis, column axis); default (2, 3)
    for node in graph.nodes:
        reasons = [fields[i] for i in node.inputs if isinstance(fields[i], str)]
        if reasons:
            field = reasons[0]
        else:
            out_axes = _axes_after(graph, node, axes.get(node.inputs[0], (2, 3)))
            try:
                field = _field(graph, node, [fields[i] for i in node.inputs], axes, out_axes)
            except ValueError as error:
                field = str(error)
            if out_axes != (2, 3):
                axes.update(dict.fromkeys(node.outputs, out_axes))
        for value in node.outputs:
            fields[value] = field
    return fields


def _reads_first(node: Node) -> bool:
    """Whether the node's first argument is the first value it reads (the map a window slides over)."""
    return bool(node.args) and node.args[0] == Value(node.inputs[0])


def _axes_after(graph: Graph, node: Node, axes: tuple[int, int]) -> tuple[int, int]:
    """Where the map's rows and columns are in the node's output: moved by a permutation of the axes
    (ConvNeXt's channels-last blocks), else where they were in its first input."""
    shape, out = graph.shapes[node.inputs[0]], graph.shapes[node.outputs[0]]
    if node.function not in PERMUTATIONS or not len(shape) == len(out) == 4 or not _reads_first(node):
        return axes
    where = axes_after(node.func, (torch.empty(shape, device="meta"), *node.args[1:]), node.kwargs)
    return tuple(where[axis] for axis in axes)


def _field(graph: Graph, node: Node, fields: list, axes: dict, out_axes: tuple[int, int]):
    """The field of the node's outputs from its inputs' ``fields``; a ValueError if it is unknown."""
    name, args, kwargs = node.function, node.args, node.kwargs
    shapes, out = [graph.shapes[i] for i in node.inputs], graph.shapes[node.outputs[0]]
    if len(out) != 4 or any(len(shape) != 4 for shape in shapes) or WHOLE_IMAGE in fields:
        return WHOLE_IMAGE
    if name in STATISTICS_OF_THE_MAP or (name == "layer_norm" and _normalises_map(args, kwargs, out_axes)):
        return WHOLE_IMAGE  # normalised by statistics over every position: each unit sees them all
    if name in WINDOW_ARGUMENTS and _reads_first(node):
        return _through_window(fields[0], window_of_call(name, args, kwargs))
    if name == "pad" and _reads_first(node):  # Conv2d's reflect/replicate padding, crops
        pad = args[1] if len(args) > 1 else kwargs["pad"]
        size, jump, offset = fields[0]
        before = (pad[2] if len(pad) > 2 else 0, pad[0])  # (top, left); negative crops
        return size, jump, tuple(o - b * j for o, b, j in zip(offset, before, jump, strict=True))
    in_sizes = [tuple(graph.shapes[i][axis] for axis in axes.get(i, (2, 3))) for i in node.inputs]
    out_size = tuple(out[axis] for axis in out_axes)
    if all(size == out_size for size in in_sizes):
        return _union(fields, name)
    if out_size == (1, 1) or name.startswith("adaptive_"):
        return WHOLE_IMAGE
    raise ValueError(
        f"receptive_field: the torch function {name!r} turns a {in_sizes[0]} map into a {out_size} one, "
        f"and its geometry is unknown (known windows: {', '.join(WINDOW_ARGUMENTS)}; same-size "
        "functions; global ones)"
    )


def _through_window(field, window):
    """A field one window up: per axis, the rule in the module docstring."""
    size, jump, offset = (list(part) for part in field)
    for axis, (kernel, stride, padding, dilation) in enumerate(zip(*window, strict=True)):
        size[axis] += dilation * (kernel - 1) * jump[axis]
        offset[axis] -= padding * jump[axis]
        jump[axis] *= stride
    return tuple(size), tuple(jump), tuple(offset)


def _union(fields: list, name: str):
    """The smallest field holding every one of ``fields`` (which must have the same jumps)."""
    jumps = {field[1] for field in fields}
    if len(jumps) > 1:
        raise ValueError(
            f"receptive_field: {name!r} combines maps whose units are {sorted(jumps)} input pixels apart; "
            "their union is no single window"
        )
    low = tuple(min(field[2][axis] for field in fields) for axis in range(2))
    high = tuple(max(field[2][axis] + field[0][axis] for field in fields) for axis in range(2))
    return tuple(h - lo for h, lo in zip(high, low, strict=True)), jumps.pop(), low


def window_of_call(name: str, args, kwargs):
    """(kernel, stride, padding-before, dilation), each a (y, x) pair, of a call of a windowed function
    (``WINDOW_ARGUMENTS``; ``args[0]`` its input); a ValueError for arguments that are no such window.

    >>> window_of_call("max_pool2d", (None, 3), {"stride": [2], "padding": 1})
    ((3, 3), (2, 2), (1, 1), (1, 1))
    """
    values = dict(zip((n for n, _ in WINDOW_ARGUMENTS[name]), args[1:], strict=False))
    values = {n: kwargs.get(n, values.get(n, default)) for n, default in WINDOW_ARGUMENTS[name]}
    kernel = values["weight"].shape[-2:] if name == "conv2d" else values["kernel_size"]
    return _window(kernel, values["stride"], values["padding"], values.get("dilation", 1))


def window_parameters(module: nn.Module, input_size: Sequence[int]):
    """(kernel, stride, padding-before, dilation), each a (y, x) pair, of a Conv2d or 2D pool."""
    stride = module.stride if module.stride is not None else module.kernel_size
    return _window(module.kernel_size, stride, module.padding, getattr(module, "dilation", 1))


def _window(kernel, stride, padding, dilation):
    kernel = _pair(tuple(kernel) if isinstance(kernel, torch.Size) else kernel, "kernel_size")
    stride = _pair(stride if stride not in (None, []) else kernel, "stride")
    dilation = _pair(dilation, "dilation")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # PyTorch pads d(k-1)//2 before, the rest after
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return kernel, stride, _pair(padding, "padding"), dilation


def _pair(value, name: str) -> tuple[int, int]:
    """(y, x) of an int or a sequence of two; a sequence of one stands for both, as PyTorch reads it."""
    return as_tuple(value[0] if isinstance(value, list | tuple) and len(value) == 1 else value, 2, name)


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(input_size) if isinstance(input_size, Sequence | torch.Size) else ()
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(
            f"input_size={input_size!r}: expected (channels, height, width), three positive ints"
        )
    return values
