"""The ``"autograd"`` engine: a backward pass in which every ReLU's backward is replaced by the rule.

Which ReLUs? Whatever the forward pass actually calls, not which modules exist: ``rule_relus`` is a
``torch.overrides.TorchFunctionMode`` that reroutes ``nn.ReLU`` (also ``inplace=True``, also one module
called several times), ``F.relu``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu`` and
``Tensor.relu_`` through ``RuleReLU``, a custom ``torch.autograd.Function`` whose backward is the rule.
Residual connections need nothing special: the addition's gradient is the gradient.

Other activations (GELU, SiLU, LeakyReLU, ELU, sigmoid, ...) have no deconvnet or guided rule: under
those rules the mode raises a ValueError naming the function, unless ``allow_vjp=True`` accepts their
plain gradient. Local response (contrast) normalisation passes the signal unchanged under deconvnet and
guided, as in the original deconvnet, and backpropagates normally under ``"gradient"``.

The mode is a context manager: it is popped, even when the forward pass raises.

>>> import torch
>>> from deconvlab.engine.rules import get_rule
>>> x = torch.tensor([-1.0, 2.0], requires_grad=True)
>>> with rule_relus(get_rule("deconvnet")):
...     y = torch.relu(x)
>>> torch.autograd.grad(y, x, torch.tensor([3.0, -5.0]))[0]     # max(R, 0), ignoring f
tensor([3., 0.])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from deconvlab.engine._model import forward_to
from deconvlab.engine.rules import Rule


class RuleReLU(torch.autograd.Function):
    """``relu(x)`` (in place if asked) whose backward is ``rule.backward(output > 0, signal)``.

    ``output > 0`` exactly where the forward input was positive, so the output is what is saved; that
    also works in place, where the input has been overwritten.
    """

    generate_vmap_rule = True  # works under torch.func transforms (vmap, is_grads_batched) too

    @staticmethod
    def forward(x: torch.Tensor, rule: Rule, inplace: bool) -> torch.Tensor:
        return torch.relu_(x) if inplace else torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, rule, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        ctx.rule = rule
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, signal: torch.Tensor):
        (output,) = ctx.saved_tensors
        return ctx.rule.backward(output > 0, signal), None, None


class PassSignal(torch.autograd.Function):
    """``fn(x, *args, **kwargs)`` forward, identity backward (normalisation that is not inverted)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, fn, args: tuple, kwargs: dict) -> torch.Tensor:
        return fn(x, *args, **kwargs)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, signal: torch.Tensor):
        return signal, None, None, None


# every way a forward pass can call a ReLU, and whether it is in place (F.relu: its `inplace` argument)
_RELUS = {
    torch.relu: False,
    torch.Tensor.relu: False,
    torch.relu_: True,
    torch.Tensor.relu_: True,
    F.relu: None,
}
_NORMALISATIONS = {F.local_response_norm}
_OTHER_ACTIVATIONS = {
    F.gelu, F.silu, F.mish, F.elu, F.elu_, F.selu, torch.selu, torch.selu_, F.celu, F.celu_,
    F.leaky_relu, F.leaky_relu_, F.rrelu, F.rrelu_, F.prelu, F.hardtanh, F.hardtanh_, F.relu6,
    F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.tanhshrink, F.glu,
    torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_,
    torch.tanh, torch.Tensor.tanh, torch.tanh_, torch.Tensor.tanh_,
}  # fmt: skip


def _relu_call(func, args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    """The input of a ReLU call and whether it is in place."""
    x = args[0] if args else kwargs["input"]
    inplace = _RELUS[func]
    if inplace is None:
        inplace = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
    return x, inplace


class rule_relus(TorchFunctionMode):  # noqa: N801  (used like a function: ``with rule_relus(rule):``)
    """Within this context, every ReLU the code calls backpropagates by ``rule``.

    Under a rule that is only defined for ReLUs (deconvnet, guided), another activation raises a
    ValueError unless ``allow_vjp=True``. ``where`` names the computation in that message.
    """

    def __init__(self, rule: Rule, allow_vjp: bool = False, where: str = "the model") -> None:
        super().__init__()
        self.rule, self.allow_vjp, self.where = rule, allow_vjp, where

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            x, inplace = _relu_call(func, args, kwargs)
            return RuleReLU.apply(x, self.rule, inplace)
        if func in _NORMALISATIONS and self.rule.skip_normalisation:
            return PassSignal.apply(args[0], func, args[1:], kwargs)
        if func in _OTHER_ACTIVATIONS and not (self.rule.exact_elsewhere or self.allow_vjp):
            name = getattr(func, "__name__", repr(func))
            raise ValueError(
                f"rule={self.rule.name!r}: {self.where} calls {name}, an activation other than ReLU, and "
                f"the {self.rule.name} rule is only defined for ReLUs; pass allow_vjp=True to use its plain "
                "gradient, or rule='gradient'"
            )
        return func(*args, **kwargs)


def forward_images(
    model: nn.Module, images: torch.Tensor, layer: str, rule: Rule, allow_vjp: bool
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Forward ``images`` (G, C, H, W) up to ``layer`` with the rule in place.

    Returns the input leaf, the layer's output and the bytes the pass saved for its backward.
    The model must already be frozen (``frozen_eval``).
    """
    x = images.detach().clone().requires_grad_(True)
    saved = SavedBytes()
    with (
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack),
        rule_relus(rule, allow_vjp, where=f"the model below layer {layer!r}"),
    ):
        output = forward_to(model, layer, x)
    return x, output, saved.total


def backward_slots(x: torch.Tensor, output: torch.Tensor, units: torch.Tensor, seed: str) -> torch.Tensor:
    """Projections (M, C, H, W) of ``units``, rows (image, channel, y, x) or (image, feature) indexing
    the batch ``x``, through its forward graph (kept between passes with ``retain_graph``); float32,
    whatever the model's dtype.

    Backward pass k carries the k-th unit of every image at once: the images are the batch, so one
    pass gives up to G projections (vmap's ``is_grads_batched`` could carry several units of one image,
    but torch 2.13 has no batching rule for ``convolution_backward`` and loops, on a slower kernel).

    >>> x = torch.ones(2, 1, 1, 3, requires_grad=True)
    >>> units = torch.tensor([[1, 0, 0, 2], [0, 0, 0, 0], [1, 0, 0, 0]])
    >>> backward_slots(x, 2 * x, units, "one")[:, 0, 0].tolist()     # d(2x)/dx at each unit
    [[0.0, 0.0, 2.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    """
    projections = x.new_zeros((len(units), *x.shape[1:]), dtype=torch.float32)
    if not output.requires_grad:  # the layer does not depend on the input
        return projections
    slots = slot_of_each_unit(units[:, 0])
    values = output.detach()[tuple(units.T.to(output.device))] if seed == "activation" else None
    for slot in range(int(slots.max()) + 1):
        mine = torch.nonzero(slots == slot).flatten()
        seeds = torch.zeros_like(output)
        seeds[tuple(units[mine].T.to(output.device))] = values[mine] if values is not None else 1.0
        (grad,) = torch.autograd.grad(output, x, seeds, retain_graph=True, allow_unused=True)
        if grad is not None:
            projections[mine.to(x.device)] = grad[units[mine, 0].to(x.device)].float()
    return projections


def slot_of_each_unit(images: torch.Tensor) -> torch.Tensor:
    """For each unit, how many units of the same image come before it.

    >>> slot_of_each_unit(torch.tensor([3, 1, 3, 3, 1])).tolist()
    [0, 0, 1, 2, 1]
    """
    order = torch.argsort(images, stable=True)
    ordered = images[order]
    first = torch.searchsorted(ordered, ordered, side="left")
    slots = torch.empty_like(images)
    slots[order] = torch.arange(len(images)) - first
    return slots


class SavedBytes:
    """Counts the bytes a forward pass saves for its backward (``saved_tensors_hooks``).

    ``pack`` keeps a detached alias, not the tensor itself: an operation that saves its own output
    (ReLU, max-pool indices) would otherwise hold that output, whose ``grad_fn`` holds the saved tensor
    in turn, a cycle through C++ that Python's garbage collector cannot see, and the whole forward graph
    would never be freed.

    >>> import gc, weakref
    >>> x = torch.ones(3, requires_grad=True)
    >>> with torch.autograd.graph.saved_tensors_hooks(SavedBytes().pack, SavedBytes().unpack):
    ...     y = torch.relu(x)
    >>> alive = weakref.ref(y)
    >>> del y; _ = gc.collect()
    >>> alive() is None
    True
    """

    def __init__(self) -> None:
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.total += tensor.numel() * tensor.element_size()
        return tensor.detach()

    def unpack(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor
