"""``deconvlab layers``: every layer a unit can be taken from, and what applies there.

deconvlab layers                                              # the demo network
deconvlab layers --model torchvision:resnet50 --no-check      # names, types, shapes, fields only
deconvlab layers --model timm:efficientnet_b0 --json

One line per module called in the forward pass whose output is one map or vector per image: its name
(what ``--layer`` takes), module type, output shape at the model's input size, receptive field side and
jump in input pixels ("all" when it sees the whole image), and which engine/rule pairs refuse it, with
the reason (``deconvlab.analyses.layers.layer_table``). Layers marked ``*`` are the report's and the
explorer's defaults.
"""

from __future__ import annotations

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import INPUT_SIZE, MEAN, STD, WEIGHTS, load_cli_model, model_option


@app.command()
def layers(
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    check: bool = typer.Option(
        True, "--check/--no-check", help="Try each engine and rule at each layer (slower on big models)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    input_size: int | None = INPUT_SIZE,
    mean: str | None = MEAN,
    std: str | None = STD,
) -> None:
    """List the layers of a model: name, type, output shape, receptive field, what runs there."""
    import json

    from deconvlab.analyses.layers import default_layers, layer_table

    try:
        network = load_cli_model(model, weights, "builtin", input_size, mean, std)
        rows = layer_table(network, check=check)
        defaults = set(default_layers(network))
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        table = [{**row.to_json(), "default": row.name in defaults} for row in rows]
        typer.echo(json.dumps({"model": model, "input_size": list(network.input_size), "layers": table}))
        return
    typer.echo(f"{model}: input {'x'.join(map(str, network.input_size))}; * = default layers")
    width = max(len(row.name) for row in rows) + 2
    reasons: dict[str, int] = {}  # each distinct reason once, as a numbered note under the table
    for row in rows:
        field = "all" if row.field_size is None else f"{row.field_size}/{row.jump}"
        groups: dict[int, list[str]] = {}
        for key, reason in row.refused.items():
            groups.setdefault(reasons.setdefault(reason, len(reasons) + 1), []).append(key)
        refused = "; ".join(f"{', '.join(keys)} [{note}]" for note, keys in groups.items())
        runs = ("every engine and rule" if row.checked else "") if not refused else f"refused: {refused}"
        mark = "*" if row.name in defaults else " "
        shape = "x".join(map(str, row.shape))
        typer.echo(f"{mark} {row.name:<{width}}{row.kind:<22}{shape:<14}field {field:<10}{runs}")
    for reason, note in reasons.items():
        typer.echo(f"[{note}] {reason}")
