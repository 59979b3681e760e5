"""One torch thread inside a block: small matrices lose time to thread hand-offs, and on a busy
machine each parallel region waits for its threads to be scheduled (measured: a 16x64 @ 64x100
product taking 45 ms instead of microseconds under load)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_thread():
    """Run the block with ``torch.set_num_threads(1)``, restoring the previous count after.

    >>> with single_thread():
    ...     torch.get_num_threads()
    1
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
