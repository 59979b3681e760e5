"""The demo network: zfnet-mini trained on the built-in dataset, cached in ``cache_dir() / "demo"``.

A cached run is trained at most once: :func:`cached_run` holds a file lock on the run folder while it
checks and fills it, so a second process (``deconvlab demo`` while ``deconvlab serve`` trains, two
notebooks) waits, says that it waits, and then loads the first one's checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deconvlab._io import cache_dir, cache_lock, write_json_atomic
from deconvlab.models import create, load_weights
from deconvlab.training.loop import train

DEMO_CONFIG = {
    "model_name": "zfnet-mini",
    "data": "builtin",
    "epochs": 8,
    "batch_size": 32,
    "lr": 1e-2,
    "dropout": 0.5,
}
# Bump when the demo's architecture, data or recipe changes: a cached run of another version is replaced.
DEMO_VERSION = 3
MARKER = "demo.json"
LOCK = ".lock"
RUN_FILES = ("metrics.json", "resume.pt", "final.pt")


def demo_model(progress: bool = True, on_wait: Callable[[str], Any] | None = None) -> tuple[nn.Module, Path]:
    """``(model in eval mode, run folder)``: trains the demo network on first use, reuses it after.

    The run folder holds ``epoch-XXX.pt`` checkpoints (for the feature-evolution figure),
    ``final.pt`` and ``metrics.json``. An interrupted first training resumes where it stopped; a run
    of another demo version is replaced. ``on_wait``: see :func:`cached_run`.
    """
    run_dir = cached_run(cache_dir() / "demo", DEMO_CONFIG, DEMO_VERSION, progress=progress, on_wait=on_wait)
    classes = torch.load(run_dir / "final.pt", map_location="cpu", weights_only=True)["classes"]
    model = create(DEMO_CONFIG["model_name"], num_classes=len(classes))
    load_weights(model, run_dir / "final.pt")
    return model.eval(), run_dir


def cached_run(
    run_dir: Path,
    config: dict,
    version: int,
    progress: bool = True,
    on_wait: Callable[[str], Any] | None = None,
) -> Path:
    """``run_dir``, holding a finished ``train(**config)`` run of this ``version``; trained if it is not.

    The folder is locked (``run_dir/.lock``) while it is checked and trained: another process asking
    for the same run waits, after ``on_wait(message)`` (default: the message on stderr), and then
    finds ``final.pt`` there.
    """
    marker = {"version": version, "config": config}
    with cache_lock(run_dir / LOCK, on_wait):
        if _read_marker(run_dir) != marker:
            for path in [*run_dir.glob("epoch-*.pt"), *(run_dir / name for name in RUN_FILES)]:
                path.unlink(missing_ok=True)
            write_json_atomic(run_dir / MARKER, marker)
        if not (run_dir / "final.pt").is_file():
            train(**config, out=run_dir, resume=True, progress=progress)
    return run_dir


def _read_marker(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
