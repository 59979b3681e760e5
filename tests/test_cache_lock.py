"""One trainer at a time: caches are filled under a file lock, and a second process waits for the first.

The demo network's run folder is exercised with two real Python processes that ask for the same
(tiny) run at the same moment; training is observed from outside, through each process's progress
bars on stderr, and the waiting through its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import torch

from deconvlab._io import cache_lock
from deconvlab.report.cache import StageCache

TINY = {
    "model_name": "zfnet-mini",
    "data": "builtin",
    "epochs": 1,
    "batch_size": 16,
    "train_size": 32,
    "val_size": 12,
}
ASK_FOR_THE_RUN = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from deconvlab.training.demo import cached_run

    ready, go, run_dir = map(Path, sys.argv[1:4])
    ready.touch()
    while not go.exists():  # both processes start asking at the same moment
        time.sleep(0.005)
    run = cached_run(run_dir, json.loads(sys.argv[4]), version=1, progress=True)
    print(json.dumps({"final": os.stat(run / "final.pt").st_ino}))
    """
)


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_two_processes_train_the_run_once_and_the_second_waits_for_it(tmp_path):
    run_dir, go = tmp_path / "run", tmp_path / "go"
    env = {**os.environ, "DECONVLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ASK_FOR_THE_RUN, tmp_path / f"ready{i}", go, run_dir, json.dumps(TINY)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), "both processes to start")
    go.touch()
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    trained = ["epoch 1" in stderr for _, stderr in outputs]  # tqdm's bar of the one epoch
    waited = ["waiting for another process" in stderr for _, stderr in outputs]
    assert sorted(trained) == [False, True], outputs
    assert waited == [not t for t in trained], outputs
    assert str(run_dir / ".lock") in outputs[waited.index(True)][1]
    # both use the one checkpoint the trainer wrote, which holds one epoch of the tiny config
    finals = {json.loads(stdout)["final"] for stdout, _ in outputs}
    assert finals == {os.stat(run_dir / "final.pt").st_ino}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1]
    assert torch.load(run_dir / "final.pt", weights_only=True)["epoch"] == 1


def test_the_lock_says_that_it_waits_and_waits_for_the_holder(tmp_path):
    path, order, messages = tmp_path / "cache.lock", [], []
    held, release = threading.Event(), threading.Event()

    def holder():
        with cache_lock(path):
            held.set()
            release.wait(60)
            order.append("holder done")

    def waiter():
        with cache_lock(path, on_wait=messages.append):
            order.append("waiter in")

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    held.wait(60)
    threads.append(threading.Thread(target=waiter))
    threads[1].start()
    wait_for(lambda: messages, "the waiter's message")
    assert order == []  # still waiting
    release.set()
    for thread in threads:
        thread.join(60)
    assert order == ["holder done", "waiter in"]
    assert messages == [f"waiting for another process that is filling the same cache (it holds {path}) ..."]


def test_a_report_stage_is_computed_once_when_two_reports_ask_for_it(tmp_path):
    calls, waited = [], threading.Event()
    first = StageCache(tmp_path)
    second = StageCache(tmp_path, on_wait=lambda message: waited.set())

    def compute():
        calls.append(threading.current_thread().name)
        waited.wait(60)  # the other report is now waiting for this stage
        return {"answer": 42, "figures": []}

    results = {}
    threads = [
        threading.Thread(target=lambda: results.update(a=first.run("s", {"k": 1}, compute)), name="a"),
        threading.Thread(target=lambda: results.update(b=second.run("s", {"k": 1}, compute)), name="b"),
    ]
    threads[0].start()
    wait_for(lambda: calls, "the first report to start the stage")
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert calls == ["a"] and waited.is_set()
    assert results == {"a": {"answer": 42, "figures": []}, "b": {"answer": 42, "figures": []}}
    assert json.loads(first.path("s").read_text())["result"] == {"answer": 42, "figures": []}
