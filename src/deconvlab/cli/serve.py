"""``deconvlab serve``: the live explorer in a browser (Units, Live image, Occlusion, Arithmetic).

Binds 127.0.0.1 by default, and then only answers requests addressed to a loopback name (a guard
against DNS rebinding). Any other address is served with a clear warning: the explorer has no
authentication, and anyone who can reach the port can use the model.

>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, True, False)
"""

from __future__ import annotations

import ipaddress

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import MODEL_HELP, WEIGHTS

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def binding_warning(host: str, port: int) -> str | None:
    """The warning for a non-loopback address, or None."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host}:{port}, which is not a loopback address. The explorer has no "
        "authentication: anyone who can reach this port can upload images and run the model. "
        "Use --host 127.0.0.1 (the default) unless you mean it."
    )


@app.command()
def serve(
    model: str = typer.Option(None, "--model", help=MODEL_HELP + " Default: the built-in demo."),
    weights: str | None = WEIGHTS,
    data: str = typer.Option("builtin", "--data", help="'builtin' or an image folder (<class>/<images>)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; a non-loopback one warns."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.001, help="Upload size limit in MB."),
) -> None:
    """Serve the live explorer (with no arguments: the demo model, trained on first use)."""
    from deconvlab.models.spec import require

    uvicorn = require("uvicorn", "web", "deconvlab serve")
    from deconvlab.serve import ServeConfig, create_app

    if weights is not None and model is None:
        raise typer.BadParameter("--weights needs --model (the architecture the weights belong to)")
    if model is not None:  # a spec that does not load is one line and exit 2, before anything starts
        from deconvlab.cli._model import load_cli_model

        try:
            load_cli_model(model, weights, data)
        except (ValueError, FileNotFoundError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
    warning = binding_warning(host, port)
    if warning:
        typer.secho(warning, err=True, fg="red", bold=True)
    config = ServeConfig(
        model=model,
        weights=weights,
        data=data,
        max_upload_bytes=int(max_upload_mb * 2**20),
        allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else ("*",),
    )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"deconvlab explorer: http://{shown}:{port}/  (the model loads in the background)")
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
