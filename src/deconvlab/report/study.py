"""What every section of the report shares: the model, the data, the options and the output folder.

A :class:`Study` lists each split of the data once (image files are decoded only when a section reads
them), names the layers the sections use, and keeps the per-stage cache (``deconvlab.report.cache``). It
holds no results: each section computes or reloads its own.

**Bounded samples.** Only the top-9 scan reads a whole split (``scan_split``, streamed). Every other
section reads a sample whose size the options bound (see :class:`ReportOptions`), drawn by
:meth:`Study.sample`: from each group of candidate indices (a class, or a stretch of the split between two
evenly spread indices), the first images that can be read. An unreadable file is passed over for the
next candidate and recorded; the report lists every one it met (``dataset.skipped``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deconvlab.analyses.features import conv_layers, penultimate_tap, rectified_tap, trunk_output_tap
from deconvlab.analyses.layers import default_layers
from deconvlab.data import is_shards, readable_items
from deconvlab.report.cache import StageCache, model_fingerprint

FIGURES = "figures"


@dataclass(frozen=True)
class ReportOptions:
    """Everything a report's numbers depend on besides the model and the data.

    How many images each section reads (so a report on ImageNet's 1.3 M files reads ``scan_split`` once,
    streamed, and a few thousand images besides):

    - top-9 (Fig. 2): every image of ``scan_split``, one streaming scan; then each shown channel's top
      ``k`` again, to project and draw them (at most ``2 x k x channels_per_layer`` reads per layer);
    - evolution (Fig. 4): ``evolution_images`` training images, spread evenly, scanned per checkpoint
      (and its channels' strongest images again, to project them);
    - invariance (Fig. 5): ``invariance_images`` test images, the first of each of the first classes;
    - occlusion (Fig. 7): ``occlusion_images_per_class`` test images of each of at most
      ``occlusion_classes`` classes, spread evenly over the sorted classes (all of the built-in 12);
    - correspondence (Sec. 4.3, built-in data only): ``correspondence_images`` test images;
    - probes (Table 7): ``probe_train_images`` training and ``probe_test_images`` test images, spread;
    - sanity checks: ``sanity_images`` images of ``scan_split``, spread.

    An unreadable file is replaced by the next readable candidate (the two scans skip it) and listed. Tar
    shards have no random access and no splits, which every section but the scan needs: the report
    refuses them (``deconvlab scan`` reads shards).

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
    occlusion_classes: int = 16
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
    """The model and data a report is about. ``data`` is "builtin", a folder or a list of image files."""

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
        if is_shards(self.data):
            raise ValueError(
                f"data={self.data!r}: tar shards stream in order, without random access or splits, and "
                "every section but the top-9 scan reads images by index from the train, val and test "
                "splits; report on a folder or a list of the same images (deconvlab scan reads shards)"
            )

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
        """The ``split`` of the data, listed once: files are decoded when a section reads them."""
        if split not in self._datasets:
            from deconvlab.data import load_dataset
            from deconvlab.data.transforms import statistics

            mean, std = statistics(self.model)
            self._datasets[split] = load_dataset(
                self.data, split, self.image_size, check=False, mean=mean, std=std
            )
        return self._datasets[split]

    def sample(self, split: str, groups: Iterable[Iterable[int]], per_group: int = 1) -> Sample:
        """The first ``per_group`` readable images of each group of candidate indices of ``split``."""
        data, met = self.dataset(split), []
        read = list(read_first(data, groups, per_group, met))
        if not read:
            raise ValueError(
                f"split={split!r}: none of the images a section tried could be read ({len(met)} tried, the "
                f"first {met[0][0] if met else None}: {met[0][1] if met else 'no candidate'})"
            )
        return Sample(
            split,
            [index for index, _ in read],
            torch.stack([image for _, image in read]),
            unreadable_records(split, met),
            len(data),
        )

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


@dataclass
class Sample:
    """What a section read from ``split``: the readable images' ``indices`` and ``images`` (N, C, H, W),
    the ``unreadable`` files met on the way (``unreadable_records``), and how many images the split lists."""

    split: str
    indices: list[int]
    images: torch.Tensor
    unreadable: list[dict]
    listed: int

    def record(self) -> dict:
        """How many images were used, of how many listed: what the page says under each figure."""
        return {"split": self.split, "used": len(self.indices), "listed": self.listed}


def read_first(
    dataset, groups: Iterable[Iterable[int]], per_group: int, unreadable: list
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(index, dataset[index][0])`` of the first ``per_group`` readable indices of each group, in order;
    each unreadable file met (``UnreadableImage``) is appended to ``unreadable`` as ``(path, reason)``.

    >>> from deconvlab.data import UnreadableImage
    >>> class OddsCorrupt:
    ...     def __getitem__(self, i):
    ...         if i % 2:
    ...             raise UnreadableImage(f"{i}.png", "corrupt")
    ...         return torch.tensor([float(i)]), 0
    >>> met = []
    >>> [i for i, _ in read_first(OddsCorrupt(), [range(0, 4), range(5, 9)], 1, met)], met
    ([0, 6], [('5.png', 'corrupt')])
    """
    for group in groups:
        for index, item in itertools.islice(readable_items(dataset, group, unreadable), per_group):
            yield index, item[0]


def unreadable_records(split: str, met: Iterable[tuple[str, str]]) -> list[dict]:
    """``(path, reason)`` pairs as report.json lists them.

    >>> unreadable_records("test", [("a.png", "corrupt")])
    [{'split': 'test', 'path': 'a.png', 'reason': 'corrupt'}]
    """
    return [{"split": split, "path": str(path), "reason": reason} for path, reason in met]


def spread(length: int, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(length)`` (all of them when there are fewer).

    >>> spread(10, 3).tolist(), spread(2, 3).tolist()
    ([0, 4, 9], [0, 1])
    """
    if length <= count:
        return np.arange(length)
    return np.linspace(0, length - 1, count).round().astype(np.int64)


def spread_groups(length: int, count: int) -> list[range]:
    """``count`` evenly spread indices of ``range(length)``, each with the indices up to the next one
    after it: the candidates that stand in for it when it cannot be read.

    >>> spread_groups(10, 3)
    [range(0, 4), range(4, 9), range(9, 10)]
    """
    starts = spread(length, count).tolist()
    return [range(start, end) for start, end in zip(starts, [*starts[1:], length], strict=True)]


def class_groups(labels: np.ndarray, classes: Iterable[int]) -> list[np.ndarray]:
    """The indices of each of ``classes``, in order.

    >>> [g.tolist() for g in class_groups(np.array([0, 1, 0, 1, 2, 0]), [0, 2])]
    [[0, 2, 5], [4]]
    """
    return [np.flatnonzero(labels == label) for label in classes]


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
    """Every image's label, from the dataset's listing (nothing is decoded)."""
    return np.asarray(dataset.labels, dtype=np.int64)
