"""Tar shards in the WebDataset layout, streamed with the ``webdataset`` library.

A shard is a tar file whose members are grouped into samples by their name without the extension
(``n01440764_10026.jpg`` and ``n01440764_10026.cls`` are one sample, key ``n01440764_10026``);
``TarShards("shards/train-{000000..000146}.tar")`` expands the braces. Samples are read in order, shard by
shard; shards are dealt to the processes of ``torchrun`` (``webdataset.split_by_node``: shard i to rank
i mod N) and then to each process's DataLoader workers (``webdataset.split_by_worker``).

Each sample's image (its first member ending in jpg, jpeg, png, webp, ppm, bmp, tif or tiff) is decoded by
``deconvlab.data.read_image`` and prepared as an image file is (shorter side resized, centre-cropped,
normalised); its class is its ``cls`` member (or ``txt``), where it has one, and its image's size before
the transform is kept (``ShardBatch.file_sizes``). A sample without a readable
image becomes an ``Unreadable`` marker (key and reason) and the scan goes on.

Every sample has an index that does not depend on how shards are split: ``shard * SHARD_STRIDE +
position`` (its shard's number in the expanded list, its position in the shard). Batches never cross
shards, so every batch is the same whichever process or worker reads it, and the last batch of a shard
says so (``ShardBatch.last``): what a resumable scan needs (``deconvlab.analyses.scan``).

>>> import io, tarfile, tempfile
>>> from PIL import Image
>>> png = io.BytesIO()
>>> Image.new("RGB", (6, 5), (10, 0, 0)).save(png, format="PNG")
>>> folder = Path(tempfile.mkdtemp())
>>> with tarfile.open(folder / "s-0.tar", "w") as tar:
...     for key, data in (("a.png", png.getvalue()), ("a.cls", b"3"), ("b.png", b"broken")):
...         info = tarfile.TarInfo(key); info.size = len(data); tar.addfile(info, io.BytesIO(data))
>>> shards = TarShards(str(folder / "s-{0..0}.tar"), image_size=4)
>>> batch = next(shards.batches(batch_size=8))
>>> batch.indices, batch.sources, batch.file_sizes, batch.last
([0], [('a', '3')], [(5, 6)], True)
>>> batch.skipped[0].index, batch.skipped[0].path, batch.skipped[0].reason.split(":")[0]
(1, 'b', 'UnidentifiedImageError')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from deconvlab.data.decode import UnreadableImage, read_image
from deconvlab.data.readable import Unreadable
from deconvlab.data.transforms import MEAN, STD, center_crop, normalize, resize_shorter

SHARD_STRIDE = 2**32  # sample index = shard number * SHARD_STRIDE + position in the shard
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")


class ShardBatch(NamedTuple):
    """Up to ``batch_size`` consecutive samples of one shard: the readable ones' ``indices``, ``images``
    (B, 3, S, S; None when none is readable), ``sources`` ((key, class or None) each), the ``skipped``
    ones; ``shard`` its number and ``last`` whether it ends the shard; ``file_sizes`` the readable
    samples' images' (height, width) before the transform."""

    shard: int
    indices: list[int]
    images: torch.Tensor | None
    sources: list[tuple[str, str | None]]
    skipped: list[Unreadable]
    last: bool
    file_sizes: list[tuple[int, int]]


class TarShards:
    """WebDataset tar shards: ``urls`` a brace pattern (``"train-{000000..000146}.tar"``) or a list of
    paths or URLs webdataset opens (``pipe:`` commands included). ``image_size``, ``mean``, ``std``,
    ``max_pixels``: as ``ImageFiles``."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        image_size: int = 224,
        max_pixels: int | None = None,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        import braceexpand

        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r}: must be an int >= 1")
        self.urls = list(braceexpand.braceexpand(urls)) if isinstance(urls, str) else [str(u) for u in urls]
        if not self.urls:
            raise ValueError(f"urls={urls!r}: names no shard")
        missing = [url for url in self.urls if ":" not in url and not Path(url).is_file()]
        if missing:
            raise ValueError(f"urls={urls!r}: {len(missing)} shard(s) not found, the first {missing[0]!r}")
        self.image_size, self.max_pixels = image_size, max_pixels
        self.mean, self.std = tuple(mean), tuple(std)

    def __repr__(self) -> str:
        return f"TarShards({self.urls[0]!r}, ... {len(self.urls)} shards, image_size={self.image_size})"

    def batches(self, batch_size: int, skip: frozenset[int] = frozenset()) -> Iterator[ShardBatch]:
        """This process's and worker's share of the shards, less the shard numbers in ``skip``, in batches.

        An iterable dataset: ``DataLoader(shards.loader_dataset(...), batch_size=None, num_workers=W)``
        gives each worker its shards; here, in the calling process, every shard of this rank."""
        return iter(self.loader_dataset(batch_size, skip))

    def loader_dataset(self, batch_size: int, skip: frozenset[int] = frozenset()):
        """The webdataset pipeline yielding ``ShardBatch``es (see ``batches``)."""
        import webdataset as wds

        number = {url: i for i, url in enumerate(self.urls)}

        def unfinished(source):
            return (item for item in source if number[item["url"]] not in skip)

        def read(source):
            for item in source:
                yield from self._shard_batches(number[item["url"]], item["url"], batch_size)

        return wds.DataPipeline(wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker,
                                unfinished, read)  # fmt: skip

    def _shard_batches(self, shard: int, url: str, batch_size: int) -> Iterator[ShardBatch]:
        import webdataset as wds

        group, errors = [], []
        samples = wds.tarfile_to_samples(handler=lambda error: errors.append(error) or True)([{"url": url}])
        position = 0
        for position, sample in enumerate(samples, start=1):
            if len(group) == batch_size:
                yield _collate(shard, group, last=False)
                group = []
            group.append(self._prepare(shard * SHARD_STRIDE + position - 1, sample))
        # a shard that cannot be opened or read to its end: listed after its last readable sample
        group += [Unreadable(shard * SHARD_STRIDE + position + i, url, f"{type(e).__name__}: {e}")
                  for i, e in enumerate(errors)]  # fmt: skip
        yield _collate(shard, group, last=True)

    def _prepare(self, index: int, sample: dict):
        key = sample.get("__key__", str(index))
        try:
            extension = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
            if extension is None:
                fields = sorted(name for name in sample if not name.startswith("__"))
                raise UnreadableImage(key, f"no image in the sample (its members: {', '.join(fields)})")
            decoded = read_image(sample[extension], self.max_pixels, name=key)
            image = center_crop(resize_shorter(decoded, self.image_size), self.image_size)
        except UnreadableImage as error:
            return Unreadable(index, error.path, error.reason)
        label = sample.get("cls", sample.get("txt"))
        class_name = label.decode().strip() if isinstance(label, bytes) else None
        file_size = (int(decoded.shape[-2]), int(decoded.shape[-1]))
        return index, normalize(image, self.mean, self.std), key, class_name, file_size


def _collate(shard: int, group: list, last: bool) -> ShardBatch:
    skipped = [item for item in group if isinstance(item, Unreadable)]
    kept = [item for item in group if not isinstance(item, Unreadable)]
    images = torch.stack([item[1] for item in kept]) if kept else None
    sources = [(item[2], item[3]) for item in kept]
    file_sizes = [item[4] for item in kept]
    return ShardBatch(shard, [item[0] for item in kept], images, sources, skipped, last, file_sizes)
