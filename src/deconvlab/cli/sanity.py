"""``deconvlab sanity``: Adebayo et al.'s sanity checks of the projections, as figures and JSON.

deconvlab sanity --out runs/sanity                        # the demo network, its logits, 4 val images
deconvlab sanity --model zfnet --weights zf.pt --data photos/ --layer features.12 --out s

Writes ``DIR/sanity.json`` (``deconvlab.analyses.sanity.SanityChecks.to_json``: ``"cascading"`` maps
each rule to a list of steps ``{"layer", "spearman", "spearman_abs", "ssim", "hog"}``, the last having
re-drawn every layer that feeds ``--layer``; ``"independent"`` likewise; ``"sensitivity"`` each rule's
means), the figures (``cascading-maps.png``, ``cascading-curves.png``, ``independent-maps.png``,
``independent-curves.png``, ``sensitivity.png``) and ``DIR/index.html`` showing them with the numbers.
The units are each image's strongest of ``--layer`` (at the logits: the predicted class); the
sensitivity compares the layer's first eight channels (classes).
"""

from __future__ import annotations

import html
from pathlib import Path

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import WEIGHTS, load_cli_model, model_option


@app.command()
def sanity(
    out: Path = typer.Option(..., "--out", help="Folder for index.html, sanity.json and the figures."),
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    data: str = typer.Option("builtin", "--data", help="'builtin' or an image folder (<folder>/<class>/*)."),
    layer: str | None = typer.Option(
        None, "--layer", help="Module name (model.named_modules()); default the last layer with parameters."
    ),
    rules: str = typer.Option("deconvnet,guided,gradient", "--rules", help="Comma-separated rules."),
    images: int = typer.Option(4, "--images", help="Validation images, spread over the split (at least 2)."),
    engine: str = typer.Option("autograd", "--engine", help="autograd or mirror."),
    seed: int = typer.Option(0, "--seed", help="Seed of the re-drawn weights."),
) -> None:
    """Re-draw the weights from the top down and see how much each rule's projections change."""
    try:
        summary = _run(out, model, weights, data, layer, rules, images, engine, seed)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)


def _run(out: Path, model_name, weights, data, layer, rules, count, engine, seed) -> str:
    from deconvlab._io import write_bytes_atomic, write_json_atomic
    from deconvlab.analyses import sanity

    if count < 2:
        raise ValueError(f"--images={count}: the sensitivity check needs at least 2 images")
    network = load_cli_model(model_name, weights, data)
    inputs = _images(data, network, count)
    layer = layer or sanity.parametrised_layers(network, inputs, "")[-1]
    names = [name.strip() for name in rules.split(",") if name.strip()]
    result = sanity.sanity_checks(network, inputs, layer, rules=names, engine=engine, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, figure in sanity.figures(result).items():
        write_bytes_atomic(out / f"{name}.png", _png(figure))
    data_json = result.to_json()
    write_json_atomic(out / "sanity.json", data_json)
    write_bytes_atomic(out / "index.html", _page(data_json, model_name).encode())
    last = {rule: steps[-1]["spearman"] for rule, steps in data_json["cascading"].items()}
    return f"{out / 'index.html'} (cascading, every layer re-drawn, Spearman: {_format(last)})"


def _images(data: str, network, count: int):
    import numpy as np
    import torch

    from deconvlab.data import load_dataset
    from deconvlab.data.transforms import statistics

    size = getattr(network, "input_size", (None,))[-1]
    # the builtin split is generated: make only the first (class-balanced) images
    mean, std = statistics(network)
    cut = count if data == "builtin" else None
    dataset = load_dataset(data, "val", image_size=size, size=cut, mean=mean, std=std)
    picked = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
    return torch.stack([dataset[int(index)][0] for index in picked])


def _png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _format(values: dict) -> str:
    """``{"guided": 0.91234, "gradient": None}`` -> ``'guided 0.912, gradient n/a'``.

    >>> _format({"guided": 0.91234, "gradient": None})
    'guided 0.912, gradient n/a'
    """
    return ", ".join(f"{name} {'n/a' if value is None else f'{value:.3f}'}" for name, value in values.items())


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _page(data: dict, model_name: str) -> str:
    """index.html: the figures, then each check's table of means."""
    from deconvlab.analyses.sanity import MEASURES

    escape = html.escape
    header = "".join(f"<th>{m}</th>" for m in MEASURES)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>deconvlab sanity</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
        "td,th{padding:2px 8px;text-align:right}</style>",
        f"<h1>Sanity checks of {escape(model_name)}, layer {escape(data['layer'])}</h1>",
        "<p>Adebayo et al. 2018: the layers that feed the unit are re-drawn (normal, with each trained "
        "tensor's mean and spread) and the same units projected again; each number is the similarity to "
        "the trained projection, averaged over the units "
        f"{escape(str(data['units']))}. Near 1: the map does not depend on those weights.</p>",
    ]
    for mode in ("cascading", "independent"):
        parts.append(f"<h2>{mode} randomisation</h2>")
        parts.append(
            f"<img src='{mode}-maps.png' alt='{mode} maps'><img src='{mode}-curves.png' alt='curves'>"
        )
        parts.append(f"<table><tr><th>rule</th><th>re-drawn</th>{header}</tr>")
        for rule, steps in data[mode].items():
            for step in steps:
                cells = "".join(f"<td>{_cell(step[m])}</td>" for m in MEASURES)
                parts.append(f"<tr><td>{escape(rule)}</td><td>{escape(step['layer'])}</td>{cells}</tr>")
        parts.append("</table>")
    sensitivity = data["sensitivity"]
    parts.append(
        "<h2>Unit sensitivity</h2><p>Different units (channels "
        f"{escape(str(sensitivity['channels']))}) of the same image, against the same unit on different "
        "images (Nie et al. 2018).</p><img src='sensitivity.png' alt='sensitivity'>"
        f"<table><tr><th>rule</th><th>pairs</th>{header}</tr>"
    )
    for rule in data["cascading"]:
        for pairs in ("same_image", "same_unit"):
            cells = "".join(f"<td>{_cell(sensitivity[rule][pairs][m])}</td>" for m in MEASURES)
            parts.append(f"<tr><td>{escape(rule)}</td><td>{pairs.replace('_', ' ')}</td>{cells}</tr>")
    parts.append("</table>")
    return "\n".join(parts) + "\n"
