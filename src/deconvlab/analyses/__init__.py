"""Floor 3 analyses: occlusion sensitivity and dataset top-k scans (and the report's other studies).

``occlusion_map`` / ``OcclusionResult`` come from ``deconvlab.analyses.occlusion``; ``topk_scan`` /
``TopK`` from ``deconvlab.analyses.scan``. Both are imported lazily so that ``import deconvlab.analyses``
stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "occlusion_map": "deconvlab.analyses.occlusion",
    "OcclusionResult": "deconvlab.analyses.occlusion",
    "topk_scan": "deconvlab.analyses.scan",
    "TopK": "deconvlab.analyses.scan",
    "sanity_checks": "deconvlab.analyses.sanity",
    "SanityChecks": "deconvlab.analyses.sanity",
    "Recipe": "deconvlab.analyses.optimize",  # optimize() itself: the submodule's name is taken
    "Visualization": "deconvlab.analyses.optimize",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deconvlab.analyses' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
