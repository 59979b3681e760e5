"""Occlusion sensitivity (Zeiler & Fergus, Fig. 7): slide a grey square over the image, watch the output.

For every occluder position the square (``window``, top-left corners every ``stride`` pixels) is filled
with ``baseline`` (in the model's normalised input space) and the model is run again. The result holds
the logits for every position and, for a chosen ``layer``, that layer's activations summed per channel
(the paper's panel (b): the total activation of one feature map against the occluder's position).

By default only what the occluder can change is recomputed (``incremental=True``, see
``deconvlab.analyses.occlusion_incremental``); ``incremental=False`` runs the whole model for every
position and is the reference both are tested against. A 12x12 image, a 2x2 square every 2 pixels, gives
a 6x6 grid of positions:

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
...                             torch.nn.Linear(2 * 10 * 10, 3))
>>> result = occlusion_map(model, torch.rand(1, 1, 12, 12), window=2, stride=2, layer="1")
>>> tuple(result.logits.shape), tuple(result.activations.shape), result.positions_y.tolist()
((1, 6, 6, 3), (1, 6, 6, 2), [0, 2, 4, 6, 8, 10])
>>> result.incremental_layers
('0', '1')
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deconvlab.analyses.occlusion_incremental import plan_incremental
from deconvlab.analyses.scan_hooks import evaluating
from deconvlab.arithmetic.shapes import as_tuple
from deconvlab.engine._model import this_thread_only

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class OcclusionResult:
    """Outputs for every occluder position (``N`` images, ``Py`` x ``Px`` positions).

    ``logits``: (N, Py, Px, classes). ``activations``: (N, Py, Px, channels), the chosen layer's
    activations summed over space per channel, or None without a layer. ``positions_y`` and
    ``positions_x``: the occluders' top-left corners in pixels. ``incremental_layers``: the layers that
    were recomputed only over the occluder's footprint (empty when everything was recomputed).
    """

    logits: Tensor
    activations: Tensor | None
    positions_y: Tensor
    positions_x: Tensor
    window: tuple[int, int]
    stride: tuple[int, int]
    incremental_layers: tuple[str, ...] = ()


def occlusion_map(
    model: nn.Module,
    images: Tensor,
    *,
    window: int | tuple[int, int],
    stride: int | tuple[int, int],
    baseline: float = 0.0,
    layer: str | nn.Module | None = None,
    incremental: bool = True,
    batch_size: int | None = None,
) -> OcclusionResult:
    """Run ``model`` on ``images`` (N, C, H, W) with a ``baseline``-filled square at every position.

    Positions are batched, ``batch_size`` (default 64) at a time, so memory stays near ``batch_size``
    times one image's activations. The model runs in eval mode (its modes are restored afterwards).
    ``layer`` is a module of ``model`` or its name in ``model.named_modules()``.
    """
    _check_images(images)
    window = _positive_pair(window, "window")
    stride = _positive_pair(stride, "stride")
    height, width = images.shape[2:]
    if window[0] > height or window[1] > width:
        raise ValueError(f"window={window}: larger than the images ({height}x{width})")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
        raise ValueError(f"baseline={baseline!r}: must be a finite number (the occluder's fill value)")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size={batch_size!r}: must be a positive int or None")
    layer_name = _layer_name(model, layer)
    positions_y = torch.arange(0, height - window[0] + 1, stride[0])
    positions_x = torch.arange(0, width - window[1] + 1, stride[1])
    corners = torch.cartesian_prod(positions_y, positions_x).reshape(-1, 2)
    batch = batch_size or DEFAULT_BATCH_SIZE
    with torch.inference_mode(), evaluating(model):
        plan = (
            plan_incremental(model, images[:1], corners, window, layer_name, batch) if incremental else None
        )
        per_image = [
            _occlude_image(model, plan, image[None], corners, window, baseline, layer_name, batch)
            for image in images
        ]
    grid = (len(images), len(positions_y), len(positions_x))
    logits = torch.stack([out for out, _ in per_image]).reshape(*grid, -1)
    activations = None if layer is None else torch.stack([acts for _, acts in per_image]).reshape(*grid, -1)
    return OcclusionResult(
        logits=logits,
        activations=activations,
        positions_y=positions_y,
        positions_x=positions_x,
        window=window,
        stride=stride,
        incremental_layers=plan.layer_names if plan is not None else (),
    )


def _occlude_image(model, plan, image, corners, window, baseline, layer_name, batch):
    """Logits (positions, classes) and layer channel sums (positions, channels) or None, for one image."""
    clean = plan.clean_activations(image) if plan is not None else None
    logits, sums = [], []
    for begin in range(0, len(corners), batch):
        positions = slice(begin, min(begin + batch, len(corners)))
        if plan is None:
            out, acts = _full_batch(model, image, corners[positions], window, baseline, layer_name)
        else:
            patch = image.new_full((len(corners[positions]), image.shape[1], *window), float(baseline))
            out, acts = plan.run(clean, positions, patch)
        logits.append(_check_logits(out).float().cpu())
        if layer_name is not None:
            sums.append(_channel_sums(acts, layer_name))
    return torch.cat(logits), torch.cat(sums) if layer_name is not None else None


def _full_batch(model, image, corners, window, baseline, layer_name):
    """The reference: the whole model on one occluded copy of the image per position."""
    occluded = image.expand(len(corners), -1, -1, -1).clone()
    for row, (y, x) in enumerate(corners.tolist()):
        occluded[row, :, y : y + window[0], x : x + window[1]] = baseline
    if layer_name is None:
        return model(occluded), None
    with _recording(model.get_submodule(layer_name), layer_name) as outputs:
        logits = model(occluded)
    return logits, outputs[0]


@contextmanager
def _recording(module: nn.Module, name: str) -> Iterator[list[Tensor]]:
    """Collect ``module``'s output during one forward pass (a module called twice is an error)."""
    outputs: list[Tensor] = []

    def hook(_module, _inputs, output):
        if outputs:
            raise ValueError(f"layer={name!r}: called more than once per forward pass; choose another layer")
        outputs.append(output.clone())  # clone: a later in-place ReLU must not change it

    handle = module.register_forward_hook(this_thread_only(hook))  # a served model: other threads' passes
    try:
        yield outputs
    finally:
        handle.remove()


def _channel_sums(output: Tensor, layer_name: str) -> Tensor:
    if not isinstance(output, Tensor) or output.dim() < 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"layer={layer_name!r}: its output {shape} has no channel axis (expected (N, C, ...))"
        )
    return output.flatten(2).sum(2).float().cpu() if output.dim() > 2 else output.float().cpu()


def _check_logits(out) -> Tensor:
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model output {shape}: expected logits of shape (batch, classes)")
    return out


def _check_images(images) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images={shape}: expected a float tensor of shape (N, C, H, W)")
    if len(images) == 0:
        raise ValueError("images: empty batch (N=0); pass at least one image")


def _positive_pair(value, name: str) -> tuple[int, int]:
    pair = as_tuple(value, 2, name)
    if min(pair) < 1:
        raise ValueError(f"{name}={value!r}: must be positive (>= 1)")
    return pair


def _layer_name(model: nn.Module, layer: str | nn.Module | None) -> str | None:
    """The name of ``layer`` in ``model.named_modules()``."""
    if layer is None:
        return None
    names = {module: name for name, module in model.named_modules()}
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError(f"layer={type(layer).__name__}: that module is not part of the model")
        return names[layer]
    if not isinstance(layer, str) or layer not in names.values() or layer == "":
        known = ", ".join(name for name in names.values() if name) or "(none)"
        raise ValueError(f"layer={layer!r}: not a module of the model; known names: {known}")
    return layer
