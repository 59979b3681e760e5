"""The ``"mirror"`` engine: Zeiler & Fergus' explicit deconvnet, built from this image's forward pass.

Each module of the chain (see ``trace``) is undone by its mirror step, in reverse order:

=====================================  =============================================================
forward module                          mirror step
=====================================  =============================================================
Conv2d                                  conv_transpose2d with the same weight, **no bias**
Linear                                  ``R @ W`` (W^T applied), no bias
ReLU (module)                           the rule (deconvnet ``max(R, 0)``, guided, gradient)
ReLU6, LeakyReLU, PReLU, ELU, GELU,     rectifier-like (``deconvlab.engine.rules``): the rule, ``f``
SiLU, Hardswish, Mish, ... (modules)    their input, read before an in-place call; under "gradient"
                                        their plain gradient; refused with ``strict=True``
MaxPool2d, AdaptiveMaxPool2d            unpool through the recorded switches, *summing* where
                                        overlapping windows chose the same input (as the gradient
                                        does; ``MaxUnpool2d`` would keep only one of them)
AvgPool2d, AdaptiveAvgPool2d            their transposes (the vector-Jacobian product of a linear map)
Flatten, Unflatten, view/flatten        the inverse reshape
Dropout (eval), Identity                identity
BatchNorm (eval)                        its linear scale only, ``R * weight / sqrt(running_var + eps)``
LocalResponseNorm, CrossMapLRN2d        identity under deconvnet and guided: the original deconvnet
                                        does not invert contrast normalisation (nor does Mahendran &
                                        Vedaldi's code); its true gradient under "gradient"
=====================================  =============================================================

Any other module (a sigmoid, which in a chain of modules cannot be a gate) raises a ValueError naming it
and its type, unless ``allow_vjp=True``: then its plain vector-Jacobian product at the recorded input is
used (ReLUs called inside it still follow the rule).

Speed: the forward pass runs once for all images; the switches and ReLU masks it records serve every
unit. Units go down together, a chunk at a time, and each unit carries only the window of the current
map that its receptive field covers (1x1 at the unit, growing by each layer's kernel), cropped to the
map: outside its receptive field a projection is exactly zero, and the work is that of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.engine.autograd import rule_relus
from deconvlab.engine.receptive import window_parameters
from deconvlab.engine.rules import Rule
from deconvlab.engine.trace import Call, trace_chain


@dataclass(frozen=True)
class Signal:
    """What goes down: per unit, the window of the current map that can be non-zero.

    ``values`` (M, C, h, w) with ``origin`` (M, 2), each window's top-left in the map; or (M, F) with
    ``origin`` None below a flatten. ``images`` (M,) says which image's records each unit uses.
    """

    values: torch.Tensor
    origin: torch.Tensor | None
    images: torch.Tensor


def record_forward(
    model: nn.Module, inputs: torch.Tensor, layer: str, rule: Rule, allow_vjp: bool, strict: bool = False
):
    """Forward ``inputs`` once up to ``layer``; return the chain of calls (with switches and masks) and
    the layer's output. The model must already be frozen (``frozen_eval``)."""
    names = {module: name for name, module in model.named_modules()}

    def before(module: nn.Module, x: torch.Tensor):
        step = _step_for(module, rule, allow_vjp, strict, names.get(module, ""))
        return step.before(module, x) if step.before is not None and _reads_forward(step, rule) else None

    def record(module: nn.Module, x: torch.Tensor, output: torch.Tensor, early):
        step = _step_for(module, rule, allow_vjp, strict, names.get(module, ""))
        if step.record is None or not _reads_forward(step, rule):
            return early
        return step.record(module, x, output)

    with torch.no_grad():
        return trace_chain(model, inputs, layer, record, before)


def _reads_forward(step: Step, rule: Rule) -> bool:
    """Whether a step keeps anything of the forward pass (a ReLU mask only if the rule reads it)."""
    return rule.needs_forward or step.reverse is not _reverse_relu


def reverse(
    calls: list[Call], signal: Signal, rule: Rule, allow_vjp: bool, strict: bool = False
) -> tuple[Signal, int]:
    """Pass ``signal`` down every call, last to first; also return the largest window's bytes."""
    peak = signal.values.numel() * signal.values.element_size()
    for call in reversed(calls):
        step = _step_for(call.module, rule, allow_vjp, strict, call.name)
        signal = step.reverse(call, signal, rule)
        peak = max(peak, signal.values.numel() * signal.values.element_size())
    return signal, peak


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


def gather_windows(maps: torch.Tensor, images: torch.Tensor, origin: torch.Tensor, size) -> torch.Tensor:
    """Windows (M, C, h, w) of ``maps`` (N, C, H, W) at ``origin`` in image ``images``; zero outside.

    >>> maps = torch.arange(9.0).view(1, 1, 3, 3)
    >>> gather_windows(maps, torch.tensor([0]), torch.tensor([[-1, 1]]), (2, 2))[0, 0].tolist()
    [[0.0, 0.0], [1.0, 2.0]]
    """
    height, width = maps.shape[-2:]
    rows, ys, xs = _window_indices(origin, size)
    picked = maps[images[rows], :, ys.clamp(0, height - 1), xs.clamp(0, width - 1)].permute(0, 3, 1, 2)
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


# ---- mirror steps: how each module type is recorded in the forward pass and undone ------------------


@dataclass(frozen=True)
class Step:
    """``reverse(call, signal, rule) -> signal``; ``record(module, input, output)`` keeps what it needs,
    or ``before(module, input)``, before the call (an in-place module overwrites its input)."""

    reverse: object
    record: object = None
    before: object = None


def _reverse_conv(call: Call, signal: Signal, rule: Rule) -> Signal:
    module = call.module
    if module.padding_mode != "zeros":
        raise ValueError(
            f"module {call.name!r} (Conv2d with padding_mode={module.padding_mode!r}): the mirror engine "
            "only transposes zero-padded convolutions; use engine='autograd'"
        )
    kernel, stride, padding, dilation = window_parameters(module, call.input_shape[-2:])
    values = conv_transpose(signal.values, module.weight, stride, dilation, module.groups)
    origin = _origin_below(signal.origin, stride, padding)
    return fit_to_map(replace(signal, values=values, origin=origin), _map_size(call.input_shape))


def conv_transpose(values: torch.Tensor, weight: torch.Tensor, stride, dilation, groups: int) -> torch.Tensor:
    """``conv_transpose2d`` with padding 0 and no bias: the whole input span of the windows.

    Down to a layer with few channels (the pixels), PyTorch's CPU kernel is slow; there, one matrix
    product over every position of every window, ``(M h w, C) @ (C, kh kw C_out)`` (the values are
    channels last, so no copy; the columns padded to a multiple of 16, which MKL multiplies about 2x
    faster), followed by col2im as kh * kw strided additions, computes the same sums faster
    (ZFNet's conv1: about 2.5x).

    >>> values, weight = torch.randn(2, 8, 5, 5), torch.randn(8, 3, 7, 7)
    >>> torch.allclose(conv_transpose(values, weight, (2, 2), (1, 1), 1),
    ...                F.conv_transpose2d(values, weight, stride=2), atol=1e-4)
    True
    """
    if groups > 1 or weight.shape[1] > FEW_CHANNELS:
        return F.conv_transpose2d(values, weight, None, stride=stride, dilation=dilation, groups=groups)
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


FEW_CHANNELS = 4  # transposed convolutions to at most this many channels use one matmul + col2im


def _origin_below(origin: torch.Tensor, stride, padding) -> torch.Tensor:
    """Top-left of a window's input span: output position o starts at input ``o * s - p``."""
    device = origin.device
    return origin * torch.tensor(stride, device=device) - torch.tensor(padding, device=device)


def _record_switches(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The paper's switches: where each pooling window found its maximum.

    MaxPool2d: the row and column offset inside its window, (N, 2C, H_out, W_out) uint8 (rows in the
    first C channels). AdaptiveMaxPool2d (irregular windows): the flat index into H_in * W_in.
    """
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return F.adaptive_max_pool2d(x, module.output_size, return_indices=True)[1]
    kernel, stride, padding, dilation = window_parameters(module, x.shape[-2:])
    flat = F.max_pool2d(x, kernel, stride, padding, dilation, module.ceil_mode, return_indices=True)[1]
    rows, columns = (flat // x.shape[-1], flat % x.shape[-1])
    starts = [
        torch.arange(n, device=x.device) * s - p
        for n, s, p in zip(flat.shape[-2:], stride, padding, strict=True)
    ]
    dtype = (
        torch.uint8 if max(d * (k - 1) for d, k in zip(dilation, kernel, strict=True)) < 256 else torch.int32
    )
    return torch.cat([rows - starts[0][:, None], columns - starts[1][None, :]], dim=1).to(dtype)


def _reverse_max_pool(call: Call, signal: Signal, rule: Rule) -> Signal:
    """Unpool: each value goes to its switch; values meeting at one input position add up."""
    if isinstance(call.module, nn.AdaptiveMaxPool2d):
        return _reverse_adaptive_max_pool(call, signal)
    values, origin = signal.values, signal.origin
    kernel, stride, padding, dilation = window_parameters(call.module, call.input_shape[-2:])
    (m, c, h, w), device = values.shape, values.device
    span = tuple(
        (n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((h, w), stride, dilation, kernel, strict=True)
    )
    offsets = gather_windows(call.data, signal.images, origin, (h, w)).int()  # outside the map: 0
    starts = (
        torch.arange(h, device=device, dtype=torch.int32)[:, None] * (stride[0] * span[1])
        + torch.arange(w, device=device, dtype=torch.int32) * stride[1]
    )  # each window's first input position, as a flat index into the span
    index = offsets[:, :c] * span[1] + offsets[:, c:] + starts
    # channels last (M, positions, C): what the next transposed convolution's matrix product reads
    index, values = (t.permute(0, 2, 3, 1).reshape(m, h * w, c) for t in (index.long(), values))
    unpooled = values.new_zeros((m, span[0] * span[1], c)).scatter_add_(1, index, values)
    unpooled = unpooled.view(m, *span, c).permute(0, 3, 1, 2)
    below = Signal(unpooled, _origin_below(origin, stride, padding), signal.images)
    # every switch lies inside the map, so nothing outside it needs zeroing; only oversize windows shrink
    return _shift_inside(below, _map_size(call.input_shape)) if _oversize(below, call.input_shape) else below


def _oversize(signal: Signal, shape: tuple[int, ...]) -> bool:
    return any(have > limit for have, limit in zip(signal.values.shape[-2:], shape[-2:], strict=True))


def _reverse_adaptive_max_pool(call: Call, signal: Signal) -> Signal:
    values = to_full(signal, _map_size(call.output_shape))
    m, c = values.shape[:2]
    size = _map_size(call.input_shape)
    switches = call.data[signal.images].flatten(2)
    unpooled = values.new_zeros((m, c, size[0] * size[1])).scatter_add_(2, switches, values.flatten(2))
    return _whole_maps(unpooled.view(m, c, *size), signal.images)


def _record_positive(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    return output > 0  # == (forward input > 0), also after an in-place ReLU


def _positive_input(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x > 0  # a rectifier-like activation's f > 0, before an in-place call overwrites f


def _reverse_relu(call: Call, signal: Signal, rule: Rule) -> Signal:
    if call.data is None:  # the rule does not read the forward pass (deconvnet)
        positive = None
    elif signal.origin is None:
        positive = call.data[signal.images]
    else:
        positive = gather_windows(call.data, signal.images, signal.origin, signal.values.shape[-2:])
    return replace(signal, values=rule.backward(positive, signal.values))


def _reverse_linear(call: Call, signal: Signal, rule: Rule) -> Signal:
    values = to_full(signal, _map_size(call.output_shape)) @ call.module.weight  # W^T R, no bias
    return _whole_maps(values, signal.images)


def _reverse_batch_norm(call: Call, signal: Signal, rule: Rule) -> Signal:
    module = call.module
    if module.running_var is None:
        raise ValueError(
            f"module {call.name!r} ({type(module).__name__} with track_running_stats=False): in eval mode "
            "it normalises by batch statistics, not a fixed scale; use engine='autograd'"
        )
    scale = torch.rsqrt(module.running_var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight
    shape = (1, -1) + (1,) * (signal.values.ndim - 2)
    return replace(signal, values=signal.values * scale.view(shape))


def _reverse_identity(call: Call, signal: Signal, rule: Rule) -> Signal:
    return signal


def _reverse_reshape(call: Call, signal: Signal, rule: Rule) -> Signal:
    values = to_full(signal, _map_size(call.output_shape)).reshape(len(signal.values), *call.input_shape[1:])
    return _whole_maps(values, signal.images)


def _copy_input(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone()


def _reverse_vjp(call: Call, signal: Signal, rule: Rule) -> Signal:
    """The vector-Jacobian product of the module at its recorded input (zeros for a linear module)."""
    values = to_full(signal, _map_size(call.output_shape)) if signal.origin is not None else signal.values
    if call.data is None:
        x = values.new_zeros((len(values), *call.input_shape[1:]))
    else:
        x = call.data[signal.images.to(call.data.device)]
    x.requires_grad_(True)
    with torch.enable_grad(), rule_relus(rule, allow_vjp=True, strict=True):  # only ReLUs take the rule
        output = call.module(x.clone() if getattr(call.module, "inplace", False) else x)
    (values,) = torch.autograd.grad(output, x, values)
    return _whole_maps(values, signal.images)


def _whole_maps(values: torch.Tensor, images: torch.Tensor) -> Signal:
    """A signal whose windows are the whole maps (or flat, for 2D values)."""
    if values.ndim == 2:
        return Signal(values, None, images)
    return Signal(values, torch.zeros((len(values), 2), dtype=torch.long, device=values.device), images)


LINEAR_MAP = Step(_reverse_vjp)
IDENTITY = Step(_reverse_identity)
MIRROR_STEPS = {
    nn.Conv2d: Step(_reverse_conv),
    nn.Linear: Step(_reverse_linear),
    nn.ReLU: Step(_reverse_relu, _record_positive),
    nn.MaxPool2d: Step(_reverse_max_pool, _record_switches),
    nn.AdaptiveMaxPool2d: Step(_reverse_max_pool, _record_switches),
    nn.AvgPool2d: LINEAR_MAP,
    nn.AdaptiveAvgPool2d: LINEAR_MAP,
    nn.Flatten: Step(_reverse_reshape),
    nn.Unflatten: Step(_reverse_reshape),
    nn.Dropout: IDENTITY,
    nn.Dropout2d: IDENTITY,
    nn.AlphaDropout: IDENTITY,
    nn.Identity: IDENTITY,
    nn.BatchNorm1d: Step(_reverse_batch_norm),
    nn.BatchNorm2d: Step(_reverse_batch_norm),
}
NORMALISATIONS = (nn.LocalResponseNorm, nn.CrossMapLRN2d)
RESHAPE = Step(_reverse_reshape)
VJP_AT_INPUT = Step(_reverse_vjp, before=_copy_input)
RECTIFIER = Step(_reverse_relu, before=_positive_input)
# rectifier-like activation modules (``deconvlab.engine.rules``), by the function their forward calls
RECTIFIER_MODULES = {
    nn.ReLU6: "hardtanh", nn.Hardtanh: "hardtanh", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.RReLU: "rrelu", nn.ELU: "elu", nn.CELU: "celu", nn.SELU: "selu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Hardswish: "hardswish", nn.Mish: "mish",
}  # fmt: skip
OTHER_ACTIVATION_MODULES = {
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid", nn.Tanh: "tanh", nn.Softplus: "softplus",
    nn.Softsign: "softsign", nn.LogSigmoid: "logsigmoid", nn.Tanhshrink: "tanhshrink", nn.GLU: "glu",
}  # fmt: skip


def _is_rectifier(module: nn.Module) -> bool:
    """A rectifier-like activation module: hardtanh only as ReLU6 (``min_val`` 0)."""
    if type(module) is nn.Hardtanh:
        return module.min_val == 0
    return type(module) in RECTIFIER_MODULES


def _step_for(module: nn.Module | None, rule: Rule, allow_vjp: bool, strict: bool, name: str) -> Step:
    """The mirror step of the module called ``name`` (None: a reshape between modules)."""
    if module is None:
        return RESHAPE
    if isinstance(module, NORMALISATIONS):
        return IDENTITY if rule.skip_normalisation else VJP_AT_INPUT
    step = MIRROR_STEPS.get(type(module))
    if step is not None:
        return step
    if _is_rectifier(module) and (rule.exact_elsewhere or not strict):
        return VJP_AT_INPUT if rule.exact_elsewhere else RECTIFIER
    if allow_vjp:
        return VJP_AT_INPUT
    known = ", ".join(sorted({t.__name__ for t in (*MIRROR_STEPS, *NORMALISATIONS)}))
    kind = type(module).__name__
    if _is_rectifier(module):
        raise ValueError(
            f"module {name!r} ({kind}): strict=True, and the {rule.name} rule is only defined for ReLUs; "
            "pass strict=False to take the rule at this rectifier-like activation, or allow_vjp=True to use "
            "its vector-Jacobian product"
        )
    if type(module) in OTHER_ACTIVATION_MODULES:
        raise ValueError(
            f"module {name!r} ({kind}): an activation other than ReLU that is not rectifier-like, and the "
            f"{rule.name} rule is only defined for ReLUs; the mirror engine cannot take it yet (a sigmoid "
            "gate multiplies another path, which a chain of modules cannot follow): use "
            "engine='autograd', where gates are constants, or pass allow_vjp=True to use its "
            "vector-Jacobian product"
        )
    raise ValueError(
        f"module {name!r} of type {kind}: the mirror engine has no mirror step for it (known: {known}, "
        f"and rectifier-like activations); pass allow_vjp=True to use its vector-Jacobian product, or use "
        "engine='autograd'"
    )


def activations(
    calls: list[Call], rule: Rule, allow_vjp: bool, strict: bool
) -> tuple[tuple[str, str, str], ...]:
    """``(module, function, policy)`` for each activation module other than ReLU in the chain, in call
    order, as the autograd engine reports them (``rule_relus.applied``)."""
    found = {}
    for call in calls:
        kind = type(call.module)
        function = RECTIFIER_MODULES.get(kind) or OTHER_ACTIVATION_MODULES.get(kind)
        if function is None:
            continue
        step = _step_for(call.module, rule, allow_vjp, strict, call.name)
        found[(call.name, function)] = "rectifier" if step is RECTIFIER else "gradient"
    return tuple((name, function, policy) for (name, function), policy in found.items())
