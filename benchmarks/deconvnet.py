"""deconvlab.project against Captum's NeuronDeconvolution, measured in one run.

Cases (``--case``; issue 13's goals for the default call in brackets):

- ``zfnet`` [10x]: ZFNet (``deconvlab.models.create("zfnet")``, random weights), 224x224 input, conv5
(``features.12``): the strongest activation of each of the 256 channels in each of 9 images, 2,304
projections. Captum is called once per channel with the 9 images batched (a callable neuron selector
picks each image's own position). Its contrast-normalisation layers are swapped for Identity in both
runs: Captum backpropagates through them, the paper's deconvnet (ours) passes the signal unchanged,
and the comparison must be of the same computation.
- ``resnet50-layer2`` [6x], ``resnet50-layer3`` [2.5x]: torchvision's resnet50 (random weights, eval
  BatchNorm), 4 images 224x224, the strongest unit of 16 channels in each image (64 projections);
- ``vgg16-features.28`` [4x]: torchvision's vgg16 (random weights), 2 images, 16 channels (32).

On ZFNet, Captum's full run takes minutes on a laptop CPU, so by default it is timed on ``--captum-channels``
channels and extrapolated linearly to 256 (each channel is one independent call of the same cost);
its projections are compared with ours on those channels. ``--captum-channels 256`` runs all of it.
Both sides are run ``--repeats`` times, interleaved, and each keeps its best time (a shared machine's
load only ever adds time). Next to each ratio, the *multiply-add ceiling*: Captum's counted
floating-point operations (convolutions and matrix products, ``FlopCounterMode``) over deconvlab's, the
speedup deconvlab would have if both ran at the same FLOP rate; beating it takes a faster kernel, not
less work.

    .venv/bin/python benchmarks/deconvnet.py            # prints the figures quoted in the README
    .venv/bin/python benchmarks/deconvnet.py --case resnet50-layer2 --repeats 2
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from captum.attr import NeuronDeconvolution
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deconvlab.engine import project, strongest_units
from deconvlab.models import create

LAYER = "features.12"  # conv5 of ZFNet
# case -> (torchvision model, layer, images, channels); zfnet is the default case
TORCHVISION_CASES = {
    "resnet50-layer2": ("resnet50", "layer2", 4, 16),
    "resnet50-layer3": ("resnet50", "layer3", 4, 16),
    "vgg16-features.28": ("vgg16", "features.28", 2, 16),
}


def zfnet_without_contrast_norm() -> nn.Module:
    torch.manual_seed(0)
    model = create("zfnet", num_classes=1000).eval()
    for index, module in enumerate(model.features):
        if isinstance(module, nn.LocalResponseNorm):
            model.features[index] = nn.Identity()
    return model


def torchvision_case(case: str) -> tuple[nn.Module, str, int, int]:
    import torchvision

    name, layer, images, channels = TORCHVISION_CASES[case]
    torch.manual_seed(0)
    return getattr(torchvision.models, name)().eval(), layer, images, channels


def run_captum(model: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor, channels: list[int]):
    """Captum's projections of ``units`` for ``channels``, one call per channel; and the seconds taken."""
    deconvolution = NeuronDeconvolution(model, model.get_submodule(layer))
    rows = torch.arange(len(images))
    results = {}
    start = time.perf_counter()
    for channel in channels:
        mine = units[units[:, 1] == channel]  # one row per image, in image order
        ys, xs = mine[:, 2], mine[:, 3]

        def selector(output, channel=channel, ys=ys, xs=xs):
            return output[rows, channel, ys, xs]

        attribution = deconvolution.attribute(images.clone().requires_grad_(True), neuron_selector=selector)
        results[channel] = attribution.detach()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="zfnet", choices=["zfnet", *TORCHVISION_CASES])
    parser.add_argument("--images", type=int, default=9, help="images (zfnet)")
    parser.add_argument("--captum-channels", type=int, default=8, help="channels Captum is timed on (zfnet)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--engines", default="auto", help="deconvlab engines to time (auto: the default)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of both sides; each keeps its best")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    if args.case == "zfnet":
        model, layer, count, all_channels = zfnet_without_contrast_norm(), LAYER, args.images, 256
        channels = list(range(256))[:: max(1, 256 // args.captum_channels)][: args.captum_channels]
    else:
        model, layer, count, all_channels = torchvision_case(args.case)
        channels = list(range(all_channels))
    images = torch.randn(count, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    # (image, channel, y, x), image by image
    units = strongest_units(model, images, layer, channels=list(range(all_channels)))
    units_by_channel = units[torch.argsort(units[:, 1] * len(images) + units[:, 0])]
    print(f"{args.case} {layer}, {len(images)} images 224x224, {len(units)} projections; torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip

    # Captum is timed in two halves, before and after deconvlab, so that load drifting on a shared
    # machine weighs on both sides alike; the whole is repeated and each side keeps its best time
    half = len(channels) // 2
    engines = args.engines.split(",")
    captum_seconds, best = float("inf"), {engine: (None, float("inf")) for engine in engines}
    for _ in range(args.repeats):
        theirs, first_seconds = run_captum(model, layer, images, units_by_channel, channels[:half])
        for engine in engines:
            ours, seconds = time_deconvlab(model, layer, images, units, engine)
            best[engine] = (ours, min(seconds, best[engine][1]))
        later, later_seconds = run_captum(model, layer, images, units_by_channel, channels[half:])
        theirs.update(later)
        captum_seconds = min(captum_seconds, first_seconds + later_seconds)
    captum_total = captum_seconds * all_channels / len(channels)
    print(f"captum NeuronDeconvolution: {captum_seconds:.1f} s for {len(channels)} channels "
          f"-> {captum_total:.1f} s for {all_channels}; best of {args.repeats}")  # fmt: skip
    captum_flops = count_flops(lambda: captum_call_without_hooks(model, layer, images)) * all_channels
    for engine, (ours, seconds) in best.items():
        ceiling = captum_flops / count_flops(
            lambda engine=engine: time_deconvlab(model, layer, images, units, engine)
        )
        worst = 0.0
        for channel in channels:
            got = ours[units[:, 1] == channel]
            worst = max(worst, float((got - theirs[channel]).abs().max() / theirs[channel].abs().max()))
        info = ours.projection_info
        print(f"deconvlab engine={engine} (ran: {info.engine}): {seconds:.1f} s for {len(units)} (chunk "
              f"{info.chunk_size}, {info.backward_passes} passes); speedup x{captum_total / seconds:.1f} "
              f"(multiply-add ceiling x{ceiling:.1f}); max |diff| / max |captum| = {worst:.1e}")  # fmt: skip


def captum_call_without_hooks(model: nn.Module, layer: str, images: torch.Tensor) -> None:
    """What one Captum call computes, bar its hooks (which ``FlopCounterMode`` cannot run beside): the
    whole model forward, then the input gradient of one unit per image of the layer."""
    found = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _a, output: found.append(output))
    pixels = images.clone().requires_grad_(True)
    try:
        model(pixels * 1.0)  # not the leaf itself: the counter's module hooks cannot take a leaf
    finally:
        handle.remove()
    torch.autograd.grad(found[0][:, 0, 0, 0].sum(), pixels)


def count_flops(run) -> int:
    """The floating-point operations ``run()`` performs in convolutions and matrix products (torch's
    ``FlopCounterMode``): their ratio is the speedup one side would have at the other's FLOP rate."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def time_deconvlab(model: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor, engine: str):
    start = time.perf_counter()
    ours = project(model, images, layer, units, rule="deconvnet", engine=engine, seed="one")
    return ours, time.perf_counter() - start


if __name__ == "__main__":
    main()
