"""Skipping unreadable files in a DataLoader, worker processes included, without stopping.

``Readable(dataset)[i]`` is ``(i, item)``, or an ``Unreadable(i, path, reason)`` marker where
``dataset[i]`` raises ``UnreadableImage``. ``collate_readable`` drops the markers from a batch and hands
them on: the loop in the main process sees which indices it got and which files were skipped, whichever
worker decoded them. A dataset of files (``ImageFiles``) also gives each item's file size before the
transform (``item_and_file_size``), collated as ``Batch.file_sizes``; other datasets give None.

>>> import torch
>>> class Half(torch.utils.data.Dataset):  # odd items are unreadable
...     def __len__(self):
...         return 4
...     def __getitem__(self, i):
...         if i % 2:
...             raise UnreadableImage(f"{i}.png", "corrupt")
...         return torch.full((1, 2, 2), float(i)), i
>>> loader = torch.utils.data.DataLoader(Readable(Half()), batch_size=4, collate_fn=collate_readable)
>>> batch = next(iter(loader))
>>> batch.indices, batch.images[:, 0, 0, 0].tolist(), batch.labels.tolist(), batch.file_sizes
([0, 2], [0.0, 2.0], [0, 2], [None, None])
>>> batch.skipped[0]
Unreadable(index=1, path='1.png', reason='corrupt')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import torch

from deconvlab.data.decode import UnreadableImage


class Unreadable(NamedTuple):
    """Item ``index`` of a dataset could not be read: its file and why."""

    index: int
    path: str
    reason: str


class Batch(NamedTuple):
    """The readable items of a batch: their dataset ``indices``, ``images`` (B, C, H, W) and ``labels``
    collated (None when every item was skipped), the ``skipped`` items, and each readable item's
    ``file_sizes`` (height, width) before the transform (None where the dataset reads no file)."""

    indices: list[int]
    images: torch.Tensor | None
    labels: object
    skipped: list[Unreadable]
    file_sizes: list[tuple[int, int] | None]


class Readable(torch.utils.data.Dataset):
    """``dataset`` with each item tagged by its index and its file size (``(index, item, (height, width)
    or None)``), and unreadable files turned into markers."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        read = getattr(self.dataset, "item_and_file_size", None)
        try:
            item, file_size = read(index) if read is not None else (self.dataset[index], None)
        except UnreadableImage as error:
            return Unreadable(int(index), error.path, error.reason)
        return index, item, file_size


def collate_readable(items) -> Batch:
    """A ``Batch`` of ``Readable`` items: images stacked, markers set apart."""
    skipped = [item for item in items if isinstance(item, Unreadable)]
    kept = [item for item in items if not isinstance(item, Unreadable)]
    if not kept:
        return Batch([], None, None, skipped, [])
    images = torch.stack([item[0] for _, item, _ in kept])
    labels = torch.utils.data.default_collate([item[1] for _, item, _ in kept])
    return Batch([int(index) for index, _, _ in kept], images, labels, skipped, [size for *_, size in kept])


def readable_items(
    dataset, indices: Iterable[int], unreadable: list | None = None
) -> Iterator[tuple[int, object]]:
    """``(index, dataset[index])`` for each of ``indices`` that can be read, in order, read as they are
    asked for; each unreadable one met is appended to ``unreadable`` as ``(path, reason)``.

    >>> class OddsCorrupt:
    ...     def __getitem__(self, i):
    ...         if i % 2:
    ...             raise UnreadableImage(f"{i}.png", "corrupt")
    ...         return float(i), 0
    >>> met = []
    >>> [i for i, _ in readable_items(OddsCorrupt(), range(1, 5), met)], met
    ([2, 4], [('1.png', 'corrupt'), ('3.png', 'corrupt')])
    """
    for index in indices:
        try:
            item = dataset[int(index)]
        except UnreadableImage as error:
            if unreadable is not None:
                unreadable.append((error.path, error.reason))
            continue
        yield int(index), item
