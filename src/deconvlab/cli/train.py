"""``deconvlab train`` and ``deconvlab evaluate``: the paper's training recipe, top-1/top-5 accuracy.

Examples::

    deconvlab train --model zfnet-mini --data builtin --epochs 8 --out runs/mini
    deconvlab train --model zfnet-mini --data builtin --epochs 8 --out runs/mini --resume
    deconvlab train --model zfnet --data ~/images --epochs 30 --out runs/zf --batch-size 32 --lr 0.005
    deconvlab evaluate runs/mini/final.pt --data builtin --split test
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import model_option


def parse_epochs(text: str | None, name: str) -> list[int] | None:
    """'8,11' -> [8, 11]; None -> None (the default)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} {text!r}: expected comma-separated epochs such as 8,11") from None


@app.command()
def train(
    model: str = model_option(),
    data: str = typer.Option("builtin", "--data", help="'builtin' or a folder <folder>/[<split>/]<class>/*."),
    epochs: int = typer.Option(8, "--epochs", help="Passes over the training split."),
    out: Path = typer.Option(Path("runs/zfnet-mini"), "--out", help="Run folder: checkpoints, metrics.json."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per SGD step (the paper: 128)."),
    lr: float = typer.Option(1e-2, "--lr", help="Learning rate (the paper: 1e-2)."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum (the paper: 0.9)."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", help="L2 weight decay."),
    dropout: float = typer.Option(0.5, "--dropout", help="Drop probability after fc6 and fc7 (paper: 0.5)."),
    lr_steps: str = typer.Option(None, "--lr-steps", help="Epochs after which lr /= 10 (default 60%, 85%)."),
    renorm: bool = typer.Option(True, "--renorm/--no-renorm", help="The paper's filter RMS renormalisation."),
    checkpoint_epochs: str = typer.Option(
        None, "--checkpoint-epochs", help="Epochs to keep, e.g. 1,2,5 (default: the paper's, scaled)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights, data order and dropout."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    train_size: int = typer.Option(None, "--train-size", help="Builtin only: first N training images."),
    val_size: int = typer.Option(None, "--val-size", help="Builtin only: first N validation images."),
) -> None:
    """Train a network as in the paper (SGD, momentum, dropout, lr steps, filter renormalisation)."""
    from deconvlab.training import train as run_training

    try:
        metrics = run_training(
            model_name=model, data=data, epochs=epochs, out=out, batch_size=batch_size, lr=lr,
            momentum=momentum, weight_decay=weight_decay, dropout=dropout,
            lr_steps=parse_epochs(lr_steps, "--lr-steps"), renorm=renorm,
            checkpoint_epochs=parse_epochs(checkpoint_epochs, "--checkpoint-epochs"),
            resume=resume, seed=seed, progress=progress, train_size=train_size, val_size=val_size,
            on_epoch_end=lambda row: typer.echo(
                f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, "
                f"val accuracy {row['val_accuracy']:.3f} ({row['seconds']:.0f} s)"
            ),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    final = metrics["final"]
    typer.echo(
        f"val accuracy {final['val_accuracy']:.3f} after {epochs} epochs, {final['train_seconds']:.0f} s "
        f"of training; checkpoints and metrics.json in {out}"
    )


@app.command()
def evaluate(
    weights: Path = typer.Argument(..., help="A run's final.pt or epoch-XXX.pt, or a .pth/.safetensors."),
    model: str = model_option(None),
    data: str = typer.Option("builtin", "--data", help="'builtin' or an image folder."),
    split: str = typer.Option("val", "--split", help="train, val or test."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per forward pass."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Report top-1 and top-5 accuracy of a trained network on a dataset split."""
    import json

    import torch

    from deconvlab.data import load_dataset
    from deconvlab.data.transforms import statistics
    from deconvlab.models import load_model
    from deconvlab.training import evaluate as run_evaluation

    try:
        if model is None:
            if not weights.is_file():
                raise FileNotFoundError(f"weights {str(weights)!r}: no such file")
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
            model = checkpoint.get("model_name") if isinstance(checkpoint, dict) else None
            if not isinstance(model, str):
                raise ValueError(f"weights {str(weights)!r} do not name their architecture: pass --model")
        network = load_model(model, weights)
        mean, std = statistics(network)
        dataset = load_dataset(data, split=split, image_size=network.input_size[1], mean=mean, std=std)
        result = run_evaluation(network, dataset, batch_size=batch_size)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps({"model": model, "data": data, "split": split, **result}, sort_keys=True))
    else:
        typer.echo(
            f"{model} on {data} ({split}, {result['count']} images): top-1 {result['top1']:.4f}, "
            f"top-5 {result['top5']:.4f}"
        )
