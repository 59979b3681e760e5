"""Fixtures shared across the test suite."""

from __future__ import annotations

import pytest
from hypothesis import settings

# `make test` is a gate that must give the same answer on every machine and every run: property tests draw
# their examples from a fixed seed there. `pytest --hypothesis-profile=explore` draws fresh ones (and keeps
# the failures it finds in .hypothesis/), which is how new counter-examples are looked for.
settings.register_profile("gate", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("gate")


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    """The demo's zfnet-mini trained on the built-in dataset, once per test session.

    Trains into a session-private cache so that tests never touch the user's own cache.
    Returns what ``deconvlab.training.demo_model()`` returns.
    """
    mp = pytest.MonkeyPatch()
    mp.setenv("DECONVLAB_CACHE", str(tmp_path_factory.mktemp("deconvlab-cache")))
    from deconvlab.training import demo_model as build

    yield build()
    mp.undo()
