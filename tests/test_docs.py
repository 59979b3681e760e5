"""The documentation's moving parts: the notebooks of examples/ run from top to bottom (nbclient, a fresh
kernel each) and are stored without outputs (their cells assert against PyTorch and the definitions);
the README's links resolve; the site's doctest fencing. ``make docs`` checks the site's own links."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "docs" / "_hooks"))


def test_there_are_the_three_notebooks():
    assert [path.name for path in NOTEBOOKS] == [
        "01_project_a_unit.ipynb",
        "02_study_on_a_folder.ipynb",
        "03_transposed_convolution_by_hand.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: {cell.source[:40]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert errors == []


def test_doctests_are_fenced_for_the_site():
    from griffe_doctest import fence_doctests

    text = "Intro.\n\n    >>> f(1)\n    2\n    >>> f(2)\n    3\n\nAfter."
    assert fence_doctests(text).splitlines() == [
        "Intro.",
        "",
        "    ```pycon",
        "    >>> f(1)",
        "    2",
        "    >>> f(2)",
        "    3",
        "    ```",
        "",
        "After.",
    ]


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    targets = [link.split("#")[0] for link in re.findall(r"\]\(([^)]+)\)", readme)]
    local = [target for target in targets if not target.startswith(("http://", "https://"))]
    assert len(local) >= 10
    assert [target for target in local if not (ROOT / target).exists()] == []
