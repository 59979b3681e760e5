"""What one explorer instance serves: :class:`ServeConfig`, and the :class:`Loaded` model it builds.

A config is plain, frozen data. Two apps built from two configs share nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 2**20


@dataclass
class Loaded:
    """A model ready to explore and the dataset its units are scanned over.

    ``dataset`` needs ``len()``, ``image(i)`` (uint8 H x W x 3 at the model's input size), ``label(i)``
    through ``dataset[i][1]``, and ``classes``. ``name`` is shown on the page.
    """

    model: Any
    dataset: Any
    name: str


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one explorer.

    - ``model``/``weights``/``data``: what ``deconvlab serve`` was asked for; ``model=None`` is the
      built-in demo (trained on first use, with progress shown on the page).
    - ``loader``: builds the :class:`Loaded` model instead, called as ``loader(progress)`` in the
      background thread (for embedding the explorer, and for tests on a small model).
    - ``layers``: the layers offered (default: every ``Conv2d``); ``k``: images per unit grid.
    - ``scan_images``: scan at most this many dataset images (None: all of ``split``).
    - limits: upload bytes, image pixels (decompression-bomb guard), occluder positions per
      request, uploads kept in memory.
    """

    model: str | None = None
    weights: str | Path | None = None
    data: str = "builtin"
    split: str = "val"
    loader: Callable[[Any], Loaded] | None = field(default=None, compare=False)
    layers: tuple[str, ...] | None = None
    k: int = 9
    scan_images: int | None = None
    max_upload_bytes: int = 10 * MiB
    max_image_pixels: int = 40_000_000
    max_occlusion_positions: int = 1600
    max_uploads_kept: int = 32
    optimize_steps: int = 128  # steps of a Units card's optimised image (deconvlab.analyses.optimize)
    max_optimizations_kept: int = 512  # optimised images kept in memory, per layer and channel
    fast_lane: tuple[int, int] = (4, 64)  # short requests: (workers, more waiting); beyond: 503
    slow_queue: int = 4  # long requests (occlusion) run one at a time; this many more may wait
    allowed_hosts: tuple[str, ...] = ("*",)
