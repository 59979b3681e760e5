"""The options every command that takes a model shares, and the one function that loads it.

``--model`` takes a spec (``deconvlab.models.load_model``): ``zfnet-mini``, ``torchvision:resnet50``,
``timm:efficientnet_b0``, ``mypackage.nets:build``. ``--weights`` a file or ``DEFAULT``.
``--input-size``, ``--mean`` and ``--std`` override the weights' metadata.
"""

from __future__ import annotations

import typer

MODEL_HELP = (
    "zfnet-mini, zfnet, torchvision:NAME, timm:NAME or package.module:callable (a factory returning an "
    "nn.Module, imported from the working directory)."
)
WEIGHTS_HELP = (
    "Weight file (.pt, .pth, .safetensors; tensors only), or DEFAULT: torchvision's or timm's published "
    "weights, from the local caches only. Left out: random weights (the demo's for zfnet-mini on builtin)."
)
WEIGHTS = typer.Option(None, "--weights", help=WEIGHTS_HELP)
INPUT_SIZE = typer.Option(None, "--input-size", min=1, help="Input side in pixels (default: the weights').")
MEAN = typer.Option(None, "--mean", help="Per-channel normalisation mean, e.g. 0.5,0.5,0.5.")
STD = typer.Option(None, "--std", help="Per-channel normalisation std, e.g. 0.5,0.5,0.5.")


def model_option(default: str | None = "zfnet-mini"):
    """``--model``; ``default=...`` (Ellipsis) makes it required."""
    return typer.Option(default, "--model", help=MODEL_HELP)


def load_cli_model(
    spec: str,
    weights: str | None,
    data: str = "builtin",
    input_size: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    num_classes: int | None = None,
):
    """The model a command was asked for; zfnet-mini on builtin data without weights is the demo's.

    Random weights are announced on stderr, so that nobody mistakes their pictures for a trained net's.
    """
    from deconvlab.models import load_model
    from deconvlab.models.spec import describe

    if spec == "zfnet-mini" and weights is None and data == "builtin":
        from deconvlab.data import CLASSES
        from deconvlab.training import demo_model

        model = demo_model()[0]
        return describe(model, spec, input_size=model.input_size[-1], class_names=CLASSES)
    model = load_model(
        spec,
        weights,
        num_classes=num_classes,
        input_size=input_size,
        mean=parse_floats(mean, "--mean"),
        std=parse_floats(std, "--std"),
    )
    if weights is None:
        typer.secho(f"note: --model {spec} without --weights: random weights", err=True, fg="yellow")
    return model


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """'0.5, 0.5,0.5' -> (0.5, 0.5, 0.5); None stays None.

    >>> parse_floats("0.5, 0.25,1", "--mean")
    (0.5, 0.25, 1.0)
    >>> parse_floats("a,b", "--std")
    Traceback (most recent call last):
    ValueError: --std='a,b': expected comma-separated numbers such as 0.5,0.5,0.5
    """
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{option}={text!r}: expected comma-separated numbers such as 0.5,0.5,0.5") from None
