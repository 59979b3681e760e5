"""Reading a model's intermediate features: the taps every analysis of the report uses.

A *tap* names a tensor inside a forward pass:

- ``"features.3"``, a module name as in ``model.named_modules()``: that module's output;
- ``"classifier.6:input"``: the first input of that module. The paper's "layer 7" feature vector is
  the input of the last linear layer, so :func:`penultimate_tap` returns such a tap.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
>>> conv_layers(net), penultimate_tap(net)
(['0'], '3:input')
>>> feats = layer_features(net, torch.zeros(5, 1, 4, 4), ["0", "3:input"])
>>> tuple(feats["0"].shape), tuple(feats["3:input"].shape)
((5, 2, 2, 2), (5, 8))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

INPUT_SUFFIX = ":input"


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``Conv2d`` modules, in registration order (layer 1 first)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def rectified_tap(model: nn.Module, layer: str) -> str:
    """The ``nn.ReLU`` module registered right after ``layer`` when there is one, else ``layer`` itself.

    A conv layer's rectified feature map (what the paper calls the layer's features) is the output of
    the ReLU that follows it; models that call ``F.relu`` in ``forward`` have no such module.

    >>> rectified_tap(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU(), nn.Conv2d(1, 1, 1)), "0")
    '1'
    """
    names = [name for name, _ in model.named_modules()]
    modules = dict(model.named_modules())
    if layer not in modules:
        _module_for(model, layer)  # raises the error listing the valid names
    following = names.index(layer) + 1
    if following < len(names) and isinstance(modules[names[following]], nn.ReLU):
        return names[following]
    return layer


def trunk_output_tap(model: nn.Module) -> str:
    """The tap of what the conv layers hand to the classifier: the input of the first ``nn.Linear``.

    For ZFNet that is layer 5 as the paper draws it (conv5, ReLU, max-pool: 6x6x256 = 9216 values). A
    fully convolutional net (no ``nn.Linear``) classifies with its last ``Conv2d``: its input.
    """
    return _classifier_layers(model)[0] + INPUT_SUFFIX


def penultimate_tap(model: nn.Module) -> str:
    """The tap of the feature vector fed to the classifier: the input of the last ``nn.Linear``, or of
    the last ``Conv2d`` of a fully convolutional net.

    >>> fcn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1))
    >>> trunk_output_tap(fcn), penultimate_tap(fcn)
    ('2:input', '2:input')
    """
    return _classifier_layers(model)[-1] + INPUT_SUFFIX


def _classifier_layers(model: nn.Module) -> list[str]:
    """The ``nn.Linear`` modules; without any, the last ``Conv2d`` (a fully convolutional classifier)."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:
        return linears
    convs = conv_layers(model)
    if len(convs) < 2:
        raise ValueError(
            f"model {type(model).__name__!r} has no nn.Linear layer and fewer than two Conv2d layers: "
            "no features between the conv trunk and the classifier"
        )
    return convs[-1:]


def _module_for(model: nn.Module, tap: str) -> tuple[nn.Module, bool]:
    name, wants_input = (tap[: -len(INPUT_SUFFIX)], True) if tap.endswith(INPUT_SUFFIX) else (tap, False)
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        valid = ", ".join(n for n in modules if n)
        raise ValueError(f"layer {tap!r} is not a module of the model; valid names: {valid}")
    return modules[name], wants_input


def _keep(store: dict[str, torch.Tensor], tap: str, tensor: torch.Tensor) -> None:
    # a copy: an in-place ReLU after the tapped module would otherwise rewrite what we stored
    store[tap] = tensor.detach().clone()


@contextmanager
def recording(model: nn.Module, taps: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward pass stores a copy of the tensor at each tap in the yielded dict.

    The hooks are removed on exit, even when the block raises.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for tap in taps:
            module, wants_input = _module_for(model, tap)
            if wants_input:
                hook = module.register_forward_pre_hook(lambda m, args, tap=tap: _keep(store, tap, args[0]))
            else:
                hook = module.register_forward_hook(lambda m, args, out, tap=tap: _keep(store, tap, out))
            handles.append(hook)
        yield store
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode for the block; restore each module's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def forward_with_features(
    model: nn.Module, inputs: torch.Tensor, taps: Sequence[str], *, batch_size: int = 64
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's outputs and the tensors at ``taps`` for ``inputs`` (N, C, H, W), in eval mode.

    The batch is run in chunks of ``batch_size``; the results are concatenated on the CPU.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, C, H, W); got shape {tuple(inputs.shape)}")
    outputs, parts = [], {tap: [] for tap in taps}
    with eval_mode(model), recording(model, taps) as store:
        for start in range(0, len(inputs), batch_size):
            outputs.append(model(inputs[start : start + batch_size]).cpu())
            for tap in taps:
                parts[tap].append(store[tap].detach().cpu())
    return torch.cat(outputs), {tap: torch.cat(chunks) for tap, chunks in parts.items()}


def layer_features(
    model: nn.Module, inputs: torch.Tensor, taps: Sequence[str], *, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """The tensors at ``taps`` for ``inputs``, as :func:`forward_with_features` without the outputs."""
    return forward_with_features(model, inputs, taps, batch_size=batch_size)[1]
