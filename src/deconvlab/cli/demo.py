"""``deconvlab demo``: the main job of ``make demo``.

For now it explains the default transposed convolution; the paper's full study (the report)
replaces this body when it lands.
"""

from __future__ import annotations

import typer

from deconvlab.cli._app import app


@app.command()
def demo() -> None:
    """Run the main job: for now, explain a transposed convolution (the full demo arrives with the report)."""
    from deconvlab.cli.explain import default_case, explanation, render

    typer.echo(render(explanation(default_case())))
    typer.echo("\nThe full demo (the paper's study as an HTML report) arrives with `deconvlab report`.")
