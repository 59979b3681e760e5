"""Sanity checks beside the projections: how much of a projection comes from the weights?

Adebayo et al. 2018 ("Sanity Checks for Saliency Maps") re-initialise a trained network's layers and
ask whether the maps change; Nie, Zhang & Patel 2018 and Sixt, Granz & Landgraf 2020 explain why
deconvnet and guided backprop barely do. Three checks, each on deep copies of the model (the caller's
model is never changed):

- ``cascading_randomisation``: the parametrised layers that feed ``layer`` are re-drawn from the top
  down, one more at each step, down to the first; after each step the same units are projected again;
- ``independent_randomisation``: one layer at a time re-drawn, the others trained;
- ``sensitivity``: projections of different units (classes, at the logits) of the same image, against
  the same unit on different images (Nie et al.: deconvnet and guided are insensitive to the unit).

A parameter tensor is re-drawn from a normal distribution with the trained tensor's own mean and standard
deviation (the scale stays, the learned structure goes), from a generator seeded by ``seed`` and the
parameter's name, so a layer gets the same random weights in every check. Projections start from 1 at
the unit (the gradient convention, ``project(..., seed="one")``), so that a unit whose value changes sign
under randomisation does not flip its map.

The four measures (``similarity``), as in Adebayo et al., between projections p and q (C, H, W): with
``s = sum_c p_c`` (signed) and ``a = sum_c |p_c|`` (magnitude),

- ``spearman``: Spearman rank correlation of s and s' (the Pearson correlation of their ranks, ties
  averaged);
- ``spearman_abs``: the same for a and a';
- ``ssim``: scikit-image's ``structural_similarity`` of the magnitudes shown as Adebayo et al. show them
  (``grayscale``: ``(a - min a) / (99th percentile - min a)``, clipped to [0, 1]), 7x7 window;
- ``hog``: the Pearson correlation of scikit-image's ``hog`` of those two grayscale maps.

A map and its negative agree in magnitude, not in sign:

>>> p = np.zeros((1, 8, 8))
>>> p[0, 2:5, 3:6] = [[1, 2, 1], [2, -4, 2], [1, 2, 3]]
>>> {name: round(value, 6) for name, value in similarity(p, -p).items()}
{'spearman': -1.0, 'spearman_abs': 1.0, 'ssim': 1.0, 'hog': 1.0}

Measures are taken inside the unit's receptive field (``crop=True``): the zeros outside it are equal in
any two maps and would count as agreement.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deconvlab.engine import project, receptive_field

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
DEFAULT_RULES = ("deconvnet", "guided", "gradient")
SSIM_WINDOW = 7  # scikit-image's default; smaller (odd) for maps narrower than 7 pixels
HOG_CELLS = 8  # HOG cells across the map's shorter side (8-pixel cells on a 64-pixel map)

log = logging.getLogger(__name__)


# --- the measures ------------------------------------------------------------------------------------


def grayscale(magnitude: np.ndarray) -> np.ndarray:
    """Adebayo et al.'s display of a magnitude map: ``(a - min) / (99th percentile - min)`` in [0, 1].

    >>> grayscale(np.array([[0.0, 1.0], [2.0, 4.0]])).round(3).tolist()   # 99th percentile: 3.94
    [[0.0, 0.254], [0.508, 1.0]]
    """
    low, high = float(magnitude.min()), float(np.percentile(magnitude, 99))
    if high <= low:
        return np.zeros_like(magnitude, dtype=np.float64)
    return np.clip((magnitude - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class _Prepared:
    """One projection reduced once for every comparison: centred unit vectors (None when constant)."""

    signed_ranks: np.ndarray | None
    abs_ranks: np.ndarray | None
    gray: np.ndarray
    hog: np.ndarray | None


def _prepare(projection: np.ndarray) -> _Prepared:
    from scipy.stats import rankdata

    p = np.asarray(projection, dtype=np.float64)
    p = p[None] if p.ndim == 2 else p
    signed, magnitude = p.sum(axis=0), np.abs(p).sum(axis=0)
    gray = grayscale(magnitude)
    return _Prepared(
        _unit_vector(rankdata(signed.ravel())),
        _unit_vector(rankdata(magnitude.ravel())),
        gray,
        _unit_vector(_hog(gray)),
    )


def _unit_vector(values: np.ndarray) -> np.ndarray | None:
    centred = np.asarray(values, dtype=np.float64) - np.mean(values) if len(values) else values
    norm = float(np.linalg.norm(centred))
    return centred / norm if norm > 0 else None


def _hog(gray: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    cell = max(1, min(gray.shape) // HOG_CELLS)
    if min(gray.shape) < 2 * cell:  # not one block of 2x2 cells
        return np.zeros(0)
    return hog(gray, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 3:
        return float("nan")
    return float(structural_similarity(a, b, win_size=window, data_range=1.0))


def _pearson(u: np.ndarray | None, v: np.ndarray | None) -> float:
    if u is None or v is None:  # a constant map has no correlation
        return float("nan")
    return float(np.clip(u @ v, -1.0, 1.0))


def _compare(p: _Prepared, q: _Prepared) -> dict[str, float]:
    return {
        "spearman": _pearson(p.signed_ranks, q.signed_ranks),
        "spearman_abs": _pearson(p.abs_ranks, q.abs_ranks),
        "ssim": _ssim(p.gray, q.gray),
        "hog": _pearson(p.hog, q.hog),
    }


def similarity(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """The four measures (see the module docstring) between two projections (C, H, W) or (H, W).

    NaN where a measure is undefined (a constant map has no rank correlation).
    """
    p, q = np.asarray(p), np.asarray(q)
    if p.shape != q.shape or p.ndim not in (2, 3):
        raise ValueError(
            f"p of shape {p.shape}, q of shape {q.shape}: expected two maps of one shape, 2D or 3D"
        )
    return _compare(_prepare(p), _prepare(q))


# --- randomising layers ------------------------------------------------------------------------------


class _LayerReached(Exception):
    pass


def parametrised_layers(model: nn.Module, inputs: torch.Tensor, layer: str) -> list[str]:
    """Names of the modules with parameters of their own that feed ``layer``, in forward-pass order.

    Those whose forward pass ends before ``layer``'s first call does (``layer`` included): the layers
    above it cannot change its projections. One forward pass of ``inputs[:1]`` in eval mode, without
    gradients; training flags and hooks are as they were afterwards.

    >>> convs = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1)]
    >>> model = nn.Sequential(*convs, nn.Flatten(), nn.Linear(18, 1))
    >>> image = torch.zeros(1, 1, 5, 5)
    >>> parametrised_layers(model, image, "1")
    ['0']
    >>> parametrised_layers(model, image, "4")
    ['0', '2', '4']
    """
    modules = _modules(model, layer)
    order: list[str] = []

    def record(name):
        def hook(_module, _inputs, _output):
            if name not in order and next(modules[name].parameters(recurse=False), None) is not None:
                order.append(name)
            if name == layer:
                raise _LayerReached

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    training = {module: module.training for module in modules.values()}
    try:
        with torch.no_grad():
            model.eval()(inputs[:1])
    except _LayerReached:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.train(flag)
    return order


def randomise_layers(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """Re-draw, in place, the parameters of the modules ``names`` (their own, not their children's).

    Each tensor from a normal distribution with its own mean and standard deviation, drawn by a
    generator seeded by ``seed`` and the parameter's name: the same name and seed give the same tensor.
    Returns ``model``. The sanity checks call it on copies; call it on a copy yourself.

    >>> torch.manual_seed(0) and None
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    >>> before = copy.deepcopy(model.state_dict())
    >>> after = randomise_layers(model, ["1"], seed=0).state_dict()
    >>> [name for name in before if not torch.equal(before[name], after[name])]
    ['1.weight', '1.bias']
    """
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"names: {name!r} is not a module of the model (model.named_modules())")
        with torch.no_grad():
            for parameter_name, parameter in modules[name].named_parameters(recurse=False):
                key = zlib.crc32(f"{name}.{parameter_name}".encode())
                state = np.random.SeedSequence([seed, key]).generate_state(1, dtype=np.uint64)[0]
                generator = torch.Generator().manual_seed(int(state))
                values = parameter.detach().double().cpu()
                mean, std = values.mean(), values.std(unbiased=False)
                drawn = torch.randn(values.shape, generator=generator, dtype=torch.float64) * std + mean
                parameter.copy_(drawn.to(parameter.dtype))
    return model


def _modules(model: nn.Module, layer: str) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"layer={layer!r}: no module of that name in the model (model.named_modules())")
    return modules


# --- the checks --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Randomisation:
    """A cascading or independent randomisation of the layers ``steps`` (top down).

    ``maps[rule]`` (S + 1, M, C, H, W): the M units' projections, first with the trained weights, then
    after each step; ``scores[rule][measure]`` (S, M): each step's similarity to the trained projection;
    ``boxes`` (M, 4): the input box ``(y0, y1, x0, x1)`` in which each unit's maps are compared.
    In ``"cascading"`` mode step i has re-drawn ``steps[: i + 1]``; in ``"independent"`` mode ``steps[i]``
    alone.
    """

    mode: str
    layer: str
    steps: tuple[str, ...]
    units: np.ndarray
    boxes: np.ndarray
    maps: dict[str, np.ndarray]
    scores: dict[str, dict[str, np.ndarray]]

    def to_json(self) -> dict:
        """``{rule: [{"layer": step, measure: mean over units, ...}, ...]}`` (null where undefined)."""
        return {
            rule: [
                {"layer": step, **{m: _mean(scores[m][i]) for m in MEASURES}}
                for i, step in enumerate(self.steps)
            ]
            for rule, scores in self.scores.items()
        }


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """Projections of ``channels`` (K) of ``layer`` on N images, compared two ways.

    ``maps[rule]`` (N, K, C, H, W); ``same_image[rule][measure]``: one value per pair of different units
    of one image (N * K (K - 1) / 2); ``same_unit[rule][measure]``: one per pair of images for one unit
    (K * N (N - 1) / 2). A 4D layer's units all sit at ``position`` (y, x), so they share one box.
    """

    layer: str
    channels: np.ndarray
    position: tuple[int, int] | None
    box: tuple[int, int, int, int]
    maps: dict[str, np.ndarray]
    same_image: dict[str, dict[str, np.ndarray]]
    same_unit: dict[str, dict[str, np.ndarray]]

    def to_json(self) -> dict:
        """``{rule: {"same_image": {measure: mean}, "same_unit": {measure: mean}}}``."""
        return {
            rule: {
                "same_image": {m: _mean(self.same_image[rule][m]) for m in MEASURES},
                "same_unit": {m: _mean(self.same_unit[rule][m]) for m in MEASURES},
            }
            for rule in self.maps
        }


def cascading_randomisation(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    units,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    engine: str = "autograd",
    seed: int = 0,
    crop: bool = True,
    allow_vjp: bool = False,
) -> Randomisation:
    """Re-draw the layers feeding ``layer`` from the top down, re-projecting ``units`` after each step.

    ``units``: rows as for ``deconvlab.engine.project``; ``rules``: names of ``deconvlab.engine.RULES``;
    ``crop``: compare inside each unit's receptive field. Runs on a deep copy of ``model``.
    """
    return _randomisation("cascading", model, inputs, layer, units, rules, engine, seed, crop, allow_vjp)


def independent_randomisation(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    units,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    engine: str = "autograd",
    seed: int = 0,
    crop: bool = True,
    allow_vjp: bool = False,
) -> Randomisation:
    """Re-draw one layer feeding ``layer`` at a time (the others trained), top down; as the cascading."""
    return _randomisation("independent", model, inputs, layer, units, rules, engine, seed, crop, allow_vjp)


def _randomisation(mode, model, inputs, layer, units, rules, engine, seed, crop, allow_vjp) -> Randomisation:
    rules = _check_rules(rules)
    work = copy.deepcopy(model)
    steps = parametrised_layers(work, inputs, layer)[::-1]
    if not steps:
        raise ValueError(
            f"layer={layer!r}: no module with parameters feeds it, so there is nothing to randomise"
        )
    rows = np.atleast_2d(np.asarray(units.cpu() if isinstance(units, torch.Tensor) else units))
    boxes = _boxes(work, inputs, layer, rows, crop)

    def run() -> dict[str, np.ndarray]:
        return {rule: _project(work, inputs, layer, rows, rule, engine, allow_vjp) for rule in rules}

    maps = {rule: [found] for rule, found in run().items()}
    modules = dict(work.named_modules())
    for name in steps:
        trained = [p.detach().clone() for p in modules[name].parameters(recurse=False)]
        randomise_layers(work, [name], seed)
        for rule, found in run().items():
            maps[rule].append(found)
        if mode == "independent":  # put the trained weights back before the next layer
            with torch.no_grad():
                for parameter, values in zip(modules[name].parameters(recurse=False), trained, strict=True):
                    parameter.copy_(values)
        log.info("sanity %s: %s re-drawn", mode, name)
    maps = {rule: np.stack(found) for rule, found in maps.items()}
    scores = {rule: _step_scores(found, boxes) for rule, found in maps.items()}
    return Randomisation(mode, layer, tuple(steps), rows, boxes, maps, scores)


def _step_scores(maps: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """(S + 1, M, C, H, W) -> measure -> (S, M): each step against step 0, unit by unit."""
    scores = {m: np.full((len(maps) - 1, maps.shape[1]), np.nan) for m in MEASURES}
    for unit, box in enumerate(boxes):
        trained = _prepare(_crop(maps[0, unit], box))
        for step in range(1, len(maps)):
            for m, value in _compare(trained, _prepare(_crop(maps[step, unit], box))).items():
                scores[m][step - 1, unit] = value
    return scores


def sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    channels: Sequence[int],
    *,
    position: tuple[int, int] | None = None,
    rules: Sequence[str] = DEFAULT_RULES,
    engine: str = "autograd",
    crop: bool = True,
    allow_vjp: bool = False,
) -> Sensitivity:
    """Unit (class) sensitivity: different ``channels`` on one image against one channel on different images.

    Every image's unit of each channel is projected: ``(n, k)`` for a 2D layer (the logits: classes),
    ``(n, k, y, x)`` at ``position`` for a 4D one (default: the map's centre). Needs two images and two
    channels at least. Runs on a deep copy of ``model``.
    """
    rules = _check_rules(rules)
    channels = np.asarray(channels, dtype=np.int64).ravel()
    if len(channels) < 2 or len(inputs) < 2:
        raise ValueError(
            f"channels={channels.tolist()!r}, inputs of {len(inputs)} image(s): sensitivity compares "
            "at least two channels and two images"
        )
    work = copy.deepcopy(model)
    with torch.no_grad():
        shape = _output_shape(work, inputs, layer)
    n, k = len(inputs), len(channels)
    images, which = np.repeat(np.arange(n), k), np.tile(channels, n)
    if len(shape) == 4:
        position = (shape[2] // 2, shape[3] // 2) if position is None else tuple(int(v) for v in position)
        rows = np.stack([images, which, np.full(n * k, position[0]), np.full(n * k, position[1])], axis=1)
    else:
        position, rows = None, np.stack([images, which], axis=1)
    box = tuple(int(v) for v in _boxes(work, inputs, layer, rows[:1], crop)[0])
    maps, same_image, same_unit = {}, {}, {}
    for rule in rules:
        found = _project(work, inputs, layer, rows, rule, engine, allow_vjp).reshape(n, k, *inputs.shape[1:])
        prepared = [[_prepare(_crop(found[i, j], box)) for j in range(k)] for i in range(n)]
        maps[rule] = found
        same_image[rule] = _pair_scores(prepared)
        same_unit[rule] = _pair_scores([list(column) for column in zip(*prepared, strict=True)])
    return Sensitivity(layer, channels, position, box, maps, same_image, same_unit)


def _pair_scores(groups: list[list[_Prepared]]) -> dict[str, np.ndarray]:
    """measure -> one value per pair (i < j) inside each group, groups one after the other."""
    values = {m: [] for m in MEASURES}
    for group in groups:
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                for m, value in _compare(group[i], group[j]).items():
                    values[m].append(value)
    return {m: np.asarray(found) for m, found in values.items()}


def default_units(model: nn.Module, inputs: torch.Tensor, layer: str) -> np.ndarray:
    """Each image's unit to check: the strongest of ``layer`` over all channels and positions.

    At the logits, the predicted class: rows ``(n, argmax)``; on a 4D map, ``(n, c, y, x)`` (ties: the
    first in row-major order). One forward pass in eval mode, on a deep copy.

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.eye(3, 4)); _ = model[1].bias.zero_()
    >>> default_units(model, torch.tensor([[[[0.0, 2.0], [1.0, 0.0]]]]), "1").tolist()
    [[0, 1]]
    """
    with torch.no_grad():
        output = _output(copy.deepcopy(model), inputs, layer)
    flat = output.flatten(1).argmax(dim=1).cpu().numpy()
    index = np.unravel_index(flat, tuple(output.shape[1:]))
    return np.stack([np.arange(len(output)), *index], axis=1).astype(np.int64)


def _output(work: nn.Module, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    found = []

    def hook(_module, _inputs, output):
        found.append(output)
        raise _LayerReached

    handle = _modules(work, layer)[layer].register_forward_hook(hook)
    try:
        work.eval()(inputs)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    if not found or not isinstance(found[0], torch.Tensor):
        raise ValueError(f"layer={layer!r}: not called with a tensor output in the model's forward pass")
    return found[0]


def _output_shape(work: nn.Module, inputs: torch.Tensor, layer: str) -> tuple[int, ...]:
    return tuple(_output(work, inputs[:1], layer).shape)


def _project(work, inputs, layer, rows, rule, engine, allow_vjp) -> np.ndarray:
    maps = project(work, inputs, layer, rows, rule=rule, engine=engine, seed="one", allow_vjp=allow_vjp)
    return maps.detach().cpu().numpy()


def _boxes(work, inputs, layer, rows, crop: bool) -> np.ndarray:
    """(M, 4) input boxes (y0, y1, x0, x1): each unit's receptive field, or the whole image."""
    height, width = inputs.shape[2:]
    if not crop or rows.shape[1] == 2:
        return np.tile(np.array([0, height, 0, width]), (len(rows), 1))
    field = receptive_field(work, layer, tuple(inputs.shape[1:]))
    return np.array([field.box(y, x) for y, x in rows[:, 2:]], dtype=np.int64)


def _crop(projection: np.ndarray, box) -> np.ndarray:
    y0, y1, x0, x1 = (int(v) for v in box)
    return projection[..., y0:y1, x0:x1]


def _check_rules(rules) -> tuple[str, ...]:
    from deconvlab.engine import RULES

    rules = (rules,) if isinstance(rules, str) else tuple(rules)
    bad = [rule for rule in rules if rule not in RULES]
    if not rules or bad:
        raise ValueError(f"rules={list(rules)!r}: expected a non-empty list of {list(RULES)}")
    return rules


def _mean(values: np.ndarray) -> float | None:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else None


# --- all three, and the figures ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SanityChecks:
    """The three checks of one layer and units: ``sanity_checks``' result."""

    cascading: Randomisation
    independent: Randomisation
    sensitivity: Sensitivity

    def to_json(self) -> dict:
        """``{"layer", "units", "steps", "cascading", "independent", "sensitivity"}``; see each check's."""
        return {
            "layer": self.cascading.layer,
            "units": self.cascading.units.tolist(),
            "steps": list(self.cascading.steps),
            "cascading": self.cascading.to_json(),
            "independent": self.independent.to_json(),
            "sensitivity": {
                "channels": self.sensitivity.channels.tolist(),
                "position": None if self.sensitivity.position is None else list(self.sensitivity.position),
                **self.sensitivity.to_json(),
            },
        }


def sanity_checks(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    units=None,
    channels: Sequence[int] | None = None,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    engine: str = "autograd",
    seed: int = 0,
    crop: bool = True,
    allow_vjp: bool = False,
) -> SanityChecks:
    """Cascading and independent randomisation of ``units`` (default ``default_units``), and the
    sensitivity of ``channels`` (default: the first eight, or all if fewer) of ``layer``."""
    units = default_units(model, inputs, layer) if units is None else units
    if channels is None:
        with torch.no_grad():
            channels = range(min(8, _output_shape(copy.deepcopy(model), inputs, layer)[1]))
    options = {"rules": rules, "engine": engine, "crop": crop, "allow_vjp": allow_vjp}
    return SanityChecks(
        cascading_randomisation(model, inputs, layer, units, seed=seed, **options),
        independent_randomisation(model, inputs, layer, units, seed=seed, **options),
        sensitivity(model, inputs, layer, channels, **options),
    )


LINES = {"deconvnet": ("o", "-"), "guided": ("s", "--"), "gradient": ("^", ":")}  # legible in grayscale


def figures(result: SanityChecks) -> dict:
    """Every figure of ``result`` by name, in the order the report and ``deconvlab sanity`` show them."""
    return {
        "cascading-maps": maps_figure(result.cascading),
        "cascading-curves": curves_figure(result.cascading),
        "independent-maps": maps_figure(result.independent),
        "independent-curves": curves_figure(result.independent),
        "sensitivity": sensitivity_figure(result.sensitivity),
    }


def maps_figure(result: Randomisation, unit: int = 0):
    """Rows of maps, one per rule: the trained projection of unit ``unit``, then after each step.

    Each map as Adebayo et al. show it: ``grayscale`` of the magnitude, inside the unit's box.
    Returns a matplotlib ``Figure`` (no pyplot state).
    """
    from matplotlib.figure import Figure

    if not 0 <= unit < len(result.units):
        raise ValueError(f"unit={unit!r}: expected an index in [0, {len(result.units)})")
    rules, columns = list(result.maps), len(result.steps) + 1
    figure = Figure(figsize=(1.2 * columns + 0.6, 1.3 * len(rules) + 1.2), dpi=100)
    axes = figure.subplots(len(rules), columns, squeeze=False)
    for row, rule in enumerate(rules):
        for column in range(columns):
            crop = _crop(result.maps[rule][column, unit], result.boxes[unit])
            axes[row, column].imshow(grayscale(np.abs(crop).sum(axis=0)), cmap="gray", vmin=0, vmax=1)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[row, 0].set_ylabel(rule)
    for column, title in enumerate(["trained", *result.steps]):
        axes[0, column].set_title(title, fontsize=7)
    what = "one more layer re-drawn per column" if result.mode == "cascading" else "one layer re-drawn"
    figure.suptitle(f"{result.mode} randomisation, {result.layer} unit {result.units[unit].tolist()}: {what}")
    figure.tight_layout()
    return figure


def curves_figure(result: Randomisation):
    """One panel per measure: its mean over units after each step, a curve per rule."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2 * len(MEASURES), 3.4), dpi=100)
    axes = figure.subplots(1, len(MEASURES), squeeze=False)[0]
    x = np.arange(len(result.steps))
    for axis, measure in zip(axes, MEASURES, strict=True):
        for rule, scores in result.scores.items():
            means = [np.nan if value is None else value for value in map(_mean, scores[measure])]
            marker, style = LINES.get(rule, ("x", "-."))
            axis.plot(x, means, marker=marker, linestyle=style, color="black", label=rule)
        axis.axhline(0.0, color="0.8", linewidth=0.8)
        axis.set_ylim(-1.05, 1.05)
        axis.set_xticks(x, list(result.steps), rotation=90, fontsize=7)
        axis.set_title(measure)
    axes[0].set_ylabel(f"similarity to the trained map ({result.mode})")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def sensitivity_figure(result: Sensitivity):
    """Per rule and measure, two bars: different units of one image; one unit on different images."""
    from matplotlib.figure import Figure

    rules = list(result.maps)
    figure = Figure(figsize=(3.2 * len(MEASURES), 3.2), dpi=100)
    axes = figure.subplots(1, len(MEASURES), squeeze=False)[0]
    x = np.arange(len(rules))
    for axis, measure in zip(axes, MEASURES, strict=True):
        for offset, (label, values, hatch) in enumerate(
            [
                ("different units, same image", result.same_image, ""),
                ("same unit, different images", result.same_unit, "//"),
            ]
        ):
            means = [np.nan if (v := _mean(values[rule][measure])) is None else v for rule in rules]
            axis.bar(
                x + 0.4 * offset - 0.2, means, 0.4, color="white", edgecolor="black", hatch=hatch, label=label
            )
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        axis.set_ylim(-1.05, 1.05)
        axis.set_xticks(x, rules)
        axis.set_title(measure)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
