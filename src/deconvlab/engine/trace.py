"""Follow a forward pass as a chain of module calls, up to a layer: what the mirror deconvnet is built
from.

Every leaf module (one without children) gets a forward hook, inside a context manager. A call joins
the chain if its input is the previous call's output, or a reshape of it (``torch.flatten`` or
``x.view(n, -1)`` in ``forward``: same memory, same number of elements; or, for a channels_last map
that a flatten copies, a result the forward pass got from it by a reshape function). Anything else between two
modules (``F.relu``, an addition, a concatenation) breaks the chain, with an error naming both modules:
such models need the autograd engine.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
>>> calls, output = trace_chain(model, torch.zeros(1, 1, 4, 4), "3")
>>> [(call.name, type(call.module).__name__, call.output_shape[1:]) for call in calls]
[('0', 'Conv2d', (2, 2, 2)), ('1', 'ReLU', (2, 2, 2)), ('2', 'Flatten', (8,)), ('3', 'Linear', (3,))]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from deconvlab.engine._model import LayerReached, find_layer, this_thread_only


@dataclass
class Call:
    """One step of the chain: a module call (``module`` None: a reshape between two modules).

    ``data`` is whatever the ``record`` callback kept at call time (switches, ReLU masks, ...).
    """

    name: str
    module: nn.Module | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    data: object = None


def trace_chain(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    record: Callable[[nn.Module, torch.Tensor, torch.Tensor, object], object] | None = None,
    before: Callable[[nn.Module, torch.Tensor], object] | None = None,
) -> tuple[list[Call], torch.Tensor]:
    """Run ``model(inputs)`` up to ``layer``; return the chain of calls and the layer's output.

    ``before(module, input)`` runs just before each call (before an in-place module overwrites its
    input); ``record(module, input, output, early)`` inside each call's hook (before any later in-place
    operation can change the tensors), with ``early`` what ``before`` returned; its result is kept as
    ``Call.data``.
    """
    target = find_layer(model, layer)
    chain = _Chain(inputs, record, before)
    leaves = [
        (name, module) for name, module in model.named_modules() if next(module.children(), None) is None
    ]
    with ExitStack() as stack:
        for name, module in leaves:
            stack.enter_context(_forward_hook(module, chain.hook(name), chain.before_call))
        stack.enter_context(_forward_hook(target, chain.stop(layer)))
        stack.enter_context(chain.reshapes)
        try:
            model(inputs)
        except LayerReached:
            pass
    if chain.output is None:
        raise ValueError(f"layer={layer!r}: not called in the model's forward pass, so it has no units")
    return chain.calls, chain.output


class _Chain:
    """The calls seen so far and the tensor the next call must start from."""

    def __init__(self, inputs: torch.Tensor, record, before) -> None:
        self.calls: list[Call] = []
        self.last, self.last_name = inputs, "the model's input"
        self.record, self.before, self.early = record, before, None
        self.output: torch.Tensor | None = None
        self.reshapes = _Reshapes()

    def hook(self, name: str):
        def on_call(module, args, output):
            tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
            if len(tensors) != 1 or not isinstance(output, torch.Tensor):
                raise ValueError(
                    f"module {name!r} ({type(module).__name__}) takes or returns more than one tensor; the "
                    "mirror engine follows a chain of modules: use engine='autograd'"
                )
            self.link(tensors[0], f"module {name!r} ({type(module).__name__})")
            data = self.record(module, tensors[0], output, self.early) if self.record else None
            self.early = None
            self.calls.append(Call(name, module, tuple(tensors[0].shape), tuple(output.shape), data))
            self.last, self.last_name = output, f"module {name!r} ({type(module).__name__})"

        return on_call

    def before_call(self, module, args) -> None:
        tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
        self.early = self.before(module, tensors[0]) if self.before and len(tensors) == 1 else None

    def stop(self, layer: str):
        def on_output(module, args, output):
            if isinstance(output, torch.Tensor):
                self.link(output, f"the output of layer {layer!r}")
            self.output = output
            raise LayerReached

        return on_output

    def link(self, tensor: torch.Tensor, where: str) -> None:
        """Check that ``tensor`` is the last output, or a reshape of it (then add a reshape step)."""
        last = self.last
        if tensor is last:
            return
        if _is_reshape(last, tensor) or self.reshapes.made_from(tensor, last):
            self.calls.append(Call("reshape", None, tuple(last.shape), tuple(tensor.shape)))
            self.last = tensor
            return
        raise ValueError(
            f"{where} does not start from the output of {self.last_name}: something between them runs "
            "outside a module (F.relu, an addition, a concatenation, ...). The mirror engine follows a "
            "chain of modules; use engine='autograd' for this model"
        )


_RESHAPES = {torch.flatten, torch.Tensor.flatten, torch.reshape, torch.Tensor.reshape, torch.Tensor.view}


class _Reshapes(TorchFunctionMode):
    """Records which tensor each reshape function of the forward pass was applied to."""

    def __init__(self) -> None:
        super().__init__()
        self.source: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(result) -> (result, input)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in _RESHAPES and args and isinstance(result, torch.Tensor) and result is not args[0]:
            self.source[id(result)] = (result, args[0])
        return result

    def made_from(self, tensor: torch.Tensor, origin: torch.Tensor) -> bool:
        """Whether ``tensor`` is ``origin`` after one or more recorded reshapes."""
        while id(tensor) in self.source and tensor is not origin:
            tensor = self.source[id(tensor)][1]
        return tensor is origin

    def __exit__(self, *exc) -> None:
        self.source.clear()
        return super().__exit__(*exc)


def _is_reshape(before: torch.Tensor, after: torch.Tensor) -> bool:
    """Same memory, same elements in the same order: a view, flatten or reshape."""
    return (
        before.is_contiguous()
        and after.is_contiguous()
        and before.numel() == after.numel()
        and before.data_ptr() == after.data_ptr()
        and before.shape[0] == after.shape[0]
    )


@contextmanager
def _forward_hook(module: nn.Module, hook, pre_hook=None) -> Iterator[None]:
    handles = [module.register_forward_hook(this_thread_only(hook))]
    if pre_hook is not None:
        handles.append(module.register_forward_pre_hook(this_thread_only(pre_hook)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
