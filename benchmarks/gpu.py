"""The GPU checks of issues 13 and 14 in one script, under 5 minutes on one GPU.

    PYTHONPATH=src python3 benchmarks/gpu.py --out $OUT          # on a machine with CUDA
    .venv/bin/python benchmarks/gpu.py --device cpu --quick         # a smoke test of the script itself

On the lent device machine (torch, torchvision and timm already there; captum carried as a wheel, see
/work/.library/device/README.md): ``pip download --no-deps captum==0.9.0 -d .whl`` here, then run with
``carry=[".whl"]``: ``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
PYTHONPATH=/tmp/site:src python3 benchmarks/gpu.py --out $OUT``.

1. **Projections** (issue 13, item 7): the cases of ``benchmarks/deconvnet.py`` (ZFNet conv5's 2,304
   projections; resnet50 ``layer2`` and ``layer3``, 4 images, 16 channels; vgg16 ``features.28``, 2
   images, 16 channels) on the GPU with the default call, ``project(model, images, layer, units)``:
   float32, float32 channels_last, and a bfloat16 model; against Captum's ``NeuronDeconvolution`` once per
   channel, float32, on the same GPU. Each side best of ``--repeats``, timed with
   ``torch.cuda.synchronize``. The goal: the ZFNet sweep in under 1 s. The bfloat16 rows' max diff
   against float32 Captum is large (about 0.2 of the largest value with random weights, on the CPU
   too): bfloat16's rounding can move max-pool switches and flip ReLU signs, so whole pixels differ; the dtype
   tests (tests/test_engine_dtypes.py) compare each dtype with its own float64 computation instead.
2. **Scan** (issue 14, item 7): torchvision resnet50 at 224, channels_last, bfloat16 autocast,
   ``topk_scan`` over images held in host memory (every conv layer, k = 9) against a raw forward loop
   over the same batches already in GPU memory; the goal: at least 0.8x its throughput. And the images
   per second the DataLoader's decoding workers sustain on a folder of JPEG files (written once).

Prints a markdown table per part and writes them, with the GPU's name, to ``--out``/gpu.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deconvlab.analyses import topk_scan  # noqa: E402
from deconvlab.engine import project, strongest_units  # noqa: E402
from deconvnet import LAYER, TORCHVISION_CASES, run_captum, torchvision_case, zfnet_without_contrast_norm  # noqa: E402
from scan import first_files, generate_folder  # noqa: E402


def timed(run, device: torch.device, repeats: int):
    """The result of ``run()`` and its best time over ``repeats`` runs."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return result, best


def projection_cases(args, device: torch.device) -> list[str]:
    """Part 1's rows: per case and variant, seconds, the speedup over Captum and the largest difference."""
    rows = ["| case | projections | variant | deconvlab (s) | engine | Captum (s) | speedup | max diff |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for case in ["zfnet", *TORCHVISION_CASES][: 2 if args.quick else None]:
        rows.extend(projection_case(case, args, device))
    return rows


def projection_case(case: str, args, device: torch.device) -> list[str]:
    """One case's rows (``--quick``: its first 8 channels only)."""
    if case == "zfnet":
        model, layer, count, channels = zfnet_without_contrast_norm(), LAYER, 9, 256
    else:
        model, layer, count, channels = torchvision_case(case)
    channels = min(channels, 8) if args.quick else channels
    images = torch.randn(count, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    model, images = model.to(device), images.to(device)
    units = strongest_units(model, images, layer, channels=list(range(channels)))
    units_by_channel = units[torch.argsort(units[:, 1] * len(images) + units[:, 0])].to(device)
    theirs, captum_seconds = timed(
        lambda: run_captum(model, layer, images, units_by_channel, list(range(channels)))[0],
        device,
        args.repeats,
    )
    variants = {  # each converts the model in place (nn.Module.to), so they run in this order
        "float32": lambda: (model, images),
        "float32 channels_last": lambda: (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        ),
        "bfloat16 model": lambda: (model.to(torch.bfloat16), images),
    }
    rows = []
    for name, convert in variants.items():
        variant, inputs = convert()
        ours, seconds = timed(
            lambda v=variant, i=inputs: project(v, i, layer, units, rule="deconvnet", seed="one"),
            device,
            args.repeats,
        )
        worst = max(
            float((ours[units[:, 1] == c].to(device) - theirs[c]).abs().max() / theirs[c].abs().max())
            for c in range(channels)
        )
        rows.append(
            f"| {case} | {len(units)} | {name} | {seconds:.3f} | {ours.projection_info.engine} | "
            f"{captum_seconds:.2f} | {captum_seconds / seconds:.1f}x | {worst:.1e} |"
        )
        print(rows[-1], flush=True)
    model.to(torch.float32, memory_format=torch.contiguous_format)
    return rows


class Held(torch.utils.data.Dataset):
    """Images already decoded, in host memory: the scan's cost without the decoding's."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], 0


def scan_case(args, device: torch.device) -> list[str]:
    """Part 2's rows: the scan against a raw loop over batches in GPU memory; decoding throughput."""
    import torchvision

    count, batch, size = (64, 16, 64) if args.quick else (4096, 256, 224)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device, memory_format=torch.channels_last)
    host = torch.randn(count, 3, size, size)
    on_gpu = [
        host[i : i + batch].to(device).contiguous(memory_format=torch.channels_last)
        for i in range(0, count, batch)
    ]

    def raw():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            for images in on_gpu:
                model(images)

    _, raw_seconds = timed(raw, device, args.repeats)
    options = {"k": 9, "batch_size": batch, "num_workers": args.workers, "progress": False, "device": device}
    _, scan_seconds = timed(
        lambda: topk_scan(model, Held(host), None, amp="bfloat16", **options), device, args.repeats
    )
    rows = ["| part | images | seconds | images/s | ratio |", "|---|---|---|---|---|",
            f"| raw forward loop, batches in GPU memory (bfloat16 autocast, channels_last) | {count} | "
            f"{raw_seconds:.2f} | {count / raw_seconds:.0f} | 1 |",
            f"| topk_scan, every conv layer, k=9, images in host memory | {count} | {scan_seconds:.2f} | "
            f"{count / scan_seconds:.0f} | {raw_seconds / scan_seconds:.2f}x (goal 0.8x) |"]  # fmt: skip
    folder = Path(args.data or tempfile.mkdtemp(prefix="deconvlab-gpu-jpegs-"))
    files = 128 if args.quick else 4096
    generate_folder(folder, files, size)
    dataset = first_files(str(folder), files, size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=args.workers)
    _, decode_seconds = timed(lambda: sum(len(images) for images, _ in loader), torch.device("cpu"), 1)
    rows.append(
        f"| decoding only: DataLoader, {args.workers} workers, {size}px JPEG files | {files} | "
        f"{decode_seconds:.2f} | {files / decode_seconds:.0f} | |"
    )
    for row in rows[2:]:
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the script runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (scan and decoding)")
    parser.add_argument("--data", help="folder for the JPEG files (default: a temporary one)")
    parser.add_argument("--out", help="folder for gpu.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = f"# GPU checks on {name} (torch {torch.__version__})"
    print(header, flush=True)
    text = "\n".join([header, "", *projection_cases(args, device), "", *scan_case(args, device)]) + "\n"
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu.md").write_text(text)


if __name__ == "__main__":
    main()
