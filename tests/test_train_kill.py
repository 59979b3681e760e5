"""``deconvlab train`` killed with SIGKILL and run again with ``--resume``: the files of one run.

Real processes, really killed, at two points of one two-epoch run of zfnet-mini (with the paper's
dropout, so that the global RNG state matters): just after epoch 1's checkpoints, and in the middle of
epoch 2 of the resumed run; the third run finishes it. The network holds still (sleeps until killed)
at a chosen training step after announcing it with a file, so each kill lands exactly there on any
machine; nothing here measures time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deconvlab.cli import app
from killing import kill_when

NET = '''
import os
import time
from pathlib import Path

from deconvlab.models import create

steps = 0


def build():
    """zfnet-mini (12 classes, dropout 0.5) that stops at training step HOLD_AT after writing HOLD_FILE."""
    net = create("zfnet-mini", num_classes=12, dropout=0.5)
    net.register_forward_pre_hook(hold)
    return net


def hold(module, inputs):
    global steps
    if not module.training:
        return
    steps += 1
    if steps == int(os.environ.get("HOLD_AT", "0")):
        Path(os.environ["HOLD_FILE"]).write_text(str(steps))
        while True:
            time.sleep(1)
'''
TRAIN, BATCH = 48, 8
STEPS = TRAIN // BATCH  # per epoch


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-kill")
    (root / "hold_net.py").write_text(NET)
    return root


def train_arguments(out: str, *extra: str) -> list[str]:
    return ["train", "--model", "hold_net:build", "--epochs", "2", "--train-size", str(TRAIN), "--val-size",
            "24", "--batch-size", str(BATCH), "--out", out, "--no-progress", *extra]  # fmt: skip


def kill_at(work: Path, step: int, *extra: str) -> None:
    """Run ``train`` until it holds at training ``step`` (counted from this process's start), SIGKILL it."""
    marker = work / f"held-{step}"
    command = [sys.executable, "-m", "deconvlab", *train_arguments("cut", *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work), "HOLD_AT": str(step),
           "HOLD_FILE": str(marker)}  # fmt: skip
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        kill_when(process, marker.exists)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)


def finish(out: str, *extra: str) -> None:
    """The same command run to the end in this process, on the killed processes' one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, train_arguments(out, *extra))
    finally:
        torch.set_num_threads(previous)
    assert result.exit_code == 0, result.output


def saved_epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def without_seconds(path: Path) -> dict:
    """metrics.json less its wall-clock fields (``seconds``, ``train_seconds``)."""
    metrics = json.loads(path.read_text())
    for row in metrics["epochs"]:
        del row["seconds"]
    del metrics["final"]["train_seconds"]
    return metrics


def test_sigkill_after_a_checkpoint_and_mid_epoch_then_resume_gives_the_uninterrupted_run(work, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    cut = work / "cut"
    kill_at(work, STEPS + 1)  # the first step of epoch 2: epoch 1's files are all written
    assert saved_epoch(cut / "resume.pt") == 1 and (cut / "epoch-001.pt").is_file()
    assert not (cut / "epoch-002.pt").exists()
    kill_at(work, STEPS // 2, "--resume")  # the middle of epoch 2, resumed from epoch 1
    assert saved_epoch(cut / "resume.pt") == 1 and not (cut / "epoch-002.pt").exists()
    assert not (cut / "final.pt").exists()
    finish("cut", "--resume")
    finish("whole")
    for name in ("epoch-001.pt", "epoch-002.pt", "final.pt"):  # the weights, bit for bit
        assert (cut / name).read_bytes() == (work / "whole" / name).read_bytes(), name
    assert without_seconds(cut / "metrics.json") == without_seconds(work / "whole" / "metrics.json")
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in (work / "whole").iterdir())
