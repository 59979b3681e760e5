"""Fixtures shared across the test suite."""

from __future__ import annotations

import pytest


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
