"""``deconvlab report``: the paper's study of one model on one dataset, as a static HTML report.

deconvlab report --model zfnet-mini --weights run/final.pt --data builtin --checkpoints run --out rep
deconvlab report --model torchvision:alexnet --weights alexnet.pth --data photos/ --out r
deconvlab report --model timm:resnet50 --weights DEFAULT --data photos/ --out r   # timm's, from its cache

Writes ``OUT/index.html`` (open it from disk), the figures under ``OUT/figures`` and every number in
``OUT/report.json``. Re-running the same command continues an interrupted report. Files are listed, not
decoded, up front: the top-9 scan streams its split and the other sections read bounded samples
(``deconvlab.report.ReportOptions``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import INPUT_SIZE, MEAN, STD, WEIGHTS, load_cli_model, model_option

RULES = ("deconvnet", "guided", "gradient")


@app.command()
def report(
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    out: Path = typer.Option(..., "--out", help="Folder for index.html, the figures and report.json."),
    data: str = typer.Option(
        "builtin", "--data", help="'builtin', an image folder (<folder>/<class>/*) or a list of files."
    ),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="Folder of epoch-XXX.pt files for the feature-evolution figure."
    ),
    layers: str | None = typer.Option(None, "--layers", help="Comma-separated conv layers; default all."),
    all_channels: bool = typer.Option(False, "--all", help="Every channel in the top-9 grids, not 16."),
    rules: str = typer.Option(
        "deconvnet",
        "--rules",
        help="Comma-separated projection rules for the grids: deconvnet,guided,gradient.",
    ),
    window: int | None = typer.Option(None, "--window", help="Occluder side in pixels (default image/4)."),
    stride: int | None = typer.Option(None, "--stride", help="Occluder step in pixels (default window/4)."),
    occlusion_classes: int = typer.Option(
        16, "--occlusion-classes", min=1, help="Occlusion maps for at most this many classes, spread evenly."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch intra-op threads (default torch's; 1 is faster on a busy machine).",
    ),
    input_size: int | None = INPUT_SIZE,
    mean: str | None = MEAN,
    std: str | None = STD,
) -> None:
    """Top-9 grids, feature evolution, invariance, filters, occlusion, correspondence and linear probes."""
    from deconvlab.report import ReportOptions, build_report

    set_threads(threads)
    try:
        options = ReportOptions(
            layers=_names(layers),
            channels_per_layer=None if all_channels else ReportOptions.channels_per_layer,
            rules=_rules(rules),
            occlusion_window=window,
            occlusion_stride=stride,
            occlusion_classes=occlusion_classes,
            progress=progress,
        )
        network = load_cli_model(model, weights, data, input_size, mean, std)
        index = build_report(
            network,
            out,
            model_name=model,
            data=data,
            checkpoints=checkpoints,
            options=options,
            weights=weights or "random",
        )
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(index))


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count for this process (the command's own process), when given."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _names(text: str | None) -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    return names or None


def _rules(text: str) -> tuple[str, ...]:
    """The rules, deconvnet first (the grids measure the first).

    >>> _rules("guided, deconvnet")
    ('deconvnet', 'guided')
    """
    chosen = _names(text) or ()
    unknown = [rule for rule in chosen if rule not in RULES]
    if unknown:
        raise ValueError(f"--rules={text!r}: {unknown[0]!r} is not one of {', '.join(RULES)}")
    return ("deconvnet", *(rule for rule in chosen if rule != "deconvnet"))
