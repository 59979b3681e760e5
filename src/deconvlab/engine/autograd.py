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


def forward_image(
    model: nn.Module, image: torch.Tensor, layer: str, rule: Rule, allow_vjp: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward one image (1, C, H, W) up to ``layer`` with the rule in place.

    Returns the input leaf and the layer's output. The model must already be frozen (``frozen_eval``).
    """
    x = image.detach().clone().requires_grad_(True)
    with torch.enable_grad(), rule_relus(rule, allow_vjp, where=f"the model below layer {layer!r}"):
        output = forward_to(model, layer, x)
    return x, output


def backward_units(x: torch.Tensor, output: torch.Tensor, units: torch.Tensor, seed: str) -> torch.Tensor:
    """Projections (M, C, H, W) of ``units`` rows (channel, y, x) or (feature,) of the image ``x``.

    One backward pass per unit through the same forward graph (kept with ``retain_graph``). A single
    batched pass (``is_grads_batched``) gives the same numbers, but in torch 2.13 vmap has no batching
    rule for ``convolution_backward`` and loops over the seeds itself, on a slower kernel: measured
    1.2x (ZFNet) to 10x (small nets) slower than this loop. The mirror engine batches units for real.
    """
    projections = x.new_zeros((len(units), *x.shape[1:]), dtype=torch.float32)
    if not output.requires_grad:  # the layer does not depend on the input
        return projections
    for index, seed_map in enumerate(seed_maps(output.detach(), units, seed)):
        (grad,) = torch.autograd.grad(output, x, seed_map[None], retain_graph=True, allow_unused=True)
        if grad is not None:
            projections[index] = grad[0]
    return projections


def seed_maps(output: torch.Tensor, units: torch.Tensor, seed: str) -> torch.Tensor:
    """One map per unit, shaped like one image's ``output``, zero except at the unit.

    ``seed="activation"`` puts the unit's own activation there (the paper); ``"one"`` puts 1.

    >>> out = torch.arange(6.0).view(1, 1, 2, 3)
    >>> seed_maps(out, torch.tensor([[0, 1, 2]]), "activation")[0, 0]
    tensor([[0., 0., 0.],
            [0., 0., 5.]])
    """
    columns = tuple(units.T.to(output.device))
    rows = torch.arange(len(units), device=output.device)
    seeds = torch.zeros((len(units), *output.shape[1:]), dtype=output.dtype, device=output.device)
    values = output[0][columns] if seed == "activation" else torch.ones_like(rows, dtype=output.dtype)
    seeds[(rows, *columns)] = values
    return seeds
