"""``deconvlab demo``: the main job of ``make demo``, the paper's whole study with no arguments.

Trains ``zfnet-mini`` on the built-in dataset the first time (the checkpoint is cached, see
``deconvlab.training.demo_model``), then writes the full report, with the feature evolution over the
training checkpoints, and prints the path of its index.html. Run it again and every finished stage is
reused; interrupt it and it continues where it stopped. It runs on one torch thread unless ``--threads``
says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app

DEFAULT_OUT = Path("demo-out")
# One thread by default: on 2 shared cores it was 1.2x faster for the training and 4x for the report
# than torch's two (README, "Time"); the demo's small network gains little from a second thread.
DEFAULT_THREADS = 1


@app.command()
def demo(
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder for index.html, figures and report.json."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: int = typer.Option(
        DEFAULT_THREADS, "--threads", min=1, help="torch intra-op threads (see the module docstring)."
    ),
) -> None:
    """Train the demo network if needed, write the paper's study as an HTML report, print its path."""
    from deconvlab.cli.report import set_threads
    from deconvlab.report import ReportOptions, build_report
    from deconvlab.training import demo_model

    set_threads(threads)
    model, run_dir = demo_model(progress=progress)
    index = build_report(
        model,
        out,
        model_name="zfnet-mini",
        data="builtin",
        checkpoints=run_dir,
        options=ReportOptions(progress=progress),
        weights=str(run_dir / "final.pt"),
    )
    typer.echo(str(index.resolve()))
