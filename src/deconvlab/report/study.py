"""What every section of the report shares: the model, the data, the options and the output folder.

A :class:`Study` loads each split of the data once, names the layers the sections use, and keeps the
per-stage cache (``deconvlab.report.cache``). It holds no results: each section computes or reloads its
own.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deconvlab.analyses.features import conv_layers, penultimate_tap, rectified_tap, trunk_output_tap
from deconvlab.analyses.layers import default_layers
from deconvlab.report.cache import StageCache, model_fingerprint

FIGURES = "figures"


@dataclass(frozen=True)
class ReportOptions:
    """Everything a report's numbers depend on besides the model and the data.

    ``layers``: conv layers for the top-9 grids and the evolution (default: ``default_layers``, every
    conv layer of a model with at most six, else the first, each stage's last and the last).
    ``channels_per_layer``: how many channels per layer, the strongest first (None: all, ``--all``).
    ``rules``: the projection rules drawn in the grids; the first one (the deconvnet) is measured.
    ``occlusion_window`` / ``occlusion_stride``: in pixels (default: a quarter of the image, and a
    quarter of the window).
    ``optimize_steps``: steps of each top-9 channel's optimised image (``deconvlab.analyses.optimize``,
    its default recipe; 0: none). ``sanity_images``: validation images of the sanity checks (0: none).
    """

    layers: tuple[str, ...] | None = None
    channels_per_layer: int | None = 16
    k: int = 9
    rules: tuple[str, ...] = ("deconvnet",)
    scan_split: str = "val"
    batch_size: int = 64
    evolution_channels: int = 8
    evolution_images: int = 600
    invariance_images: int = 5
    occlusion_window: int | None = None
    occlusion_stride: int | None = None
    occlusion_images_per_class: int = 3
    occlusion_shown: int = 4
    correspondence_images: int = 5
    probe_train_images: int = 2400
    probe_test_images: int = 1200
    optimize_steps: int = 128
    sanity_images: int = 4
    seed: int = 0
    progress: bool = True

    def key(self) -> dict:
        """The options as a JSON-ready dict (``progress`` does not change any number)."""
        out = asdict(self)
        out.pop("progress")
        return out


@dataclass
class Study:
    """The model and data a report is about. ``data`` is "builtin" or a folder path."""

    model: nn.Module
    model_name: str
    data: str
    out: Path
    options: ReportOptions = field(default_factory=ReportOptions)
    checkpoints: Path | None = None
    _datasets: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = StageCache(self.out)
        self.fingerprint = model_fingerprint(self.model)
        all_convs = conv_layers(self.model)
        if not all_convs:
            raise ValueError(f"model {self.model_name!r} has no Conv2d layer: nothing to report on")
        chosen = list(self.options.layers) if self.options.layers else default_layers(self.model)
        unknown = [name for name in chosen if name not in all_convs]
        if unknown:
            raise ValueError(
                f"layers={unknown!r} are not conv layers of {self.model_name!r}; choose from {all_convs}"
            )
        self.all_convs, self.layers = all_convs, chosen

    @property
    def image_size(self) -> int:
        """The side of the model's square input."""
        return int(self.model.input_size[-1])

    @property
    def last_conv(self) -> str:
        """The rectified output of the last conv layer (the paper's layer 5)."""
        return rectified_tap(self.model, self.all_convs[-1])

    @property
    def trunk_output(self) -> str:
        """The conv layers' pooled output, which the classifier reads (ZFNet's layer 5 as drawn)."""
        return trunk_output_tap(self.model)

    @property
    def first_conv(self) -> str:
        """The rectified output of the first conv layer (the paper's layer 1)."""
        return rectified_tap(self.model, self.all_convs[0])

    @property
    def penultimate(self) -> str:
        """The feature vector the classifier reads (the paper's layer 7)."""
        return penultimate_tap(self.model)

    def dataset(self, split: str):
        """The ``split`` of the data, loaded once."""
        if split not in self._datasets:
            from deconvlab.data import load_dataset
            from deconvlab.data.transforms import statistics

            mean, std = statistics(self.model)
            self._datasets[split] = load_dataset(self.data, split, self.image_size, mean=mean, std=std)
        return self._datasets[split]

    def key(self, stage: str, **extra) -> dict:
        """What a stage's numbers depend on: the model's weights, the data, the options and ``extra``."""
        return {
            "stage": stage,
            "model": self.fingerprint,
            "data": self.data,
            "options": self.options.key(),
            **extra,
        }

    def figure_path(self, name: str) -> tuple[Path, str]:
        """The absolute path of a figure and its path relative to the report folder (for the HTML)."""
        relative = f"{FIGURES}/{safe_name(name)}.png"
        return self.out / relative, relative


def safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, dots, dashes and underscores replaced by dashes.

    >>> safe_name("top9 features.0/deconvnet")
    'top9-features.0-deconvnet'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def batch(dataset, indices) -> torch.Tensor:
    """The normalised images ``dataset[i][0]`` for ``indices``, stacked."""
    return torch.stack([dataset[int(i)][0] for i in indices])


def picture(dataset, index: int) -> np.ndarray:
    """uint8 (H, W, 3) pixels of one image, from ``dataset.image`` or by undoing the normalisation."""
    if hasattr(dataset, "image"):
        return np.asarray(dataset.image(int(index)))
    from deconvlab.data import denormalize

    return denormalize(dataset[int(index)][0])


def file_names(data, indices) -> tuple[list[str | None], list[str | None]]:
    """Each image's file name (``data.source(i)``: a path, or ``builtin:<split>/<i>``) and class name,
    None where the data do not say.

    >>> file_names([10, 20], [1])  # a plain list names no file
    ([None], [None])
    """
    source, name = getattr(data, "source", None), getattr(data, "class_name", None)
    sources = [source(int(i)) if source else None for i in indices]
    return sources, [name(int(i)) if name else None for i in indices]


def labels_of(dataset) -> np.ndarray:
    """Every image's label, without loading the images when the dataset lists them."""
    if hasattr(dataset, "labels"):
        return np.asarray(dataset.labels, dtype=np.int64)
    return np.array([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)


def per_class(labels: np.ndarray, count: int, classes: int | None = None) -> list[int]:
    """The first ``count`` indices of each class (of the first ``classes`` classes), class by class.

    >>> per_class(np.array([0, 1, 0, 1, 2, 0]), 2)
    [0, 2, 1, 3, 4]
    """
    chosen = []
    for label in np.unique(labels)[:classes]:
        chosen.extend(int(i) for i in np.flatnonzero(labels == label)[:count])
    return chosen
