"""The ``"mirror"`` engine: Zeiler & Fergus' explicit deconvnet, built from this image's forward pass.

The forward pass is read once into a graph of torch function calls (``deconvlab.engine.graph``), and
each call the unit's output depends on is undone by its mirror step, last call first. Where a value
feeds several calls (the two branches of a residual block), their signals add up; at a concatenation
the signal is split between its inputs; an addition sends it down every branch.

=====================================  =============================================================
forward call (module or function)       mirror step
=====================================  =============================================================
conv2d (any stride, padding, dilation,  conv_transpose2d with the same weight, **no bias**
groups: depthwise too)
conv_transpose2d (``ConvTranspose2d``)  conv2d with the same weight, stride and dilation, no bias
linear                                  ``R @ W`` (W^T applied), no bias
relu (``nn.ReLU``, ``F.relu``,          the rule (deconvnet ``max(R, 0)``, guided, gradient)
``relu_``, ``Tensor.relu``)
ReLU6, LeakyReLU, PReLU, ELU, GELU,     rectifier-like (``deconvlab.engine.rules``): the rule, ``f``
SiLU, hardswish, Mish, ...              their input, read before an in-place call; under "gradient"
                                        their plain gradient; refused with ``strict=True``
max_pool2d, adaptive_max_pool2d         unpool through the recorded switches, *summing* where
                                        overlapping windows chose the same input (as the gradient
                                        does; ``MaxUnpool2d`` would keep only one of them)
avg_pool2d                              its transpose, a depthwise conv_transpose2d of 1 / (kh kw)
batch_norm (eval)                       its scale only, ``R * weight / sqrt(running_var + eps)``
add, sub, ``+=``                        the signal down both branches (negated for the subtrahend)
cat                                     the signal split between the inputs
pad (constant; ``nn.ZeroPad2d``)        the window shifted by the padding (what lands on it is dropped)
flatten, view, reshape, unflatten       the inverse reshape
dropout (eval), contiguous, clone       identity
mul or div by a constant                scaled
``g * x`` with ``g`` a sigmoid or       the gate policy (``deconvlab.engine.rules``): the signal times
hardsigmoid (squeeze-excitation)        the recorded ``g``, down ``x`` only; under "gradient" the exact
                                        product rule
layer_norm, group_norm, instance_norm,  their exact vector-Jacobian product at the values recorded in
softmax, einsum, a product of two       the forward pass, under every rule, as the autograd engine
values that is no gate, anything else   computes it
adaptive_avg_pool2d, mean, sum,         their vector-Jacobian product (exact: they are linear in the
permute, transpose, chunk, interpolate, signal), on whole maps
other paddings, ...
local_response_norm                     identity under deconvnet and guided: the original deconvnet
                                        does not invert contrast normalisation (nor does Mahendran &
                                        Vedaldi's code); its true gradient under "gradient"
=====================================  =============================================================

Why BatchNorm's scale and not its shift: in eval mode BatchNorm is ``y = a * x + b`` per channel, and a
projection is linear in the signal going down (doubling the seed doubles it): the constant ``b``, like
a convolution's bias, adds nothing to a signal, so only ``a`` enters.

Any other call the signal reaches (softmax, einsum, matmul, a product of two values that is no gate,
...) takes its exact vector-Jacobian product at the values it read, computed by autograd on whole
maps: what the autograd engine computes there, since the rules concern activations only. The mirror
refuses (``MirrorRefused``, a ValueError naming the call and its module) only an activation the rule
does not define (tanh, a sigmoid that is no gate; or anything but a ReLU with ``strict=True``), which
the autograd engine refuses too, unless ``allow_vjp=True`` gives it its plain vector-Jacobian
product; and a batch_norm with batch statistics, which mixes the images of a batch.

Speed: the forward pass runs once for all images; the switches and ReLU masks it records serve every
unit. Units go down together, a chunk at a time, and each unit carries only the window of the current
map that its receptive field covers (1x1 at the unit, growing by each layer's kernel), cropped to the
map: outside its receptive field a projection is exactly zero, and the work is that of the window.
Through an addition the window is the union of the branches' windows, so a residual block costs what
its wider branch costs. Functions mirrored by their vector-Jacobian product carry whole maps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.engine._model import axes_after
from deconvlab.engine.autograd import GATES, NORMALISATIONS, OTHER_ACTIVATIONS, RELUS, is_rectifier
from deconvlab.engine.graph import Graph, Node, Value, capture, fill, reachable
from deconvlab.engine.receptive import PERMUTATIONS, window_parameters
from deconvlab.engine.rules import Rule


class MirrorRefused(ValueError):
    """The mirror engine cannot run this model (the message says where and why); ``engine="auto"``
    then runs the autograd engine."""


@dataclass(frozen=True)
class Signal:
    """What goes down: per unit, the window of the current map that can be non-zero.

    ``values`` (M, C, h, w) with ``origin`` (M, 2), each window's top-left in the map; or, for a value
    that is not 4D, (M, ...) the whole tensor with ``origin`` None. ``images`` (M,) says which image's
    records each unit uses.
    """

    values: torch.Tensor
    origin: torch.Tensor | None
    images: torch.Tensor


def record_forward(
    model: nn.Module, inputs: torch.Tensor, layer: str, rule: Rule, allow_vjp: bool, strict: bool = False
) -> Graph:
    """Forward ``inputs`` once up to ``layer``; return its graph, each node's ``data`` its mirror step
    and what the step keeps of the forward pass (switches, masks). The model must already be frozen
    (``frozen_eval``). Raises ``MirrorRefused`` if a call the layer depends on has no mirror step.
    """
    modules = dict(model.named_modules())

    def record(node: Node, args: tuple, kwargs: dict, run):
        kind = type(modules.get(node.module)).__name__
        try:
            step = _step_for(node, args, kwargs, rule, allow_vjp, strict, kind)
        except MirrorRefused as refusal:
            if getattr(refusal, "at_once", False):
                raise
            return run(), refusal
        reads = rule.needs_forward or step.reverse is not _reverse_relu
        early = step.before(node, args, kwargs) if step.before is not None and reads else None
        output = run()
        kept = step.record(node, args, kwargs, output) if step.record is not None and reads else early
        return output, (step, kept)

    with torch.no_grad():
        graph = capture(model, inputs, layer, record)
    _settle_products(graph, rule, strict)
    refusals = [node.data for node in reachable(graph, followed) if isinstance(node.data, MirrorRefused)]
    if refusals:  # an activation first: it says more than the multiplication it gates
        raise min(refusals, key=lambda refusal: not getattr(refusal, "activation", False))
    return graph


def reverse(graph: Graph, signal: Signal) -> tuple[Signal, int]:
    """Pass ``signal`` (at the layer's output) down the graph to the image; also return the most bytes
    the signals held at once."""
    pending = {graph.output: signal}
    peak = _bytes(signal)
    for node in reversed(graph.nodes):
        signals = [pending.pop(value, None) for value in node.outputs]
        if all(s is None for s in signals):
            continue
        step, _ = node.data
        for value, below in step.reverse(node, signals, graph):
            if value in pending:
                below = add_signals(pending[value], below, graph.shapes[value])
            pending[value] = below
        peak = max(peak, sum(_bytes(s) for s in pending.values()))
    if 0 not in pending:  # the layer does not depend on the image
        return _whole_maps(
            signal.values.new_zeros((len(signal.values), *graph.shapes[0][1:])), signal.images
        ), peak
    return pending[0], peak


def _bytes(signal: Signal) -> int:
    return signal.values.numel() * signal.values.element_size()


def add_signals(a: Signal, b: Signal, shape: tuple[int, ...]) -> Signal:
    """The sum of two signals for one value: in the union of their windows.

    >>> a = Signal(torch.ones(1, 1, 1, 2), torch.tensor([[0, 0]]), torch.tensor([0]))
    >>> b = Signal(torch.ones(1, 1, 2, 1), torch.tensor([[1, 1]]), torch.tensor([0]))
    >>> total = add_signals(a, b, (1, 1, 3, 3))
    >>> total.values[0, 0].tolist(), total.origin.tolist()
    ([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]], [[0, 0]])
    """
    if a.origin is None or b.origin is None:
        return replace(a, values=a.values + b.values)
    size_a, size_b = a.values.shape[-2:], b.values.shape[-2:]
    if size_a == size_b and torch.equal(a.origin, b.origin):
        return replace(a, values=a.values + b.values)
    low = torch.minimum(a.origin, b.origin)
    high = torch.maximum(
        a.origin + torch.tensor(size_a, device=low.device), b.origin + torch.tensor(size_b, device=low.device)
    )
    size = (high - low).amax(dim=0).tolist()
    for outer, inner in ((a, b), (b, a)):  # one window holds the other (a residual block's two paths)
        if list(outer.values.shape[-2:]) == size and torch.equal(outer.origin, low):
            total = outer.values.clone()
            _paste(total, inner.values, inner.origin - low)
            return Signal(total, low, a.images)
    total = a.values.new_zeros((*a.values.shape[:2], *size))
    for part in (a, b):
        _paste(total, part.values, part.origin - low)
    return fit_to_map(Signal(total, low, a.images), _map_size(shape))


def _paste(out: torch.Tensor, values: torch.Tensor, offset: torch.Tensor) -> None:
    """``out[i, :, y:y+h, x:x+w] += values[i]`` at each unit's ``offset`` (y, x): one slice if they share
    it, a slice per unit for a few units (cheaper than indexing every position), else one ``index_put_``."""
    h, w = values.shape[-2:]
    if bool((offset == offset[:1]).all()):
        y, x = offset[0].tolist()
        out[:, :, y : y + h, x : x + w] += values
        return
    if len(offset) <= FEW_UNITS:
        for index, (y, x) in enumerate(offset.tolist()):
            out[index, :, y : y + h, x : x + w] += values[index]
        return
    rows, ys, xs = _window_indices(offset, (h, w))
    out.permute(0, 2, 3, 1).index_put_((rows, ys, xs), values.permute(0, 2, 3, 1), accumulate=True)


FEW_UNITS = 16  # windows pasted one slice at a time, below this many units


def seed_signal(output: torch.Tensor, units: torch.Tensor, seed: str) -> Signal:
    """Each unit's starting signal: its own activation (``seed="activation"``) or 1, alone in a 1x1
    window at the unit (4D layer) or at its feature (2D layer).

    >>> out = torch.arange(8.0).view(1, 2, 2, 2)
    >>> signal = seed_signal(out, torch.tensor([[0, 1, 1, 0]]), "activation")
    >>> signal.values.flatten().tolist(), signal.origin.tolist()
    ([0.0, 6.0], [[1, 0]])
    """
    units = units.to(output.device)
    rows = torch.arange(len(units), device=output.device)
    values = output[tuple(units.T)] if seed == "activation" else output.new_ones(len(units))
    if output.ndim == 2:
        seeds = output.new_zeros((len(units), output.shape[1]))
        seeds[rows, units[:, 1]] = values
        return Signal(seeds, None, units[:, 0])
    seeds = output.new_zeros((len(units), output.shape[1], 1, 1))
    seeds[rows, units[:, 1], 0, 0] = values
    return Signal(seeds, units[:, 2:4].clone(), units[:, 0])


def to_full(signal: Signal, map_size) -> torch.Tensor:
    """The windows placed into zero maps of ``map_size`` (H, W): (M, C, H, W).

    >>> signal = Signal(torch.ones(1, 1, 2, 2), torch.tensor([[1, -1]]), torch.tensor([0]))
    >>> to_full(signal, (3, 3))[0, 0].tolist()
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    values, origin = signal.values, signal.origin
    if origin is None or (tuple(values.shape[-2:]) == tuple(map_size) and not origin.any()):
        return values
    full = values.new_zeros((*values.shape[:2], *map_size))
    place(signal, full)
    return full


def place(signal: Signal, out: torch.Tensor) -> None:
    """Copy each unit's window into its zero map ``out[i]`` (M, C, H, W), dropping what lies outside.

    One slice copy per unit: cheaper than a gather over every position.
    """
    values = signal.values
    (h, w), (height, width) = values.shape[-2:], out.shape[-2:]
    for index, (y, x) in enumerate(signal.origin.tolist()):
        y0, y1, x0, x1 = max(y, 0), min(y + h, height), max(x, 0), min(x + w, width)
        if y1 > y0 and x1 > x0:
            out[index, :, y0:y1, x0:x1] = values[index, :, y0 - y : y1 - y, x0 - x : x1 - x]


def gather_windows(
    maps: torch.Tensor, images: torch.Tensor, origin: torch.Tensor, size, zero_outside: bool = True
) -> torch.Tensor:
    """Windows (M, C, h, w) of ``maps`` (N, C, H, W) at ``origin`` in image ``images``; zero outside, or
    with ``zero_outside=False`` the nearest position's value: enough for a record of the forward pass
    (switches, masks, gates) read under a signal, which is zero outside the map (``fit_to_map``).

    >>> maps = torch.arange(9.0).view(1, 1, 3, 3)
    >>> gather_windows(maps, torch.tensor([0]), torch.tensor([[-1, 1]]), (2, 2))[0, 0].tolist()
    [[0.0, 0.0], [1.0, 2.0]]
    """
    height, width = maps.shape[-2:]
    rows, ys, xs = _window_indices(origin, size)
    picked = maps[images[rows], :, ys.clamp(0, height - 1), xs.clamp(0, width - 1)].permute(0, 3, 1, 2)
    if not zero_outside:
        return picked
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)  # (M, h, w)
    return picked if inside.all() else picked.masked_fill(~inside[:, None], 0)


def fit_to_map(signal: Signal, map_size) -> Signal:
    """Zero what lies outside the map; crop windows larger than the map to it.

    Windows keep their size (one size for all units: one batched operation per layer) and may stick
    out of the map; positions outside it are zero, as the padding they stand for carries no signal down.
    """
    values, origin = signal.values, signal.origin
    if _oversize(signal, map_size):
        return _shift_inside(signal, map_size)
    size = torch.tensor(values.shape[-2:], device=origin.device)
    if bool((origin >= 0).all()) and bool(
        (origin + size <= torch.tensor(map_size, device=origin.device)).all()
    ):
        return signal  # every window inside the map
    _, ys, xs = _window_indices(origin, values.shape[-2:])
    inside = (ys >= 0) & (ys < map_size[0]) & (xs >= 0) & (xs < map_size[1])  # (M, h, w)
    return signal if inside.all() else replace(signal, values=values * inside[:, None])


def _shift_inside(signal: Signal, map_size) -> Signal:
    """Crop each window to at most the map's size and shift it inside the map (nothing inside is lost)."""
    values, origin = signal.values, signal.origin
    size = tuple(min(have, limit) for have, limit in zip(values.shape[-2:], map_size, strict=True))
    limit = torch.tensor([map_size[0] - size[0], map_size[1] - size[1]], device=origin.device)
    fitted = torch.minimum(origin.clamp(min=0), limit)
    if size == tuple(values.shape[-2:]) and torch.equal(fitted, origin):
        return signal
    rows = torch.arange(len(values), device=values.device)
    return replace(signal, values=gather_windows(values, rows, fitted - origin, size), origin=fitted)


def _window_indices(origin: torch.Tensor, size):
    """Broadcastable (M, 1, 1), (M, h, 1), (M, 1, w) indices of the windows' positions."""
    rows = torch.arange(len(origin), device=origin.device)[:, None, None]
    ys = origin[:, 0, None, None] + torch.arange(size[0], device=origin.device)[None, :, None]
    xs = origin[:, 1, None, None] + torch.arange(size[1], device=origin.device)[None, None, :]
    return rows, ys, xs


def _map_size(shape: tuple[int, ...]) -> tuple[int, int]:
    return tuple(shape[-2:])


# ---- mirror steps: how each call is recorded in the forward pass and undone ---------------------------


@dataclass(frozen=True)
class Step:
    """``reverse(node, signals, graph) -> [(value, signal)]`` from the signals of the node's outputs;
    ``before(node, args, kwargs)`` keeps what it needs before the call (an in-place call overwrites its
    input), ``record(node, args, kwargs, output)`` after it."""

    reverse: object
    record: object = None
    before: object = None


def _arguments(node: Node, names: tuple[str, ...], defaults: dict) -> dict:
    """The node's arguments by name (``names`` in positional order, after the input)."""
    bound = dict(defaults)
    bound.update(zip(names, node.args[1:], strict=False))
    bound.update(node.kwargs)
    return bound


def _single(reverse):
    """A step for a call whose first argument is the only value it reads: ``reverse(node, signal,
    graph) -> signal``."""

    def step(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
        return [(node.inputs[0], reverse(node, signals[0], graph))]

    return step


CONV = ("weight", "bias", "stride", "padding", "dilation", "groups")


@_single
def _reverse_conv(node: Node, signal: Signal, graph: Graph) -> Signal:
    args = _arguments(node, CONV, {"stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    weight = args["weight"]
    window = SimpleNamespace(kernel_size=tuple(weight.shape[-2:]), **{k: args[k] for k in CONV[2:5]})
    _, stride, padding, dilation = window_parameters(window, None)
    values = conv_transpose(signal.values, weight, stride, dilation, args["groups"])
    origin = _origin_below(signal.origin, stride, padding)
    return fit_to_map(replace(signal, values=values, origin=origin), _map_size(graph.shapes[node.inputs[0]]))


CONV_TRANSPOSE = ("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")


@_single
def _reverse_conv_transpose(node: Node, signal: Signal, graph: Graph) -> Signal:
    """A transposed convolution's mirror is the convolution with its weight, in windows.

    Input position ``i`` sent ``x[i] W[k]`` to output ``i s - p + k d``, so it gathers the window's
    signal from there: the inputs whose taps reach the window, ``floor((o + p - d (K - 1)) / s)`` on,
    one more than the window needs at most (a zero); their taps' span, cut out of each unit's window
    (zero around it), convolved with ``W`` at stride ``s`` and dilation ``d``.
    """
    args = _arguments(node, CONV_TRANSPOSE, {"stride": 1, "padding": 0, "groups": 1, "dilation": 1})
    weight = args["weight"]
    window = SimpleNamespace(
        kernel_size=tuple(weight.shape[-2:]), **{k: args[k] for k in ("stride", "padding", "dilation")}
    )
    kernel, stride, padding, dilation = window_parameters(window, None)
    values, origin = signal.values, signal.origin
    reach = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]  # one input's taps span reach + 1
    counts = [(n - 1 + r) // st + 2 for n, r, st in zip(values.shape[-2:], reach, stride, strict=True)]
    lowest = origin + torch.tensor(padding, device=origin.device) - torch.tensor(reach, device=origin.device)
    first = torch.div(lowest, torch.tensor(stride, device=origin.device), rounding_mode="floor")  # (M, 2)
    start = _origin_below(first, stride, padding)  # where the first input's first tap lands
    span = [(n - 1) * st + r + 1 for n, st, r in zip(counts, stride, reach, strict=True)]
    taps = gather_windows(values, torch.arange(len(values), device=values.device), start - origin, span)
    below = F.conv2d(taps, weight, None, stride, 0, dilation, args["groups"])
    return fit_to_map(Signal(below, first, signal.images), _map_size(graph.shapes[node.inputs[0]]))


def conv_transpose(values: torch.Tensor, weight: torch.Tensor, stride, dilation, groups: int) -> torch.Tensor:
    """``conv_transpose2d`` with padding 0 and no bias: the whole input span of the windows.

    A 1x1 kernel is one matrix product (``_pointwise``). Down to a layer with few channels (the
    pixels), PyTorch's CPU kernel is slow; there the same sums are computed another way. With a stride
    (ZFNet's, AlexNet's, ResNet's first layer): as the *sub-pixel* convolution (Shi et al. 2016), an
    ordinary convolution to ``sy * sx`` output phases, interleaved (2-2.7x faster than the kernel below
    on those layers). Without one: one matrix product over every position of every window,
    ``(M h w, C) @ (C, kh kw C_out)`` (the values are channels last, so no copy; the columns padded to a
    multiple of 16, which MKL multiplies about 2x faster), followed by col2im as kh * kw strided
    additions (faster than both on VGG's first layer).

    >>> values, weight = torch.randn(2, 8, 5, 5), torch.randn(8, 3, 7, 7)
    >>> torch.allclose(conv_transpose(values, weight, (2, 2), (1, 1), 1),
    ...                F.conv_transpose2d(values, weight, stride=2), atol=1e-4)
    True
    """
    if groups == 1 and weight.shape[-2:] == (1, 1):
        return _pointwise(values, weight, stride)
    if groups > 1 or weight.shape[1] > FEW_CHANNELS:
        return F.conv_transpose2d(values, weight, None, stride=stride, dilation=dilation, groups=groups)
    if tuple(stride) != (1, 1) and tuple(dilation) == (1, 1):
        return _sub_pixel(values, weight, stride)
    m, c, h, w = values.shape
    c_out, kh, kw = weight.shape[1:]
    span = tuple(
        (n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((h, w), stride, dilation, (kh, kw), strict=True)
    )
    taps = weight.permute(0, 2, 3, 1).reshape(c, kh * kw * c_out)  # columns (ky, kx, c_out)
    taps = F.pad(taps, (0, -taps.shape[1] % 16))
    columns = values.permute(0, 2, 3, 1).reshape(m * h * w, c) @ taps  # (M h w, kh kw C_out + pad)
    columns = columns.view(m, h, w, -1)[..., : kh * kw * c_out].unflatten(-1, (kh, kw, c_out))
    out = values.new_zeros((m, *span, c_out))
    (sy, sx), (dy, dx) = stride, dilation
    for ky in range(kh):
        for kx in range(kw):  # tap (ky, kx) of window (y, x) lands on (y * sy + ky * dy, x * sx + kx * dx)
            out[:, ky * dy : ky * dy + (h - 1) * sy + 1 : sy, kx * dx : kx * dx + (w - 1) * sx + 1 : sx] += (
                columns[:, :, :, ky, kx]
            )
    return out.permute(0, 3, 1, 2).contiguous()  # channels first: cheaper to crop and place


def _pointwise(values: torch.Tensor, weight: torch.Tensor, stride) -> torch.Tensor:
    """``conv_transpose2d`` with a 1x1 kernel: one matrix product over the channels, spread ``stride``
    apart. (PyTorch's CPU kernel for it, below 16 images on one thread, runs at a fraction of the
    matrix product's speed: 8 against 35 GMAC/s on ResNet-50's ``layer1.0.conv1``.)

    >>> values, weight = torch.randn(2, 8, 4, 3), torch.randn(8, 5, 1, 1)
    >>> torch.allclose(_pointwise(values, weight, (2, 1)),
    ...                F.conv_transpose2d(values, weight, stride=(2, 1)), atol=1e-5)
    True
    """
    (m, c, h, w), (sy, sx) = values.shape, stride
    taps = weight.flatten(1)  # (C, C_out)
    if values.is_contiguous() or not values.is_contiguous(memory_format=torch.channels_last):
        out = torch.matmul(taps.T, values.flatten(2)).view(m, -1, h, w)  # (C_out, C) @ (M, C, h w)
    else:  # channels last (windows cut out by gather_windows): (M h w, C) @ (C, C_out), no copy
        out = (values.permute(0, 2, 3, 1).reshape(-1, c) @ taps).view(m, h, w, -1).permute(0, 3, 1, 2)
    if (sy, sx) == (1, 1):
        return out
    spread = out.new_zeros((m, out.shape[1], (h - 1) * sy + 1, (w - 1) * sx + 1))
    spread[:, :, ::sy, ::sx] = out
    return spread


def _sub_pixel(values: torch.Tensor, weight: torch.Tensor, stride) -> torch.Tensor:
    """``conv_transpose2d(values, weight, stride=stride)`` as a convolution and an interleave.

    Output row ``y = s q + r`` receives input row ``q - j`` through kernel row ``s j + r``: for each phase
    ``r`` an ordinary convolution with the flipped kernel rows ``r, s + r, ...`` (``T = ceil(k / s)`` of
    them, zero beyond the kernel). All ``sy * sx`` phases are one convolution with ``C_out sy sx``
    outputs; interleaving them is a reshape.

    >>> values, weight = torch.randn(1, 4, 3, 5), torch.randn(4, 2, 5, 3)
    >>> torch.allclose(_sub_pixel(values, weight, (3, 2)),
    ...                F.conv_transpose2d(values, weight, stride=(3, 2)), atol=1e-5)
    True
    """
    (m, c, h, w), (c_out, kh, kw), (sy, sx) = values.shape, weight.shape[1:], stride
    ty, tx = -(-kh // sy), -(-kw // sx)
    padded = F.pad(weight, (0, tx * sx - kw, 0, ty * sy - kh))  # (C, C_out, ty sy, tx sx)
    # output channel (c_out, ry, rx), tap t: kernel row sy * (ty - 1 - t) + ry (and so for columns)
    phases = padded.view(c, c_out, ty, sy, tx, sx).flip(2, 4).permute(1, 3, 5, 0, 2, 4)
    phases = phases.reshape(c_out * sy * sx, c, ty, tx)
    out = F.conv2d(values, phases, padding=(ty - 1, tx - 1))  # (M, C_out sy sx, h + ty - 1, w + tx - 1)
    rows, columns = out.shape[-2:]
    out = out.view(m, c_out, sy, sx, rows, columns).permute(0, 1, 4, 2, 5, 3)
    out = out.reshape(m, c_out, rows * sy, columns * sx)
    return out[..., : (h - 1) * sy + kh, : (w - 1) * sx + kw]


FEW_CHANNELS = 4  # transposed convolutions to at most this many channels use one matmul + col2im


def _origin_below(origin: torch.Tensor, stride, padding) -> torch.Tensor:
    """Top-left of a window's input span: output position o starts at input ``o * s - p``."""
    device = origin.device
    return origin * torch.tensor(stride, device=device) - torch.tensor(padding, device=device)


POOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
POOL_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}


def _pool_window(node: Node):
    """(kernel, stride, padding-before, dilation) of a max_pool2d call, and its ceil_mode."""
    args = _arguments(node, POOL, POOL_DEFAULTS)
    window = SimpleNamespace(**{k: args[k] for k in POOL[:4]})
    return window_parameters(window, None), args["ceil_mode"]


def _record_switches(node: Node, args: tuple, kwargs: dict) -> torch.Tensor:
    """The paper's switches: where each pooling window found its maximum, recorded before the call.

    max_pool2d: the row and column offset inside its window, (N, 2C, H_out, W_out) uint8 (rows in the
    first C channels). adaptive_max_pool2d (irregular windows): the flat index into H_in * W_in.
    """
    x = args[0]
    if node.func is F.adaptive_max_pool2d:
        size = _arguments(node, ("output_size",), {})["output_size"]
        return F.adaptive_max_pool2d(x, size, return_indices=True)[1]
    (kernel, stride, padding, dilation), ceil_mode = _pool_window(node)
    flat = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)[1]
    rows, columns = (flat // x.shape[-1], flat % x.shape[-1])
    starts = [
        torch.arange(n, device=x.device) * s - p
        for n, s, p in zip(flat.shape[-2:], stride, padding, strict=True)
    ]
    dtype = (
        torch.uint8 if max(d * (k - 1) for d, k in zip(dilation, kernel, strict=True)) < 256 else torch.int32
    )
    return torch.cat([rows - starts[0][:, None], columns - starts[1][None, :]], dim=1).to(dtype)


@_single
def _reverse_max_pool(node: Node, signal: Signal, graph: Graph) -> Signal:
    """Unpool: each value goes to its switch; values meeting at one input position add up."""
    shape = graph.shapes[node.inputs[0]]
    switches = node.data[1]
    if node.func is F.adaptive_max_pool2d:
        values = to_full(signal, _map_size(graph.shapes[node.outputs[0]]))
        m, c = values.shape[:2]
        flat = switches[signal.images].flatten(2)
        unpooled = values.new_zeros((m, c, shape[-2] * shape[-1])).scatter_add_(2, flat, values.flatten(2))
        return _whole_maps(unpooled.view(m, c, *shape[-2:]), signal.images)
    values, origin = signal.values, signal.origin
    (kernel, stride, padding, dilation), _ = _pool_window(node)
    (m, c, h, w), device = values.shape, values.device
    span = tuple(
        (n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((h, w), stride, dilation, kernel, strict=True)
    )
    # outside the map the nearest switch: harmless, the signal there is zero
    offsets = gather_windows(switches, signal.images, origin, (h, w), zero_outside=False).int()
    starts = (
        torch.arange(h, device=device, dtype=torch.int32)[:, None] * (stride[0] * span[1])
        + torch.arange(w, device=device, dtype=torch.int32) * stride[1]
    )  # each window's first input position, as a flat index into the span
    index = (offsets[:, :c] * span[1] + offsets[:, c:] + starts).long()
    # max_pool2d's own gradient kernel over the span (padding 0: the windows start at 0, stride apart)
    # adds each value at its switch, summing where two windows chose one position
    unpooled = torch.ops.aten.max_pool2d_with_indices_backward(
        values, values.new_empty((m, c, *span)), kernel, stride, (0, 0), dilation, False, index
    )
    below = Signal(unpooled, _origin_below(origin, stride, padding), signal.images)
    # every switch lies inside the map, so nothing outside it needs zeroing; only oversize windows shrink
    return _shift_inside(below, _map_size(shape)) if _oversize(below, shape) else below


def _oversize(signal: Signal, shape: tuple[int, ...]) -> bool:
    return any(have > limit for have, limit in zip(signal.values.shape[-2:], shape[-2:], strict=True))


AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
AVG_DEFAULTS = {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}


def _windowed_avg_pool(node: Node) -> bool:
    """Whether every window divides by kh * kw: then the transpose is one depthwise convolution."""
    args = _arguments(node, AVG_POOL, {**AVG_DEFAULTS, "divisor_override": None})
    padded = args["padding"] not in (0, (0, 0), [0, 0])
    return (
        not args["ceil_mode"]
        and args["divisor_override"] is None
        and (args["count_include_pad"] or not padded)
    )


@_single
def _reverse_avg_pool(node: Node, signal: Signal, graph: Graph) -> Signal:
    args = _arguments(node, AVG_POOL, AVG_DEFAULTS)
    window = SimpleNamespace(kernel_size=args["kernel_size"], stride=args["stride"], padding=args["padding"])
    kernel, stride, padding, _ = window_parameters(window, None)
    c = signal.values.shape[1]
    weight = signal.values.new_full((c, 1, *kernel), 1.0 / (kernel[0] * kernel[1]))
    values = F.conv_transpose2d(signal.values, weight, stride=stride, groups=c)
    origin = _origin_below(signal.origin, stride, padding)
    return fit_to_map(replace(signal, values=values, origin=origin), _map_size(graph.shapes[node.inputs[0]]))


def _record_output_positive(node: Node, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
    return output > 0  # == (forward input > 0), also after an in-place ReLU


def _record_input_positive(node: Node, args: tuple, kwargs: dict) -> torch.Tensor:
    return (args[0] if args else kwargs["input"]) > 0  # f > 0, before an in-place call overwrites f


@_single
def _reverse_relu(node: Node, signal: Signal, graph: Graph) -> Signal:
    positive = node.data[1]
    if positive is None:  # the rule does not read the forward pass (deconvnet)
        pass
    elif signal.origin is None:
        positive = positive[signal.images]
    else:
        positive = gather_windows(
            positive, signal.images, signal.origin, signal.values.shape[-2:], zero_outside=False
        )
    return replace(signal, values=node.data[0].rule.backward(positive, signal.values))


@_single
def _reverse_linear(node: Node, signal: Signal, graph: Graph) -> Signal:
    weight = _arguments(node, ("weight",), {})["weight"]
    return _whole_maps(_full(signal, graph, node.outputs[0]) @ weight, signal.images)  # W^T R, no bias


BATCH_NORM = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


@_single
def _reverse_batch_norm(node: Node, signal: Signal, graph: Graph) -> Signal:
    args = _arguments(node, BATCH_NORM, {"weight": None, "training": False, "eps": 1e-5})
    scale = torch.rsqrt(args["running_var"] + args["eps"])
    if args["weight"] is not None:
        scale = scale * args["weight"]
    shape = (1, -1) + (1,) * (signal.values.ndim - 2)
    return replace(signal, values=signal.values * scale.to(signal.values.dtype).view(shape))


@_single
def _reverse_identity(node: Node, signal: Signal, graph: Graph) -> Signal:
    return signal


@_single
def _reverse_reshape(node: Node, signal: Signal, graph: Graph) -> Signal:
    values = _full(signal, graph, node.outputs[0])
    return _whole_maps(values.reshape(len(values), *graph.shapes[node.inputs[0]][1:]), signal.images)


@_single
def _reverse_scale(node: Node, signal: Signal, graph: Graph) -> Signal:
    constant = next(arg for arg in node.args if not isinstance(arg, Value))
    factor = 1.0 / constant if node.func in DIVISIONS else constant
    return replace(signal, values=signal.values * factor)


@_single
def _reverse_pad(node: Node, signal: Signal, graph: Graph) -> Signal:
    pad = _arguments(node, ("pad",), {})["pad"]
    before = torch.tensor([pad[2] if len(pad) > 2 else 0, pad[0]], device=signal.origin.device)
    shifted = replace(signal, origin=signal.origin - before)  # output position o is input o - before
    return fit_to_map(shifted, _map_size(graph.shapes[node.inputs[0]]))


def _windowed_pad_args(node: Node, args: tuple) -> bool:
    """A constant padding (or crop) of the last two axes of a 4D map: a shift of the windows."""
    bound = _arguments(node, ("pad", "mode", "value"), {"mode": "constant"})
    return bound["mode"] == "constant" and len(bound["pad"]) <= 4 and args[0].ndim == 4


def _reverse_add(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """The signal down every operand that has the output's shape (negated for a subtrahend)."""
    signal = signals[0]
    negative = {torch.sub, torch.Tensor.sub, torch.Tensor.sub_, torch.Tensor.__sub__, torch.Tensor.__isub__}
    found = []
    for position, arg in enumerate(node.args[:2]):
        if isinstance(arg, Value):
            minus = (node.func in negative and position == 1) or (
                node.func is torch.Tensor.__rsub__ and position == 0
            )
            found.append((arg.index, replace(signal, values=-signal.values) if minus else signal))
    return found


def _windowed_add_args(node: Node, args: tuple) -> bool:
    """Two operands, each a number or a tensor of the output's shape (no broadcasting, no alpha)."""
    tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
    return (
        "alpha" not in node.kwargs
        and len(args) == 2
        and all(isinstance(arg, torch.Tensor | int | float) for arg in args)
        and all(t.shape == tensors[0].shape for t in tensors)
    )


def _cat_dim(node: Node) -> int:
    return _arguments(node, ("dim",), {"dim": node.kwargs.get("axis", 0)})["dim"]


def _reverse_cat(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """Each input gets its own channels of the signal, in the same windows."""
    signal, dim = signals[0], _cat_dim(node) % len(graph.shapes[node.outputs[0]])
    found, start = [], 0
    for part in node.args[0]:
        size = graph.shapes[part.index][dim] if isinstance(part, Value) else part.shape[dim]
        if isinstance(part, Value):
            found.append((part.index, replace(signal, values=signal.values.narrow(dim, start, size))))
        start += size
    return found


def _record_values(node: Node, args: tuple, kwargs: dict) -> dict[int, torch.Tensor]:
    """The tensors of the values a call reads, by value, as it reads them (copied if it writes one)."""
    found: dict[int, torch.Tensor] = {}
    _collect((node.args, node.kwargs), (args, kwargs), found)
    if node.function.endswith("_") or node.function.startswith("__i"):  # in place: its input is overwritten
        found = {value: tensor.clone() for value, tensor in found.items()}
    return found


def _collect(template, live, found: dict) -> None:
    """``found[value] = tensor`` for each ``Value`` in ``template`` and the live tensor at its place."""
    if isinstance(template, Value):
        found.setdefault(template.index, live.detach())
    elif isinstance(template, dict):
        for key, item in template.items():
            _collect(item, live[key], found)
    elif isinstance(template, tuple | list):
        for item, value in zip(template, live, strict=True):
            _collect(item, value, found)


def _settle_products(graph: Graph, rule: Rule, strict: bool) -> None:
    """Decide, once the pass is read, which products of two values are gates.

    A value is a *gate* if a sigmoid or hardsigmoid made it (through views and expansions). Under
    deconvnet and guided (not ``strict``), a product of a gate and another value is the gate policy of
    ``deconvlab.engine.rules``: the signal goes down the other operand, scaled by the recorded gate, and
    none into the gate's branch. Every other product (and every product under "gradient", or with
    ``strict=True``) takes its exact vector-Jacobian product at the recorded operands, as the autograd
    engine does.
    """
    gates: dict[int, Node] = {}
    for node in graph.nodes:
        source = node if node.func in GATES else None
        if node.func in GATE_VIEWS and node.inputs and node.inputs[0] in gates:
            source = gates[node.inputs[0]]
        if source is not None:
            gates.update(dict.fromkeys(node.outputs, source))
        if not isinstance(node.data, tuple) or node.data[0] is not PRODUCT:
            continue
        if rule.exact_elsewhere:
            continue
        operands = [arg.index for arg in node.args[:2]]
        gated = [i for i, value in enumerate(operands) if value not in gates]
        if strict or len(gated) != 1 or graph.shapes[operands[gated[0]]] != graph.shapes[node.outputs[0]]:
            continue  # no gate: the exact product rule, as in the autograd engine
        kept, gate = gated[0], 1 - gated[0]
        node.data = (GATE, SimpleNamespace(
            gate=node.data[1][operands[gate]], gated=operands[kept], source=gates[operands[gate]]
        ))  # fmt: skip


def followed(node: Node) -> tuple[int, ...]:
    """The values a node's signal goes down to: all it reads, but a gated product only its gated one."""
    return (node.data[1].gated,) if _step(node) is GATE else node.inputs


def _step(node: Node) -> Step | None:
    """The node's mirror step (None where it was refused)."""
    return node.data[0] if isinstance(node.data, tuple) else None


def _reverse_gate(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """The signal times the recorded gate, down the gated operand only."""
    signal, kept = signals[0], node.data[1]
    shape = graph.shapes[node.outputs[0]]
    gate = kept.gate.to(signal.values.dtype)
    if signal.origin is None:
        scale = gate.expand(shape)[signal.images]
    elif gate.shape[-2:] == (1, 1):
        scale = gate.expand(*shape[:-2], 1, 1)[signal.images]
    else:
        scale = gather_windows(gate.expand(shape), signal.images, signal.origin, signal.values.shape[-2:])
    return [(kept.gated, replace(signal, values=signal.values * scale))]


def _reverse_exact(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """The call's exact vector-Jacobian product at the values it read in the forward pass, to each of
    them (a product of two values, softmax, einsum, ...): what the autograd engine computes there."""
    images = next(s for s in signals if s is not None).images
    at = {
        value: tensor[images].requires_grad_(tensor.is_floating_point() or tensor.is_complex())
        for value, tensor in node.data[1].items()
    }
    return _vjp(node, signals, graph, at)


def _record_input(node: Node, args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0] if args else kwargs["input"]
    return x.detach().clone()


def _reverse_vjp_at_input(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """The call's vector-Jacobian product at its recorded input (an activation, a normalisation)."""
    signal = signals[0]
    x = node.data[1][signal.images].requires_grad_(True)
    with torch.enable_grad():
        output = node.func(
            *fill(node.args, {node.inputs[0]: x.clone()}), **fill(node.kwargs, {node.inputs[0]: x})
        )
    (values,) = torch.autograd.grad(output, x, _full(signal, graph, node.outputs[0]))
    return [(node.inputs[0], _whole_maps(values, signal.images))]


def _reverse_linear_map(node: Node, signals: list, graph: Graph) -> list[tuple[int, Signal]]:
    """The vector-Jacobian product of a call that is linear (affine) in the values it reads: taken at
    zero, where it is the same as anywhere (a constant part, like a bias, drops out)."""
    like = next(s for s in signals if s is not None).values
    at = {
        value: like.new_zeros((len(like), *graph.shapes[value][1:])).requires_grad_(True)
        for value in dict.fromkeys(node.inputs)
    }
    return _vjp(node, signals, graph, at)


def _vjp(node: Node, signals: list, graph: Graph, at: dict[int, torch.Tensor]) -> list[tuple[int, Signal]]:
    """The call's vector-Jacobian product at the point ``at`` (value -> tensor, one row per unit), from
    the signals of its outputs to each value of ``at`` that requires grad, as whole maps."""
    live = [(value, s) for value, s in zip(node.outputs, signals, strict=True) if s is not None]
    with torch.enable_grad():
        copies = {value: point.clone() for value, point in at.items()}  # an in-place call may write them
        result = node.func(*fill(node.args, copies), **fill(node.kwargs, copies))
    made = [
        t for t in (result if isinstance(result, tuple | list) else (result,)) if isinstance(t, torch.Tensor)
    ]
    outputs = dict(zip(node.outputs, made, strict=True))
    live = [(value, s) for value, s in live if outputs[value].requires_grad]
    wanted = [value for value, point in at.items() if point.requires_grad]
    if not live or not wanted:
        return []
    grads = torch.autograd.grad(
        [outputs[value] for value, _ in live],
        [at[value] for value in wanted],
        [_full(s, graph, value).to(outputs[value].dtype) for value, s in live],
        allow_unused=True,
    )
    images = live[0][1].images
    return [
        (value, _whole_maps(grad, images))
        for value, grad in zip(wanted, grads, strict=True)
        if grad is not None
    ]


def _full(signal: Signal, graph: Graph, value: int) -> torch.Tensor:
    """The signal as a whole tensor of the value's shape (M, ...)."""
    return signal.values if signal.origin is None else to_full(signal, _map_size(graph.shapes[value]))


def _whole_maps(values: torch.Tensor, images: torch.Tensor) -> Signal:
    """A signal whose windows are the whole maps (or whole tensors, for values that are not 4D)."""
    if values.ndim != 4:
        return Signal(values, None, images)
    return Signal(values, torch.zeros((len(values), 2), dtype=torch.long, device=values.device), images)


T = torch.Tensor
ADDITIONS = {
    torch.add,
    T.add,
    T.add_,
    T.__add__,
    T.__iadd__,
    T.__radd__,
    torch.sub,
    T.sub,
    T.sub_,
    T.__sub__,
    T.__isub__,
    T.__rsub__,
}
MULTIPLICATIONS = {torch.mul, T.mul, T.mul_, T.__mul__, T.__imul__, T.__rmul__}
GATE_VIEWS = {
    T.view, T.reshape, torch.reshape, T.expand, T.expand_as, T.unsqueeze, torch.unsqueeze, T.flatten,
}  # fmt: skip
NORMS = {F.layer_norm, F.group_norm, F.instance_norm}  # statistics of the image: their exact gradient
DIVISIONS = {torch.div, T.div, T.div_, T.__truediv__, T.__itruediv__}
CONCATENATIONS = {torch.cat, torch.concat, torch.concatenate}
RESHAPES = {
    torch.flatten, T.flatten, T.view, T.reshape, torch.reshape, T.unflatten, torch.unflatten, T.view_as,
    T.reshape_as, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze,
}  # fmt: skip
IDENTITIES = {
    T.contiguous, T.clone, torch.clone, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout,
}  # fmt: skip
LINEAR_MAPS = {
    F.adaptive_avg_pool2d, F.avg_pool2d, F.pad, torch.mean, T.mean, torch.sum, T.sum, torch.permute,
    T.permute, torch.transpose, T.transpose, torch.swapaxes, T.swapaxes, torch.movedim, T.movedim,
    T.__getitem__, torch.chunk, T.chunk, torch.split, T.split, torch.stack, T.expand, T.expand_as,
    F.interpolate, F.conv_transpose2d, torch.neg, T.neg, T.__neg__, *ADDITIONS, *CONCATENATIONS,
}  # fmt: skip

CONVOLUTION = Step(_reverse_conv)
CONVOLUTION_TRANSPOSED = Step(_reverse_conv_transpose)
MAX_POOL = Step(_reverse_max_pool, before=_record_switches)
AVG_POOL_STEP = Step(_reverse_avg_pool)
RELU = Step(_reverse_relu, record=_record_output_positive)
RECTIFIER = Step(_reverse_relu, before=_record_input_positive)
VJP_AT_INPUT = Step(_reverse_vjp_at_input, before=_record_input)
LINEAR = Step(_reverse_linear)
BATCH_NORM_STEP = Step(_reverse_batch_norm)
IDENTITY = Step(_reverse_identity)
RESHAPE = Step(_reverse_reshape)
SCALE = Step(_reverse_scale)
PAD = Step(_reverse_pad)
ADD = Step(_reverse_add)
CAT = Step(_reverse_cat)
LINEAR_MAP = Step(_reverse_linear_map)
PRODUCT = Step(_reverse_exact, before=_record_values)  # a gate's product or an exact one
EXACT = Step(_reverse_exact, before=_record_values)
GATE = Step(_reverse_gate)


def _refused(message: str, at_once: bool = False, activation: bool = False) -> MirrorRefused:
    refusal = MirrorRefused(message)
    refusal.at_once, refusal.activation = at_once, activation
    return refusal


def _step_for(node: Node, args: tuple, kwargs: dict, rule: Rule, allow_vjp: bool, strict: bool, kind: str):
    """The mirror step of a call (``node`` with its live ``args``), or a ``MirrorRefused`` raised:
    ``at_once`` for an activation the autograd engine also refuses when it is called."""
    func, where = node.func, f"module {node.module!r} ({kind})"
    values_read = len(node.inputs)
    if func in RELUS:
        return _with_rule(RELU, rule)
    if func in NORMALISATIONS:
        return IDENTITY if rule.skip_normalisation else VJP_AT_INPUT
    rectifier = is_rectifier(func, args, kwargs)
    if rectifier or func in GATES or func in OTHER_ACTIVATIONS or func in (F.hardtanh, F.hardtanh_):
        if rule.exact_elsewhere:
            return VJP_AT_INPUT
        if rectifier and not strict:
            return _with_rule(RECTIFIER, rule)
        if allow_vjp:
            return VJP_AT_INPUT
        if rectifier:
            raise _refused(
                f"{where}: strict=True, and the {rule.name} rule is only defined for ReLUs; pass "
                "strict=False to take the rule at this rectifier-like activation, or allow_vjp=True to use "
                "its vector-Jacobian product", at_once=True, activation=True,
            )  # fmt: skip
        raise _refused(
            f"{where}: an activation other than ReLU ({node.function}) that is neither rectifier-like nor "
            f"a multiplicative gate, and the {rule.name} rule is only defined for ReLUs; pass "
            "allow_vjp=True to use its vector-Jacobian product (engine='autograd' refuses it too)",
            at_once=strict or func not in GATES, activation=True,
        )  # fmt: skip
    if func is torch.conv2d and values_read == 1 and isinstance(node.args[0], Value):
        return CONVOLUTION
    if func is F.conv_transpose2d and values_read == 1 and isinstance(node.args[0], Value):
        return CONVOLUTION_TRANSPOSED
    if func in (F.max_pool2d, F.adaptive_max_pool2d) and values_read == 1:
        return MAX_POOL
    if func is F.batch_norm and values_read == 1:
        bound = _arguments(node, BATCH_NORM, {"training": False})
        if bound["training"] or bound["running_var"] is None:
            raise _refused(
                f"{where} calls batch_norm with batch statistics (training=True or no running_var): not a "
                "fixed scale, so the mirror engine cannot take it; use engine='autograd'"
            )
        return BATCH_NORM_STEP
    if func is F.linear and values_read == 1 and isinstance(node.args[0], Value):
        return LINEAR
    if func in RESHAPES and values_read == 1 and not any(isinstance(a, torch.dtype) for a in node.args):
        return RESHAPE
    if (
        func in IDENTITIES
        and values_read == 1
        and not _arguments(node, ("p", "training"), {}).get("training")
    ):
        return IDENTITY
    if func in MULTIPLICATIONS and values_read == 2 and all(isinstance(a, Value) for a in node.args[:2]):
        return PRODUCT  # a gate's product or an exact one: settled when the pass is read
    if func in NORMS and values_read == 1:
        return VJP_AT_INPUT
    if func in MULTIPLICATIONS | DIVISIONS and values_read == 1:
        constant = next(arg for arg in node.args[:2] if not isinstance(arg, Value))
        if func in DIVISIONS and not isinstance(node.args[0], Value):
            raise _refused(f"{where} divides by a tensor computed from the image; use engine='autograd'")
        return SCALE if isinstance(constant, int | float) else LINEAR_MAP
    if func is F.avg_pool2d and _windowed_avg_pool(node):
        return AVG_POOL_STEP
    if func is F.pad and _windowed_pad_args(node, args):
        return PAD
    if func in ADDITIONS and _windowed_add_args(node, args):
        return ADD
    if func in CONCATENATIONS and _cat_dim(node) in (1, -3) and isinstance(node.args[0], list | tuple):
        return CAT
    if node.function in PERMUTATIONS and axes_after(func, args, kwargs)[0] != 0:
        raise _refused(
            f"{where} calls {node.function}, which moves the batch axis (dim 0) elsewhere; the mirror "
            "carries one unit per row of dim 0, so it cannot follow it; use engine='autograd'"
        )
    if func in LINEAR_MAPS:
        return LINEAR_MAP
    return EXACT  # any other call: its exact vector-Jacobian product, as the autograd engine takes it


def _with_rule(step: Step, rule: Rule) -> Step:
    """The step, knowing its rule (the ReLU step applies it)."""
    return _RuledStep(step.reverse, step.record, step.before, rule)


@dataclass(frozen=True)
class _RuledStep(Step):
    rule: Rule = None


def activations(graph: Graph) -> tuple[tuple[str, str, str], ...]:
    """``(module, function, policy)`` for each activation other than ReLU in the graph, in call order,
    as the autograd engine reports them (``rule_relus.applied``)."""
    found = {}
    gate_sources = {id(node.data[1].source) for node in reachable(graph, followed) if _step(node) is GATE}
    for node in graph.nodes:
        step = _step(node)
        if id(node) in gate_sources:
            found[(node.module, node.function)] = "gate"
        elif step is not None and step.before is _record_input_positive:
            found.setdefault((node.module, node.function), "rectifier")
        elif step is VJP_AT_INPUT and node.func not in NORMALISATIONS | NORMS:
            found.setdefault((node.module, node.function), "gradient")
    return tuple((module, function, policy) for (module, function), policy in found.items())
