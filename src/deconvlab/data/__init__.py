"""Floor 3: data. The built-in dataset with ground truth, image folders and lists that stream, transforms.

``load_dataset("builtin")`` needs no download. ``load_dataset(path)`` streams image files (decoded when
indexed, see ``deconvlab.data.folder``):

- a folder ``root/<class>/<images>`` or a flat folder of images: every image;
- a folder with ``train``/``val``/``test`` subfolders: every image of every split, or one split;
- a text file of image paths (optional labels): every image named;
- tar shards in the WebDataset layout, ``"shards/train-{000000..000146}.tar"`` (or one ``.tar``): every
  sample, streamed in order (``deconvlab.data.shards``; the scan reads them, not random access).

A split of a folder without split subfolders is taken by a hash of each file's path (80/10/10), only
when asked for.

>>> from deconvlab.data import load_dataset
>>> load_dataset("no/such/folder")
Traceback (most recent call last):
ValueError: data='no/such/folder': not 'builtin', and no such folder or file
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deconvlab.data.builtin import CLASSES, BuiltinDataset
from deconvlab.data.decode import UnreadableImage, read_image
from deconvlab.data.folder import SPLIT_BUCKETS, ImageFiles, ImageFolder, ImageList, folder_listing
from deconvlab.data.readable import Readable, Unreadable, collate_readable, readable_items
from deconvlab.data.shards import TarShards
from deconvlab.data.transforms import (
    MEAN,
    STD,
    box_in_file,
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
    "ImageFiles",
    "ImageFolder",
    "ImageList",
    "Readable",
    "TarShards",
    "Unreadable",
    "UnreadableImage",
    "box_in_file",
    "collate_readable",
    "center_crop",
    "denormalize",
    "input_half_range",
    "is_shards",
    "load_dataset",
    "normalize",
    "read_image",
    "readable_items",
    "resize_and_crop",
    "resize_shorter",
    "ten_crop",
    "to_rgb",
]


def load_dataset(
    spec: str | os.PathLike,
    split: str | None = None,
    image_size: int | None = None,
    seed: int = 0,
    size: int | None = None,
    *,
    check: bool = True,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> BuiltinDataset | ImageFiles | TarShards:
    """``"builtin"`` (64 pixels unless ``image_size``), an image folder or a list of images (224 unless
    ``image_size``), normalised with ``mean`` and ``std``.

    ``split``: None for every image (the built-in dataset, which is generated, gives its ``val`` split);
    ``"train"``, ``"val"`` or ``"test"`` for one. ``size`` (builtin only) keeps the first ``size`` images
    of the split (still balanced). ``check``: decode every file once now and leave out the unreadable
    ones (random access needs it); ``check=False`` lists the files only, and each unreadable file raises
    ``UnreadableImage`` when it is indexed (what the streaming scan wants, see ``Readable``).
    """
    if str(spec) == "builtin":
        return BuiltinDataset(split or "val", image_size or 64, seed=seed, size=size, mean=mean, std=std)
    if size is not None:
        raise ValueError(f"size={size!r}: only the builtin dataset can be cut, not data={str(spec)!r}")
    if is_shards(str(spec)):
        if split is not None:
            raise ValueError(f"split={split!r}: data={str(spec)!r} are tar shards, which have no splits")
        return TarShards(str(spec), image_size=image_size or 224, mean=mean, std=std)
    if split is not None and split not in SPLIT_BUCKETS:
        raise ValueError(f"split={split!r}: choose one of {sorted(SPLIT_BUCKETS)} or None (every image)")
    options = {"image_size": image_size or 224, "check": check, "mean": mean, "std": std}
    root = Path(spec)
    if root.is_file():
        if split is not None:
            raise ValueError(f"split={split!r}: data={str(spec)!r} is a list of files, which has no splits")
        dataset = ImageList(root, **options)
    elif not root.is_dir():
        raise ValueError(f"data={str(spec)!r}: not 'builtin', and no such folder or file")
    elif split is not None and (root / split).is_dir():
        dataset = ImageFolder(root / split, **options)
    elif any((root / name).is_dir() for name in SPLIT_BUCKETS):
        dataset = _every_split(root, split, options)
    else:
        dataset = ImageFolder(root, split=split, **options)
    if len(dataset) == 0:
        raise ValueError(
            f"data={str(spec)!r}: no readable images{'' if split is None else f' for split {split!r}'} "
            f"({len(dataset.skipped)} file(s) skipped); expected <folder>/<class>/<images> or "
            "<folder>/<images>"
        )
    return dataset


def _every_split(root: Path, split: str | None, options: dict) -> ImageFiles:
    """The images of every split subfolder of ``root``, classes by name across splits."""
    splits = [name for name in SPLIT_BUCKETS if (root / name).is_dir()]
    if split is not None:
        raise ValueError(f"split={split!r}: {root} has split subfolders {splits} but no {split!r}")
    listings = [folder_listing(root / name) for name in splits]
    classes = sorted({name for names, _, _ in listings for name in names})
    number = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for names, files, indices in listings:
        paths += files
        labels += [number[names[i]] if i >= 0 else -1 for i in indices]
    return ImageFiles(paths, labels, classes, name=str(root), **options)


def is_shards(spec: str) -> bool:
    """A tar file, a brace pattern of them, or a webdataset URL (``pipe:``, ``http://``, ...) of them.

    >>> is_shards("shards/train-{000000..000003}.tar"), is_shards("photos/"), is_shards("list.txt")
    (True, False, False)
    """
    return spec.endswith(".tar") or (".tar" in spec and ("{" in spec or ":" in spec))
