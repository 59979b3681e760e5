"""Floor 3 interface: the ``deconvlab`` command line.

Each command lives in its own module in this package and registers itself on ``app`` with
``@app.command()``; every module here is imported, so adding a command is adding a file.
Command modules import heavy libraries inside the command function, not at module level.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from deconvlab.cli._app import app

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    """Entry point of the ``deconvlab`` script; a missing optional extra is one line, exit 2."""
    from deconvlab.models.spec import MissingExtraError

    try:
        app()
    except MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
