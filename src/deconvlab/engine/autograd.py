"""The ``"autograd"`` engine: a backward pass in which every ReLU's backward is replaced by the rule.

Which ReLUs? Whatever the forward pass actually calls, not which modules exist: ``rule_relus`` is a
``torch.overrides.TorchFunctionMode`` that reroutes ``nn.ReLU`` (also ``inplace=True``, also one module
called several times), ``F.relu``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu`` and
``Tensor.relu_`` through ``RuleReLU``, a custom ``torch.autograd.Function`` whose backward is the rule.
Residual connections need nothing special: the addition's gradient is the gradient.

Other activations follow the policy of ``deconvlab.engine.rules`` (under deconvnet and guided):
rectifier-like ones (``F.silu``, ``F.hardswish``, ``F.gelu``, ``F.hardtanh(x, 0, 6)``, ...) go through
``RuleRectifier``, whose backward is the rule with ``f`` their input; a sigmoid or hardsigmoid whose
output is multiplied into another path (``scale * x``, also after a view or an expand) is detached at
that multiplication, a constant; anything else raises a ValueError naming the function and the module
calling it (a sigmoid not used as a gate: when the signal reaches it), unless ``allow_vjp=True``
accepts its plain gradient. ``strict=True`` refuses every activation other than ReLU. Local response
(contrast) normalisation passes the signal unchanged under deconvnet and guided, as in the original
deconvnet, and backpropagates normally under ``"gradient"``.

The mode is a context manager: it is popped, even when the forward pass raises.

>>> import torch
>>> from deconvlab.engine.rules import get_rule
>>> x = torch.tensor([-1.0, 2.0], requires_grad=True)
>>> with rule_relus(get_rule("deconvnet")):
...     y = torch.relu(x)
>>> torch.autograd.grad(y, x, torch.tensor([3.0, -5.0]))[0]     # max(R, 0), ignoring f
tensor([3., 0.])
>>> with rule_relus(get_rule("guided")):                         # SiLU: a rectifier, f its input
...     y = torch.nn.functional.silu(x)
>>> torch.autograd.grad(y, x, torch.tensor([3.0, 5.0]))[0]      # 1(f > 0) * max(R, 0)
tensor([0., 5.])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from deconvlab.engine._model import forward_to, module_names
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


class RuleRectifier(torch.autograd.Function):
    """``fn(x, *args, **kwargs)`` (a rectifier-like activation, in place or not) whose backward is
    ``rule.backward(x > 0, signal)``, with ``x > 0`` taken before ``fn`` can overwrite ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: Rule, fn, args: tuple, kwargs: dict) -> torch.Tensor:
        ctx.rule = rule
        if rule.needs_forward:
            ctx.save_for_backward(x > 0)
        output = fn(x, *args, **kwargs)
        if output is x:
            ctx.mark_dirty(x)
        return output

    @staticmethod
    def backward(ctx, signal: torch.Tensor):
        positive = ctx.saved_tensors[0] if ctx.rule.needs_forward else None
        return ctx.rule.backward(positive, signal), None, None, None, None


class RefuseSignal(torch.autograd.Function):
    """``fn(x, *args, **kwargs)`` forward; a backward that raises ``message``: an activation the rule
    does not define, found out only when the signal reaches it (a sigmoid that is not a gate)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, message: str, fn, args: tuple, kwargs: dict) -> torch.Tensor:
        ctx.message = message
        output = fn(x, *args, **kwargs)
        if output is x:
            ctx.mark_dirty(x)
        return output

    @staticmethod
    def backward(ctx, signal: torch.Tensor):
        raise ValueError(ctx.message)


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
RELUS = {
    torch.relu: False,
    torch.Tensor.relu: False,
    torch.relu_: True,
    torch.Tensor.relu_: True,
    F.relu: None,
}
NORMALISATIONS = {F.local_response_norm}
# rectifier-like activations (F.hardtanh only as ReLU6, hardtanh(x, 0, max)); modules call these too
RECTIFIERS = {
    F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.prelu, F.rrelu, F.rrelu_, F.elu, F.elu_,
    F.celu, F.celu_, F.selu, torch.selu, torch.selu_, F.gelu, F.silu, F.hardswish, F.mish,
}  # fmt: skip
GATES = {torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_, F.hardsigmoid}
OTHER_ACTIVATIONS = {
    F.softplus, F.softsign, F.logsigmoid, F.tanhshrink, F.glu,
    torch.tanh, torch.Tensor.tanh, torch.tanh_, torch.Tensor.tanh_,
}  # fmt: skip
_MULTIPLICATIONS = {
    torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__, torch.Tensor.__rmul__,
}  # fmt: skip
_GATE_VIEWS = {
    torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.expand, torch.Tensor.expand_as,
    torch.Tensor.unsqueeze, torch.unsqueeze,
}  # fmt: skip


def _relu_call(func, args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    """The input of a ReLU call and whether it is in place."""
    x = args[0] if args else kwargs["input"]
    inplace = RELUS[func]
    if inplace is None:
        inplace = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
    return x, inplace


def is_rectifier(func, args: tuple, kwargs: dict) -> bool:
    """Whether a call is rectifier-like: any of ``RECTIFIERS``, hardtanh only with ``min_val`` 0."""
    if func in (F.hardtanh, F.hardtanh_):
        return float(args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)) == 0.0
    return func in RECTIFIERS


class rule_relus(TorchFunctionMode):  # noqa: N801  (used like a function: ``with rule_relus(rule):``)
    """Within this context, every ReLU the code calls backpropagates by ``rule``, and every other
    activation by the policy of ``deconvlab.engine.rules`` (``strict=True``: refused by name).

    ``allow_vjp=True`` gives the activations that the rule does not define their plain gradient.
    ``where`` names the computation in error messages; ``modules``, if given, is the live stack of the
    names of the modules being called (see ``module_names``): the innermost one names each activation.
    ``applied`` lists ``(module, function, policy)`` for every activation other than ReLU, in call order.
    """

    def __init__(
        self,
        rule: Rule,
        allow_vjp: bool = False,
        where: str = "the model",
        strict: bool = False,
        modules: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.rule, self.allow_vjp, self.where, self.strict = rule, allow_vjp, where, strict
        self.modules = modules if modules is not None else []
        self.policies: dict[tuple[str, str], str] = {}  # (module, function) -> policy, in call order
        self.gates: dict[int, tuple[torch.Tensor, str, str]] = {}  # id(output) -> (output, module, name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in RELUS:
            x, inplace = _relu_call(func, args, kwargs)
            return RuleReLU.apply(x, self.rule, inplace)
        if func in NORMALISATIONS and self.rule.skip_normalisation:
            return PassSignal.apply(args[0], func, args[1:], kwargs)
        if self.gates and func in _MULTIPLICATIONS:
            return func(*self._constant_gates(args), **kwargs)
        if self.gates and func in _GATE_VIEWS and id(args[0]) in self.gates:
            return self._remember_gate(func(*args, **kwargs), *self.gates[id(args[0])][1:])
        rectifier, gate = is_rectifier(func, args, kwargs), func in GATES
        if not (rectifier or gate or func in OTHER_ACTIVATIONS or func in (F.hardtanh, F.hardtanh_)):
            return func(*args, **kwargs)
        name, module = getattr(func, "__name__", repr(func)), self._module()
        if self.rule.exact_elsewhere:
            self.policies[(module, name)] = "gradient"
            return func(*args, **kwargs)
        if rectifier and not self.strict:
            self.policies[(module, name)] = "rectifier"
            x, rest = (args[0], args[1:]) if args else (kwargs.pop("input"), ())
            return RuleRectifier.apply(x, self.rule, func, rest, kwargs)
        if gate and not self.strict:
            if self.allow_vjp:  # its plain gradient, unless a multiplication makes it a gate
                self.policies[(module, name)] = "gradient"
                return self._remember_gate(func(*args, **kwargs), module, name)
            return self._remember_gate(self._refused_later(func, name, args, kwargs), module, name)
        if not self.allow_vjp:
            raise ValueError(self._refusal(name, module))
        self.policies[(module, name)] = "gradient"
        return func(*args, **kwargs)

    @property
    def applied(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((module, name, policy) for (module, name), policy in self.policies.items())

    def _module(self) -> str:
        return self.modules[-1] if self.modules else ""

    def _refusal(self, name: str, module: str) -> str:
        inside = f" (in module {module!r})" if module else ""
        policy = "strict=True: only ReLUs" if self.strict else "neither a rectifier nor a multiplicative gate"
        return (
            f"rule={self.rule.name!r}: {self.where} calls {name}{inside}, an activation other than ReLU "
            f"({policy}), and the {self.rule.name} rule is only defined for ReLUs; pass allow_vjp=True to "
            "use its plain gradient, or rule='gradient'"
        )

    def _refused_later(self, func, name: str, args: tuple, kwargs: dict) -> torch.Tensor:
        """A gate candidate: computed now, refused only if the signal reaches it (it was no gate)."""
        message = self._refusal(name, self._module()).replace(
            "(neither a rectifier nor a multiplicative gate)", "(its output is not only used as a gate)"
        )
        x, rest = (args[0], args[1:]) if args else (kwargs.pop("input"), ())
        return RefuseSignal.apply(x, message, func, rest, kwargs)

    def _remember_gate(self, output: torch.Tensor, module: str, name: str) -> torch.Tensor:
        self.gates[id(output)] = (output, module, name)
        return output

    def _constant_gates(self, args: tuple) -> tuple:
        """``args`` with every gate output detached: a constant of the forward pass."""
        constant = []
        for arg in args:
            gate = self.gates.get(id(arg)) if isinstance(arg, torch.Tensor) else None
            if gate is not None and gate[0] is arg:
                self.policies[(gate[1], gate[2])] = "gate"
                arg = arg.detach()
            constant.append(arg)
        return tuple(constant)

    def __exit__(self, *exc) -> None:
        self.gates.clear()
        return super().__exit__(*exc)


def forward_images(
    model: nn.Module, images: torch.Tensor, layer: str, rule: Rule, allow_vjp: bool, strict: bool = False
) -> tuple[torch.Tensor, torch.Tensor, int, tuple[tuple[str, str, str], ...]]:
    """Forward ``images`` (G, C, H, W) up to ``layer`` with the rule in place.

    Returns the input leaf, the layer's output, the bytes the pass saved for its backward and the
    activations other than ReLU with their policy, ``(module, function, policy)``.
    The model must already be frozen (``frozen_eval``).
    """
    x = images.detach().clone().requires_grad_(True)
    saved = SavedBytes()
    mode = rule_relus(rule, allow_vjp, where=f"the model below layer {layer!r}", strict=strict, modules=[])
    with (
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack),
        module_names(model, mode.modules),
        mode,
    ):
        output = forward_to(model, layer, x)
    return x, output, saved.total, mode.applied


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
