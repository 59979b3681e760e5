"""Feature visualisation by optimisation: the image that drives a channel (or one unit) of a layer most.

The deconvnet answers "which pixels of this image drove the unit"; this answers "what input would drive
it most" (Erhan et al. 2009), by gradient ascent on an image. Two recipes, each a combination of small
parts (``deconvlab.analyses.optimize_image`` holds the parameterisations and the transforms):

- ``"pixel"`` (the default), Yosinski et al. 2015 ("Understanding Neural Networks Through Deep
  Visualization", sec. 3): the pixels themselves (``PixelImage``), gradient ascent, and after every
  step the regularisers ``L2Decay``, ``GaussianBlur`` every few steps, ``ClipSmallNorm`` and
  ``ClipSmallContribution``; the recipe uses decay 1e-4 and a blur of width 1 every 4 steps, one of the
  paper's four combinations (Table 1). The step is the gradient divided by its root mean square per
  image, so one learning rate suits every layer (Yosinski et al. tuned one per layer).
- ``"fourier"``, Olah et al. 2017 (Distill, "Feature Visualization"): the image's spectrum with 1/f
  scaling in a decorrelated colour space (``FourierImage``), random shift, scale and rotation every
  step (``Robustness``), Adam with learning rate 0.05 (Lucid's settings).

Why ``"pixel"``, 128 steps and ``"centre"`` are the defaults: on the demo network (zfnet-mini, demo
weights), channels 0-7 of ``features.8`` (conv3), one batch, one CPU thread of a busy 2-core machine,
the largest value of each channel's map on the optimised image, over the channel's largest on the
builtin validation split (mean over the 8 channels; smallest), and the time per channel::

    steps   pixel                      fourier
       64   3.44x (2.03x)  0.65 s      2.43x (1.33x)  0.76 s
      128   3.80x (2.13x)  1.51 s      3.47x (1.79x)  1.64 s
      256   3.95x (2.16x)  3.38 s      4.41x (2.24x)  3.77 s

    for r in pixel fourier; do for s in 64 128 256; do OMP_NUM_THREADS=1 deconvlab optimize \
      --layer features.8 --channels 0,1,2,3,4,5,6,7 --recipe $r --steps $s --out runs/$r-$s; done; done

The pixel recipe reaches more activation per second up to 128 steps (its steps are cheaper: no FFT,
no resampling); the fourier recipe keeps rising and passes it by 256 steps, and its images are
smoother (Olah et al.'s argument, which the activation does not measure). With the channel's mean as
the objective instead of its centre unit, the fourier recipe reached 0.90x the dataset's best after 64
steps (1.30x for pixel): the dataset's best is one unit's value, so one unit is what is optimised.

The objective is a channel's mean over its map (``"mean"``), its centre unit (``"centre"``) or the unit
at ``(y, x)``; for a layer whose output has no spatial axes (``nn.Linear``), ``"mean"`` and ``"centre"``
are the unit itself.
Many channels are optimised together, one image each, in one batch; each image's objective depends on
its own image only, every random draw is shared by the batch, and a channel that has converged keeps
its image, so a batch gives what each channel alone would give. The same ``seed`` gives the same images.
The optimisation stops after ``steps`` steps, or, with ``tol``, for each channel once its objective has
not risen by more than ``tol`` times its best for ``patience`` steps. It runs on the model's device and
in its dtype. Choose a conv layer rather than the ReLU after it: a ReLU passes no gradient where its
unit is off, and a unit that is off for the grey starting image never moves.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
>>> result = optimize(model, "0", [0, 2], size=(3, 16, 16), steps=32, progress=False)
>>> tuple(result.pixels.shape), result.steps
((2, 3, 16, 16), [32, 32])
>>> noise = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
>>> bool((result.objective > measure(model, "0", normalize_pixels(noise), [0, 2], "centre")[0]).all())
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as tvf

from deconvlab.analyses.optimize_image import FourierImage, PixelImage, Robustness
from deconvlab.analyses.scan_hooks import StopForward, evaluating
from deconvlab.data.transforms import MEAN, STD

__all__ = [
    "RECIPES",
    "ClipSmallContribution",
    "ClipSmallNorm",
    "GaussianBlur",
    "L2Decay",
    "Recipe",
    "Visualization",
    "measure",
    "normalize_pixels",
    "optimize",
]

Objective = str | tuple[int, int]


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name}={value!r}: must be in [0, 1)")


def _check_percentile(name: str, value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{name}={value!r}: must be a percentile in [0, 100]")


# Yosinski et al. 2015's regularisers: each maps (pixels, gradient of the objective, step, mean colour)
# to new pixels, after each step. The mean colour is the zero of the paper's mean-subtracted images.


@dataclass(frozen=True)
class L2Decay:
    """``x <- (1 - rate) x`` on the mean-subtracted image: every pixel moves towards the mean colour.

    >>> L2Decay(0.5)(torch.tensor([[[[1.0]]]]), None, 1, torch.tensor([[[0.5]]])).item()  # 0.5 + 0.5 * 0.5
    0.75
    """

    rate: float

    def __post_init__(self) -> None:
        _check_fraction("L2Decay(rate)", self.rate)

    def __call__(self, pixels: Tensor, gradient: Tensor, step: int, mean: Tensor) -> Tensor:
        return mean + (1 - self.rate) * (pixels - mean)


@dataclass(frozen=True)
class GaussianBlur:
    """A Gaussian blur of standard deviation ``sigma`` pixels after every ``every``-th step
    (``torchvision``'s ``gaussian_blur``, kernel ``2 ceil(3 sigma) + 1`` wide, reflected borders)."""

    sigma: float
    every: int = 4

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"GaussianBlur(sigma={self.sigma!r}): must be > 0 pixels")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"GaussianBlur(every={self.every!r}): must be an int >= 1")

    def __call__(self, pixels: Tensor, gradient: Tensor, step: int, mean: Tensor) -> Tensor:
        if step % self.every:
            return pixels
        width = 2 * int(torch.tensor(3 * self.sigma).ceil()) + 1
        return tvf.gaussian_blur(pixels, kernel_size=[width, width], sigma=[self.sigma, self.sigma])


@dataclass(frozen=True)
class ClipSmallNorm:
    """Pixels whose mean-subtracted colour vector has a norm below the image's ``percentile`` -> the mean.

    >>> pixels = torch.tensor([[[[0.1, 0.3, -0.2, 0.4]]]], dtype=torch.float64)  # median norm 0.25
    >>> ClipSmallNorm(50)(pixels, None, 1, torch.zeros(1, 1, 1)).tolist()
    [[[[0.0, 0.3, 0.0, 0.4]]]]
    """

    percentile: float

    def __post_init__(self) -> None:
        _check_percentile("ClipSmallNorm(percentile)", self.percentile)

    def __call__(self, pixels: Tensor, gradient: Tensor, step: int, mean: Tensor) -> Tensor:
        return _clip_below(pixels, mean, (pixels - mean).norm(dim=1), self.percentile)


@dataclass(frozen=True)
class ClipSmallContribution:
    """Pixels whose contribution ``|sum over colours of (x - mean) * d objective / dx|`` (the linear
    estimate of what setting the pixel to the mean would change) is below the ``percentile`` -> the mean."""

    percentile: float

    def __post_init__(self) -> None:
        _check_percentile("ClipSmallContribution(percentile)", self.percentile)

    def __call__(self, pixels: Tensor, gradient: Tensor, step: int, mean: Tensor) -> Tensor:
        return _clip_below(pixels, mean, ((pixels - mean) * gradient).sum(dim=1).abs(), self.percentile)


def _clip_below(pixels: Tensor, mean: Tensor, score: Tensor, percentile: float) -> Tensor:
    """``pixels``, with every pixel whose ``score`` (N, H, W) is below its image's percentile -> ``mean``."""
    threshold = torch.quantile(score.flatten(1), percentile / 100, dim=1).view(-1, 1, 1)
    return torch.where((score < threshold)[:, None], mean.expand_as(pixels), pixels)


Regularizer = Callable[[Tensor, Tensor, int, Tensor], Tensor]


@dataclass(frozen=True)
class Recipe:
    """A parameterisation, an optimiser (``"adam"`` or ``"sgd"``, the latter on the gradient divided by
    its root mean square per image), a learning rate, regularisers (``PixelImage`` only: they edit the
    pixels) and an optional ``Robustness``. ``clamp``: keep ``PixelImage`` pixels in [0, 1]."""

    image: PixelImage | FourierImage
    optimizer: str
    lr: float
    regularizers: tuple[Regularizer, ...] = ()
    robustness: Robustness | None = None
    clamp: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"Recipe(optimizer={self.optimizer!r}): must be 'adam' or 'sgd'")
        if not self.lr > 0:
            raise ValueError(f"Recipe(lr={self.lr!r}): must be > 0")
        if self.regularizers and not isinstance(self.image, PixelImage):
            raise ValueError(
                f"Recipe(regularizers=...): they edit pixels, and the image is {type(self.image).__name__}; "
                "use PixelImage"
            )


RECIPES = {
    "fourier": Recipe(FourierImage(), "adam", 0.05, robustness=Robustness()),
    "pixel": Recipe(PixelImage(), "sgd", 0.02, regularizers=(L2Decay(1e-4), GaussianBlur(1.0, every=4))),
}


@dataclass(frozen=True)
class Visualization:
    """``pixels`` (N, C, H, W) in [0, 1] (with a clamp-free ``PixelImage`` recipe: unbounded), one image
    per channel of ``channels``; ``inputs`` the same images as the model sees them, normalised;
    ``objective`` (N,) what was maximised, and ``maximum`` (N,) the channel map's largest value (what a
    top-k scan ranks dataset images by), both on the final images; ``steps`` taken per channel;
    ``seconds`` the batch's wall time."""

    layer: str
    channels: list[int]
    pixels: Tensor
    inputs: Tensor
    objective: Tensor
    maximum: Tensor
    steps: list[int]
    seconds: float


def optimize(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    *,
    objective: Objective = "centre",
    recipe: str | Recipe = "pixel",
    steps: int = 128,
    tol: float | None = None,
    patience: int = 32,
    seed: int = 0,
    size: tuple[int, int, int] | None = None,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    progress: bool | Callable[[int, int], object] = True,
) -> Visualization:
    """Optimise one image per channel of ``layer`` (a module name), all in one batch.

    ``size``: (C, H, W), default ``model.input_size``. ``mean`` and ``std``: the model's input
    normalisation, ``(pixel - mean) / std`` per colour (default ImageNet's, as ``deconvlab.data``).
    ``progress``: a bar, or a callable ``progress(done, steps)`` called after each step.
    """
    recipe = _recipe(recipe)
    channels = list(channels)
    size = _check(model, layer, channels, objective, steps, tol, patience, seed, size, mean, std)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.get_default_dtype()
    device = parameter.device if parameter is not None else torch.device("cpu")
    mean_t, std_t = (torch.tensor(v, dtype=dtype, device=device).view(-1, 1, 1) for v in (mean, std))
    index = torch.tensor(channels, device=device)
    generator = torch.Generator().manual_seed(seed)
    count, (_, height, width) = len(channels), size
    start = recipe.image.init((1, *size), generator, dtype, device)
    params = start.expand(count, *start.shape[1:]).clone().requires_grad_(True)
    optimizer = (torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.SGD)([params], lr=recipe.lr)
    final, taken = params.detach().clone(), torch.zeros(count, dtype=torch.long)
    best, stale = torch.full((count,), -torch.inf, dtype=torch.float64), torch.zeros(count, dtype=torch.long)
    done = torch.zeros(count, dtype=torch.bool)
    begin = time.perf_counter()
    with evaluating(model), _layer_output(model, layer) as run:
        for step in _steps(steps, progress):
            inputs = (recipe.image.pixels(params, (height, width)) - mean_t) / std_t
            if recipe.robustness is not None:
                inputs = recipe.robustness(inputs, generator)
            values = _objective(run(inputs), index, objective, layer)
            (gradient,) = torch.autograd.grad(values.sum(), params)
            with torch.no_grad():
                _ascend(optimizer, params, gradient, recipe.optimizer)
                for regularizer in recipe.regularizers:
                    params.copy_(regularizer(params, gradient, step, mean_t))
                if recipe.clamp and isinstance(recipe.image, PixelImage):
                    params.clamp_(0, 1)
                active = ~done
                final[active.to(device)] = params[active.to(device)]
                taken += active
                if tol is not None:
                    done |= _converged(values.detach().double().cpu(), best, stale, tol, patience)
            if bool(done.all()):
                break
    with torch.no_grad():
        pixels = recipe.image.pixels(final, (height, width))
        inputs = (pixels - mean_t) / std_t
    reached, maximum = measure(model, layer, inputs, channels, objective)
    seconds = time.perf_counter() - begin
    return Visualization(layer, channels, pixels, inputs, reached, maximum, taken.tolist(), seconds)


def measure(
    model: nn.Module, layer: str, inputs: Tensor, channels: Sequence[int], objective: Objective = "mean"
) -> tuple[Tensor, Tensor]:
    """For image i of ``inputs`` (normalised) and channel ``channels[i]``: (the objective, the largest value
    of the channel's map), each (N,) on the CPU in float64.

    >>> conv = torch.nn.Conv2d(1, 2, 1, bias=False)
    >>> _ = conv.weight.data.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    >>> image = torch.tensor([[[[0.0, 3.0], [1.0, -4.0]]]])
    >>> values, largest = measure(torch.nn.Sequential(conv), "0", image.repeat(2, 1, 1, 1), [0, 1])
    >>> values.tolist(), largest.tolist()  # means 0 and 0; maxima 3 and 4
    ([0.0, 0.0], [3.0, 4.0])
    """
    if len(inputs) != len(channels):
        raise ValueError(f"channels={list(channels)}: one per image, and inputs holds {len(inputs)} images")
    index = torch.tensor(list(channels), device=inputs.device)
    with evaluating(model), _layer_output(model, layer) as run, torch.no_grad():
        output = run(inputs)
        values = _objective(output, index, objective, layer)
        picked = output[torch.arange(len(index), device=output.device), index]
    return values.double().cpu(), picked.reshape(len(index), -1).amax(dim=1).double().cpu()


def normalize_pixels(pixels: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """Pixels (N, C, H, W) in [0, 1] -> the model's input, ``(pixels - mean) / std`` per colour."""
    mean_t, std_t = (
        torch.tensor(v, dtype=pixels.dtype, device=pixels.device).view(-1, 1, 1) for v in (mean, std)
    )
    return (pixels - mean_t) / std_t


def _recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: not a recipe; choose one of {', '.join(RECIPES)} or a Recipe")
    return RECIPES[recipe]


def _ascend(optimizer: torch.optim.Optimizer, params: Tensor, gradient: Tensor, kind: str) -> None:
    """One ascent step: the optimiser minimises, so it is handed minus the gradient."""
    if kind == "sgd":
        rms = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp(min=torch.finfo(gradient.dtype).tiny)
        gradient = gradient / rms.view(-1, *[1] * (gradient.dim() - 1))
    params.grad = -gradient
    optimizer.step()


def _converged(values: Tensor, best: Tensor, stale: Tensor, tol: float, patience: int) -> Tensor:
    """Updates ``best`` and ``stale`` (steps without a rise by more than ``tol |best|``) in place."""
    rose = values > best + tol * best.abs().nan_to_num(posinf=0.0)
    stale.copy_(torch.where(rose, 0, stale + 1))
    best.copy_(torch.maximum(best, values))
    return stale >= patience


def _objective(output: Tensor, index: Tensor, objective: Objective, layer: str) -> Tensor:
    """Image i's objective on channel ``index[i]`` of ``output`` (N, C, ...)."""
    rows = torch.arange(len(index), device=output.device)
    maps = output[rows, index]  # (N, ...) each image's own channel
    if maps.dim() == 1:
        return maps
    if objective == "mean":
        return maps.flatten(1).mean(dim=1)
    y, x = (maps.shape[1] // 2, maps.shape[2] // 2) if objective == "centre" else objective
    return maps[:, y, x]


@contextmanager
def _layer_output(model: nn.Module, layer: str) -> Iterator[Callable[[Tensor], Tensor]]:
    """``run(inputs)``: the output of ``layer``; the forward pass stops there. The hook is removed on exit."""
    caught: list[Tensor] = []

    def hook(_module, _inputs, output):
        caught.append(output)
        raise StopForward

    def run(inputs: Tensor) -> Tensor:
        caught.clear()
        try:
            model(inputs)
        except StopForward:
            pass
        if not caught:
            raise ValueError(f"layer={layer!r}: never ran in the model's forward pass")
        return caught[0]

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        yield run
    finally:
        handle.remove()


def _steps(steps: int, progress: bool | Callable[[int, int], object]) -> Iterator[int]:
    """Steps 1 to ``steps``; ``progress``: a bar (True), none (False), or ``progress(done, steps)``."""
    if callable(progress):
        for step in range(1, steps + 1):
            yield step
            progress(step, steps)
        return
    if not progress:
        yield from range(1, steps + 1)
        return
    from tqdm.auto import tqdm

    with tqdm(total=steps, desc="optimize", unit="step") as bar:
        for step in range(1, steps + 1):
            yield step
            bar.update()


def _check(model, layer, channels, objective, steps, tol, patience, seed, size, mean, std):
    """Validates the arguments of ``optimize``; returns the image size (C, H, W)."""
    for name, value, least in (("steps", steps, 1), ("patience", patience, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r}: must be an int >= {least}")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol={tol!r}: must be >= 0 (or None: run all steps)")
    known = {name for name, _ in model.named_modules() if name}
    if layer not in known:
        raise ValueError(
            f"layer={layer!r}: not a module of the model; known names: {', '.join(sorted(known))}"
        )
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels):
        raise ValueError(f"channels={channels!r}: must be a non-empty list of ints >= 0")
    if not (objective in ("mean", "centre") or (isinstance(objective, tuple) and len(objective) == 2)):
        raise ValueError(f"objective={objective!r}: must be 'mean', 'centre' or a (y, x) pair")
    size = tuple(size if size is not None else getattr(model, "input_size", ()))
    if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"size={size!r}: must be (C, H, W), positive ints (the model has no input_size)")
    if len(mean) != size[0] or len(std) != size[0] or min(std) <= 0:
        raise ValueError(
            f"mean={tuple(mean)!r}, std={tuple(std)!r}: one per channel of the image ({size[0]}), std > 0"
        )
    _check_output(model, layer, channels, objective, size)
    return size


def _check_output(model, layer, channels, objective, size) -> None:
    """One forward pass of a grey image: the channels and the unit exist in the layer's output."""
    parameter = next(model.parameters(), None)
    probe = torch.zeros((1, *size), dtype=parameter.dtype if parameter is not None else None)
    if parameter is not None:
        probe = probe.to(parameter.device)
    with evaluating(model), _layer_output(model, layer) as run, torch.no_grad():
        output = run(probe)
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise ValueError(f"layer={layer!r}: its output is not a (N, C, ...) tensor")
    bad = [c for c in channels if c >= output.shape[1]]
    if bad:
        raise ValueError(f"channels={bad}: out of range; layer {layer!r} has {output.shape[1]} channels")
    if isinstance(objective, tuple):
        if output.dim() != 4:
            raise ValueError(f"objective={objective!r}: layer {layer!r}'s output has no (y, x) axes")
        height, width = output.shape[2:]
        y, x = objective
        if not (isinstance(y, int) and isinstance(x, int) and 0 <= y < height and 0 <= x < width):
            raise ValueError(f"objective={objective!r}: outside layer {layer!r}'s {height}x{width} map")
    elif objective == "centre" and output.dim() not in (2, 4):
        raise ValueError(
            f"objective='centre': layer {layer!r}'s output {tuple(output.shape)} is not (N, C, H, W)"
        )
