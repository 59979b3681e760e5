"""Top-k scan throughput: vs a plain forward loop over the same data, and with 1 and 2 processes.

    .venv/bin/python benchmarks/scan.py [--model zfnet-mini] [--images 1200] [--batch-size 64]

The data is the built-in validation split (64x64), the model ``zfnet-mini`` with random weights (the
speed does not depend on them), the layers every conv layer, k = 9. Measured in one run:

- ``forward``: a plain loop, ``model(images)`` for every batch of the same DataLoader;
- ``scan``: ``topk_scan`` in this process;
- ``scan x2``: ``topk_scan`` under ``torchrun --nproc-per-node 2`` (one thread per process), timed
  inside rank 0 from after start-up to the merged result.
The issue's goal: scan >= 0.85x the plain forward loop's throughput.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch


def build(args):
    from deconvlab.data import load_dataset
    from deconvlab.models import create

    torch.manual_seed(0)
    model = create(args.model, num_classes=12).eval()
    dataset = load_dataset("builtin", "val", image_size=model.input_size[-1])
    if args.images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(args.images))
    return model, dataset


def forward_loop(model, dataset, batch_size: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    start = time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            model(images)
    return time.perf_counter() - start


def scan(model, dataset, batch_size: int) -> float:
    from deconvlab.analyses import topk_scan

    start = time.perf_counter()
    topk_scan(model, dataset, None, k=9, batch_size=batch_size, progress=False)
    return time.perf_counter() - start


def worker(args) -> None:
    """Under torchrun: one timed scan; rank 0 prints the seconds."""
    from deconvlab.analyses.scan_distributed import barrier, process_group, rank_and_world

    with process_group():
        model, dataset = build(args)
        barrier()
        seconds = scan(model, dataset, args.batch_size)
        if rank_and_world()[0] == 0:
            print(f"SECONDS {seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zfnet-mini")
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in this process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return
    model, dataset = build(args)
    forward_loop(model, dataset, args.batch_size)  # warm-up
    times = {
        "forward": forward_loop(model, dataset, args.batch_size),
        "scan": scan(model, dataset, args.batch_size),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        __file__,
        "--worker",
        "--model",
        args.model,
        "--images",
        str(args.images),
        "--batch-size",
        str(args.batch_size),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("SECONDS")]
    if seconds:
        times["scan x2"] = float(seconds[0])
    else:
        print("torchrun failed:", run.stderr[-2000:])
    images, threads = len(dataset), torch.get_num_threads()
    print(f"{args.model}, {images} images, batch {args.batch_size}, {threads} threads in-process")
    for name, value in times.items():
        ratio = times["forward"] / value
        print(f"  {name:8s} {value:7.2f} s  {images / value:8.1f} images/s  {ratio:5.2f}x forward")


if __name__ == "__main__":
    main()
