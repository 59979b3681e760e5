"""``deconvlab scan`` killed with SIGKILL and run again with ``--resume``: the same bytes as one run.

Real processes, really killed (the OOM killer's way: the scanning process alone, its DataLoader workers
left to notice), at two points of one scan; the third run finishes it. The network sleeps in every
forward call, so that the scan lasts long enough to be caught in the middle on any machine; nothing
here measures time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.cli import app
from killing import kill_when

NET = '''
import time
import torch
from torch import nn


def build():
    """A small conv net that sleeps in every forward call (slow enough to be killed mid-scan)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU())
    net.register_forward_pre_hook(lambda module, inputs: time.sleep(0.05))
    net.input_size = (3, 24, 24)
    return net
'''
IMAGES, BATCH = 40, 2
BATCHES = IMAGES // BATCH
PROGRESS = Path("cut") / ".scan-progress" / "rank0-of1.pt"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder of 40 PNG images in two classes, two of them unreadable, and the module of the net."""
    root = tmp_path_factory.mktemp("scan-kill")
    (root / "slow_net.py").write_text(NET)
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        path = root / "images" / ("a", "b")[i % 2] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in (5, 22):
            path.write_bytes(b"\x89PNG cut short")
        else:
            Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)).save(path)
    return root


def scan_arguments(out: str, *extra: str) -> list[str]:
    return ["scan", "--model", "slow_net:build", "--data", "images", "--k", "3", "--batch-size",
            str(BATCH), "--checkpoint-every", "1", "--num-workers", "2", "--out", out, "--no-progress",
            *extra]  # fmt: skip


def scan(work: Path, out: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "deconvlab", *scan_arguments(out, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work)}
    return subprocess.Popen(command, cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def batches_done(path: Path) -> int:
    """The batches a checkpoint covers (0 without one); checkpoints are replaced atomically, so a
    checkpoint that exists is complete."""
    return torch.load(path, weights_only=True)["batches_done"] if path.exists() else 0


def kill_after(process: subprocess.Popen, checkpoint: Path, batches: int) -> int:
    """SIGKILL ``process`` as soon as its checkpoint covers ``batches``; the batches it then covers."""
    try:
        kill_when(process, lambda: batches_done(checkpoint) >= batches)
    finally:
        _end_session(process)
    return batches_done(checkpoint)


def _end_session(process: subprocess.Popen) -> None:
    """Kill what is left of the process's session (its DataLoader workers), which this test started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]


def uninterrupted(work: Path, monkeypatch) -> bytes:
    """The same command run to the end in this process, on one thread as the killed processes."""
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, scan_arguments("whole"))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return (work / "whole" / "topk.json").read_bytes()


def test_sigkill_twice_then_resume_writes_the_uninterrupted_bytes(work, monkeypatch):
    first = kill_after(scan(work, "cut"), work / PROGRESS, 1)
    assert 1 <= first < BATCHES and not (work / "cut" / "topk.json").exists()
    second = kill_after(scan(work, "cut", "--resume"), work / PROGRESS, first + 3)
    assert first < second < BATCHES and not (work / "cut" / "topk.json").exists()
    for name in (".scan-progress/.rank0-of1.pt.x1y2.tmp", ".topk.json.x1y2.tmp"):  # a write cut short
        (work / "cut" / name).write_bytes(b"half")
    finish(scan(work, "cut", "--resume"))
    whole = uninterrupted(work, monkeypatch)
    assert (work / "cut" / "topk.json").read_bytes() == whole
    skipped = [Path(item["path"]).name for item in json.loads(whole)["skipped"]]
    assert skipped == ["22.png", "05.png"]  # listed once each across the kills, in dataset order (a/, b/)
    assert sorted(p.name for p in (work / "cut").rglob("*")) == [".scan-progress", "topk.json"]
