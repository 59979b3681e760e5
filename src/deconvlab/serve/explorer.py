"""One explorer's state: the model loaded in the background, the images it can look at, the uploads.

Everything lives on an :class:`Explorer` instance that ``create_app`` builds; nothing is global, so
two apps in one process share nothing. The model is loaded (trained, for the demo's first run) and
its units scanned by a background thread while the page shows :meth:`Explorer.status`; requests
that need the model get a 503 until then.

Requests run in two :class:`Lane` s, worker pools with bounded queues: short ones (projections,
activations, pictures) in the fast lane, long ones (occlusion) one at a time in the slow lane, so a
long request never holds up a short one. A full lane answers 503 with ``Retry-After`` at once. Calls
share the model without a lock: every hook the library attaches, and the function mode that reads
an occlusion's graph, acts only in the thread that attached it.

>>> import asyncio
>>> lane = Lane("demo", workers=1, waiting=0)
>>> asyncio.run(lane.run(sum, [1, 2, 3]))
6
>>> lane.close()

Images are named by references: ``"dataset:12"`` (an image of the scanned dataset),
``"sample:astronaut"`` (a photo bundled with scikit-image) and ``"upload:<id>"`` (an upload). A dataset
image whose file cannot be read is a 422 that names the file and the reason; the scan skips it, and
the images offered (``image_refs``) leave it out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from deconvlab.data import UnreadableImage, readable_items
from deconvlab.serve.config import Loaded, ServeConfig
from deconvlab.serve.images import SAMPLES, decode_upload, model_view, sample_image
from deconvlab.serve.loading import Progress, default_loader
from deconvlab.serve.params import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerInfo:
    """A layer offered by the explorer: its output shape for one image and its receptive field."""

    name: str
    channels: int
    height: int
    width: int
    receptive_field: Any

    def as_json(self) -> dict:
        return {"name": self.name, "channels": self.channels, "height": self.height, "width": self.width}


@dataclass(frozen=True)
class Session:
    """What the background thread built: the model, its dataset and its layers."""

    loaded: Loaded
    size: int
    layers: dict[str, LayerInfo]

    @property
    def model(self):
        return self.loaded.model

    @property
    def dataset(self):
        return self.loaded.dataset

    def layer(self, name: str) -> LayerInfo:
        """The named layer, or a 404 listing the layers there are."""
        if name not in self.layers:
            raise ApiError(f"layer={name!r}: unknown; the layers are {list(self.layers)}", status=404)
        return self.layers[name]


class BoundedStore:
    """The last ``capacity`` values put in, by key, oldest dropped first; safe across threads."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key, value) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._capacity:
                self._values.popitem(last=False)

    def get(self, key):
        with self._lock:
            return self._values.get(key)

    def keys(self) -> list:
        with self._lock:
            return list(self._values)


class Lane:
    """A pool of ``workers`` threads with room for ``waiting`` more calls; a call beyond is a 503.

    The 503's ``Retry-After`` is the time the queue ahead would take at the lane's mean call time.
    """

    def __init__(self, name: str, workers: int, waiting: int) -> None:
        self.name, self.workers, self.capacity = name, workers, workers + waiting
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"deconvlab-{name}")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._mean_seconds = 0.1
        self._lock = threading.Lock()

    async def run(self, function: Callable, *args) -> Any:
        """``function(*args)`` on a worker thread, or a 503 at once when the lane is full."""
        return await asyncio.wrap_future(self.submit(function, *args))

    def submit(self, function: Callable, *args) -> Future:
        """Queue ``function(*args)`` without waiting for it; a 503 at once when the lane is full."""
        if not self._slots.acquire(blocking=False):
            retry = max(1, math.ceil(self._mean_seconds * self.capacity / self.workers))
            raise ApiError(
                f"the server is busy: {self.capacity} {self.name} requests are running or waiting; "
                f"retry in {retry} s",
                status=503,
                headers={"Retry-After": str(retry)},
            )
        future = self._pool.submit(self._timed, function, *args)
        future.add_done_callback(lambda _: self._slots.release())  # also when cancelled before it ran
        return future

    def _timed(self, function: Callable, *args) -> Any:
        began = time.perf_counter()
        try:
            return function(*args)
        finally:
            with self._lock:  # a running mean that forgets slowly
                self._mean_seconds += 0.1 * (time.perf_counter() - began - self._mean_seconds)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Explorer:
    """The state of one app: loading, the loaded session, uploads, and the lanes requests run in."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.progress = Progress()
        self.uploads = BoundedStore(config.max_uploads_kept)
        self.animations = BoundedStore(16)
        self.optimizations = BoundedStore(config.max_optimizations_kept)
        self.optimizations_lock = threading.Lock()
        self._optimizer_model = None
        self._randomized_model = None
        self._session: Session | None = None
        self._topk = None
        self._error: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.lanes = {
            "fast": Lane("fast", *config.fast_lane),
            "slow": Lane("slow", 1, config.slow_queue),  # one at a time: see the module docstring
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model in a background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="deconvlab-serve-loader", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading and the scan have finished (or failed); True when both succeeded."""
        self._done.wait(timeout)
        return self._topk is not None

    def _load(self) -> None:
        """Build the model (the Live image and Occlusion pages can start), then scan its units."""
        try:
            loader = self.config.loader or (lambda progress: default_loader(self.config, progress))
            self._session = build_session(loader(self.progress), self.config, self.progress)
            self._topk = scan_units(self._session, self.config, self.progress)
            self.progress.start("ready")
        except Exception as error:  # shown on the page; the server keeps serving what it can
            self._error = f"{type(error).__name__}: {error}"
            self.progress.start("error", message=self._error)
            log.exception("the explorer could not load its model")
        finally:
            self._done.set()

    def status(self) -> dict:
        """Loading state for the page: ``state`` is "loading", "ready" or "error"."""
        state = "ready" if self._session else "error" if self._error else "loading"
        out = {"state": state, "units_ready": self._topk is not None, "progress": self.progress.snapshot()}
        if self._session is not None:
            session = self._session
            out.update(
                model=session.loaded.name,
                input_size=session.size,
                classes=list(session.dataset.classes),
                dataset_size=len(session.dataset),
                layers=[info.as_json() for info in session.layers.values()],
            )
        return out

    def session(self) -> Session:
        """The loaded session, or a 503 saying what is still happening (or what went wrong)."""
        if self._session is not None:
            return self._session
        if self._error is not None:
            raise ApiError(f"the model could not be loaded: {self._error}", status=503)
        stage = self.progress.snapshot()
        raise ApiError(f"the model is still loading ({stage['stage']}: {stage['message']})", status=503)

    def topk(self):
        """The top-k scan of the layers, or a 503 while it runs (or if it failed)."""
        self.session()
        if self._topk is not None:
            return self._topk
        if self._error is not None:
            raise ApiError(f"the scan failed: {self._error}", status=503)
        stage = self.progress.snapshot()
        raise ApiError(f"the scan is running ({stage['done']} of {stage['total']} images)", status=503)

    @contextmanager
    def model(self) -> Iterator[Session]:
        """The session, for a block of model calls."""
        yield self.session()

    def optimizer_model(self):
        """The slow lane's own copy of the model, for work whose hooks would meet other requests'
        forward passes (an optimisation's plain forward hook); made once, used one job at a time."""
        if self._optimizer_model is None:
            import copy

            self._optimizer_model = copy.deepcopy(self.session().model).eval()
        return self._optimizer_model

    def randomized_model(self):
        """A copy of the model with every layer's parameters re-drawn (``deconvlab.analyses.sanity``'s
        cascading randomisation, last step, seed 0): the "randomised weights" toggle. Made once."""
        with self.optimizations_lock:
            if self._randomized_model is None:
                import copy

                from deconvlab.analyses.sanity import parametrised_layers, randomise_layers

                session = self.session()
                work = copy.deepcopy(session.model).eval()
                probe = first_readable(session.dataset)[None]
                self._randomized_model = randomise_layers(work, parametrised_layers(work, probe, ""), seed=0)
            return self._randomized_model

    # -- images ----------------------------------------------------------------------------------

    def add_upload(self, data: bytes) -> str:
        """Check, decode and keep an uploaded image; returns its reference ``"upload:<id>"``."""
        image = decode_upload(
            data, max_bytes=self.config.max_upload_bytes, max_pixels=self.config.max_image_pixels
        )
        pixels = model_view(image, self.session().size)
        key = hashlib.sha256(pixels.tobytes()).hexdigest()[:16]  # same pixels, same reference
        self.uploads.put(key, pixels)
        return f"upload:{key}"

    def image(self, ref: str) -> np.ndarray:
        """The uint8 RGB image (size x size x 3) that ``ref`` names, as the model sees it."""
        session = self.session()
        kind, _, name = ref.partition(":")
        if kind == "dataset":
            try:
                return as_uint8_image(session.dataset.image(self._dataset_index(ref, name)))
            except UnreadableImage as error:
                raise ApiError(
                    f"image={ref!r}: {error.path} cannot be read ({error.reason})", status=422
                ) from None
        if kind == "sample":
            return model_view(sample_image(name), session.size)
        if kind == "upload":
            image = self.uploads.get(name)
            if image is None:
                raise ApiError(
                    f"image={ref!r}: no such upload (uploads are kept in memory, the last "
                    f"{self.config.max_uploads_kept} only); upload it again",
                    status=404,
                )
            return image
        raise ApiError(
            f"image={ref!r}: expected 'dataset:<index>', 'sample:<name>' or 'upload:<id>'", status=422
        )

    def label(self, ref: str) -> int | None:
        """The true class of a dataset image; None for samples and uploads."""
        kind, _, name = ref.partition(":")
        if kind != "dataset":
            return None
        dataset, index = self.session().dataset, self._dataset_index(ref, name)
        labels = getattr(dataset, "labels", None)
        if labels is not None:  # from the listing, without decoding the file
            return int(labels[index])
        try:
            return int(dataset[index][1])
        except UnreadableImage as error:
            raise ApiError(
                f"image={ref!r}: {error.path} cannot be read ({error.reason})", status=422
            ) from None

    def _dataset_index(self, ref: str, name: str) -> int:
        size = len(self.session().dataset)
        if not name.isdigit() or int(name) >= size:
            raise ApiError(
                f"image={ref!r}: the dataset's images are 'dataset:0' to 'dataset:{size - 1}'", status=404
            )
        return int(name)

    def image_refs(self) -> dict:
        """The images one can pick: samples, a few dataset images (one per class) and the uploads."""
        session = self.session()
        return {
            "samples": [f"sample:{name}" for name in SAMPLES],
            "dataset": [f"dataset:{i}" for i in first_of_each_class(session.dataset)],
            "uploads": [f"upload:{key}" for key in self.uploads.keys()],
        }


def as_uint8_image(image) -> np.ndarray:
    """A dataset image as uint8 (H, W, 3), from uint8 or a (3, H, W) torch/NumPy array."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    return np.array(array, dtype=np.uint8)  # a writable copy: dataset arrays may be read-only


def first_of_each_class(dataset, limit: int = 500) -> list[int]:
    """Index of the first readable image of each class among the first ``limit`` images (a file that
    cannot be read is passed over; only these candidates are decoded, where the dataset lists labels)."""
    labels = getattr(dataset, "labels", None)
    seen: dict[int, int] = {}
    for index in range(min(len(dataset), limit)):
        if labels is not None and int(labels[index]) in seen:
            continue  # its class has an image: nothing to decode
        try:
            label = int(dataset[index][1])
        except UnreadableImage:
            continue
        seen.setdefault(label, index)
    return [seen[label] for label in sorted(seen)]


def first_readable(dataset):
    """The first image (C, H, W) of ``dataset`` that can be read (an unreadable file is passed over)."""
    for _, item in readable_items(dataset, range(len(dataset))):
        return item[0]
    raise ValueError(f"dataset: none of its {len(dataset)} images can be read")


def build_session(loaded: Loaded, config: ServeConfig, progress: Progress) -> Session:
    """Measure the layers' output shapes and compute their receptive fields."""
    from deconvlab.analyses.features import conv_layers, layer_features
    from deconvlab.engine import receptive_field

    model = loaded.model.eval()
    input_size = tuple(int(v) for v in model.input_size)
    names = list(config.layers or conv_layers(model))
    progress.start("layers", message="measuring the layers")
    features = layer_features(model, first_readable(loaded.dataset)[None], names)
    layers = {
        name: LayerInfo(name, *features[name].shape[1:4], receptive_field(model, name, input_size))
        for name in names
    }
    return Session(loaded=loaded, size=input_size[-1], layers=layers)


def scan_units(session: Session, config: ServeConfig, progress: Progress):
    """The top-k scan of every layer over the dataset (the Units page's grids).

    The scan runs on a copy of the model: its hooks must not meet the requests' forward passes.
    """
    import copy

    import torch

    from deconvlab.analyses.scan import topk_scan

    dataset = session.dataset
    count = len(dataset) if config.scan_images is None else min(config.scan_images, len(dataset))
    subset = dataset if count == len(dataset) else torch.utils.data.Subset(dataset, range(count))
    batch_size = 64
    progress.start("scan", total=count, message=f"scanning {count} images for each unit's top {config.k}")
    return topk_scan(
        copy.deepcopy(session.model),
        subset,
        list(session.layers),
        k=config.k,
        batch_size=batch_size,
        progress=False,
        on_batch=lambda batches: progress.advance(min(count, batches * batch_size)),
    )
