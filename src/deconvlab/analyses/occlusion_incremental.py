"""Exact incremental occlusion: recompute only what the occluder can change (the idea of Krypton).

Nakandala, Kumar and Papakonstantinou, "Incremental and Approximate Inference for Faster Occlusion-based
Deep CNN Explanations" (SIGMOD 2019). An occluder changes a box of input pixels. A convolution or pooling
output reads a window of its input, so the outputs that can change form a box too::

    output o reads inputs  o*s - p  ...  o*s - p + d*(k-1)      (kernel k, stride s, padding p, dilation d)
    inputs lo..hi change   ->  outputs ceil((lo + p - d*(k-1)) / s) ... floor((hi + p) / s)

Layer by layer we keep the unoccluded activations, recompute only that box for each occluder position
(from a crop of the unoccluded input with the previous layer's new box pasted in) and carry the box on.
Elementwise layers (ReLU, batch norm in eval mode, local response norm, dropout in eval mode...) keep the
box. Once the box covers the whole map, or at the first layer that is not one of these (a flatten, a
linear layer, an unknown module), the rest of the model runs in full on the patched maps.

The model is read with ``torch.fx``: the part handled incrementally is the chain of such layers at the
start of the traced graph; the rest of the graph may be anything. A model that fx cannot trace, or whose
graph does not start with such a chain, has no incremental part (``plan_incremental`` returns ``None``)
and the caller recomputes it in full.

Boxes have one size per layer for every occluder position (the largest, shifted inwards at the borders),
so the crops of a batch of positions stack into one tensor and each layer runs once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from deconvlab.arithmetic.shapes import as_tuple
from deconvlab.engine._model import FX_TRACING

_POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
)
_POINTWISE_FUNCTIONS = (F.relu, torch.relu, torch.sigmoid, torch.tanh, F.leaky_relu, F.gelu, F.silu)
_POINTWISE_METHODS = ("relu", "sigmoid", "tanh")


def affected_outputs(lo: int, hi: int, *, kernel: int, stride: int, padding: int, dilation: int) -> tuple:
    """First and last output index (unclipped) whose window reads an input in ``lo..hi``.

    Output ``o`` reads inputs ``o*s - p .. o*s - p + d*(k-1)``. For a 3x3 stride-2 convolution with
    padding 1, inputs 10..13 reach outputs ceil((10 + 1 - 2) / 2) = 5 to floor((13 + 1) / 2) = 7:

    >>> affected_outputs(10, 13, kernel=3, stride=2, padding=1, dilation=1)
    (5, 7)
    """
    reach = dilation * (kernel - 1)
    first = -(-(lo + padding - reach) // stride)  # ceiling division
    last = (hi + padding) // stride
    return first, last


def box_starts(firsts: list[int], lasts: list[int], out_size: int) -> tuple[list[int], int]:
    """One box size for all positions (the largest affected span) and each position's start.

    Boxes near the border are shifted inwards so that they stay inside the map; a larger box than
    needed recomputes a few unchanged values, which is still exact.

    >>> box_starts([0, 3, 6], [2, 5, 8], out_size=8)
    ([0, 3, 5], 3)
    """
    size = min(out_size, max(1, *(last - first + 1 for first, last in zip(firsts, lasts, strict=True))))
    starts = [min(max(first, 0), out_size - size) for first in firsts]
    return starts, size


@dataclass(frozen=True)
class _Window:
    """A convolution or pooling read as windows; ``run`` applies it to an explicitly padded crop."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    fill: float
    run: Callable[[Tensor], Tensor]

    def reach(self, axis: int) -> int:
        """How far past its first input a window reaches: d*(k-1)."""
        return self.dilation[axis] * (self.kernel[axis] - 1)


def _window_of(module: nn.Module) -> _Window | None:
    """The window description of a supported conv/pool module, else None."""
    kind = type(module)
    if kind is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return _Window(
            kernel=module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            fill=0.0,
            run=lambda crop: F.conv2d(
                crop, module.weight, module.bias, module.stride, 0, module.dilation, module.groups
            ),
        )
    if kind is nn.MaxPool2d and not module.return_indices:
        kernel = as_tuple(module.kernel_size, 2, "kernel_size")
        stride = as_tuple(module.stride or module.kernel_size, 2, "stride")
        dilation = as_tuple(module.dilation, 2, "dilation")
        return _Window(
            kernel=kernel,
            stride=stride,
            padding=as_tuple(module.padding, 2, "padding"),
            dilation=dilation,
            fill=-math.inf,
            run=lambda crop: F.max_pool2d(crop, kernel, stride, 0, dilation),
        )
    if (
        kind is nn.AvgPool2d
        and as_tuple(module.padding, 2, "padding") == (0, 0)
        and not module.ceil_mode
        and module.divisor_override is None
    ):
        kernel = as_tuple(module.kernel_size, 2, "kernel_size")
        stride = as_tuple(module.stride or module.kernel_size, 2, "stride")
        return _Window(kernel, stride, (0, 0), (1, 1), 0.0, lambda crop: F.avg_pool2d(crop, kernel, stride))
    return None


def _is_pointwise(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether the node maps each spatial position on its own (keeps the changed box)."""
    if node.op == "call_module":
        if type(module) is nn.BatchNorm2d:
            return module.running_mean is not None  # eval mode with running statistics
        return type(module) in _POINTWISE_MODULES
    if node.op == "call_function":
        return node.target in _POINTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _POINTWISE_METHODS


def _node_function(gm: fx.GraphModule, node: fx.Node) -> Callable[[Tensor], Tensor]:
    """The node as a function of its single tensor input (other arguments are constants)."""

    def run(x: Tensor) -> Tensor:
        args = fx.node.map_arg(node.args, lambda _: x)
        kwargs = fx.node.map_arg(node.kwargs, lambda _: x)
        if node.op == "call_module":
            return gm.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    return run


@dataclass
class _Assembly:
    """Where each pixel of a region comes from, for every occluder position: the unoccluded map or the
    position's box. Both are rows (one per pixel, C columns) of one buffer: the unoccluded map first
    (``map_pixels`` rows), then the boxes of a batch of ``batch`` positions. ``index`` (positions, Ly, Lx)
    holds, for each region pixel, its row in that buffer, so one ``index_select`` builds a whole batch of
    regions (input crops, or output maps with the box pasted in) without a Python loop."""

    index: Tensor
    map_pixels: int
    box_pixels: int

    @classmethod
    def build(cls, region_starts: Tensor, region_size, box_starts: Tensor, box_size, map_size, batch: int):
        ys = region_starts[:, 0, None] + torch.arange(region_size[0])  # (positions, Ly)
        xs = region_starts[:, 1, None] + torch.arange(region_size[1])
        box_ys, box_xs = ys - box_starts[:, 0, None], xs - box_starts[:, 1, None]
        in_y, in_x = (box_ys >= 0) & (box_ys < box_size[0]), (box_xs >= 0) & (box_xs < box_size[1])
        from_box = in_y[:, :, None] & in_x[:, None, :]
        map_pixels = map_size[0] * map_size[1]
        row_in_batch = torch.arange(len(region_starts))[:, None, None] % batch
        in_box = (
            map_pixels + (row_in_batch * box_size[0] + box_ys[:, :, None]) * box_size[1] + box_xs[:, None, :]
        )
        in_map = ys[:, :, None] * map_size[1] + xs[:, None, :]
        return cls(torch.where(from_box, in_box, in_map), map_pixels, box_size[0] * box_size[1])

    def buffer(self, image: Tensor, batch: int) -> Tensor:
        """The rows of one unoccluded map (1, C, H, W), with room for a batch of boxes after them."""
        channels = image.shape[1]
        buffer = image.new_empty(self.map_pixels + batch * self.box_pixels, channels)
        buffer[: self.map_pixels] = image[0].permute(1, 2, 0).reshape(-1, channels)
        return buffer

    def gather(self, buffer: Tensor, box: Tensor, positions: slice) -> Tensor:
        """The regions (B, C, Ly, Lx) of a batch of positions (a slice aligned on the batch size), given
        each one's box (B, C, h, w). The result is channels-last in memory."""
        batch, channels, height, width = box.shape
        end = self.map_pixels + batch * height * width
        buffer[self.map_pixels : end].view(batch, height, width, channels).copy_(box.permute(0, 2, 3, 1))
        index = self.index[positions].to(buffer.device)
        regions = buffer[:end].index_select(0, index.reshape(-1))
        return regions.view(*index.shape, channels).permute(0, 3, 1, 2)


@dataclass
class _Step:
    """One layer of the incremental chain, with its output box for every occluder position."""

    node: fx.Node
    function: Callable[[Tensor], Tensor]
    window: _Window | None  # None: a pointwise layer
    pads: tuple[int, int, int, int]  # F.pad order (left, right, top, bottom), window layers only
    starts: Tensor  # (positions, 2): top-left corner of each position's output box
    size: tuple[int, int]  # the output box's height and width, the same for every position
    crops: _Assembly | None  # window layers: each position's input crop, in padded coordinates
    paste: _Assembly | None = None  # the output map with the box pasted in, where the caller needs it


@dataclass
class _Clean:
    """One image's unoccluded activations, as the steps read them (``_Assembly.buffer``)."""

    inputs: list[Tensor | None]  # window steps: the padded input
    outputs: list[Tensor | None]  # steps with a ``paste``: the output


@dataclass
class IncrementalPlan:
    """The traced model split into a chain of ``steps`` recomputed over boxes, and a tail run in full."""

    graph_module: fx.GraphModule
    steps: list[_Step]
    record: fx.Node | None  # the node whose output the caller asked for (``layer``), if any
    batch: int  # positions per batch: ``run`` takes slices of the positions aligned on it

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the layers computed incrementally: module paths, or fx node names for functions."""
        return tuple(str(s.node.target) if s.node.op == "call_module" else s.node.name for s in self.steps)

    def clean_activations(self, image: Tensor) -> _Clean:
        """The unoccluded activations of one image (1, C, H, W) that ``run`` reuses."""
        clean, x = _Clean([], []), image
        for step in self.steps:
            if step.window is None:
                clean.inputs.append(None)
            else:
                padded = F.pad(x, step.pads, value=step.window.fill)
                clean.inputs.append(step.crops.buffer(padded, self.batch))
            x = step.function(x.clone())  # clone: an in-place layer must not change the kept input
            clean.outputs.append(None if step.paste is None else step.paste.buffer(x, self.batch))
        return clean

    def run(self, clean: _Clean, positions: slice, patch: Tensor):
        """The model's output for a batch of positions, and ``record``'s output (or None).

        ``clean`` comes from ``clean_activations``; ``positions`` is a slice of the plan's occluder
        corners starting at a multiple of ``batch``; ``patch`` is each position's occluded input box,
        (B, C, window_h, window_w).
        """
        recorded = None
        for index, step in enumerate(self.steps):
            if step.window is None:
                patch = step.function(patch)
            else:
                patch = step.window.run(step.crops.gather(clean.inputs[index], patch, positions))
            if step.node is self.record:
                # clone: the next layer may be an in-place ReLU
                recorded = self._output_map(index, clean, patch, positions).clone()
        full = self._output_map(len(self.steps) - 1, clean, patch, positions)
        logits, in_tail = _run_tail(self.graph_module, self.steps[-1].node, full, self.record)
        return logits, recorded if recorded is not None else in_tail

    def _output_map(self, index: int, clean: _Clean, patch: Tensor, positions: slice) -> Tensor:
        """Step ``index``'s whole output map per position: the unoccluded map with the box pasted in."""
        step = self.steps[index]
        if step.paste is None:  # the box is the whole map
            return patch
        return step.paste.gather(clean.outputs[index], patch, positions)


class _TailRunner(fx.Interpreter):
    """Runs the graph after ``cut`` and keeps the output of the node ``record`` if it lies there."""

    def __init__(self, gm: fx.GraphModule, record: fx.Node | None):
        super().__init__(gm)
        self.record, self.recorded = record, None

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n is self.record:
            self.recorded = out.clone()  # the next layer may be an in-place ReLU
        return out


def _run_tail(gm: fx.GraphModule, cut: fx.Node, value: Tensor, record: fx.Node | None):
    env = {}
    for node in gm.graph.nodes:
        env[node] = None
        if node is cut:
            break
    env[cut] = value
    runner = _TailRunner(gm, record)
    return runner.run(initial_env=env), runner.recorded


def _trace(model: nn.Module) -> fx.GraphModule | None:
    try:
        with FX_TRACING.alone():  # the trace patches nn.Module for every thread
            return fx.symbolic_trace(model)
    except Exception:  # any tracing failure means: recompute in full
        return None


def _layer_node(gm: fx.GraphModule, layer: str | None) -> fx.Node | None | bool:
    """The node whose output is ``layer``'s output; False if the graph cannot tell."""
    if layer is None:
        return None
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer]
    if calls:
        return calls[0] if len(calls) == 1 else False  # a module called twice is ambiguous
    inside = {
        n for n in gm.graph.nodes if layer in (path for path, _ in n.meta.get("nn_module_stack", {}).values())
    }
    leaving = [n for n in inside if any(user not in inside for user in n.users)]
    return leaving[0] if len(leaving) == 1 else False  # a container's output is the one value leaving it


def _step_for(
    gm: fx.GraphModule, node: fx.Node, x: Tensor, y: Tensor, previous: tuple[Tensor, tuple], batch: int
):
    """The step for one layer given the previous box (starts per position, size), or None."""
    module = gm.get_submodule(node.target) if node.op == "call_module" else None
    function = _node_function(gm, node)
    if _is_pointwise(node, module):
        return _Step(node, function, None, (0, 0, 0, 0), previous[0], previous[1], None)
    window = _window_of(module) if module is not None else None
    if window is None:
        return None
    starts, size, pads = [], [], []
    for axis in (0, 1):
        firsts, lasts = zip(
            *(
                affected_outputs(
                    lo,
                    lo + previous[1][axis] - 1,
                    kernel=window.kernel[axis],
                    stride=window.stride[axis],
                    padding=window.padding[axis],
                    dilation=window.dilation[axis],
                )
                for lo in previous[0][:, axis].tolist()
            ),
            strict=True,
        )
        axis_starts, axis_size = box_starts(list(firsts), list(lasts), y.shape[2 + axis])
        starts.append(axis_starts)
        size.append(axis_size)
        stride, before = window.stride[axis], window.padding[axis]
        needed_end = (y.shape[2 + axis] - 1) * stride - before + window.reach(axis)
        pads.append((before, max(0, needed_end - (x.shape[2 + axis] - 1))))
    starts = torch.tensor(list(zip(*starts, strict=True)), dtype=torch.long).reshape(-1, 2)
    previous_starts = previous[0] + torch.tensor([pads[0][0], pads[1][0]])  # in padded coordinates
    lengths = [(size[a] - 1) * window.stride[a] + window.reach(a) + 1 for a in (0, 1)]
    padded_size = (x.shape[2] + sum(pads[0]), x.shape[3] + sum(pads[1]))
    crops = _Assembly.build(
        starts * torch.tensor(window.stride), lengths, previous_starts, previous[1], padded_size, batch
    )
    return _Step(node, function, window, (*pads[1], *pads[0]), starts, tuple(size), crops)


def plan_incremental(
    model: nn.Module, image: Tensor, corners: Tensor, window: tuple[int, int], layer: str | None, batch: int
) -> IncrementalPlan | None:
    """Split ``model`` for incremental occlusion of images shaped like ``image`` (1, C, H, W).

    ``corners`` (positions, 2) are the occluders' top-left corners, run ``batch`` at a time (slices of
    ``corners`` aligned on ``batch``). Returns None when nothing can be
    done incrementally (untraceable model, no supported layer first, ``layer`` not found in the graph).
    """
    gm = _trace(model)
    if gm is None:
        return None
    record = _layer_node(gm, layer)
    if record is False:
        return None
    nodes = list(gm.graph.nodes)
    if sum(n.op == "placeholder" for n in nodes) != 1 or nodes[0].op != "placeholder":
        return None
    steps, previous_node, x, map_sizes = [], nodes[0], image, {}
    box = (corners, window)
    for node in nodes[1:]:
        if node.op == "output" or node.all_input_nodes != [previous_node] or len(previous_node.users) != 1:
            break
        y = _node_function(gm, node)(x.clone())
        if x.dim() != 4 or y.dim() != 4 or len(y) != 1:
            break
        step = _step_for(gm, node, x, y, box, batch)
        if step is None:
            break
        steps.append(step)
        map_sizes[step.node] = tuple(y.shape[2:])
        box = (step.starts, step.size)
        if step.size == tuple(y.shape[2:]):
            break  # the box covers the whole map: the rest is a full computation anyway
        previous_node, x = node, y
    if not steps:
        return None
    for step in steps:
        if step.node is record or step is steps[-1]:
            _add_paste(step, map_sizes[step.node], batch)
    return IncrementalPlan(gm, steps, record, batch)


def _add_paste(step: _Step, map_size: tuple[int, int], batch: int) -> None:
    """Let ``step`` rebuild its whole output map (unless its box already covers it)."""
    if step.size != map_size:
        origin = torch.zeros_like(step.starts)
        step.paste = _Assembly.build(origin, map_size, step.starts, step.size, map_size, batch)
