"""Which layers of a model a unit can be taken from, and what applies there: ``layer_table``.

One forward pass at the model's input size, with a hook on every module, gives each layer's output
shape in call order; ``deconvlab.engine.receptive_fields`` gives every field in a second one;
``check=True`` then tries projections at each layer (one unit of one image at most 64 pixels wide) and
keeps the one-line reason of each refusal. ``default_layers`` is what the report and the explorer show
when not told.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Sigmoid())
>>> net.input_size = (3, 17, 17)
>>> rows = layer_table(net)
>>> [(row.name, row.kind, row.shape, row.field_size, row.jump) for row in rows]
[('0', 'Conv2d', (4, 8, 8), 3, 2), ('1', 'ReLU', (4, 8, 8), 3, 2), ('2', 'Conv2d', (4, 6, 6), 7, 2), \
('3', 'Sigmoid', (4, 6, 6), 7, 2)]
>>> rows[2].refused, sorted(rows[3].refused)   # a sigmoid that gates nothing: the rules refuse it
({}, ['autograd/deconvnet', 'autograd/guided', 'mirror/deconvnet', 'mirror/guided'])
>>> default_layers(net)
['0', '2']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from deconvlab.analyses.features import conv_layers, layer_features

MAX_DEFAULT_LAYERS = 6


@dataclass(frozen=True)
class LayerRow:
    """One layer: output ``shape`` (C, H, W) or (F,), field ``field_size`` x same and ``jump`` (the
    larger of the two axes; None for a layer that sees the whole image), and ``refused``: for each
    ``"engine/rule"`` that does not run there, the one-line reason (empty when all run or unchecked)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    field_size: int | None
    jump: int | None
    calls: int = 1
    refused: dict[str, str] = field(default_factory=dict)
    checked: bool = False

    def to_json(self) -> dict:
        """Plain data, for ``deconvlab layers --json``."""
        return asdict(self)


def layer_table(model: nn.Module, input_size=None, check: bool = True) -> list[LayerRow]:
    """Every module called in the forward pass whose output is one tensor per image, in call order.

    ``input_size`` (C, H, W) defaults to ``model.input_size``. With ``check``, three projections are
    tried per layer: autograd/deconvnet, mirror/deconvnet and mirror/gradient. Guided backprop takes
    deconvnet's answer (both rules apply one activation policy, ``deconvlab.engine.rules``);
    autograd/gradient, the plain input gradient, runs wherever the layer depends on the image.
    """
    from deconvlab.engine import receptive_fields

    size = tuple(input_size or model.input_size)
    shapes, calls = _output_shapes(model, size)
    fields = receptive_fields(model, size)
    if check:
        small = _check_size(model, size)
        small_shapes = _output_shapes(model, small)[0]
    rows = []
    for name, shape in shapes.items():
        rf = fields.get(name)
        field_size = jump = None
        if not isinstance(rf, str | None) and tuple(rf.size) != size[1:]:
            field_size, jump = max(rf.size), max(rf.jump)
        refused = _refusals(model, small, name, small_shapes[name]) if check else {}
        kind = type(dict(model.named_modules())[name]).__name__
        rows.append(LayerRow(name, kind, shape, field_size, jump, calls[name], refused, check))
    return rows


def _output_shapes(model: nn.Module, size) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    handles = []

    def hook(name):
        def record(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim in (2, 4) and name not in shapes:
                shapes[name] = tuple(output.shape[1:])

        return record

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, *size, device=device, dtype=dtype))
            model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return shapes, calls


CHECK_SIDE = 64  # applicability does not depend on the image size: check on small images


def _check_size(model: nn.Module, size: tuple[int, ...]) -> tuple[int, ...]:
    """``size`` shrunk to at most CHECK_SIDE pixels when the model runs on it, else ``size``."""
    small = (size[0], min(size[1], CHECK_SIDE), min(size[2], CHECK_SIDE))
    try:
        _output_shapes(model, small)
    except (RuntimeError, ValueError):
        return size
    return small


def _refusals(model: nn.Module, size: tuple[int, ...], name: str, shape) -> dict[str, str]:
    tried = {key: _refusal(model, size, name, shape, *key.split("/")) for key in CHECKED}
    refused = {key: reason for key, reason in tried.items() if reason}
    for engine in ("autograd", "mirror"):  # guided applies deconvnet's activation policy
        if f"{engine}/deconvnet" in refused:
            refused[f"{engine}/guided"] = refused[f"{engine}/deconvnet"]
    return dict(sorted(refused.items()))


CHECKED = ("autograd/deconvnet", "mirror/deconvnet", "mirror/gradient")


def _refusal(model, size, name, shape, engine, rule) -> str | None:
    from deconvlab.engine import project

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    image = torch.randn(1, *size, generator=torch.Generator().manual_seed(0)).to(device)
    unit = torch.tensor([[0, 0] + [s // 2 for s in shape[1:]]])
    try:
        project(model, image, name, unit, rule=rule, engine=engine)
    except (ValueError, NotImplementedError, RuntimeError, TypeError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


def default_layers(model: nn.Module, input_size=None) -> list[str]:
    """The conv layers shown when none are asked for: all of them when there are at most six; else
    the first conv, the last conv of each spatial size (each stage's output), and the last conv, at
    most six (evenly spaced among those, first and last kept).

    >>> from deconvlab.models import create
    >>> default_layers(create("zfnet", num_classes=10))     # five convs: all of them
    ['features.0', 'features.4', 'features.8', 'features.10', 'features.12']
    """
    convs = conv_layers(model)
    if len(convs) <= MAX_DEFAULT_LAYERS:
        return convs
    size = tuple(input_size or model.input_size)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    image = torch.zeros(1, *size, dtype=dtype, device=None if parameter is None else parameter.device)
    maps = {name: tuple(value.shape[-2:]) for name, value in layer_features(model, image, convs).items()}
    stage_ends = [name for name, after in zip(convs, convs[1:], strict=False) if maps[after] != maps[name]]
    chosen = list(dict.fromkeys([convs[0], *stage_ends, convs[-1]]))
    if len(chosen) > MAX_DEFAULT_LAYERS:
        step = (len(chosen) - 1) / (MAX_DEFAULT_LAYERS - 1)
        chosen = [chosen[round(i * step)] for i in range(MAX_DEFAULT_LAYERS)]
    return chosen
