"""The demo network's sanity checks (Adebayo et al. 2018), printed as Markdown tables.

    .venv/bin/python benchmarks/sanity.py [--images 12] [--layer classifier.6] [--untrained] [--out FILE]

One validation image per class (the first ``--images`` of the builtin split, class-balanced); the units
are each image's strongest of ``--layer`` (at the logits: the predicted class). Prints, for each rule,
the mean similarity to the trained projection after each cascading step, then the unit (class)
sensitivity. ``--untrained``: a freshly initialised zfnet-mini instead of the demo's trained one (the
checks are then of a random network against a re-drawn random network). ``--out``: also the JSON.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--layer", default="classifier.6")
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from deconvlab._io import write_json_atomic
    from deconvlab.analyses import sanity
    from deconvlab.data import load_dataset

    if args.untrained:
        from deconvlab.models import create

        torch.manual_seed(0)
        model, name = create("zfnet-mini", num_classes=12).eval(), "untrained zfnet-mini (seed 0)"
    else:
        from deconvlab.training import demo_model

        model, name = demo_model()[0], "the demo network (trained zfnet-mini)"
    data = load_dataset("builtin", "val", image_size=model.input_size[-1], size=args.images)
    inputs = torch.stack([data[i][0] for i in range(len(data))])
    start = time.perf_counter()
    result = sanity.sanity_checks(
        model, inputs, args.layer, channels=range(12) if "classifier" in args.layer else None
    )
    seconds = time.perf_counter() - start
    data_json = result.to_json()
    print(f"{name}, layer {args.layer}, {len(inputs)} images, units {data_json['units']} ({seconds:.0f} s)\n")
    header = " | ".join(sanity.MEASURES)
    for mode in ("cascading", "independent"):
        print(f"{mode}: rule | re-drawn | {header}\n--- | --- | {' | '.join('---' for _ in sanity.MEASURES)}")
        for rule, steps in data_json[mode].items():
            for step in steps:
                print(f"{rule} | {step['layer']} | " + " | ".join(_cell(step[m]) for m in sanity.MEASURES))
        print()
    print(f"sensitivity: rule | pairs | {header}\n--- | --- | {' | '.join('---' for _ in sanity.MEASURES)}")
    for rule in data_json["cascading"]:
        for pairs in ("same_image", "same_unit"):
            values = data_json["sensitivity"][rule][pairs]
            print(f"{rule} | {pairs} | " + " | ".join(_cell(values[m]) for m in sanity.MEASURES))
    if args.out:
        write_json_atomic(args.out, data_json)


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
