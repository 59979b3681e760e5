"""Atomic file output shared by every long job: write to a temporary file, then rename.

A reader never sees a half-written checkpoint, progress file or report: either the old file or the
new one. ``os.replace`` is atomic on POSIX and Windows when both paths are on one file system.

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "out.json"
>>> write_json_atomic(path, {"a": 1})
>>> json.loads(path.read_text())
{'a': 1}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes the file private (0600); outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (byte-for-byte reproducible) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode())


def cache_dir() -> Path:
    """deconvlab's cache folder: ``$DECONVLAB_CACHE``, else ``~/.cache/deconvlab``."""
    root = os.environ.get("DECONVLAB_CACHE") or Path.home() / ".cache" / "deconvlab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
