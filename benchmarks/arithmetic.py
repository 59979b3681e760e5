"""Benchmark: every ``deconvlab.arithmetic.conv_transpose`` method against PyTorch's, as time ratios.

The issue's case: N=8, 64 -> 64 channels, 56x56 input, kernel 3, stride 2, padding 1,
output_padding 1, float32. Goal: the default method (col2im) at most 3x the time of
``torch.nn.functional.conv_transpose2d``. Repeats are interleaved (torch, then each method, per round)
and the ratio is best(method) / best(torch) within this one run: the fastest of the repeats, the
estimate least disturbed by other jobs on a shared machine. Two clocks: wall time (what a user waits)
and process CPU time (all threads). Both libraries use their default thread pools unless
``--threads N`` limits both (torch.set_num_threads and threadpoolctl for NumPy's BLAS).

"matrix" cannot run on the issue's case: its sparse C would hold 64*64*56*56*9 = 115.6 million
entries (well over a gigabyte with indices). Every method, "matrix" included, is therefore also
timed on a reduced case (16 -> 16 channels, 28x28), with its own torch baseline.

    .venv/bin/python benchmarks/arithmetic.py            # under a minute on 2 idle cores
    .venv/bin/python benchmarks/arithmetic.py --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deconvlab.arithmetic import METHODS, conv_transpose

PARAMS = dict(stride=2, padding=1, output_padding=1)
SLOW = {"matrix": 3, "scatter": 3}  # at most this many repeats for the slow methods


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    channels: int
    size: int
    methods: tuple[str | None, ...]


CASES = (
    Case("issue: N=8, 64->64, 56x56", 8, 64, 56, (None, "scatter", "zero_insert", "gradient")),
    Case("reduced: N=8, 16->16, 28x28", 8, 16, 28, (None, *(m for m in METHODS if m != "col2im"))),
)


def label(method: str | None) -> str:
    return "default (col2im)" if method is None else method


def seconds(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_case(case: Case, repeats: int) -> list[tuple]:
    """Per method: name, best wall s, wall ratio, best CPU s, CPU ratio, repeats, max rel. error."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch, case.channels, case.size, case.size)).astype(np.float32)
    w = (rng.standard_normal((case.channels, case.channels, 3, 3)) / np.sqrt(9 * case.channels)).astype(
        np.float32
    )
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    reference = F.conv_transpose2d(tx, tw, **PARAMS).numpy()  # also warms torch up
    errors = {}
    for method in case.methods:  # warm-up call, and a correctness check
        y = conv_transpose(x, w, method=method, **PARAMS)
        errors[method] = float(np.abs(y - reference).max() / np.abs(reference).max())
    times: dict[str | None, list[tuple[float, float]]] = {"torch": [], **{m: [] for m in case.methods}}
    for round_ in range(repeats):
        times["torch"].append(seconds(lambda: F.conv_transpose2d(tx, tw, **PARAMS)))
        for method in case.methods:
            if round_ < SLOW.get(method, repeats):
                times[method].append(seconds(lambda m=method: conv_transpose(x, w, method=m, **PARAMS)))

    def best(samples):
        return tuple(min(clock) for clock in zip(*samples, strict=True))

    torch_wall, torch_cpu = best(times["torch"])
    rows = []
    for name, method in [("torch.nn.functional.conv_transpose2d", "torch")] + [
        (label(m), m) for m in case.methods
    ]:
        wall, cpu = best(times[method])
        error = errors.get(method, 0.0)
        rows.append((name, wall, wall / torch_wall, cpu, cpu / torch_cpu, len(times[method]), error))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed calls per method (slow ones: at most 3)"
    )
    parser.add_argument("--threads", type=int, default=None, help="limit torch and NumPy's BLAS to N threads")
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    print(
        f"kernel 3, stride 2, padding 1, output_padding 1, float32; cpus {os.cpu_count()}, "
        f"torch {torch.__version__} threads {torch.get_num_threads()}, numpy {np.__version__}, "
        f"BLAS threads {args.threads or 'default'}; best of the repeats"
    )
    for case in CASES:
        print(f"\n{case.name}")
        print("| method | wall ms | wall ratio | CPU ms | CPU ratio | repeats | max rel. error vs torch |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, wall, wall_ratio, cpu, cpu_ratio, count, error in run_case(case, args.repeats):
            print(
                f"| {name} | {wall * 1e3:.1f} | {wall_ratio:.2f}x | {cpu * 1e3:.1f} | {cpu_ratio:.2f}x "
                f"| {count} | {error:.1e} |"
            )
    print("\ngoal: default (col2im) on the issue's case at most 3x torch")


if __name__ == "__main__":
    main()
