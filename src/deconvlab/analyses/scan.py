"""Streaming top-k scan over a dataset (Zeiler & Fergus, Fig. 2): one pass, all layers hooked at once.

For every chosen layer and channel the scan keeps the ``k`` images with the strongest activation, each
with its value and the (y, x) of its maximum in that channel's map; memory is O(layers x channels x k),
whatever the dataset's size. Ties go to the smaller image index (see ``deconvlab.analyses.scan_topk``).
The result names each image (its path or key and class, where the dataset gives them: ``source(i)``,
``class_name(i)``) and the unit's receptive-field box in the input's pixels; for an image read from a
file, also the file's size and the box in the file's own pixels (``deconvlab.analyses.scan_topk``).

**Unreadable files.** Images are decoded in the DataLoader's workers; a file that cannot be read
(``deconvlab.data.UnreadableImage``) is skipped, counted and listed in ``topk.json`` with its reason,
and the scan goes on.

**Resume.** With ``out``, progress is checkpointed atomically every ``checkpoint_every`` batches to
``out/.scan-progress/``; ``resume=True`` continues from it and gives exactly the uninterrupted result,
even after SIGKILL (tested with killed processes: ``tests/test_scan_kill.py``). ``out/topk.json`` is
written once, atomically, when the scan is complete; what a killed write left behind is removed.

**torchrun.** Under ``torchrun --nproc-per-node N -m deconvlab scan ...`` the dataset's batches are dealt
to the ranks in turn (rank r scans batches r, r + N, ...: the same batches as a single process, so the
same floating-point values), the per-rank lists are gathered and merged exactly, and rank 0 writes.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
>>> data = TensorDataset(torch.randn(10, 1, 8, 8), torch.zeros(10))
>>> top = topk_scan(model, data, ["1"], k=4, batch_size=3, progress=False)
>>> layer = top.layers["1"]
>>> layer.images.shape, layer.shape  # 3 channels x 4 images; the layer's map is 3x6x6
((3, 4), (3, 6, 6))
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deconvlab._io import write_bytes_atomic
from deconvlab.analyses.scan_distributed import all_gather, barrier, default_device, rank_and_world
from deconvlab.analyses.scan_hooks import StopForward, channel_maxima, evaluating
from deconvlab.analyses.scan_topk import NO_IMAGE, LayerTopK, TopK
from deconvlab.data.readable import Readable, collate_readable, readable_items
from deconvlab.data.shards import TarShards
from deconvlab.engine.receptive import ReceptiveField, receptive_fields

__all__ = ["TopK", "LayerTopK", "topk_scan", "conv_layer_names"]

RESULT_FILE = "topk.json"
PROGRESS_DIR = ".scan-progress"


def conv_layer_names(model: nn.Module) -> list[str]:
    """The names of every ``nn.Conv2d`` in ``model``, in registration order (the default scan layers).

    >>> from torch.nn import Conv2d, ReLU, Sequential
    >>> conv_layer_names(Sequential(Conv2d(1, 2, 3), ReLU(), Conv2d(2, 2, 3)))
    ['0', '2']
    """
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def topk_scan(
    model: nn.Module,
    dataset,
    layers: Sequence[str] | None = None,
    *,
    k: int = 9,
    batch_size: int = 64,
    num_workers: int = 0,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 20,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    on_batch: Callable[[int], None] | None = None,
) -> TopK:
    """Scan ``dataset`` (map-style, items ``(image, label)``) through ``model`` and keep the top ``k``.

    ``layers``: module names (default: every Conv2d); each must output (N, C, H, W) maps. ``out``: folder
    for ``topk.json`` and the progress checkpoints. ``device``: default this rank's GPU if CUDA is
    available, else the CPU; on CUDA the model is moved there in channels_last layout. ``amp=True`` (or
    ``"float16"``) runs it under float16 autocast (CUDA only), ``amp="bfloat16"`` under bfloat16
    autocast (CUDA or CPU); the lists keep float32 values either way. ``on_batch(batches_done)`` is
    called after each batch (and its checkpoint, if due). Images load in ``num_workers`` DataLoader
    worker processes.
    """
    layers = list(conv_layer_names(model) if layers is None else layers)
    if isinstance(dataset, TarShards):
        from deconvlab.analyses.scan_stream import scan_shards

        options = {"k": k, "batch_size": batch_size, "num_workers": num_workers, "out": out, "resume": resume,
                   "progress": progress, "checkpoint_every": checkpoint_every, "device": device, "amp": amp,
                   "on_batch": on_batch}  # fmt: skip
        return scan_shards(model, dataset, layers, **options)
    _check_arguments(model, layers, k, batch_size, num_workers, out, resume, checkpoint_every)
    _check_dataset(dataset)
    device = _device(device, amp)
    rank, world = rank_and_world()
    _prepare(model, device)
    first = _first_readable(dataset)
    fields = _fields(model, layers, tuple(first[0].shape))
    with evaluating(model), torch.inference_mode():
        shapes, last = _inspect(model, first, layers, device)
        batches = _batches_of_rank(len(dataset), batch_size, rank, world)
        fingerprint = _fingerprint(model, layers, shapes, k, batch_size, len(dataset), world, amp)
        checkpoint = Path(out) / PROGRESS_DIR / f"rank{rank}-of{world}.pt" if out is not None else None
        done, state = 0, {name: LayerTopK.empty(shapes[name][0], k, shapes[name]) for name in layers}
        skipped: list[tuple[int, str, str]] = []
        file_sizes: dict[int, tuple[int, int]] = {}  # of the images in the lists (and of recent batches)
        if resume:
            loaded = _load_progress(checkpoint, world, fingerprint)
            done, state, skipped, file_sizes = loaded or (done, state, skipped, file_sizes)
        if out is not None:
            _remove_leftovers(Path(out), checkpoint, rank)
        loader = torch.utils.data.DataLoader(
            Readable(dataset),
            batch_sampler=batches[done:],
            num_workers=num_workers,
            collate_fn=collate_readable,
            pin_memory=device.type == "cuda",
        )
        bar = _progress_bar(len(batches), done, enabled=progress and rank == 0)
        with channel_maxima(model, layers, stop_after=last) as seen:
            for batch in loader:
                skipped += [tuple(item) for item in batch.skipped]
                if batch.indices:
                    seen.floors = {n: torch.from_numpy(state[n].values[:, -1]) for n in layers}
                    _forward(model, batch.images, device, amp, seen)
                    ids = np.asarray(batch.indices, np.int64)
                    state = {
                        n: state[n].merged(seen.maxima[n][0].numpy(), ids, seen.maxima[n][1].numpy())
                        for n in layers
                    }
                    sized = zip(batch.indices, batch.file_sizes, strict=True)
                    file_sizes.update((i, size) for i, size in sized if size is not None)
                done += 1
                bar.update()
                if done % checkpoint_every == 0 or done == len(batches):
                    file_sizes = _in_lists(file_sizes, state)
                    if checkpoint is not None:
                        _save_progress(checkpoint, done, state, skipped, fingerprint, file_sizes=file_sizes)
                if on_batch is not None:
                    on_batch(done)
        bar.close()
    merged, skipped, file_sizes = _merge_ranks(state, skipped, file_sizes, layers)
    result = TopK(
        k=k,
        num_images=len(dataset) - len(skipped),
        layers=merged,
        sources=_sources(dataset, merged),
        skipped=[(path, reason) for _, path, reason in skipped],
        fields=fields,
        file_sizes=_in_lists(file_sizes, merged),
    )
    return _published(result, out, checkpoint, rank)


def _published(result: TopK, out, checkpoint: Path | None, rank: int) -> TopK:
    """With ``out``: rank 0 writes ``topk.json``, every rank waits for it, then drops its checkpoint."""
    if out is not None:
        if rank == 0:
            result.save(Path(out) / RESULT_FILE)
        barrier()
        checkpoint.unlink(missing_ok=True)
    return result


AUTOCAST = {True: torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16}  # amp= -> dtype


def _device(device, amp: bool | str) -> torch.device:
    """The scan's device, once ``amp`` is known to run there."""
    device = torch.device(device) if device is not None else default_device()
    if not (amp is False or amp is True or amp in ("float16", "bfloat16")):
        raise ValueError(
            f"amp={amp!r}: expected False, True or 'float16' (float16 autocast, CUDA only) or 'bfloat16'"
        )
    if AUTOCAST.get(amp) is torch.float16 and device.type != "cuda":
        raise ValueError(
            f"amp={amp!r}: float16 autocast needs a CUDA device, and the scan runs on {device}; "
            "amp='bfloat16' runs on the CPU too"
        )
    return device


def _check_arguments(model, layers, k, batch_size, num_workers, out, resume, checkpoint_every) -> None:
    for name, value, least in (
        ("k", k, 1),
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r}: must be an int >= {least}")
    if resume and out is None:
        raise ValueError("resume=True: needs out=FOLDER, where the progress checkpoints are kept")
    if not layers:
        raise ValueError("layers=[]: the model has no Conv2d layer; name the layers to scan")
    known = {name for name, _ in model.named_modules() if name}
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(
            f"layers={unknown}: not modules of the model; known names: {', '.join(sorted(known))}"
        )


def _check_dataset(dataset) -> None:
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ValueError(f"dataset={type(dataset).__name__}: expected a map-style dataset (len and indexing)")
    if len(dataset) == 0:
        raise ValueError("dataset: it is empty (0 images); there is nothing to scan")


def _prepare(model: nn.Module, device: torch.device) -> None:
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)


def _first_readable(dataset):
    """The first item that can be read (an unreadable file is skipped here too), checked."""
    for index, item in readable_items(dataset, range(len(dataset))):
        if not isinstance(item, (tuple, list)) or not isinstance(item[0], torch.Tensor) or item[0].dim() != 3:
            raise ValueError(
                f"dataset[{index}]={type(item).__name__}: expected (image tensor (C, H, W), label)"
            )
        return item
    raise ValueError(f"dataset: none of its {len(dataset)} images can be read; there is nothing to scan")


def _fields(model, layers, input_size) -> dict[str, ReceptiveField | None]:
    """Each layer's receptive field, or None where it cannot be followed (the boxes are then left out).

    One traced forward pass for every layer (``receptive_fields``): a pass per layer cost resnet50's
    53 conv layers 55 of a 72-second scan of 32 images.
    """
    found = receptive_fields(model, input_size)
    return {name: found[name] if isinstance(found.get(name), ReceptiveField) else None for name in layers}


def _inspect(model, item, layers, device) -> tuple[dict[str, tuple[int, ...]], str]:
    """One image through the model: each layer's map shape, and the layer that runs last."""
    with channel_maxima(model, layers) as seen:
        _forward(model, item[0][None], device, False, seen)
    missing = [name for name in layers if name not in seen.maxima]
    if missing:
        raise ValueError(f"layers={missing}: never ran in the model's forward pass")
    return seen.shapes, seen.order[-1]


def _forward(model, images, device, amp, seen) -> None:
    seen.clear()
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = AUTOCAST.get(amp)  # None without autocast
    with torch.autocast(device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
        try:
            model(images)
        except StopForward:
            pass


def _batches_of_rank(num_images: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Rank ``rank``'s share: global batches rank, rank + world, ... (the single-process batches).

    >>> _batches_of_rank(7, 2, rank=1, world=2)
    [[2, 3], [6]]
    """
    starts = range(rank * batch_size, num_images, world * batch_size)
    return [list(range(start, min(start + batch_size, num_images))) for start in starts]


def _remove_leftovers(out: Path, checkpoint: Path, rank: int) -> None:
    """Remove an older result (never beside a new scan) and the temporary files of writes that a kill
    cut short (``deconvlab._io.write_atomic``'s ``.NAME.*.tmp``): this rank's checkpoint's, rank 0 the
    result's."""
    leftovers = list(checkpoint.parent.glob(f".{checkpoint.name}.*.tmp"))
    if rank == 0:
        (out / RESULT_FILE).unlink(missing_ok=True)
        leftovers += out.glob(f".{RESULT_FILE}.*.tmp")
    for path in leftovers:
        path.unlink(missing_ok=True)


def _fingerprint(model, layers, shapes, k, batch_size, num_images, world, amp=False) -> str:
    """Identifies a scan's settings and weights, so that a checkpoint resumes only the same scan."""
    digest = hashlib.sha256()
    settings = {"layers": layers, "shapes": shapes, "k": k, "batch_size": batch_size, "images": num_images}
    if amp is not False:  # (a scan without autocast keeps the fingerprint it had before amp was in it)
        settings["autocast"] = str(AUTOCAST[amp])
    digest.update(json.dumps({**settings, "world": world}, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().reshape(-1).cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _save_progress(
    path: Path, done: int, state: dict[str, LayerTopK], skipped: list, fingerprint: str, **extra
) -> None:
    payload = {
        **extra,
        "fingerprint": fingerprint,
        "batches_done": done,
        "skipped": [list(item) for item in skipped],
        "layers": {
            name: {
                "values": torch.from_numpy(layer.values),
                "images": torch.from_numpy(layer.images),
                "positions": torch.from_numpy(layer.positions),
                "shape": list(layer.shape),
            }
            for name, layer in state.items()
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _load_progress(path: Path, world: int, fingerprint: str):
    """(batches done, state, skipped, file sizes) from this rank's checkpoint, or None when there is none."""
    loaded = _read_progress(path, world, fingerprint)
    return None if loaded is None else (*loaded[:3], _file_sizes(loaded[3]))


def _file_sizes(payload: dict) -> dict[int, tuple[int, int]]:
    """The file sizes a checkpoint holds (none in one written before they were kept)."""
    return {int(i): tuple(size) for i, size in payload.get("file_sizes", {}).items()}


def _in_lists(file_sizes: dict, layers: dict[str, LayerTopK]) -> dict[int, tuple[int, int]]:
    """The entries of ``file_sizes`` whose images are in the lists (the others are never written)."""
    if not file_sizes:
        return file_sizes
    kept = {int(i) for layer in layers.values() for i in np.unique(layer.images)}
    return {i: size for i, size in file_sizes.items() if i in kept}


def _read_progress(path: Path, world: int, fingerprint: str):
    """(batches done, state, skipped, the whole payload) from this rank's checkpoint, or None."""
    others = sorted(p.name for p in path.parent.glob("rank*-of*.pt") if not p.name.endswith(f"-of{world}.pt"))
    if others:
        raise ValueError(
            f"resume=True: {path.parent} holds checkpoints of a run with another number of processes "
            f"({others[0]}); resume with that many processes, or scan again without resume"
        )
    if not path.exists():
        return None
    payload = torch.load(path, weights_only=True)
    if payload["fingerprint"] != fingerprint:
        raise ValueError(
            f"resume=True: the checkpoint {path} belongs to a scan with other settings or weights "
            "(layers, k, batch size, dataset size or model); scan again without resume"
        )
    state = {
        name: LayerTopK(
            values=saved["values"].numpy(),
            images=saved["images"].numpy(),
            positions=saved["positions"].numpy(),
            shape=tuple(saved["shape"]),
        )
        for name, saved in payload["layers"].items()
    }
    return payload["batches_done"], state, [tuple(item) for item in payload["skipped"]], payload


def _merge_ranks(state: dict[str, LayerTopK], skipped: list, file_sizes: dict, layers: list[str]):
    """Every rank's lists merged into the top k of their union (exact: the order is total), every
    rank's skipped files, in dataset order, and every rank's file sizes."""
    gathered = all_gather((state, skipped, file_sizes))
    merged = {}
    for name in layers:
        layer = gathered[0][0][name]
        for other, _, _ in gathered[1:]:
            layer = layer.union(other[name])
        merged[name] = layer
    every_size = {i: size for _, _, sizes in gathered for i, size in sizes.items()}
    return merged, sorted(item for _, theirs, _ in gathered for item in theirs), every_size


def _sources(dataset, layers: dict[str, LayerTopK]) -> dict[int, tuple[str | None, str | None]]:
    """(path or key, class name) of every image in the lists, where the dataset names them."""
    indices = sorted({int(i) for layer in layers.values() for i in np.unique(layer.images) if i != NO_IMAGE})
    source, class_name = getattr(dataset, "source", None), getattr(dataset, "class_name", None)
    return {
        i: (source(i) if source is not None else None, class_name(i) if class_name is not None else None)
        for i in indices
    }


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="top-k scan", unit="batch", disable=not enabled)
