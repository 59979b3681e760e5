"""deconvlab: see what convolutional networks compute.

Floors (imports only go down):

1. ``deconvlab.arithmetic``: NumPy convolution arithmetic, the reference.
2. ``deconvlab.engine``: projecting units back to pixels (rules, mirror deconvnet, autograd engine,
   receptive fields). torch + floor 1.
3. ``deconvlab.models``, ``deconvlab.data``, ``deconvlab.training``, ``deconvlab.analyses``,
   ``deconvlab.tied``; then the interfaces ``deconvlab.report``, ``deconvlab.serve``, ``deconvlab.cli``.

The most used functions are re-exported here lazily, so ``import deconvlab`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "project": "deconvlab.engine",
    "strongest_units": "deconvlab.engine",
    "receptive_field": "deconvlab.engine",
    "occlusion_map": "deconvlab.analyses",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deconvlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
