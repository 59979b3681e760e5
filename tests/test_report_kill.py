"""``deconvlab report`` killed with SIGKILL and run again: the files of one uninterrupted report.

Real processes, really killed, at three points of one report of a small conv net on the built-in data
(random weights, two checkpoints for the feature evolution): in the top-9 stage once its first layer's
figures are written (a stage half done: figures on disk, no stage file), between the feature
evolution's two checkpoint steps (a stage with its own cached steps), and in the middle of the
occlusion stage; the fourth run finishes it. The net holds still (sleeps until killed) at a chosen
forward call after announcing it with a file, so each kill lands exactly there on any machine; nothing
here measures time. Compared with a report run once into another folder: the same files; every figure,
index.html and the top-9 scan's topk.json byte for byte; every stage file and report.json number for
number, less the wall-clock ``seconds`` fields (named in ``numbers``). Each stage finished before a kill
is checked to be reused (its file and figures never rewritten).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deconvlab.report.cache import StageCache
from killing import kill_when

NET = '''
import os
import time
from pathlib import Path

import torch

from deconvlab.report.cache import StageCache
from torch import nn

calls = 0


def build(seed=0):
    """A small conv net for the 12 built-in classes whose first conv holds still when HOLD_* say so."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 12),
    )
    net.input_size = (3, 64, 64)
    net[0].register_forward_pre_hook(hold)
    return net


def hold(module, inputs):
    """At the HOLD_COUNT-th call made while HOLD_WHEN exists and HOLD_UNLESS does not: write
    HOLD_FILE, then sleep until killed."""
    global calls
    when = os.environ.get("HOLD_WHEN")
    if when is None or not Path(when).exists() or Path(os.environ["HOLD_UNLESS"]).exists():
        return
    calls += 1
    if calls == int(os.environ["HOLD_COUNT"]):
        Path(os.environ["HOLD_FILE"]).write_text(str(calls))
        while True:
            time.sleep(1)
'''


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The net's module and a folder of two checkpoints of it (epochs 1 and 2, other random weights)."""
    root = tmp_path_factory.mktemp("report-kill")
    (root / "hold_net.py").write_text(NET)
    spec = importlib.util.spec_from_file_location("hold_net", root / "hold_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (root / "checkpoints").mkdir()
    for epoch in (1, 2):
        torch.save(module.build(seed=epoch).state_dict(), root / "checkpoints" / f"epoch-{epoch:03d}.pt")
    return root


def report(work: Path, out: str, **hold: str) -> subprocess.Popen:
    """``deconvlab report`` into ``out`` in a process of its own (its own session), holding per ``hold``."""
    command = [sys.executable, "-m", "deconvlab", "report", "--model", "hold_net:build", "--checkpoints",
               "checkpoints", "--out", out, "--threads", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work)}
    env.update({f"HOLD_{key.upper()}": value for key, value in hold.items()})
    return subprocess.Popen(command, cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def kill_at(work: Path, when: str, unless: str, count: int) -> None:
    """Run the report into ``cut`` until it holds at the ``count``-th forward call made while
    ``cut/when`` exists and ``cut/unless`` does not; SIGKILL it there."""
    marker = work / f"held-{Path(when).name}"
    process = report(work, "cut", when=f"cut/{when}", unless=f"cut/{unless}", count=str(count),
                     file=str(marker))  # fmt: skip
    try:
        kill_when(process, marker.exists)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of its session (this test's)
        except ProcessLookupError:
            pass
        process.communicate(timeout=60)


def finish(work: Path, out: str) -> None:
    process = report(work, out)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]


def stages(out: Path) -> set[str]:
    return {p.name for p in (out / ".stages").glob("*.json")}


def stamps(out: Path, names) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each stage file in ``names`` and of every figure it lists: a file rewritten
    (atomically, by a rename) gets another inode and another mtime."""
    found = {}
    for name in names:
        path = out / ".stages" / name
        found[name] = (path.stat().st_ino, path.stat().st_mtime_ns)
        for figure in json.loads(path.read_text())["result"]["figures"]:
            found[figure] = ((out / figure).stat().st_ino, (out / figure).stat().st_mtime_ns)
    return found


def numbers(path: Path) -> dict:
    """A stage file or report.json less its wall-clock fields: each section's ``seconds``, each top-9
    channel's ``optimized.seconds``, and in report.json the ``seconds`` table and
    ``correspondence_setup.seconds`` (the correspondence section's, moved there)."""
    data = json.loads(path.read_text())
    if path.name != "report.json":
        return {**data, "result": without_seconds(path.stem, data["result"])}
    del data["seconds"], data["correspondence_setup"]["seconds"]
    sections = ("dataset", "top9", "evolution", "invariance", "filters", "occlusion", "probes", "sanity")
    return {**data, **{name: without_seconds(name, data[name]) for name in sections}}


def without_seconds(stage: str, result: dict) -> dict:
    """A stage's result less its wall-clock fields (the evolution's per-checkpoint steps have none)."""
    if stage.startswith("evolution-epoch-"):
        return result
    result = {key: value for key, value in result.items() if key != "seconds"}
    for layer in result["layers"] if stage == "top9" else []:
        for channel in layer["channels"]:
            del channel["optimized"]["seconds"]
    return result


def test_sigkill_at_three_points_then_rerun_writes_the_uninterrupted_report(work):
    cut, whole = work / "cut", work / "whole"

    kill_at(work, "figures/fig2-top9-0.png", ".stages/top9.json", 1)  # top-9 of layer 0 drawn, layer 3 not
    first = {"dataset.json"}
    assert stages(cut) == first
    assert (cut / "figures" / "fig2-top9-0.png").is_file() and not (cut / "figures/fig2-top9-3.png").exists()
    done = stamps(cut, first)

    kill_at(work, ".stages/evolution-epoch-001.json", ".stages/evolution-epoch-002.json", 1)
    second = first | {"top9.json", "evolution-epoch-001.json"}
    assert stages(cut) == second
    assert stamps(cut, first) == done  # the dataset stage was reused, not computed again
    done = stamps(cut, second)

    kill_at(work, ".stages/filters.json", ".stages/occlusion.json", 2)  # the occlusion's second forward call
    third = second | {"evolution-epoch-002.json", "evolution.json", "invariance.json", "filters.json"}
    assert stages(cut) == third
    assert stamps(cut, second) == done  # top-9 and the evolution's epoch 1 reused
    done = stamps(cut, third)
    assert not (cut / "report.json").exists() and not (cut / "index.html").exists()

    finish(work, "cut")
    assert stamps(cut, third) == done  # every stage finished before the last kill reused, figures too
    finish(work, "whole")

    files = sorted(str(p.relative_to(cut)) for p in cut.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(whole)) for p in whole.rglob("*") if p.is_file())
    assert len([name for name in files if name.endswith(".png")]) >= 30
    for name in files:
        if name == "report.json" or (Path(name).parent == Path(".stages") and name.endswith(".json")):
            assert numbers(cut / name) == numbers(whole / name), name
        else:  # every figure, index.html, the top-9 scan's topk.json, the locks: the same bytes
            assert (cut / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_computed_stage_reads_as_a_reused_one(tmp_path):
    """What ``index.html`` is drawn from: the same dict, keys in the same order, whether the stage was
    computed in this run or read back from an earlier one (the splits were once in another order)."""
    cache = StageCache(tmp_path)
    computed = cache.run("s", {"k": 1}, lambda: {"splits": {"train": 3, "val": 1, "test": 1}, "figures": []})
    reused = cache.run("s", {"k": 1}, lambda: pytest.fail("computed again"))
    assert json.dumps(computed) == json.dumps(reused)  # order-sensitive
    assert computed == {"splits": {"train": 3, "val": 1, "test": 1}, "figures": []}
