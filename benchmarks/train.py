"""Benchmark: the demo training (zfnet-mini on the builtin dataset), time and accuracy.

Goal (issue 5): at least 90% validation accuracy within 5 minutes on 2 CPU cores.

The demo configuration (``deconvlab.training.DEMO_CONFIG``) is trained from scratch into a temporary
folder, exactly as ``deconvlab train`` and ``demo_model()`` do: data generation (uncached here,
timed apart), SGD with filter renormalisation, a validation pass, checkpoints and metrics after
every epoch. The peer, measured in the same run on the same machine, is one epoch of a bare
PyTorch loop (same model, data tensors, batch size and optimiser; no renormalisation, evaluation,
checkpoints or progress bars), timed before and after the training; the faster of the two is kept.
On a shared machine the load changes during a run, so the ratio compares the fastest deconvlab epoch
(the least disturbed) with the faster bare epoch, and the "least disturbed" estimate of the whole
run is ``generation + epochs x fastest epoch``. The 1-minute load average is printed before and
after: with other jobs running, the measured times are pessimistic.

    .venv/bin/python benchmarks/train.py              # about 2.5 minutes on 2 idle cores
    .venv/bin/python benchmarks/train.py --epochs 2   # a quick look (does not reach the goal)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch import nn

from deconvlab.data import BuiltinDataset, normalize
from deconvlab.models import create, load_weights
from deconvlab.training import DEMO_CONFIG, evaluate, train

GOAL_ACCURACY, GOAL_SECONDS = 0.90, 300.0


def bare_epoch_seconds(batch_size: int, lr: float) -> float:
    """One epoch of a minimal SGD loop over the builtin training split (the peer)."""
    data = BuiltinDataset("train")
    inputs, labels = normalize(data.images), torch.tensor(data.labels)
    model = create("zfnet-mini", num_classes=len(data.classes)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    began = time.perf_counter()
    for start in range(0, len(labels), batch_size):
        batch = slice(start, start + batch_size)
        loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEMO_CONFIG["epochs"])
    args = parser.parse_args()
    config = {**DEMO_CONFIG, "epochs": args.epochs}
    print(f"threads {torch.get_num_threads()}, load average before {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DECONVLAB_CACHE"] = folder  # fresh: the data is generated, not read from a cache
        bare_before = bare_epoch_seconds(config["batch_size"], config["lr"])  # generates train (cached)
        os.environ["DECONVLAB_CACHE"] = f"{folder}/fresh"
        began = time.perf_counter()
        BuiltinDataset("train"), BuiltinDataset("val")  # generated and cached; train() reads the cache
        generation = time.perf_counter() - began
        began = time.perf_counter()
        metrics = train(**config, out=f"{folder}/run", progress=False)
        total = generation + time.perf_counter() - began
        model = load_weights(create("zfnet-mini", num_classes=12), f"{folder}/run/final.pt")
        test = evaluate(model, BuiltinDataset("test"))
        bare = min(bare_before, bare_epoch_seconds(config["batch_size"], config["lr"]))
    final = metrics["final"]
    ends = [0.0] + [row["seconds"] for row in metrics["epochs"]]
    per_epoch = final["train_seconds"] / args.epochs
    fastest = min(b - a for a, b in zip(ends, ends[1:], strict=False))
    print(f"data generation (train + val, uncached): {generation:.1f} s")
    print(f"training: {args.epochs} epochs in {final['train_seconds']:.1f} s ({per_epoch:.1f} s/epoch)")
    print(f"from scratch (generation + train()): {total:.1f} s")
    print(f"fastest epoch {fastest:.1f} s (with validation); bare PyTorch epoch (peer) {bare:.1f} s; "
          f"ratio {fastest / bare:.2f}x")
    print(f"least disturbed estimate of the run: {generation + args.epochs * fastest:.0f} s")
    print(f"val accuracy {final['val_accuracy']:.4f}; test top-1 {test['top1']:.4f} top-5 {test['top5']:.4f}")
    reached = final["val_accuracy"] >= GOAL_ACCURACY and total <= GOAL_SECONDS
    verdict = "met" if reached else "NOT met"
    print(f"goal (val >= {GOAL_ACCURACY:.0%} within {GOAL_SECONDS:.0f} s from scratch): {verdict}")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
