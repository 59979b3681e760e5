"""Building an explorer's model in the background, with progress the page can show.

The default loader serves ``deconvlab serve``'s choices: the built-in demo model (trained on first
use) or any model spec with its weights (``deconvlab.models.load_model``: weight files only through the
safe loader), scanned over the built-in dataset or an image folder, normalised as the model expects.
Image files are listed, not decoded, when loaded: the scan decodes them, skipping and listing the ones
that cannot be read (``/api/units``'s ``skipped``).

>>> progress = Progress()
>>> progress.start("scan", total=4)
>>> progress.advance(3)
>>> {k: progress.snapshot()[k] for k in ("stage", "done", "total")}
{'stage': 'scan', 'done': 3, 'total': 4}
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from deconvlab.serve.config import Loaded, ServeConfig


class Progress:
    """The current stage of loading and how far it is; written by one thread, read by requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = {"stage": "starting", "done": 0, "total": None, "message": "", "since": time.time()}
        self._watch: Callable[[], int] | None = None

    def start(
        self, stage: str, total: int | None = None, message: str = "", watch: Callable[[], int] | None = None
    ) -> None:
        """Begin a stage of ``total`` steps (None: unknown, shown as indeterminate).

        ``watch()``, if given, is asked for the steps done whenever the progress is read (for work
        that reports through files rather than calls).
        """
        state = {"stage": stage, "done": 0, "total": total, "message": message, "since": time.time()}
        with self._lock:
            self._state, self._watch = state, watch

    def advance(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record that ``done`` steps of the current stage are finished."""
        with self._lock:
            self._state["done"] = done
            if total is not None:
                self._state["total"] = total
            if message is not None:
                self._state["message"] = message

    def snapshot(self) -> dict:
        """A copy of the state plus the seconds spent in the current stage."""
        with self._lock:
            state, watch = dict(self._state), self._watch
        if watch is not None:
            state["done"] = watch()
        state["seconds"] = round(time.time() - state.pop("since"), 1)
        return state


def default_loader(config: ServeConfig, progress: Progress) -> Loaded:
    """The model and dataset ``deconvlab serve`` was asked for (see :class:`ServeConfig`)."""
    from deconvlab.data import load_dataset

    if config.model is None:
        model = _demo_model(progress)
        name = "zfnet-mini (demo)"
    else:
        from deconvlab.models import load_model

        progress.start("model", message=f"building {config.model} (weights: {config.weights or 'random'})")
        model = load_model(config.model, config.weights)
        name = config.model
    progress.start("data", message=f"listing the {config.data!r} dataset ({config.split} split)")
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    statistics = {} if mean is None else {"mean": mean, "std": std}
    dataset = load_dataset(config.data, config.split, model.input_size[-1], check=False, **statistics)
    return Loaded(model=model, dataset=dataset, name=name)


def _demo_model(progress: Progress):
    """``deconvlab.training.demo_model()``: loads its cached run, or trains it first (epochs shown)."""
    from deconvlab._io import cache_dir
    from deconvlab.training import DEMO_CONFIG, demo_model

    progress.start(
        "training",
        total=DEMO_CONFIG["epochs"],
        message="loading the demo model, or training it on the built-in dataset on first use (a few "
        "minutes on 2 cores; cached afterwards)",
        watch=lambda: epochs_done(cache_dir() / "demo" / "metrics.json"),
    )
    model, _ = demo_model(progress=False)
    return model


def epochs_done(metrics: Path) -> int:
    """Epochs recorded in a training run's ``metrics.json`` (written atomically after each epoch)."""
    try:
        return len(json.loads(metrics.read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
