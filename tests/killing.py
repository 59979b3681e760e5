"""What the SIGKILL tests share: wait until a child process reaches a point, then kill it outright."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(process: subprocess.Popen, reached: Callable[[], bool]) -> None:
    """SIGKILL ``process`` as soon as ``reached()`` is true; fail with its stderr if it ends first."""
    while not reached():
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
