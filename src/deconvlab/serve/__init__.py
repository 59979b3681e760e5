"""Floor 3 interface: ``deconvlab serve``, a local web explorer of one model.

``create_app(ServeConfig(...))`` builds a Starlette app with four pages (Units, Live image,
Occlusion, Arithmetic) over a JSON API described at ``/openapi.json``. Each app owns its state;
nothing is kept in module globals.
"""

from deconvlab.serve.app import create_app
from deconvlab.serve.config import Loaded, ServeConfig
from deconvlab.serve.server import background_server

__all__ = ["Loaded", "ServeConfig", "background_server", "create_app"]
