"""Building an explorer's model in the background, with progress the page can show.

The default loader serves ``deconvlab serve``'s choices: the built-in demo model (trained on first
use) or a registered model with a weight file (read only through the safe loader,
``deconvlab.models.load_weights``), scanned over the built-in dataset or an image folder.

>>> progress = Progress()
>>> progress.start("scan", total=4)
>>> progress.advance(3)
>>> {k: progress.snapshot()[k] for k in ("stage", "done", "total")}
{'stage': 'scan', 'done': 3, 'total': 4}
"""

from __future__ import annotations

import threading
import time

from deconvlab.serve.config import Loaded, ServeConfig


class Progress:
    """The current stage of loading and how far it is; written by one thread, read by requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = {"stage": "starting", "done": 0, "total": None, "message": "", "since": time.time()}

    def start(self, stage: str, total: int | None = None, message: str = "") -> None:
        """Begin a stage of ``total`` steps (None: unknown, shown as indeterminate)."""
        with self._lock:
            self._state = {
                "stage": stage,
                "done": 0,
                "total": total,
                "message": message,
                "since": time.time(),
            }

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
            state = dict(self._state)
        state["seconds"] = round(time.time() - state.pop("since"), 1)
        return state


def default_loader(config: ServeConfig, progress: Progress) -> Loaded:
    """The model and dataset ``deconvlab serve`` was asked for (see :class:`ServeConfig`)."""
    from deconvlab.data import load_dataset

    if config.model is None:
        from deconvlab.training import demo_model

        progress.start("training", message="training the demo model (first use only; cached afterwards)")
        model, _ = demo_model()
        name = "zfnet-mini (demo)"
    else:
        from deconvlab.models import create, load_weights

        progress.start("model", message=f"building {config.model}")
        probe = load_dataset(config.data, config.split, 64)
        model = create(config.model, num_classes=len(probe.classes))
        if config.weights is not None:
            load_weights(model, config.weights)
        name = config.model
    progress.start("data", message=f"loading the {config.data!r} dataset ({config.split} split)")
    dataset = load_dataset(config.data, config.split, model.input_size[-1])
    return Loaded(model=model, dataset=dataset, name=name)
