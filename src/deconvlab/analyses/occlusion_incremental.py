"""Exact incremental occlusion: recompute only what the occluder can change (the idea of Krypton).

Nakandala, Kumar and Papakonstantinou, "Incremental and Approximate Inference for Faster Occlusion-based
Deep CNN Explanations" (SIGMOD 2019). An occluder changes a box of input pixels. A convolution or pooling
output reads a window of its input, so the outputs that can change form a box too::

    output o reads inputs  o*s - p  ...  o*s - p + d*(k-1)      (kernel k, stride s, padding p, dilation d)
    inputs lo..hi change   ->  outputs ceil((lo + p - d*(k-1)) / s) ... floor((hi + p) / s)

The model is read once by ``deconvlab.engine.graph.capture``: the torch functions its forward pass calls
on values (tensors computed from the image), in call order. Walking them, every value gets its changed
box for every occluder position:

- ``conv2d``, ``max_pool2d``, ``avg_pool2d``: the box above, padding read as a fill value (0, -inf);
- ``pad`` (constant, reflect, replicate, circular): the padded pixels that copy a changed one;
- pointwise functions of one value (ReLU and friends, batch norm and dropout in eval mode, local
  response norm, arithmetic with a number or a per-channel tensor): the same box;
- functions of several values of one size (a residual ``add``, ``cat`` of channels, ``mul`` of two
  maps): the union of their boxes; each input's crop over it is its unoccluded map with its own box
  pasted in.

Only the box is recomputed, from crops of the unoccluded maps with the inputs' boxes pasted in. A value
whose box covers its whole map, or any other function (flatten, linear, a global pool...), ends the
incremental part there; the other nodes, the tail, are called again (``graph.fill``) on the patched maps,
in the order of the forward pass. A block of ResNet, say:

>>> from torch import nn
>>> class Block(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
...         self.relu, self.head = nn.ReLU(inplace=True), nn.Linear(3, 2)
...     def forward(self, x):
...         y = self.conv2(self.relu(self.conv1(x))) + x
...         return self.head(y.mean(dim=(2, 3)))
>>> corners = torch.tensor([[0, 0], [0, 8], [8, 8]])
>>> plan = plan_incremental(Block().eval(), torch.zeros(1, 3, 32, 32), corners, (4, 4), None, batch=2)
>>> plan.layer_names, plan.boxes[plan.steps[-1].output].size  # 4x4 + two 3x3 convs: 8x8
(('conv1', 'relu', 'conv2', 'add'), (8, 8))

Boxes have one size per value for every position (the largest, shifted inwards at the borders), so the
crops of a batch of positions stack into one tensor and each node runs once per batch.

The tail calls the functions with the Python ints they were captured with: ``x.view(x.size(0), -1)``
captured on one image is ``view(1, -1)``. So the graph is captured on one and on two copies of the
image; if the two graphs differ other than in their values' first axis, it is captured again on as many
copies as a batch has positions, and a last, smaller batch is padded to that size for the tail. A
forward pass that reads values other than as tensors (``if x.sum() > 0``, ``x.item()``) or writes
behind the graph's back (into a slice, in place through a view) cannot be replayed: ``plan_incremental``
returns None, the caller recomputes it in full, and ``why_not_incremental`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deconvlab.engine._model import this_thread_only
from deconvlab.engine.graph import Graph, Node, Value, capture, fill
from deconvlab.engine.receptive import window_of_call

# functions of one value that map each pixel on its own
_POINTWISE = frozenset(
    {
        *("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "prelu"),
        *("elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "softplus", "softsign"),
        *("hardswish", "hardsigmoid", "sigmoid", "sigmoid_", "tanh", "tanh_", "threshold", "threshold_"),
        *("clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "clip", "clip_"),
        *("abs", "neg", "exp", "sqrt", "rsqrt", "square", "contiguous", "clone", "detach", "float"),
        "local_response_norm",
    }
)
# pointwise in eval mode only: where their ``training`` argument is, and its default
_TRAINING_ARGUMENT = {
    "batch_norm": (5, False),
    "rrelu": (3, False),
    "alpha_dropout": (2, False),
    "feature_alpha_dropout": (2, False),
    "dropout": (2, True),
    "dropout1d": (2, True),
    "dropout2d": (2, True),
}
_CHANNEL_VECTORS = frozenset({"batch_norm", "prelu"})  # their tensors are (C,): one number per channel
# pointwise with numbers or per-channel tensors; of several values of one shape, a merge
_ARITHMETIC = frozenset(
    {
        *("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "maximum", "minimum"),
        *("__add__", "__radd__", "__sub__", "__rsub__", "rsub", "__mul__", "__rmul__", "__truediv__"),
        *("__rtruediv__", "pow", "__pow__"),
    }
)
_CONCATENATIONS = frozenset({"cat", "concat", "concatenate"})
# calls that read a value and return no tensor, but only its shape or layout (anything else is data)
_SHAPE_QUERIES = frozenset(
    {
        *("__get__", "size", "dim", "ndimension", "numel", "nelement", "__len__", "stride", "get_device"),
        *("is_contiguous", "is_floating_point", "is_complex", "element_size", "storage_offset", "__hash__"),
    }
)
_PARAMETERS = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool2d": (
        "input",
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ),
    "pad": ("input", "pad", "mode", "value"),
}


def affected_outputs(lo, hi, *, kernel: int, stride: int, padding: int, dilation: int) -> tuple:
    """First and last output index (unclipped) whose window reads an input in ``lo..hi`` (ints, or
    tensors of them).

    Output ``o`` reads inputs ``o*s - p .. o*s - p + d*(k-1)``. For a 3x3 stride-2 convolution with
    padding 1, inputs 10..13 reach outputs ceil((10 + 1 - 2) / 2) = 5 to floor((13 + 1) / 2) = 7:

    >>> affected_outputs(10, 13, kernel=3, stride=2, padding=1, dilation=1)
    (5, 7)
    """
    reach = dilation * (kernel - 1)
    first = -(-(lo + padding - reach) // stride)  # ceiling division
    last = (hi + padding) // stride
    return first, last


def box_starts(firsts: Tensor, lasts: Tensor, out_size: int) -> tuple[Tensor, int]:
    """One box size for all positions (the largest affected span) and each position's start.

    Boxes near the border are shifted inwards so that they stay inside the map; a larger box than
    needed recomputes a few unchanged values, which is still exact.

    >>> starts, size = box_starts(torch.tensor([0, 3, 6]), torch.tensor([2, 5, 8]), out_size=8)
    >>> starts.tolist(), size
    ([0, 3, 5], 3)
    """
    size = min(out_size, max(1, int((lasts - firsts).max()) + 1))
    return firsts.clamp(0, out_size - size), size


def padded_sources(size: int, before: int, after: int, mode: str) -> Tensor | None:
    """For each pixel of an axis of ``size`` pixels padded by ``F.pad``, the pixel it copies (-1: the
    constant), or None for an unknown mode. Reflecting 4 pixels by 2 on each side:

    >>> padded_sources(4, 2, 2, "reflect").tolist()
    [2, 1, 0, 1, 2, 3, 2, 1]
    """
    index = torch.arange(-before, size + after)
    if mode == "constant":
        return torch.where((index >= 0) & (index < size), index, -1)
    if mode == "reflect":
        return (size - 1) - ((size - 1) - index.abs()).abs()
    if mode == "replicate":
        return index.clamp(0, size - 1)
    if mode == "circular":
        return index % size
    return None


@dataclass(frozen=True)
class _Box:
    """Each occluder position's changed box in one map: its top-left corner in ``starts`` (positions,
    2) and one ``size`` for all."""

    starts: Tensor
    size: tuple[int, int]
    map_size: tuple[int, int]

    @property
    def full(self) -> bool:
        return self.size == self.map_size

    def span(self, axis: int) -> Tensor:
        """(positions, size[axis]): the map coordinates the box covers along ``axis``."""
        return self.starts[:, axis, None] + torch.arange(self.size[axis])

    def same(self, other: _Box) -> bool:
        return self.size == other.size and torch.equal(self.starts, other.starts)

    @classmethod
    def covering(cls, firsts: list[Tensor], lasts: list[Tensor], map_size) -> _Box:
        """The box of each position's affected spans, one per axis (unclipped first and last index)."""
        (y_starts, height), (x_starts, width) = (
            box_starts(first, last, size) for first, last, size in zip(firsts, lasts, map_size, strict=True)
        )
        return cls(torch.stack([y_starts, x_starts], dim=1), (height, width), tuple(map_size))


@dataclass
class _Assembly:
    """A region of every position's map, with the position's box pasted in, built by one
    ``index_select`` per batch. The map is kept as rows of a buffer (one per pixel, C columns): the
    unoccluded map, one row for the fill value (padding), then the boxes of a batch of ``batch``
    positions. ``index`` (positions, Ly, Lx) holds each region pixel's row in that buffer."""

    index: Tensor
    fill_row: int

    @classmethod
    def build(cls, ys: Tensor, xs: Tensor, box: _Box, batch: int) -> _Assembly:
        """``ys`` (positions, Ly) and ``xs`` (positions, Lx): the region's map coordinates, -1 or past
        the map for the fill value."""
        height, width = box.map_size
        fill_row = height * width
        inside_y, inside_x = (ys >= 0) & (ys < height), (xs >= 0) & (xs < width)
        box_ys, box_xs = ys - box.starts[:, 0, None], xs - box.starts[:, 1, None]
        in_y = (box_ys >= 0) & (box_ys < box.size[0]) & inside_y
        in_x = (box_xs >= 0) & (box_xs < box.size[1]) & inside_x
        slot = torch.arange(len(ys))[:, None, None] % batch
        in_box = fill_row + 1 + (slot * box.size[0] + box_ys[:, :, None]) * box.size[1] + box_xs[:, None, :]
        in_map = torch.where(
            inside_y[:, :, None] & inside_x[:, None, :], ys[:, :, None] * width + xs[:, None, :], fill_row
        )
        return cls(torch.where(in_y[:, :, None] & in_x[:, None, :], in_box, in_map), fill_row)

    def gather(self, buffer: Tensor, positions: slice, fill: float) -> Tensor:
        """The regions (B, C, Ly, Lx) of a batch of positions (a slice aligned on the batch size), from
        the buffer of ``_buffer`` after ``_write``. The result is channels-last in memory."""
        buffer[self.fill_row] = fill
        index = self.index[positions].to(buffer.device)
        regions = buffer.index_select(0, index.reshape(-1))
        return regions.view(*index.shape, buffer.shape[1]).permute(0, 3, 1, 2)


def _buffer(clean: Tensor, box: _Box, batch: int) -> Tensor:
    """The rows of one unoccluded map (1, C, H, W), a fill row, and room for a batch of boxes."""
    channels, pixels = clean.shape[1], clean.shape[2] * clean.shape[3]
    buffer = clean.new_empty(pixels + 1 + batch * box.size[0] * box.size[1], channels)
    buffer[:pixels] = clean[0].permute(1, 2, 0).reshape(pixels, channels)
    return buffer


def _write(buffer: Tensor, box: _Box, patch: Tensor) -> None:
    """Put a batch's boxes (B, C, h, w) after the map and fill rows of ``buffer``."""
    first = box.map_size[0] * box.map_size[1] + 1
    rows = len(patch) * box.size[0] * box.size[1]
    buffer[first : first + rows].view(len(patch), *box.size, -1).copy_(patch.permute(0, 2, 3, 1))


def _paste(buffer: Tensor, box: _Box, count: int, positions: slice) -> Tensor:
    """Whole maps (B, C, H, W), contiguous as the forward pass made them: the unoccluded map with each
    position's box (as ``_write`` left it in ``buffer``) pasted in."""
    (height, width), (box_height, box_width) = box.map_size, box.size
    first = height * width + 1
    patch = buffer[first : first + count * box_height * box_width].view(count, box_height, box_width, -1)
    clean = buffer[: height * width].view(1, height, width, -1).permute(0, 3, 1, 2)
    maps = clean.expand(count, -1, -1, -1).contiguous()
    starts = box.starts[positions].to(buffer.device)
    ys = starts[:, 0, None, None] + torch.arange(box_height, device=buffer.device)[:, None]
    xs = starts[:, 1, None, None] + torch.arange(box_width, device=buffer.device)
    maps.permute(0, 2, 3, 1)[torch.arange(count, device=buffer.device)[:, None, None], ys, xs] = patch
    return maps


@dataclass(frozen=True)
class _Window:
    """A convolution or pooling read as windows; ``run`` applies it to a crop that holds its padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]  # before the first pixel; the end follows from the output size
    dilation: tuple[int, int]
    fill: float
    run: Callable[[Tensor], Tensor]

    def reach(self, axis: int) -> int:
        """How far past its first input a window reaches: d*(k-1)."""
        return self.dilation[axis] * (self.kernel[axis] - 1)


def _arguments(node: Node) -> dict:
    """The node's arguments by name (functions of ``_PARAMETERS`` only)."""
    return {**dict(zip(_PARAMETERS[node.function], node.args, strict=False)), **node.kwargs}


def _window_of(node: Node) -> _Window | None:
    """The window of a ``conv2d``, ``max_pool2d`` or ``avg_pool2d`` node that reads one value (its
    input), else None."""
    arguments = _arguments(node)
    if not isinstance(arguments.get("input"), Value) or len(set(node.inputs)) != 1:
        return None
    if node.function == "conv2d" and arguments["weight"].dim() != 4:
        return None
    try:
        kernel, stride, padding, dilation = window_of_call(node.function, node.args, node.kwargs)
    except ValueError:
        return None
    if node.function == "conv2d":
        bias, groups = arguments.get("bias"), arguments.get("groups", 1)
        run = partial(
            F.conv2d, weight=arguments["weight"], bias=bias, stride=stride, padding=0, dilation=dilation,
            groups=groups,
        )  # fmt: skip
        return _Window(kernel, stride, padding, dilation, 0.0, run)
    if node.function == "max_pool2d":
        if arguments.get("return_indices", False):
            return None
        run = partial(F.max_pool2d, kernel_size=kernel, stride=stride, padding=0, dilation=dilation)
        return _Window(kernel, stride, padding, dilation, -math.inf, run)
    include_padding, divisor = arguments.get("count_include_pad", True), arguments.get("divisor_override")
    if arguments.get("ceil_mode", False) or not (include_padding or padding == (0, 0)):
        return None  # windows past the end, or padding left out of the mean: another divisor there
    run = partial(F.avg_pool2d, kernel_size=kernel, stride=stride, padding=0, divisor_override=divisor)
    return _Window(kernel, stride, padding, (1, 1), 0.0, run)


def _constants(node: Node) -> list[Tensor]:
    """The tensors among the node's arguments that are not values."""
    found: list[Tensor] = []

    def collect(item):
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, tuple | list):
            for element in item:
                collect(element)
        elif isinstance(item, dict):
            for element in item.values():
                collect(element)

    collect((node.args, node.kwargs))
    return found


def _per_channel(tensor: Tensor) -> bool:
    """Whether ``tensor`` broadcasts against (N, C, H, W) as one number per channel at most."""
    shape = (1,) * (4 - tensor.dim()) + tuple(tensor.shape)
    return tensor.dim() <= 4 and shape[0] == shape[2] == shape[3] == 1


def _is_pointwise(graph: Graph, node: Node) -> bool:
    """Whether the node maps each pixel of its one value on its own (keeps the changed box)."""
    if len(set(node.inputs)) != 1 or graph.shapes[node.outputs[0]] != graph.shapes[node.inputs[0]]:
        return False
    if node.function in _TRAINING_ARGUMENT:
        if not _evaluating(node):
            return False
    elif node.function not in _POINTWISE and node.function not in _ARITHMETIC:
        return False
    if node.function in _CHANNEL_VECTORS:
        return all(tensor.dim() <= 1 for tensor in _constants(node))
    return all(_per_channel(tensor) for tensor in _constants(node))


def _evaluating(node: Node) -> bool:
    """Whether a function with a ``training`` argument (``_TRAINING_ARGUMENT``) runs in eval mode."""
    position, default = _TRAINING_ARGUMENT[node.function]
    return node.kwargs.get("training", node.args[position] if len(node.args) > position else default) is False


def _is_merge(graph: Graph, node: Node) -> bool:
    """Whether the node combines values of one size pixel by pixel (a residual sum of several, a
    concatenation of channels, of one or more)."""
    values = set(node.inputs)
    out = graph.shapes[node.outputs[0]]
    if node.function in _ARITHMETIC and len(values) > 1:
        return all(graph.shapes[v] == out for v in values) and all(map(_per_channel, _constants(node)))
    if node.function in _CONCATENATIONS:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        return (
            dim in (1, -3)
            and all(isinstance(item, Value) for item in tensors)
            and all(graph.shapes[v][2:] == out[2:] for v in values)
        )
    return False


@dataclass
class _Read:
    """How a step gets one value: its patch as it is (``gather`` None: the value's box is the step's;
    ``clone`` when a later step reads the patch too), or a region gathered from its buffer."""

    value: int
    gather: _Assembly | None = None
    fill: float = 0.0
    clone: bool = False


@dataclass
class _Step:
    """One node computed over boxes: its ``reads`` give ``run`` each value it reads."""

    node: Node
    name: str
    output: int
    reads: list[_Read]
    run: Callable[[dict[int, Tensor]], Tensor]
    release: list[int] = field(default_factory=list)  # patches no longer needed after this step


@dataclass
class _Clean:
    """One image's unoccluded activations, as buffers (``_buffer``) of the values read by regions."""

    buffers: dict[int, Tensor]


def _call(node: Node, values) -> object:
    """Call the node's function again, on ``values`` (a dict or list indexed by value)."""
    return node.func(*fill(node.args, values), **fill(node.kwargs, values))


@dataclass
class IncrementalPlan:
    """The captured model split into ``steps`` computed over each position's box, and a ``tail`` of
    nodes called again in full on the patched maps."""

    graph: Graph
    steps: list[_Step]
    boxes: dict[int, _Box]  # each value of the steps (and the image, 0): its box per position
    buffered: list[int]  # values read through a region or in full: their unoccluded map is kept
    pasted: list[int]  # values of the steps the tail (or the caller) reads in full
    tail: list[Node]
    layer: int | None  # the value of the layer the caller asked for, if any
    batch: int  # positions per batch: ``run`` takes slices of the positions aligned on it
    rows: int  # the batch the tail must be given (0: any): a smaller one is padded

    @property
    def layer_names(self) -> tuple[str, ...]:
        """One name per node computed incrementally: its module, or ``module.function`` when the
        module is not a leaf (``layer1.0.add_``), or the function alone in the model's own forward."""
        return tuple(step.name for step in self.steps)

    def clean_activations(self, image: Tensor) -> _Clean:
        """The unoccluded activations of one image (1, C, H, W) that ``run`` reuses."""
        values = {0: image}
        for step in self.steps:
            # a copy of each input: an in-place function must not change a map another node reads
            values[step.output] = _call(step.node, {v: values[v].clone() for v in set(step.node.inputs)})
        return _Clean({v: _buffer(values[v], self.boxes[v], self.batch) for v in self.buffered})

    def run(self, clean: _Clean, positions: slice, patch: Tensor):
        """The model's output for a batch of positions, and ``layer``'s output (or None).

        ``clean`` comes from ``clean_activations``; ``positions`` is a slice of the plan's occluder
        corners starting at a multiple of ``batch``; ``patch`` is each position's occluded input box,
        (B, C, window_h, window_w).
        """
        patches = {0: patch}
        if 0 in clean.buffers:
            _write(clean.buffers[0], self.boxes[0], patch)
        for step in self.steps:
            given = {}
            for read in step.reads:
                if read.gather is not None:
                    given[read.value] = read.gather.gather(clean.buffers[read.value], positions, read.fill)
                else:
                    given[read.value] = patches[read.value].clone() if read.clone else patches[read.value]
            patches[step.output] = step.run(given)
            if step.output in clean.buffers:
                _write(clean.buffers[step.output], self.boxes[step.output], patches[step.output])
            for value in step.release:
                del patches[value]
        values = {
            v: patches[v]
            if self.boxes[v].full
            else _paste(clean.buffers[v], self.boxes[v], len(patch), positions)
            for v in self.pasted
        }
        recorded = values[self.layer].clone() if self.layer in values else None  # the tail may change it
        return self._run_tail(values, recorded, len(patch))

    def _run_tail(self, values: dict[int, Tensor], recorded: Tensor | None, count: int):
        """Call the tail's nodes on ``values`` (``count`` positions), padded to ``rows`` positions."""
        if count < self.rows:
            values = {
                v: torch.cat([m, m[-1:].expand(self.rows - count, *m.shape[1:])]) for v, m in values.items()
            }
        last_reader = {v: i for i, node in enumerate(self.tail) for v in node.inputs}
        kept = {self.graph.output, self.layer}
        for index, node in enumerate(self.tail):
            result = _call(node, values)
            made = [
                t
                for t in (result if isinstance(result, tuple | list) else (result,))
                if isinstance(t, Tensor)
            ]
            values.update(zip(node.outputs, made, strict=True))
            if self.layer in node.outputs:
                recorded = values[self.layer].clone()  # a later in-place function must not change it
            for value in (*node.inputs, *node.outputs):  # free what no later node reads
                if last_reader.get(value, -1) <= index and value not in kept and value in values:
                    del values[value]
        return values[self.graph.output][:count], None if recorded is None else recorded[:count]


@contextmanager
def _calls(module: nn.Module) -> Iterator[list[bool]]:
    """Note, for each call of ``module`` in this thread, whether its output is one tensor."""
    calls: list[bool] = []
    handle = module.register_forward_hook(
        this_thread_only(lambda _m, _a, out: calls.append(isinstance(out, Tensor)))
    )
    try:
        yield calls
    finally:
        handle.remove()


def _replayable(problems: list[str]):
    """A ``capture`` record that notes every call reading a value that returns no tensor but data
    (``item``, ``__bool__``, ``__setitem__``...), and every in-place call on a view (it changes another
    value behind the graph's back): the graph would not replay such a pass."""

    def record(node, args, kwargs, run):
        writes = _in_place(node) or kwargs.get("inplace") is True
        if node.function in _TRAINING_ARGUMENT and "dropout" in node.function and _evaluating(node):
            writes = False  # an in-place dropout in eval mode leaves its input as it is
        if writes and args and isinstance(args[0], Tensor) and args[0]._is_view():
            problems.append(node.function)
        result = run()
        items = result if isinstance(result, tuple | list) else (result,)
        if not any(isinstance(item, Tensor) for item in items) and node.function not in _SHAPE_QUERIES:
            problems.append(node.function)
        return result, None

    return record


def _capture_for(model: nn.Module, image: Tensor, layer: str | None, rows: int) -> tuple[Graph, int] | str:
    """The graph to replay batches of up to ``rows`` positions with, and the batch its tail must be
    given (0: any), or why there is none. Captured on one and on two copies of ``image`` first: if both
    graphs call the same functions with the same arguments, the graph of one image replays any batch.
    Otherwise (an ``x.view(x.size(0), -1)``) it is captured again on ``rows`` copies, and smaller
    batches are padded."""
    one = _capture(model, image, 1, layer)
    two = _capture(model, image, 2, layer) if isinstance(one, Graph) else one
    if not isinstance(two, Graph):
        return two
    if _same_but_batch(one, two):
        return one, 0
    graph = _capture(model, image, rows, layer) if rows > 1 else one
    return (graph, rows) if isinstance(graph, Graph) else graph


def _same_but_batch(one: Graph, two: Graph) -> bool:
    """Whether graphs captured on one and two images differ only in their values' first axis."""
    if len(one.nodes) != len(two.nodes) or len(one.shapes) != len(two.shapes) or one.output != two.output:
        return False
    for first, second in zip(one.shapes, two.shapes, strict=True):
        if first[:1] != (1,) or second != (2, *first[1:]):
            return False
    return all(
        (a.function, a.func, a.inputs, a.outputs, a.module)
        == (b.function, b.func, b.inputs, b.outputs, b.module)
        and _same_arguments((a.args, a.kwargs), (b.args, b.kwargs))
        for a, b in zip(one.nodes, two.nodes, strict=True)
    )


def _same_arguments(first, second) -> bool:
    if isinstance(first, Tensor) or isinstance(second, Tensor):
        return (
            isinstance(first, Tensor)
            and isinstance(second, Tensor)
            and (first is second or (first.shape == second.shape and torch.equal(first, second)))
        )
    if isinstance(first, tuple | list) and isinstance(second, tuple | list):
        return (
            type(first) is type(second)
            and len(first) == len(second)
            and all(_same_arguments(a, b) for a, b in zip(first, second, strict=True))
        )
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_same_arguments(first[k], second[k]) for k in first)
    return type(first) is type(second) and first == second


def _capture(model: nn.Module, image: Tensor, copies: int, layer: str | None) -> Graph | str:
    """The model's graph on ``copies`` of ``image``, or why it cannot be replayed. Captured outside
    inference mode (without gradients), where tensors know whether they are views."""
    problems: list[str] = []
    with _calls(model.get_submodule(layer or "")) as calls, torch.inference_mode(False), torch.no_grad():
        try:
            images = image.expand(copies, -1, -1, -1).clone()
            graph = capture(model, images, "", _replayable(problems))
        except Exception as error:  # the full recomputation reports what is wrong with the model
            return f"its forward pass cannot be captured ({type(error).__name__}: {error})"
    if problems:
        return (
            f"its forward pass reads values other than as tensors, or writes behind the graph's back "
            f"({', '.join(dict.fromkeys(problems))}): the graph cannot be replayed"
        )
    if graph.output is None:
        return "its output is not computed from the image"
    if layer and calls != [True]:
        return f"layer {layer!r} is not called once with one tensor output"
    for node in graph.nodes:  # an in-place write or out= into a tensor that is no value: kept across batches
        if "out" in node.kwargs or (_in_place(node) and not (node.args and isinstance(node.args[0], Value))):
            return f"{node.function} writes into a tensor that is not computed from the image"
    return graph


def _in_place(node: Node) -> bool:
    return node.function.endswith("_") and not node.function.endswith("__")


def _name(graph: Graph, node: Node) -> str:
    module = graph.modules.get(node.module)
    if node.module and module is not None and next(module.children(), None) is None:
        return node.module
    return f"{node.module}.{node.function}" if node.module else node.function


def _window_step(graph: Graph, node: Node, box: _Box, batch: int) -> tuple[_Box, _Read, Callable] | None:
    window = _window_of(node)
    if window is None:
        return None
    value, out_size = node.inputs[0], graph.shapes[node.outputs[0]][2:]
    firsts, lasts = [], []
    for axis in (0, 1):
        first, last = affected_outputs(
            box.starts[:, axis],
            box.starts[:, axis] + box.size[axis] - 1,
            kernel=window.kernel[axis],
            stride=window.stride[axis],
            padding=window.padding[axis],
            dilation=window.dilation[axis],
        )
        firsts.append(first)
        lasts.append(last)
    out = _Box.covering(firsts, lasts, out_size)
    ys, xs = (
        out.starts[:, a, None] * window.stride[a]
        - window.padding[a]
        + torch.arange((out.size[a] - 1) * window.stride[a] + window.reach(a) + 1)
        for a in (0, 1)
    )
    read = _Read(value, _Assembly.build(ys, xs, box, batch), window.fill)
    return out, read, lambda given: window.run(given[value])


def _pad_step(graph: Graph, node: Node, box: _Box, batch: int) -> tuple[_Box, _Read, Callable] | None:
    arguments = _arguments(node)
    pads, mode = arguments.get("pad"), arguments.get("mode", "constant")
    if not isinstance(arguments.get("input"), Value) or len(set(node.inputs)) != 1:
        return None
    if not isinstance(pads, tuple | list) or len(pads) not in (2, 4) or any(type(p) is not int for p in pads):
        return None
    pads = (*pads, 0, 0)[:4]  # (left, right, top, bottom)
    sources = [
        padded_sources(box.map_size[0], *pads[2:], mode),
        padded_sources(box.map_size[1], *pads[:2], mode),
    ]
    if sources[0] is None:
        return None
    firsts, lasts = [], []
    for axis, source in enumerate(sources):
        lo = box.starts[:, axis, None]
        hits = (source >= lo) & (source < lo + box.size[axis])  # (positions, padded size)
        first = hits.int().argmax(dim=1)
        last = len(source) - 1 - hits.flip(1).int().argmax(dim=1)
        firsts.append(first)
        lasts.append(torch.where(hits.any(dim=1), last, first))
    value = node.inputs[0]
    out = _Box.covering(firsts, lasts, graph.shapes[node.outputs[0]][2:])
    ys, xs = (source[out.span(axis)] for axis, source in enumerate(sources))
    read = _Read(value, _Assembly.build(ys, xs, box, batch), float(arguments.get("value") or 0.0))
    return out, read, lambda given: given[value]


def _merge_step(node: Node, boxes: dict[int, _Box], batch: int) -> tuple[_Box, list[_Read], Callable]:
    values = list(dict.fromkeys(node.inputs))
    starts = torch.stack([boxes[v].starts for v in values])  # (inputs, positions, 2)
    ends = torch.stack([boxes[v].starts + torch.tensor(boxes[v].size) - 1 for v in values])
    firsts, lasts = starts.amin(dim=0), ends.amax(dim=0)
    out = _Box.covering([firsts[:, 0], firsts[:, 1]], [lasts[:, 0], lasts[:, 1]], boxes[values[0]].map_size)
    reads = [
        _Read(v)
        if boxes[v].same(out)
        else _Read(v, _Assembly.build(out.span(0), out.span(1), boxes[v], batch))
        for v in values
    ]
    return out, reads, lambda given: _call(node, given)


def _step_for(graph: Graph, node: Node, boxes: dict[int, _Box], rows: int, batch: int):
    """The step computing ``node`` over boxes, with its output's box, or None if it is no such node."""
    if (
        len(node.outputs) != 1
        or len(graph.shapes[node.outputs[0]]) != 4
        or graph.shapes[node.outputs[0]][0] != rows
    ):
        return None
    found = None
    if node.function in ("conv2d", "max_pool2d", "avg_pool2d"):
        found = _window_step(graph, node, boxes[node.inputs[0]], batch)
        found = found and (found[0], [found[1]], found[2])
    elif node.function == "pad":
        found = _pad_step(graph, node, boxes[node.inputs[0]], batch)
        found = found and (found[0], [found[1]], found[2])
    elif _is_pointwise(graph, node):
        found = boxes[node.inputs[0]], [_Read(node.inputs[0])], lambda given: _call(node, given)
    elif _is_merge(graph, node):
        found = _merge_step(node, boxes, batch)
    if found is None:
        return None
    box, reads, run = found
    return box, _Step(node, _name(graph, node), node.outputs[0], reads, run)


def plan_incremental(
    model: nn.Module, image: Tensor, corners: Tensor, window: tuple[int, int], layer: str | None, batch: int
) -> IncrementalPlan | None:
    """Split ``model`` for incremental occlusion of images shaped like ``image`` (1, C, H, W).

    ``corners`` (positions, 2) are the occluders' top-left corners, run ``batch`` at a time (slices of
    ``corners`` aligned on ``batch``). ``layer``: a module whose output the plan also returns. Returns
    None when nothing can be done incrementally (``why_not_incremental`` says why).
    """
    plan = _plan(model, image, corners, window, layer, batch)
    return plan if isinstance(plan, IncrementalPlan) else None


def why_not_incremental(model: nn.Module, image: Tensor, layer: str | None = None) -> str | None:
    """Why ``plan_incremental`` finds nothing to compute incrementally for ``model`` on images shaped
    like ``image`` (1, C, H, W), or None if it does. A model in eval mode, called in inference mode:

    >>> with torch.inference_mode():
    ...     why_not_incremental(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), torch.zeros(1, 3, 2, 2))
    'the image is first read by flatten (module 0), no convolution, pooling, padding or pointwise function'
    """
    plan = _plan(model, image, torch.zeros(1, 2, dtype=torch.long), (1, 1), layer, 1)
    return None if isinstance(plan, IncrementalPlan) else plan


def _plan(model, image, corners, window, layer, batch) -> IncrementalPlan | str:
    """``plan_incremental``'s plan, or why there is none."""
    captured = _capture_for(model, image, layer, min(batch, len(corners)))
    if isinstance(captured, str):
        return captured
    graph, rows = captured
    boxes = {0: _Box(corners.long(), tuple(window), tuple(image.shape[2:]))}
    steps, tail = [], []
    for node in graph.nodes:
        open_inputs = all(v in boxes and not boxes[v].full for v in node.inputs)
        found = _step_for(graph, node, boxes, graph.shapes[0][0], batch) if open_inputs else None
        if found is None:
            tail.append(node)
            continue
        boxes[node.outputs[0]], step = found
        steps.append(step)
    if not steps:
        first = next(node for node in graph.nodes if 0 in node.inputs)
        where = f"module {first.module}" if first.module else "the model's own forward"
        return (
            f"the image is first read by {first.function} ({where}), no convolution, pooling, padding or "
            "pointwise function"
        )
    layer_value = graph.module_outputs.get(layer) if layer else None
    if layer and layer_value is None:
        return f"layer {layer!r} does not output a tensor computed from the image"
    wanted = [v for node in tail for v in node.inputs] + [graph.output, layer_value]
    pasted = [v for v in dict.fromkeys(wanted) if v in boxes]
    gathered = {read.value for step in steps for read in step.reads if read.gather is not None}
    buffered = [v for v in boxes if v in gathered or (v in pasted and not boxes[v].full)]
    _plan_patches(steps, {v for v in pasted if boxes[v].full})
    return IncrementalPlan(graph, steps, boxes, buffered, pasted, tail, layer_value, batch, rows)


def _plan_patches(steps: list[_Step], kept: set[int]) -> None:
    """Clone a patch for a step that is not its last reader; release patches after their last reader
    (the values in ``kept`` are read in full after the steps)."""
    last = {0: -1}
    for index, step in enumerate(steps):
        last[step.output] = index
        for read in step.reads:
            if read.gather is None:
                last[read.value] = index
    for index, step in enumerate(steps):
        for read in step.reads:
            read.clone = read.gather is None and last[read.value] > index
    for value, index in last.items():
        if value not in kept and index >= 0:
            steps[index].release.append(value)
