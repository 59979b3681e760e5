"""Per-stage caching, so that a report interrupted midway continues where it stopped.

Each stage of the report is a function that writes its figures into the report folder and returns its
numbers as a JSON-ready dict. :class:`StageCache` stores that dict in ``DIR/.stages/<name>.json``
(atomically, after the figures) together with a fingerprint of everything the stage depends on. A later
run with the same fingerprint, whose listed figures all still exist, reuses the stored numbers instead
of computing them again. A stage is checked and computed under a file lock, so two reports writing
into one folder compute each stage once: the second waits (``on_wait(message)``, default: stderr).

>>> import tempfile
>>> cache = StageCache(tempfile.mkdtemp())
>>> calls = []
>>> compute = lambda: calls.append(1) or {"answer": 42, "figures": []}
>>> cache.run("demo", {"seed": 0}, compute)["answer"], cache.run("demo", {"seed": 0}, compute)["answer"]
(42, 42)
>>> len(calls)  # the second run was a cache hit
1
>>> _ = cache.run("demo", {"seed": 1}, compute); len(calls)  # a new fingerprint computes again
2
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deconvlab._io import cache_lock, write_json_atomic

STAGE_FOLDER = ".stages"


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-ready object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model) -> str:
    """A hash of a model's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class StageCache:
    """Stores each stage's numbers under ``root/.stages`` keyed by a fingerprint of its inputs."""

    def __init__(self, root: str | os.PathLike, on_wait: Callable[[str], Any] | None = None) -> None:
        self.root = Path(root)
        self.on_wait = on_wait

    def path(self, name: str) -> Path:
        """Where the stage ``name`` keeps its numbers."""
        return self.root / STAGE_FOLDER / f"{name}.json"

    def run(self, name: str, key: Any, compute: Callable[[], dict]) -> dict:
        """The stage's result: from the cache when ``key`` matches, else ``compute()`` stored atomically.

        A result's ``"figures"`` list names files relative to ``root``; a cached result whose figures
        are missing is computed again. A computed result is returned as stored (read back), so that a
        report that reused the stage and one that computed it see the same dicts, keys in one order.
        """
        stamp = fingerprint(key)
        with cache_lock(self.path(name).with_suffix(".lock"), self.on_wait):
            cached = self._load(name)
            if cached and cached.get("fingerprint") == stamp and self._figures_exist(cached["result"]):
                return cached["result"]
            write_json_atomic(self.path(name), {"fingerprint": stamp, "result": compute()})
            return json.loads(self.path(name).read_text())["result"]

    def _load(self, name: str) -> dict | None:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None

    def _figures_exist(self, result: dict) -> bool:
        return all((self.root / figure).is_file() for figure in result.get("figures", []))
