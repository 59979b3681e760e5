"""``deconvlab optimize``: the image that drives each chosen channel most, by optimisation.

deconvlab optimize --layer features.8 --channels 0,5,7 --out runs/opt         # the demo network
deconvlab optimize --model zfnet --weights zf.pt --layer features.12 --channels 3 --recipe pixel \\
    --objective centre --data photos/ --out runs/opt

Writes ``DIR/channel-<c>.png`` per channel (the optimised image, at the model's input size) and
``DIR/optimize.json`` with, per channel: ``"activation"``, the largest value of the channel's map on the
PNG as written (8-bit pixels, normalised as the data are); ``"dataset_max"``, the largest over the
images of the data's split (a top-k scan), ``null`` without data; ``"objective"``, the value that was
maximised, on the PNG; ``"steps"``; ``"seconds"``, the batch's time divided by its channels. Without
``--weights`` the data default to ``builtin``, the demo network's own; with weights, to none.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import WEIGHTS, load_cli_model, model_option

RESULT_FILE = "optimize.json"


@app.command()
def optimize(
    layer: str = typer.Option(..., "--layer", help="Module name, as in model.named_modules()."),
    channels: str = typer.Option(..., "--channels", help="Comma-separated channels, e.g. 0,5,7."),
    out: Path = typer.Option(..., "--out", help="Folder for the PNGs and optimize.json."),
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    objective: str = typer.Option("centre", "--objective", help="'centre', 'mean' or 'y,x' (one unit)."),
    recipe: str = typer.Option("pixel", "--recipe", help="'pixel' (Yosinski et al. 2015) or 'fourier'."),
    steps: int = typer.Option(128, "--steps", help="Most steps."),
    tol: float | None = typer.Option(None, "--tol", help="Stop a channel once it rises less than this."),
    seed: int = typer.Option(0, "--seed"),
    data: str | None = typer.Option(
        None, "--data", help="'builtin', an image folder or 'none', for dataset_max."
    ),
    split: str = typer.Option("val", "--split", help="The split scanned for dataset_max."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per batch of the scan."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Optimise one image per channel (feature visualisation), beside the dataset's best activation."""
    try:
        data = data if data is not None else ("builtin" if weights is None else "none")
        settings = (objective, recipe, steps, tol, seed, data, split, batch_size, progress)
        summary = _optimize(model, weights, layer, channels, out, *settings)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)


def _optimize(
    model_name, weights, layer, channels, out, objective, recipe, steps, tol, seed, data, split, batch_size,
    progress,
) -> str:  # fmt: skip
    from deconvlab.analyses.optimize import measure, optimize

    chosen = _parse_channels(channels)
    target = _parse_objective(objective)

    network = load_cli_model(model_name, weights, data if data != "none" else "builtin")
    result = optimize(
        network,
        layer,
        chosen,
        objective=target,
        recipe=recipe,
        steps=steps,
        tol=tol,
        seed=seed,
        progress=progress,
    )
    pixels = _to_uint8(result.pixels)
    reached, maximum = measure(network, layer, _inputs(pixels, result.inputs), chosen, target)
    dataset_max = _dataset_max(network, layer, chosen, data, split, batch_size, progress)
    entries = {}
    for i, channel in enumerate(chosen):
        name = f"channel-{channel}.png"
        _write_png(out / name, pixels[i])
        entries[str(channel)] = {
            "image": name,
            "activation": float(maximum[i]),
            "objective": float(reached[i]),
            "dataset_max": None if dataset_max is None else dataset_max[i],
            "steps": result.steps[i],
            "seconds": result.seconds / len(chosen),
        }
    from deconvlab._io import write_json_atomic

    settings = {"model": model_name, "weights": None if weights is None else str(weights), "layer": layer}
    settings.update(objective=objective, recipe=recipe, seed=seed, data=data, split=split)
    write_json_atomic(out / RESULT_FILE, {**settings, "channels": entries})
    return str(out / RESULT_FILE)


def _parse_channels(text: str) -> list[int]:
    """'0, 5,7' -> [0, 5, 7].

    >>> _parse_channels("0, 5,7")
    [0, 5, 7]
    """
    try:
        chosen = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--channels={text!r}: expected comma-separated ints, e.g. 0,5,7") from None
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--channels={text!r}: a channel is named twice")
    return chosen


def _parse_objective(text: str) -> str | tuple[int, int]:
    """'mean', 'centre' or 'y,x' -> (y, x).

    >>> _parse_objective("centre"), _parse_objective("2,3")
    ('centre', (2, 3))
    """
    if text in ("mean", "centre"):
        return text
    try:
        y, x = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--objective={text!r}: expected 'mean', 'centre' or 'y,x' (two ints)") from None
    return y, x


def _to_uint8(pixels):
    """(N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), rounded."""
    import torch

    return (pixels.detach().cpu().double().clamp(0, 1) * 255).round().to(torch.uint8).movedim(1, -1).numpy()


def _inputs(pixels, like):
    """The 8-bit images as the model sees them: the data's normalisation, in the model's dtype and device."""
    from deconvlab.data.transforms import normalize

    return normalize(pixels).to(dtype=like.dtype, device=like.device)


def _dataset_max(network, layer, chosen, data, split, batch_size, progress) -> list[float] | None:
    """Each channel's largest value over the split (a top-k scan with k = 1), or None for data 'none'."""
    if data == "none":
        return None
    from deconvlab.analyses.scan import topk_scan
    from deconvlab.data import load_dataset
    from deconvlab.data.transforms import statistics

    mean, std = statistics(network)
    dataset = load_dataset(data, split, image_size=network.input_size[-1], mean=mean, std=std)
    top = topk_scan(network, dataset, [layer], k=1, batch_size=batch_size, progress=progress)
    return [float(top.layers[layer].values[channel, 0]) for channel in chosen]


def _write_png(path: Path, pixels) -> None:
    import io

    from PIL import Image

    from deconvlab._io import write_bytes_atomic

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
