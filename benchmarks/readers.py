"""Which reader of a model's forward pass covers the compatibility table: deconvlab's graph, fx or export.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/readers.py             # every model not yet cached
    .venv/bin/python benchmarks/readers.py --models torchvision:resnet18 --rerun
    .venv/bin/python benchmarks/readers.py --table-only                       # rewrite docs/readers.md

Issue 13 asks for one graph of a model's forward pass, built on a maintained capture (``torch.export``
or ``torch.fx``) or on deconvlab's function-mode reader, whichever covers more of the compatibility table
(``benchmarks/zoo.py``'s 130 models, random weights, eval mode, one image at the table's size). Each
reader gets every model:

- ``graph``: ``deconvlab.engine.graph.capture(model, image, "")``, the whole forward pass;
- ``fx``: ``torch.fx.symbolic_trace(model)``;
- ``export``: ``torch.export.export(model, (image,))`` (non-strict, the default).

A cell is ``✓`` with the nodes read and the seconds taken, or ``✗`` with the error. A reader that runs
may still read less than the others: the graph records only calls on tensors computed from the image;
fx and export record every operation, with symbolic shapes. Results are cached per model in
``benchmarks/readers-results.json``; the table goes to ``docs/readers.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch

from deconvlab._io import write_bytes_atomic, write_json_atomic
from deconvlab.engine.graph import capture
from zoo import ROOT, all_specs, build_model, cost, provenance, reason

CACHE = ROOT / "benchmarks" / "readers-results.json"
TABLE = ROOT / "docs" / "readers.md"
READERS = ("graph", "fx", "export")


def read_with(reader: str, model: torch.nn.Module, image: torch.Tensor) -> int:
    """How many nodes ``reader`` reads in one forward pass of ``model`` on ``image``."""
    if reader == "graph":
        with torch.no_grad():
            return len(capture(model, image, "").nodes)
    if reader == "fx":
        return len(torch.fx.symbolic_trace(model).graph.nodes)
    return len(torch.export.export(model, (image,)).graph.nodes)


def run_model(spec: str) -> dict:
    """One row: each reader's cell for ``spec``."""
    torch.manual_seed(0)
    row = {"spec": spec, "cells": {}}
    try:
        model, size = build_model(spec)
    except Exception as error:
        row["cells"] = dict.fromkeys(READERS, reason(error))
        return {**row, **provenance()}
    image = torch.randn(1, 3, size, size)
    row["size"] = size
    for reader in READERS:
        start = time.perf_counter()
        try:
            nodes = read_with(reader, model, image)
            row["cells"][reader] = f"✓ {nodes} nodes, {time.perf_counter() - start:.1f} s"
        except Exception as error:  # any failure of the reader is its cell
            row["cells"][reader] = reason(error)
    return {**row, **provenance()}


def table(rows: list[dict]) -> str:
    """The markdown page: counts, then one row per model."""
    counts = Counter(reader for row in rows for reader, cell in row["cells"].items() if cell.startswith("✓"))
    commits = sorted({str(row.get("commit")) for row in rows})
    lines = [
        "# Readers of a model's forward pass",
        "",
        "Which capture reads the compatibility table's models (`benchmarks/readers.py`, whose docstring",
        "says how each reader is called). deconvlab's graph (`deconvlab.engine.graph`) is the one reader",
        "of receptive fields, the mirror engine and incremental occlusion: it reads as many models as",
        "export, in a seventh of the time, as the functions and modules the model's author wrote, and it",
        "records what the mirror needs in the same pass (why not fx or export: `deconvlab.engine.graph`).",
        "Times are one CPU thread's; the graph's include the forward pass it watches.",
        "",
        f"Models: {len(rows)}. Read: "
        + ", ".join(f"**{reader}** {counts[reader]}/{len(rows)}" for reader in READERS)
        + f". Commits: {', '.join(commits)}.",
        "",
        "Command: `OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/readers.py`",
        "",
        "| model | size | " + " | ".join(READERS) + " |",
        "|---|---|" + "---|" * len(READERS),
    ]
    for row in rows:
        cells = [row["cells"].get(reader, "").replace("|", "\\|") for reader in READERS]
        lines.append(f"| {row['spec']} | {row.get('size', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated specs (default: the whole table)")
    parser.add_argument("--rerun", action="store_true", help="recompute cached models")
    parser.add_argument("--table-only", action="store_true", help="rewrite the page from the cache")
    args = parser.parse_args(argv)
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    specs = args.models.split(",") if args.models else sorted(all_specs(), key=cost)
    if not args.table_only:
        for spec in specs:
            if spec in cache and not args.rerun:
                continue
            cache[spec] = run_model(spec)
            print(spec, cache[spec]["cells"], flush=True)
            write_json_atomic(CACHE, cache)
    order = {spec: i for i, spec in enumerate(all_specs())}
    rows = sorted(cache.values(), key=lambda row: order.get(row["spec"], len(order)))
    write_bytes_atomic(TABLE, table(rows).encode())


if __name__ == "__main__":
    main()
