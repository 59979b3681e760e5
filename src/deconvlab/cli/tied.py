"""``deconvlab tied``: train an RBM, a convolutional RBM or a tied autoencoder, and show with the
run's own numbers that it goes up with W and down with W^T.

deconvlab tied --model rbm --data digits --out tied-rbm
deconvlab tied --model crbm --data builtin --out tied-crbm --epochs 5

Writes ``OUT/index.html`` and ``OUT/index.md`` (the page), ``filters.png``, ``reconstructions.png``,
``samples.png``, ``summary.json`` and ``checkpoint.pt`` (re-running the same command reuses it).
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app


@app.command()
def tied(
    model: str = typer.Option("rbm", "--model", help="rbm, crbm (convolutional RBM) or autoencoder."),
    data: str = typer.Option("digits", "--data", help="digits (scikit-learn's 8x8) or builtin."),
    out: Path = typer.Option(..., "--out", help="Folder for the page, the pictures and summary.json."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (default: the model's own)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Tied-weight models: does an RBM use the transpose? Answered with this run's numbers."""
    from deconvlab.tied.showcase import run_showcase

    try:
        summary = run_showcase(model, data, out, epochs=epochs, seed=seed)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary["answer"])
    typer.echo(str(Path(out) / "index.html"))
