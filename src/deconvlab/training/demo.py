"""The demo network: zfnet-mini trained on the built-in dataset, cached in ``cache_dir() / "demo"``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from deconvlab._io import cache_dir
from deconvlab.models import create, load_weights
from deconvlab.training.loop import train

DEMO_CONFIG = {"model_name": "zfnet-mini", "data": "builtin", "epochs": 12, "batch_size": 64, "lr": 1e-2}
RUN_FILES = ("metrics.json", "resume.pt", "final.pt")


def demo_model(progress: bool = True) -> tuple[nn.Module, Path]:
    """``(model in eval mode, run folder)``: trains the demo network on first use, reuses it after.

    The run folder holds ``epoch-XXX.pt`` checkpoints (for the feature-evolution figure),
    ``final.pt`` and ``metrics.json``. An interrupted first training resumes where it stopped; a run
    made with another configuration (an older deconvlab) is replaced.
    """
    run_dir = cache_dir() / "demo"
    if _is_stale(run_dir):
        for path in [*run_dir.glob("epoch-*.pt"), *(run_dir / name for name in RUN_FILES)]:
            path.unlink(missing_ok=True)
    if not (run_dir / "final.pt").is_file():
        train(**DEMO_CONFIG, out=run_dir, resume=True, progress=progress)
    classes = torch.load(run_dir / "final.pt", map_location="cpu", weights_only=True)["classes"]
    model = create(DEMO_CONFIG["model_name"], num_classes=len(classes))
    load_weights(model, run_dir / "final.pt")
    return model.eval(), run_dir


def _is_stale(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a run whose configuration is not ``DEMO_CONFIG``."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text())["config"]
    wanted = {("model" if key == "model_name" else key): value for key, value in DEMO_CONFIG.items()}
    return any(config.get(key) != value for key, value in wanted.items())
