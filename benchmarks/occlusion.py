"""Incremental occlusion vs Captum's ``Occlusion`` on ZFNet (or another model) at 224x224, CPU, in one run.

    .venv/bin/python benchmarks/occlusion.py [--window 16] [--stride 8] [--batch-size 64]
    .venv/bin/python benchmarks/occlusion.py --model torchvision:resnet18 --skip-captum

Same model (``--model``, a ``deconvlab.models.load_model`` spec, default ``zfnet``; random weights),
image, window, stride and baseline for every contender:

- ``incremental``: ``occlusion_map(..., incremental=True)`` (the default), batches of positions;
- ``full``: ``occlusion_map(..., incremental=False)``, the whole network per position, same batches;
- ``captum``: ``captum.attr.Occlusion`` as shipped (one position per forward pass);
- ``captum-batched``: Captum with ``perturbations_per_eval`` = our batch size.

Identical maps: Captum's attribution at a pixel is the mean, over the windows covering it, of
f(x)[target] - f(x occluded)[target]. We rebuild that from our logits and compare pixel by pixel, and
compare incremental with full logits. Pick settings where (224 - window) is a multiple of the stride:
otherwise Captum adds a window clipped at the border, which ``occlusion_map`` does not.
"""

from __future__ import annotations

import argparse
import time

import torch


def captum_map_from_logits(logits: torch.Tensor, clean: torch.Tensor, target: int, window, stride, size):
    """Captum's Occlusion attribution rebuilt from per-position logits (Py, Px, classes)."""
    total = torch.zeros(size)
    count = torch.zeros(size)
    for iy in range(logits.shape[0]):
        for ix in range(logits.shape[1]):
            y, x = iy * stride, ix * stride
            total[y : y + window, x : x + window] += clean[target] - logits[iy, ix, target]
            count[y : y + window, x : x + window] += 1
    return total / count.clamp(min=1)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--baseline", type=float, default=0.0)
    parser.add_argument("--model", default="zfnet", help="a load_model spec, e.g. torchvision:resnet18")
    parser.add_argument("--skip-captum-default", action="store_true", help="only the batched Captum run")
    parser.add_argument("--skip-captum", action="store_true", help="only incremental and full")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; each contender's best time counts")
    args = parser.parse_args()

    from captum.attr import Occlusion

    from deconvlab.analyses import occlusion_map
    from deconvlab.models import load_model

    torch.manual_seed(0)
    model = load_model(args.model, num_classes=1000).eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        clean = model(image)[0]
    target = int(clean.argmax())
    common = {
        "window": args.window,
        "stride": args.stride,
        "baseline": args.baseline,
        "batch_size": args.batch_size,
    }

    occlusion = Occlusion(model)

    def captum(per_eval: int):
        with torch.no_grad():
            return occlusion.attribute(
                image,
                sliding_window_shapes=(3, args.window, args.window),
                strides=(3, args.stride, args.stride),
                baselines=args.baseline,
                target=target,
                perturbations_per_eval=per_eval,
            )

    contenders = {
        "incremental": lambda: occlusion_map(model, image, **common),
        "captum-batched": lambda: captum(args.batch_size),
        "full": lambda: occlusion_map(model, image, incremental=False, **common),
    }
    if args.skip_captum:
        del contenders["captum-batched"]
    elif not args.skip_captum_default:
        contenders["captum"] = lambda: captum(1)
    runs, outputs = {name: [] for name in contenders}, {}
    for _ in range(args.repeats):  # rounds interleave the contenders, so that load changes hit all of them
        for name, function in contenders.items():
            outputs[name], seconds = timed(function)
            runs[name].append(seconds)
    runs = {name: min(times) for name, times in runs.items()}
    fast, full, t_fast = outputs["incremental"], outputs["full"], runs["incremental"]
    maps = {name: outputs[name] for name in ("captum", "captum-batched") if name in outputs}

    positions = len(fast.positions_y) * len(fast.positions_x)
    print(
        f"best of {args.repeats} round(s): {args.model} 224x224, window {args.window}, stride {args.stride}, "
        f"baseline {args.baseline}, {positions} positions, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"incremental layers: {', '.join(fast.incremental_layers)}")
    for name, seconds in runs.items():
        print(f"  {name:15s} {seconds:8.2f} s   incremental is {seconds / t_fast:5.2f}x faster")
    error = (fast.logits - full.logits).abs().max() / full.logits.abs().max()
    print(f"incremental vs full: max |diff| / max |logit| = {error:.2e}")
    ours = captum_map_from_logits(fast.logits[0], clean, target, args.window, args.stride, (224, 224))
    for name, attribution in maps.items():
        theirs = attribution[0].sum(0) / 3  # Captum repeats the map over the 3 channels of the window
        error = (ours - theirs).abs().max() / theirs.abs().max()
        print(f"incremental vs {name}: max |diff| / max |attribution| = {error:.2e}")


if __name__ == "__main__":
    main()
