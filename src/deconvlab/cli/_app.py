"""The Typer application every command module registers itself on."""

import typer

app = typer.Typer(
    name="deconvlab",
    help="See what convolutional networks compute, and why the transpose.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """See what convolutional networks compute, and why the transpose."""
