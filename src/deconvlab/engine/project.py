"""``project``: any unit of a PyTorch CNN back to pixel space; ``strongest_units``: which units to pick.

A unit is one activation of a layer's output: a row (image_index, channel, y, x) for a 4D output,
(image_index, feature) for a 2D one. Its projection is what the chosen engine passes down from a map
that is zero except at the unit (Zeiler & Fergus sec. 2.1): ``seed="activation"`` starts from the
unit's own value, as the paper does, ``seed="one"`` from 1, the gradient convention.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> images = torch.randn(2, 1, 8, 8)
>>> units = strongest_units(model, images, "2")      # (image, channel, y, x), image by image
>>> units.shape
torch.Size([4, 4])
>>> project(model, images, "2", units).shape          # one projection per unit, in pixel space
torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from deconvlab.engine import autograd, mirror
from deconvlab.engine._model import (
    as_unit_rows,
    check_inputs,
    check_units,
    find_layer,
    forward_to,
    frozen_eval,
    like_model,
)
from deconvlab.engine.rules import Rule, get_rule

ENGINES = ("auto", "autograd", "mirror")
SEEDS = ("activation", "one")
MEMORY_BUDGET = 2**30  # bytes per chunk (mirror windows, autograd graphs) when no chunk_size is given
# On CPU the mirror's chunks are sized to stay in cache: ZFNet's conv5 (benchmarks/deconvnet.py) runs
# 1.5x faster with 9 units per chunk (about 64 MiB of windows) than with 155 (1 GiB)
CPU_WORKING_SET = 2**26

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionInfo:
    """How a ``project`` call ran; attached to its result as ``result.projection_info``.

    ``chunk_size``: the most units carried by one backward pass (what bounds memory);
    ``forward_passes``: images forwarded; ``backward_passes``: backward (or mirror) passes run.
    ``activations``: the activations other than ReLU below the layer, ``(module, function, policy)``
    with policy "rectifier", "gate" or "gradient" (see ``deconvlab.engine.rules``); empty on a ReLU
    network. ``engine`` is the engine that ran; under ``engine="auto"``, ``mirror_refusal`` is why the
    mirror did not (the first line of its refusal; empty when it ran).
    """

    engine: str
    rule: str
    seed: str
    units: int
    chunk_size: int
    forward_passes: int
    backward_passes: int
    activations: tuple[tuple[str, str, str], ...] = ()
    mirror_refusal: str = ""


def project(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    units,
    *,
    rule: str | Rule = "deconvnet",
    engine: str = "auto",
    seed: str = "activation",
    chunk_size: int | None = None,
    allow_vjp: bool = False,
    strict: bool = False,
) -> torch.Tensor:
    """Project each unit of ``layer`` to pixel space: a float32 tensor (M, C, H, W) on ``inputs``' device.

    Any dtype: ``inputs`` are cast to the model's dtype and moved to its device (those of its first
    floating-point parameter); both engines compute in that dtype (float64, float32, float16, bfloat16,
    on CPU or CUDA, channels_last or not) and the projections come back in float32, so a float64
    model's are rounded to float32, and a half-precision model's are as precise as its dtype allows.

    ``inputs`` (N, C, H, W); ``layer`` a name from ``model.named_modules()``; ``units`` an integer tensor
    or array, one row per unit: (image_index, channel, y, x) or (image_index, feature).
    ``rule``: "deconvnet", "guided" or "gradient" (or a ``Rule``).
    ``engine``: "mirror" (the paper's explicit deconvnet over the model's graph: all images forwarded
    once, units going down together in chunks, each in its receptive-field window: faster), "autograd"
    (any model: images forwarded once, in groups; each backward pass carries one unit of every image of
    the group), or "auto" (the default): the mirror wherever it can run, else the autograd engine
    (``projection_info.engine`` says which ran, ``projection_info.mirror_refusal`` why not the mirror).
    Under "auto" a model the mirror refuses is forwarded twice (the mirror's reading, then autograd's).
    ``chunk_size``: the most units per backward pass (mirror: units; autograd: images per group);
    default: as many as fit in about 1 GiB (the mirror on the CPU: in about 64 MiB, to stay in cache).
    ``allow_vjp``: accept the plain gradient of activations and modules the rule does not define.
    Activations other than ReLU under deconvnet and guided: rectifier-like ones (SiLU, GELU, ReLU6, ...)
    take the rule, sigmoid gates are constants (see ``deconvlab.engine.rules``); ``strict=True`` refuses
    them all, as the original definitions do.
    The model runs in eval mode (modules that were training are put back); ``requires_grad`` flags are
    not changed. Hooks act only in the calling thread, so a served model can be used concurrently.
    A module called several times in one forward pass is the layer at its first call.
    The result carries ``result.projection_info`` (a ``ProjectionInfo``) and ``result.unit_activations``,
    each unit's value in ``layer`` (M,), read from the same forward pass.
    """
    inputs = check_inputs(inputs)
    device = inputs.device
    inputs = like_model(model, inputs)
    rule = get_rule(rule)
    _check_choice("engine", engine, ENGINES)
    _check_choice("seed", seed, SEEDS)
    if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r}: expected a positive int or None")
    find_layer(model, layer)
    rows = as_unit_rows(units)
    _check_image_indices(rows[:, 0], len(inputs))
    options = {"allow_vjp": allow_vjp, "strict": strict}
    with frozen_eval(model):
        projections, activations, info = _run(
            engine, model, inputs, layer, rows, rule, seed, chunk_size, options
        )
    projections, activations = projections.to(device), activations.to(device)
    projections.projection_info, projections.unit_activations = info, activations
    log.info("project: %s", info)
    return projections


def _run(engine, model, inputs, layer, rows, rule, seed, chunk_size, options):
    """The chosen engine; under "auto" the mirror, or the autograd engine where the mirror refuses."""
    if engine == "autograd":
        return _project_autograd(model, inputs, layer, rows, rule, seed, chunk_size, options)
    try:
        return _project_mirror(model, inputs, layer, rows, rule, seed, chunk_size, options)
    except mirror.MirrorRefused as refusal:
        if engine == "mirror":
            raise
        reason = str(refusal).splitlines()[0]
    projections, activations, info = _project_autograd(
        model, inputs, layer, rows, rule, seed, chunk_size, options
    )
    return projections, activations, replace(info, mirror_refusal=reason)


def _project_autograd(model, inputs, layer, rows, rule, seed, chunk_size, options):
    """The autograd engine: images forwarded once, in groups of ``chunk_size``; each backward pass
    carries one unit of every image of the group (without a ``chunk_size``, the group is what fits in
    the memory budget, from the bytes one image's forward pass saves)."""
    images = np.unique(rows[:, 0].numpy())
    if chunk_size is None:
        _, _, per_image, _ = autograd.forward_images(model, inputs[images[:1]], layer, rule, **options)
        chunk_size = max(1, MEMORY_BUDGET // max(per_image, 1))
    projections = inputs.new_zeros((len(rows), *inputs.shape[1:]), dtype=torch.float32)
    activations = inputs.new_zeros(len(rows), dtype=torch.float32)
    backward_passes = 0
    for start in range(0, len(images), chunk_size):
        group = torch.as_tensor(images[start : start + chunk_size])
        group_images = inputs[group.to(inputs.device)]
        x, output, _, applied = autograd.forward_images(model, group_images, layer, rule, **options)
        if start == 0:  # the first forward gives the layer's shape: check every unit now
            check_units(rows, layer, (len(inputs), *output.shape[1:]))
        mine = torch.nonzero(torch.isin(rows[:, 0], group)).flatten()
        local = rows[mine].clone()
        local[:, 0] = torch.searchsorted(group, local[:, 0].contiguous())  # image index -> row in group
        activations[mine.to(inputs.device)] = output.detach()[tuple(local.to(output.device).T)].float()
        projections[mine.to(inputs.device)] = autograd.backward_slots(x, output, local, seed)
        backward_passes += int(autograd.slot_of_each_unit(local[:, 0]).max()) + 1
    chunk_size = min(chunk_size, len(images))
    info = ProjectionInfo(
        "autograd", rule.name, seed, len(rows), chunk_size, len(images), backward_passes, applied
    )
    return projections, activations, info


def _project_mirror(model, inputs, layer, rows, rule, seed, chunk_size, options):
    """The mirror engine: one forward pass for all images, then the units go down in chunks.

    Without a ``chunk_size``, the first unit goes down alone and its largest window sets the chunk size:
    what fits in ``MEMORY_BUDGET`` on a GPU, in ``CPU_WORKING_SET`` on the CPU.
    """
    graph = mirror.record_forward(model, inputs, layer, rule, options["allow_vjp"], options["strict"])
    output = graph.tensor
    check_units(rows, layer, tuple(output.shape))
    rows = rows.to(inputs.device)
    projections = inputs.new_zeros((len(rows), *inputs.shape[1:]), dtype=torch.float32)
    first = 0  # units already projected
    if chunk_size is None:
        peak = _mirror_chunk(graph, rows[:1], projections[:1], seed)
        budget = CPU_WORKING_SET if inputs.device.type == "cpu" else MEMORY_BUDGET
        chunk_size, first = max(1, budget // (4 * peak)), 1
    backward_passes = first
    for start in range(first, len(rows), chunk_size):
        chunk = slice(start, start + chunk_size)
        _mirror_chunk(graph, rows[chunk], projections[chunk], seed)
        backward_passes += 1
    chunk_size = min(chunk_size, len(rows))
    applied = mirror.activations(graph)
    info = ProjectionInfo(
        "mirror", rule.name, seed, len(rows), chunk_size, len(inputs), backward_passes, applied
    )
    return projections, output[tuple(rows.T)].float(), info


def _mirror_chunk(graph, rows, out, seed) -> int:
    """Write the projections of ``rows`` into ``out``; return the most bytes the signals held at once."""
    with torch.no_grad():  # the weights may require grad: build no graph
        signal, peak = mirror.reverse(graph, mirror.seed_signal(graph.tensor, rows, seed))
    if signal.origin is None:
        out.copy_(signal.values.reshape(out.shape))
    else:
        mirror.place(signal, out)
    return peak


def strongest_units(model: nn.Module, inputs: torch.Tensor, layer: str, channels=None) -> torch.Tensor:
    """Each image's strongest activation in each channel of ``layer``: rows (image_index, channel, y, x).

    Ordered by image, then by channel (in the order of ``channels``, default all). Ties go to the first
    position in row-major order. One forward pass, in eval mode, without gradients.

    >>> model = nn.Conv2d(1, 1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)
    >>> image = torch.tensor([[[[0.0, 1.0], [5.0, 2.0]]]])
    >>> strongest_units(model, image, "").tolist()
    [[0, 0, 1, 0]]
    """
    inputs = like_model(model, check_inputs(inputs))
    find_layer(model, layer)
    with frozen_eval(model), torch.no_grad():
        output = forward_to(model, layer, inputs)
    if output.ndim != 4:
        raise ValueError(
            f"layer={layer!r}: output of shape {tuple(output.shape)}; strongest_units needs a 4D "
            "(N, C, H, W) output"
        )
    n, c, _, w = output.shape
    channels = _check_channels(channels, c, layer)
    flat = output[:, channels].flatten(2).argmax(dim=2).cpu()  # (N, len(channels))
    image_index = torch.arange(n).repeat_interleave(len(channels))
    channel = channels.repeat(n)
    return torch.stack([image_index, channel, flat.flatten() // w, flat.flatten() % w], dim=1)


def _check_channels(channels, count: int, layer: str) -> torch.Tensor:
    if channels is None:
        return torch.arange(count)
    array = np.atleast_1d(np.asarray(channels.cpu() if isinstance(channels, torch.Tensor) else channels))
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"channels={channels!r}: expected a non-empty 1D sequence of ints or None")
    bad = array[(array < 0) | (array >= count)]
    if bad.size:
        raise ValueError(
            f"channels={channels!r}: channel {int(bad[0])} out of range [0, {count}) in layer {layer!r}"
        )
    return torch.as_tensor(array, dtype=torch.long)


def _check_image_indices(images: torch.Tensor, count: int) -> None:
    bad = torch.nonzero((images < 0) | (images >= count)).flatten()
    if len(bad):
        raise ValueError(
            f"units row {int(bad[0])}: image_index={int(images[bad[0]])} out of range [0, {count}) "
            f"for inputs of {count} image(s)"
        )


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {list(choices)}")
