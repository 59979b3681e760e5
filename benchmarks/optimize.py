"""Feature visualisation as the report does it: seconds per channel, batched, and activation against the data.

    .venv/bin/python benchmarks/optimize.py [--threads 1] [--steps 128] [--torchvision resnet18 --size 64]

For each network, the report's channels (``deconvlab report``'s Fig. 2: the default layers, the
``channels_per_layer`` strongest channels of each by their best activation over the validation split)
are optimised layer by layer, all of a layer's channels in one batch, with the report's own function
(``deconvlab.report.optimized.optimized_images``: the library's default recipe, 8-bit pictures measured
as written). Each picture's activation (the largest value of the channel's map) is compared with the
channel's ``dataset_max``, the largest over the builtin validation split from a top-k scan, as the report
and ``deconvlab optimize`` take it. Networks: the demo network (zfnet-mini, demo weights, cached) and a
torchvision network with random weights (seed 0) at a small input size, on the same builtin images.

Time per channel is the batch's time divided by its channels: wall seconds of the optimisation (what
the report records) and CPU seconds of the process over the whole call (optimisation and measurement),
the figure that a crowded machine does not inflate. Goal on the demo network: every picture exceeds its
channel's dataset_max, at a CPU cost under 2 s per channel.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

GOAL_SECONDS = 2.0  # CPU seconds per channel, batched, on the demo network


@dataclass
class LayerRow:
    """One layer's batch: its channels, seconds per channel, and activation over dataset_max."""

    network: str
    layer: str
    channels: list[int]
    wall: float  # optimisation wall seconds per channel (Optimized.seconds)
    cpu: float  # process CPU seconds per channel, optimisation and measurement
    activation: np.ndarray
    dataset_max: np.ndarray

    @property
    def exceeded(self) -> int:
        return int((self.activation > self.dataset_max).sum())

    def ratios(self) -> list[float]:
        from deconvlab.report.optimized import ratio

        found = [ratio(float(a), float(m)) for a, m in zip(self.activation, self.dataset_max, strict=True)]
        return [r for r in found if r is not None]


def measure_network(name: str, model, steps: int, channels_per_layer: int, seed: int) -> list[LayerRow]:
    """The report's channels of ``model`` over the builtin data, each layer optimised in one batch."""
    from deconvlab.analyses.scan import topk_scan
    from deconvlab.analyses.topgrid import strongest_channels
    from deconvlab.report.optimized import optimized_images
    from deconvlab.report.study import ReportOptions, Study

    options = ReportOptions(channels_per_layer=channels_per_layer, optimize_steps=steps, seed=seed)
    with tempfile.TemporaryDirectory(prefix="deconvlab-opt-") as out:  # Study's report folder, unused
        study = Study(model, name, "builtin", Path(out), options)
    data = study.dataset(options.scan_split)
    top = topk_scan(model, data, study.layers, k=1, batch_size=options.batch_size, progress=False)
    rows = []
    for layer in study.layers:
        best = top.layers[layer].values[:, 0]
        channels = strongest_channels(best, options.channels_per_layer)
        cpu = time.process_time()
        found = optimized_images(model, layer, channels, steps=steps, seed=seed)
        cpu = (time.process_time() - cpu) / len(channels)
        activation = np.array([f.activation for f in found])
        rows.append(LayerRow(name, layer, channels, found[0].seconds, cpu, activation, best[channels]))
        print(
            f"  {name} {layer}: {rows[-1].exceeded}/{len(channels)} exceed, {cpu:.2f} CPU s/channel",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table(rows: list[LayerRow]) -> str:
    """A Markdown table, one row per layer, then one per network."""
    lines = [
        "| network | layer | channels | exceed dataset_max | activation / dataset_max: mean (min) "
        "| wall s / channel | CPU s / channel |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for network in dict.fromkeys(r.network for r in rows):
        mine = [r for r in rows if r.network == network]
        for r in [*mine, None]:
            group = mine if r is None else [r]
            count = sum(len(g.channels) for g in group)
            ratios = [x for g in group for x in g.ratios()]
            wall = sum(g.wall * len(g.channels) for g in group) / count
            cpu = sum(g.cpu * len(g.channels) for g in group) / count
            spread = f"{np.mean(ratios):.2f}x ({min(ratios):.2f}x)" if ratios else "n/a"
            label = "**all**" if r is None else f"`{r.layer}`"
            exceeded = sum(g.exceeded for g in group)
            lines.append(
                f"| {network} | {label} | {count} | {exceeded}/{count} | {spread} | {wall:.2f} | {cpu:.2f} |"
            )
    return "\n".join(lines)


def verdicts(rows: list[LayerRow]) -> list[str]:
    """The two goals on the demo network, met or not, with the numbers."""
    demo = [r for r in rows if r.network == "zfnet-mini"]
    count = sum(len(r.channels) for r in demo)
    exceeded = sum(r.exceeded for r in demo)
    cpu = sum(r.cpu * len(r.channels) for r in demo) / count
    worst = max(r.cpu for r in demo)
    missed = [
        f"{r.layer}:{c}"
        for r in demo
        for c, a, m in zip(r.channels, r.activation, r.dataset_max, strict=True)
        if not a > m
    ]
    return [
        f"- every optimised image exceeds its channel's dataset_max: "
        f"**{'met' if exceeded == count else 'not met'}** ({exceeded}/{count}"
        + (f"; below: {', '.join(missed)})" if missed else ")"),
        f"- CPU cost under {GOAL_SECONDS:g} s per channel, batched: "
        f"**{'met' if cpu < GOAL_SECONDS else 'not met'}** "
        f"({cpu:.2f} s on average; the slowest layer {worst:.2f} s)",
    ]


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages (Linux), or '?'."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` says."""
    path = Path("/proc/cpuinfo")
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=128, help="optimisation steps (the report's default)")
    parser.add_argument("--channels", type=int, default=16, help="channels per layer (the report's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torchvision", default="resnet18", help="torchvision network ('' for none)")
    parser.add_argument("--size", type=int, default=64, help="its input size in pixels")
    parser.add_argument("--torchvision-channels", type=int, default=8, help="its channels per layer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from deconvlab.models import load_model
    from deconvlab.training import demo_model

    load = loadavg()
    model, _ = demo_model(progress=False)
    rows = measure_network("zfnet-mini", model, args.steps, args.channels, args.seed)
    if args.torchvision:
        torch.manual_seed(args.seed)
        network = load_model(f"torchvision:{args.torchvision}", input_size=args.size)
        name = f"{args.torchvision} (random, {args.size}px)"
        rows += measure_network(name, network, args.steps, args.torchvision_channels, args.seed)
    after = loadavg()

    print(f"$ {' '.join(['.venv/bin/python', *sys.argv])}\n")
    print(
        f"{date.today()}, {cpu_name()}, {torch.get_num_threads()} torch "
        f"thread(s) of {torch.multiprocessing.cpu_count()} cores, torch {torch.__version__}; load average "
        f"{load} before, {after} after; {args.steps} steps, seed {args.seed}\n"
    )
    print(table(rows))
    print("\nGoal on the demo network:")
    print("\n".join(verdicts(rows)))


if __name__ == "__main__":
    main()
