"""Floor 3: data. The built-in dataset with ground truth, image folders, and the transforms.

``load_dataset("builtin")`` needs no download; ``load_dataset("path/to/folder")`` reads
``folder/<split>/<class>/*`` when the split subfolder exists, else ``folder/<class>/*`` split
80/10/10 by a hash of each file's path.

>>> from deconvlab.data import load_dataset
>>> load_dataset("no/such/folder")
Traceback (most recent call last):
ValueError: data='no/such/folder': not 'builtin' and no such folder
"""

from __future__ import annotations

import os
from pathlib import Path

from deconvlab.data.builtin import CLASSES, BuiltinDataset
from deconvlab.data.folder import ImageFolder
from deconvlab.data.transforms import (
    MEAN,
    STD,
    center_crop,
    denormalize,
    input_half_range,
    normalize,
    resize_and_crop,
    resize_shorter,
    ten_crop,
    to_rgb,
)

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "BuiltinDataset",
    "ImageFolder",
    "center_crop",
    "denormalize",
    "input_half_range",
    "load_dataset",
    "normalize",
    "resize_and_crop",
    "resize_shorter",
    "ten_crop",
    "to_rgb",
]


def load_dataset(
    spec: str | os.PathLike,
    split: str = "val",
    image_size: int | None = None,
    seed: int = 0,
    size: int | None = None,
) -> BuiltinDataset | ImageFolder:
    """``"builtin"`` (64 pixels unless ``image_size``) or an image folder (224 unless ``image_size``).

    ``size`` (builtin only) keeps the first ``size`` images of the split (still balanced).
    """
    if str(spec) == "builtin":
        return BuiltinDataset(split, image_size or 64, seed=seed, size=size)
    if size is not None:
        raise ValueError(f"size={size!r}: only the builtin dataset can be cut, not data={str(spec)!r}")
    root = Path(spec)
    if not root.is_dir():
        raise ValueError(f"data={str(spec)!r}: not 'builtin' and no such folder")
    if (root / split).is_dir():
        dataset = ImageFolder(root / split, image_size or 224)
    else:
        dataset = ImageFolder(root, image_size or 224, split=split)
    if len(dataset) == 0:
        raise ValueError(
            f"data={str(spec)!r}: no readable images for split {split!r} "
            f"({len(dataset.skipped)} file(s) skipped); expected <folder>/<class>/<images>"
        )
    return dataset
