"""Top-k scan throughput: vs a plain forward loop over the same data, and with 1 and 2 processes.

    .venv/bin/python benchmarks/scan.py [--model zfnet-mini] [--images 1200] [--batch-size 64]

The data is the built-in validation split (64x64), the model ``zfnet-mini`` with random weights (the
speed does not depend on them), the layers every conv layer, k = 9. Measured in one run:

- ``forward``: a plain loop, ``model(images)`` for every batch of the same DataLoader;
- ``scan``: ``topk_scan`` in this process;
- ``scan x2``: ``topk_scan`` under ``torchrun --nproc-per-node 2`` (one thread per process), timed
  inside rank 0 from after start-up to the merged result.
The issue's goal: scan >= 0.85x the plain forward loop's throughput.

Memory (``--memory 2000,20000 --data FOLDER``): the benchmark writes FOLDER once (JPEG files, the built-in
training images cycled at ``--size`` pixels, in class subfolders; reused when it holds enough), then scans
the first N files of it for each N in a fresh process, and prints each one's peak resident memory (the
scanning process; and the largest DataLoader worker). The goal: the largest N within 10% of the
smallest, memory O(batch), not O(images).

    .venv/bin/python benchmarks/scan.py --memory 2000,20000 --data /tmp/scan-images --size 224

Files (``--files zfnet,torchvision:resnet50 --data FOLDER --images N``): for each model (random weights,
its own input size), the first N JPEG files of FOLDER (written as above), read by ``--workers`` DataLoader
workers in batches of ``--batch-size``: a plain ``DataLoader`` + ``model(images)`` loop against
``topk_scan`` (every conv layer, k = 9) over the same files, alternated ``--repeats`` times, the fastest
of each kept. The issue's goal: scan >= 0.9x the loop's throughput.

    .venv/bin/python benchmarks/scan.py --files zfnet,torchvision:resnet50 --data /tmp/scan-images \\
        --images 256 --batch-size 32 --workers 2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

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


def generate_folder(folder: Path, count: int, size: int) -> None:
    """``count`` JPEG files in folder/<class>/, the built-in training images cycled (kept when present)."""
    from PIL import Image

    from deconvlab.data import BuiltinDataset

    have = sum(1 for _ in folder.glob("*/*.jpg")) if folder.is_dir() else 0
    if have >= count:
        return
    data = BuiltinDataset("train", max(size, 16))
    for i in range(have, count):
        j = i % len(data)
        path = folder / data.class_name(j) / f"{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.image(j)).save(path, quality=90)


def first_files(folder: str, count: int, image_size: int):
    """The first ``count`` generated JPEG files of ``folder`` (sorted), as a streaming ``ImageList``."""
    from deconvlab.data import ImageList

    files = sorted(Path(folder).glob("*/*.jpg"))[:count]
    listing = Path(folder) / f".list-{count}.txt"
    listing.write_text("".join(f"{path.relative_to(folder)}\n" for path in files))
    return ImageList(listing, image_size=image_size, check=False)


def memory_child(args) -> None:
    """One scan of the first ``args.images`` files of ``args.data``; prints peak resident memory (MiB)."""
    from deconvlab.analyses import topk_scan

    torch.manual_seed(0)
    model = create_model(args)
    dataset = first_files(args.data, args.images, model.input_size[-1])
    topk_scan(model, dataset, None, k=9, batch_size=args.batch_size, num_workers=args.workers, progress=False)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"PEAK {len(dataset)} {own:.1f} {workers:.1f}")


def create_model(args):
    from deconvlab.models import create

    return create(args.model, num_classes=12).eval()


def memory(args) -> None:
    counts = [int(n) for n in args.memory.split(",")]
    generate_folder(Path(args.data), max(counts), args.size)
    print(
        f"{args.model}, batch {args.batch_size}, {args.workers} workers, {args.size}px JPEGs in {args.data}"
    )
    peaks = {}
    for count in counts:
        options = {"--data": args.data, "--images": count, "--model": args.model,
                   "--batch-size": args.batch_size, "--workers": args.workers}  # fmt: skip
        command = [sys.executable, __file__, "--memory-child", *(str(x) for o in options.items() for x in o)]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
        line = next(line for line in run.stdout.splitlines() if line.startswith("PEAK"))
        _, images, own, workers = line.split()
        own, workers = float(own), float(workers)
        print(f"  {images:>7s} images: peak RSS {own:8.1f} MiB scanning, {workers:7.1f} MiB a worker")
        peaks[count] = own
    first, last = peaks[counts[0]], peaks[counts[-1]]
    print(f"  {counts[-1]} vs {counts[0]} images: {last / first:.3f}x the peak (goal <= 1.10x)")


def files_loop(model, dataset, batch_size: int, workers: int) -> float:
    """Seconds of a plain DataLoader + forward loop over ``dataset``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            model(images)
    return time.perf_counter() - start


def files_scan(model, dataset, batch_size: int, workers: int) -> float:
    """Seconds of ``topk_scan`` (every conv layer, k = 9) over ``dataset``."""
    from deconvlab.analyses import topk_scan

    start = time.perf_counter()
    topk_scan(model, dataset, None, k=9, batch_size=batch_size, num_workers=workers, progress=False)
    return time.perf_counter() - start


def files(args) -> None:
    from deconvlab.models import load_model

    generate_folder(Path(args.data), args.images, args.size)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{args.images} JPEG files ({args.size}px) in {args.data}, batch {args.batch_size}, {args.workers} "
          f"workers, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load {load}")  # fmt: skip
    for spec in args.files.split(","):
        torch.manual_seed(0)
        model = load_model(spec).eval()
        dataset = first_files(args.data, args.images, model.input_size[-1])
        options = (model, dataset, args.batch_size, args.workers)
        loop, scanned = [], []
        for _ in range(args.repeats):
            loop.append(files_loop(*options))
            scanned.append(files_scan(*options))
        loop_rate, scan_rate = len(dataset) / min(loop), len(dataset) / min(scanned)
        print(f"  {spec:22s} {model.input_size[-1]}px  loop {loop_rate:6.1f} img/s  scan {scan_rate:6.1f} "
              f"img/s  {scan_rate / loop_rate:5.2f}x (goal >= 0.9x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zfnet-mini")
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in this process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", help="peak memory of scans of these numbers of files, e.g. 2000,20000")
    parser.add_argument("--data", default="/tmp/deconvlab-scan-images", help="folder of generated JPEGs")
    parser.add_argument("--size", type=int, default=224, help="side of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="DataLoader workers")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--files", help="scan vs loop over --data's JPEGs for these models, e.g. zfnet")
    parser.add_argument("--repeats", type=int, default=2, help="--files: alternated runs, fastest kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return
    if args.memory_child:
        memory_child(args)
        return
    if args.memory:
        memory(args)
        return
    if args.files:
        files(args)
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
