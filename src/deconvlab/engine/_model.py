"""Small helpers both engines share: find a layer, check inputs and units, freeze and restore a model.

Everything that touches the model is a context manager, so nothing is left behind on an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
from torch import nn


class LayerReached(Exception):
    """Raised by a forward hook to stop the forward pass once the layer's output is known."""


def axes_after(func, args: tuple, kwargs: dict) -> tuple[int, ...]:
    """Where each axis of ``args[0]`` lands in the output of ``func`` (a permutation of the axes), found
    on a meta tensor whose axes all have different sizes.

    >>> axes_after(torch.permute, (torch.zeros(2, 3, 4, 5), (0, 2, 3, 1)), {})
    (0, 3, 1, 2)
    """
    sizes = tuple(range(11, 11 + args[0].ndim))
    moved = func(torch.empty(sizes, device="meta"), *args[1:], **kwargs).shape
    return tuple(moved.index(size) for size in sizes)


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module called ``layer`` in ``model.named_modules()``; the error lists the valid names.

    >>> find_layer(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), "1")
    ReLU()
    """
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules:
        valid = ", ".join(repr(name) for name in modules if name)
        raise ValueError(
            f"layer={layer!r}: no module of that name in the model; valid names (model.named_modules()): "
            f"{valid}"
        )
    return modules[layer]


def check_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """Check ``inputs`` is a float tensor (N, C, H, W); return it detached."""
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(f"inputs of type {type(inputs).__name__}: expected a torch.Tensor (N, C, H, W)")
    if inputs.ndim != 4:
        hint = "; add a batch axis with inputs[None]" if inputs.ndim == 3 else ""
        raise ValueError(
            f"inputs of shape {tuple(inputs.shape)}: expected 4 dimensions (N, C, H, W), "
            f"got {inputs.ndim}{hint}"
        )
    if not inputs.is_floating_point():
        raise ValueError(f"inputs of dtype {inputs.dtype}: expected a floating-point tensor")
    if inputs.shape[0] == 0:
        raise ValueError("inputs of shape (0, ...): expected at least one image")
    return inputs.detach()


def like_model(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` in the dtype and on the device of the model's first floating-point parameter (or
    buffer), the memory format kept; unchanged for a model without any.

    >>> like_model(nn.Conv2d(1, 1, 1).double(), torch.zeros(1, 1, 2, 2)).dtype
    torch.float64
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return inputs.to(device=tensor.device, dtype=tensor.dtype)
    return inputs


def as_unit_rows(units) -> torch.Tensor:
    """``units`` as a 2D LongTensor on the CPU; the columns are checked once the layer's shape is known.

    >>> as_unit_rows([0, 1, 2, 3]).tolist()
    [[0, 1, 2, 3]]
    """
    array = units.detach().cpu().numpy() if isinstance(units, torch.Tensor) else np.asarray(units)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] not in (2, 4):
        raise ValueError(
            f"units of shape {array.shape}: expected one row per unit, (image_index, channel, y, x) for a "
            "4D layer output or (image_index, feature) for a 2D one"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"units of dtype {array.dtype}: expected integers")
    return torch.as_tensor(array, dtype=torch.long)


def check_units(rows: torch.Tensor, layer: str, output_shape: tuple[int, ...]) -> None:
    """Check unit ``rows`` (from ``as_unit_rows``) against the layer's output shape (N, C, H, W) or (N, F).

    >>> check_units(torch.tensor([[0, 1, 2, 6]]), "c", (2, 4, 5, 6))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: units row 0 = [0, 1, 2, 6]: x=6 out of range [0, 6) for layer 'c' with output shape ...
    """
    columns = {4: ("image_index", "channel", "y", "x"), 2: ("image_index", "feature")}
    if len(output_shape) not in columns:
        raise ValueError(
            f"layer={layer!r}: output of shape {tuple(output_shape)}; only 4D (N, C, H, W) and 2D (N, F) "
            "layer outputs have units"
        )
    names = columns[len(output_shape)]
    if rows.shape[1] != len(names):
        raise ValueError(
            f"units of shape {tuple(rows.shape)}: layer {layer!r} has output shape {tuple(output_shape)}, "
            f"so each row must be ({', '.join(names)})"
        )
    for axis, (name, size) in enumerate(zip(names, output_shape, strict=True)):
        bad = torch.nonzero((rows[:, axis] < 0) | (rows[:, axis] >= size)).flatten()
        if len(bad):
            row = rows[bad[0]].tolist()
            raise ValueError(
                f"units row {int(bad[0])} = {row}: {name}={row[axis]} out of range [0, {size}) for layer "
                f"{layer!r} with output shape {tuple(output_shape)}"
            )


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Put the modules of ``model`` that are training into eval mode; put them back afterwards.

    ``requires_grad`` flags are left alone (the engines ask autograd for input gradients only), and a
    model already in eval mode is not touched at all, so concurrent projections on a served model
    cannot race on its state.
    """
    training = [module for module in model.modules() if module.training]
    try:
        for module in training:
            module.training = False
        yield model
    finally:
        for module in training:
            module.training = True


def this_thread_only(hook):
    """``hook`` acting only in the thread that made it: a forward pass of the same model in another
    thread (a served model) neither stops nor records."""
    owner = threading.get_ident()

    def guarded(module, *args):  # (module, args, output) for a forward hook, (module, args) before
        if threading.get_ident() == owner:
            return hook(module, *args)
        return None

    return guarded


@contextmanager
def stop_at(module: nn.Module, store: list) -> Iterator[None]:
    """Append the module's first output to ``store`` and stop the forward pass there (``LayerReached``)."""

    def hook(_module, _inputs, output):
        store.append(output)
        raise LayerReached

    handle = module.register_forward_hook(this_thread_only(hook))
    try:
        yield
    finally:
        handle.remove()


def forward_to(model: nn.Module, layer: str, inputs: torch.Tensor, *contexts) -> torch.Tensor:
    """Run ``model(inputs)`` up to the module ``layer`` and return its (first) output; ``contexts`` are
    entered in order around the call (the graph reader's, for instance)."""
    store: list = []
    with stop_at(find_layer(model, layer), store), ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        try:
            model(inputs)
        except LayerReached:
            pass
    if not store:
        raise ValueError(f"layer={layer!r}: not called in the model's forward pass, so it has no units")
    output = store[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"layer={layer!r}: returns a {type(output).__name__}, not a tensor; pick a layer with one output"
        )
    return output


@contextmanager
def module_names(model: nn.Module, stack: list[str]) -> Iterator[list[str]]:
    """Keep ``stack`` the names of the modules being called, innermost last, during forward passes of
    ``model`` in this thread."""

    def enter(name: str):
        return lambda module, args: stack.append(name)

    def leave(module, args, output):
        if stack:
            stack.pop()

    handles = []
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(this_thread_only(enter(name))))
            handles.append(module.register_forward_hook(this_thread_only(leave)))
        yield stack
    finally:
        for handle in handles:
            handle.remove()
