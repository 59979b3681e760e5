"""The top-k scan over WebDataset tar shards (``deconvlab.data.TarShards``): streamed, resumable, by rank.

Called by ``topk_scan`` when its dataset is ``TarShards``; the result is the same ``TopK``. Shards are
dealt to the ranks and DataLoader workers by webdataset (shard i to rank i mod N, then to the workers);
each batch holds consecutive samples of one shard, so every image's values are computed in the same batch
whichever process reads it, and the merged lists are identical with any number of processes or workers.

Each shard is collected in lists of its own while it is read (a worker reads one shard at a time, so
at most ``num_workers`` are open) and joins the scan's lists when its last batch arrives. A checkpoint is
written when a shard is complete, holding only complete shards; ``resume=True`` skips them and reads the
others from their start. Images are numbered ``shard * SHARD_STRIDE + position``; ``topk.json`` names
them by their sample keys.

>>> import io, tarfile, tempfile
>>> import torch
>>> from PIL import Image
>>> from deconvlab.analyses import topk_scan
>>> folder = Path(tempfile.mkdtemp())
>>> for shard in range(2):
...     with tarfile.open(folder / f"s-{shard}.tar", "w") as tar:
...         for i in range(3):
...             png = io.BytesIO()
...             Image.new("RGB", (8, 8), (100 + 50 * i, 150 + 100 * shard, 255)).save(png, format="PNG")
...             info = tarfile.TarInfo(f"img{shard}{i}.png"); info.size = png.tell()
...             tar.addfile(info, io.BytesIO(png.getvalue()))
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3), torch.nn.ReLU())
>>> with torch.no_grad():
...     _ = model[0].weight.fill_(1.0), model[0].bias.zero_()
>>> top = topk_scan(model, TarShards(str(folder / "s-{0..1}.tar"), image_size=8), ["1"], k=2, progress=False)
>>> [entry["path"] for entry in top.to_json()["layers"]["1"]["channels"][0]]  # the brightest two
['img12', 'img11']
"""

from __future__ import annotations

from pathlib import Path

import torch

from deconvlab.analyses.scan import (
    PROGRESS_DIR,
    _check_arguments,
    _device,
    _fields,
    _file_sizes,
    _fingerprint,
    _forward,
    _inspect,
    _prepare,
    _progress_bar,
    _published,
    _read_progress,
    _remove_leftovers,
    _save_progress,
)
from deconvlab.analyses.scan_distributed import all_gather, rank_and_world
from deconvlab.analyses.scan_hooks import channel_maxima, evaluating
from deconvlab.analyses.scan_topk import NO_IMAGE, LayerTopK, TopK
from deconvlab.data.shards import TarShards

__all__ = ["scan_shards", "TarShards"]


class _Lists:
    """Top-k lists, skipped samples, the names and file sizes of the images in the lists, the number read."""

    def __init__(self, shapes: dict, k: int) -> None:
        self.layers = {name: LayerTopK.empty(shape[0], k, shape) for name, shape in shapes.items()}
        self.skipped: list[tuple[int, str, str]] = []
        self.sources: dict[int, tuple[str, str | None]] = {}
        self.file_sizes: dict[int, tuple[int, int]] = {}
        self.count = 0

    def add(self, other: _Lists) -> None:
        self.layers = {name: layer.union(other.layers[name]) for name, layer in self.layers.items()}
        self.skipped += other.skipped
        self.count += other.count
        kept = {int(i) for layer in self.layers.values() for i in layer.images.ravel() if i != NO_IMAGE}
        self.sources = {i: s for i, s in {**self.sources, **other.sources}.items() if i in kept}
        self.file_sizes = {i: s for i, s in {**self.file_sizes, **other.file_sizes}.items() if i in kept}


def scan_shards(
    model, shards: TarShards, layers, *, k, batch_size, num_workers, out, resume, progress,
    checkpoint_every, device, amp, on_batch,
) -> TopK:  # fmt: skip
    """``topk_scan`` over tar shards (same arguments; ``checkpoint_every`` is not used: a checkpoint
    follows each complete shard)."""
    _check_arguments(model, layers, k, batch_size, num_workers, out, resume, checkpoint_every)
    device = _device(device, amp)
    rank, world = rank_and_world()
    _prepare(model, device)
    first = _first_image(shards, batch_size)
    fields = _fields(model, layers, tuple(first.shape))
    with evaluating(model), torch.inference_mode():
        shapes, last = _inspect(model, (first,), layers, device)
        fingerprint = _fingerprint(model, layers, shapes, k, batch_size, shards.urls, world, amp)
        checkpoint = Path(out) / PROGRESS_DIR / f"rank{rank}-of{world}.pt" if out is not None else None
        done, completed = _Lists(shapes, k), {}
        if resume:
            done, completed = _resume(checkpoint, world, fingerprint, shapes, k) or (done, completed)
        if out is not None:
            _remove_leftovers(Path(out), checkpoint, rank)
        loader = torch.utils.data.DataLoader(
            shards.loader_dataset(batch_size, frozenset(completed)),
            batch_size=None,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        bar = _progress_bar(len(shards.urls[rank::world]), len(completed), enabled=progress and rank == 0)
        open_shards: dict[int, _Lists] = {}
        with channel_maxima(model, layers, stop_after=last) as seen:
            for batches, batch in enumerate(loader, start=1):
                part = open_shards.setdefault(batch.shard, _Lists(shapes, k))
                part.skipped += [tuple(item) for item in batch.skipped]
                if batch.indices:
                    seen.floors = {n: torch.from_numpy(part.layers[n].values[:, -1]) for n in layers}
                    _forward(model, batch.images, device, amp, seen)
                    ids = torch.tensor(batch.indices).numpy()
                    part.layers = {
                        n: part.layers[n].merged(seen.maxima[n][0].numpy(), ids, seen.maxima[n][1].numpy())
                        for n in layers
                    }
                    part.sources.update(zip(batch.indices, batch.sources, strict=True))
                    part.file_sizes.update(zip(batch.indices, batch.file_sizes, strict=True))
                    part.count += len(batch.indices)
                if batch.last:
                    done.add(open_shards.pop(batch.shard))
                    completed[batch.shard] = True
                    bar.update()
                    if checkpoint is not None:
                        _checkpoint(checkpoint, done, completed, fingerprint)
                if on_batch is not None:
                    on_batch(batches)
        bar.close()
    return _published(_merged(done, k, fields), out, checkpoint, rank)


def _first_image(shards: TarShards, batch_size: int) -> torch.Tensor:
    """The first readable image of this rank's shards (for the layers' shapes and fields)."""
    for batch in shards.batches(batch_size):
        if batch.indices:
            return batch.images[0]
    raise ValueError(f"data={shards.urls[0]!r}...: no readable image in {len(shards.urls)} shard(s)")


def _checkpoint(path: Path, done: _Lists, completed: dict, fingerprint: str) -> None:
    extra = {"shards": sorted(completed), "sources": done.sources, "count": done.count,
             "file_sizes": done.file_sizes}  # fmt: skip
    _save_progress(path, len(completed), done.layers, done.skipped, fingerprint, **extra)


def _resume(checkpoint, world, fingerprint, shapes, k):
    loaded = _read_progress(checkpoint, world, fingerprint)
    if loaded is None:
        return None
    _, layers, skipped, payload = loaded
    done = _Lists(shapes, k)
    done.layers, done.skipped, done.count = layers, skipped, payload["count"]
    done.sources = {int(i): tuple(source) for i, source in payload["sources"].items()}
    done.file_sizes = _file_sizes(payload)
    return done, dict.fromkeys(payload["shards"], True)


def _merged(done: _Lists, k: int, fields) -> TopK:
    """Every rank's lists joined (exact: their order is total); skipped samples in shard order."""
    gathered = all_gather(done)
    total = gathered[0]
    for other in gathered[1:]:
        total.add(other)
    return TopK(
        k=k,
        num_images=total.count,
        layers=total.layers,
        sources=total.sources,
        file_sizes=total.file_sizes,
        skipped=[(path, reason) for _, path, reason in sorted(total.skipped)],
        fields=fields,
    )
