"""The demo network: zfnet-mini trained on the built-in dataset, cached in ``cache_dir() / "demo"``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from deconvlab._io import cache_dir, write_json_atomic
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
RUN_FILES = ("metrics.json", "resume.pt", "final.pt")


def demo_model(progress: bool = True) -> tuple[nn.Module, Path]:
    """``(model in eval mode, run folder)``: trains the demo network on first use, reuses it after.

    The run folder holds ``epoch-XXX.pt`` checkpoints (for the feature-evolution figure),
    ``final.pt`` and ``metrics.json``. An interrupted first training resumes where it stopped; a run
    of another demo version is replaced.
    """
    run_dir = cache_dir() / "demo"
    marker = {"version": DEMO_VERSION, "config": DEMO_CONFIG}
    if _read_marker(run_dir) != marker:
        for path in [*run_dir.glob("epoch-*.pt"), *(run_dir / name for name in RUN_FILES)]:
            path.unlink(missing_ok=True)
        write_json_atomic(run_dir / MARKER, marker)
    if not (run_dir / "final.pt").is_file():
        train(**DEMO_CONFIG, out=run_dir, resume=True, progress=progress)
    classes = torch.load(run_dir / "final.pt", map_location="cpu", weights_only=True)["classes"]
    model = create(DEMO_CONFIG["model_name"], num_classes=len(classes))
    load_weights(model, run_dir / "final.pt")
    return model.eval(), run_dir


def _read_marker(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
