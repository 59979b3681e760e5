"""Atomic file output shared by every long job: write to a temporary file, then rename.

A reader never sees a half-written checkpoint, progress file or report: either the old file or the
new one. ``os.replace`` is atomic on POSIX and Windows when both paths are on one file system.

Caches are filled under a file lock (:func:`cache_lock`, ``filelock``): when two processes want the
same cached result, the second waits, says so, and then reads what the first one wrote.

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "out.json"
>>> write_json_atomic(path, {"a": 1})
>>> json.loads(path.read_text())
{'a': 1}
>>> with cache_lock(path.with_suffix(".lock")):  # another process asking for it now would wait
...     path.with_suffix(".lock").is_file()
True
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from filelock import FileLock, Timeout


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


def cache_dir(create: bool = True) -> Path:
    """deconvlab's cache folder: ``$DECONVLAB_CACHE``, else ``~/.cache/deconvlab`` (made unless
    ``create=False``, for a reader that only looks)."""
    root = os.environ.get("DECONVLAB_CACHE") or Path.home() / ".cache" / "deconvlab"
    path = Path(root)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def cache_lock(path: str | os.PathLike, on_wait: Callable[[str], Any] | None = None) -> Iterator[None]:
    """Hold the file lock ``path`` for the block, against other processes (and threads).

    When someone else holds it, ``on_wait(message)`` is called once (default: print to stderr) and the
    block waits for them; it then sees what they wrote, so check the cache again inside the block.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        (on_wait or _to_stderr)(
            f"waiting for another process that is filling the same cache (it holds {path}) ..."
        )
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
