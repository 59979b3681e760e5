"""``build_report``: run every section through the stage cache, then write report.json and index.html.

``report.json`` holds every number the page shows, one top-level key per section (``dataset``, ``top9``,
``evolution``, ``invariance``, ``filters``, ``occlusion``, ``probes``, ``sanity``; each section that reads
images says how many under ``samples``, and ``dataset.skipped`` lists every unreadable file the sections
met, with the sections that met it), the correspondence
table as a list of rows ``{"layer", "part", "mean", "std"}`` under ``correspondence`` (its setup under
``correspondence_setup``), and ``checks``: the comparisons with ground truth, each with its rule and
whether it passed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from deconvlab._io import write_bytes_atomic, write_json_atomic
from deconvlab.report import html, sections
from deconvlab.report.study import ReportOptions, Study

POINTING_GAME_MIN = 0.8
MOSTLY = 0.5


def build_report(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    model_name: str,
    data: str = "builtin",
    checkpoints: str | os.PathLike | None = None,
    options: ReportOptions | None = None,
    weights: str | None = None,
) -> Path:
    """Write the report for ``model`` on ``data`` ("builtin" or a folder) into ``out``; return index.html.

    Stages already computed for the same model, data and options (in ``out/.stages``) are reused, so a
    run that was interrupted continues where it stopped.
    """
    study = Study(
        model,
        model_name,
        str(data),
        Path(out),
        options or ReportOptions(),
        Path(checkpoints) if checkpoints else None,
    )
    results = {}
    stages = [
        ("dataset", sections.dataset_section),
        ("top9", sections.top9_section),
        ("evolution", lambda s: sections.evolution_section(s, _chosen_channels(results["top9"]))),
        ("invariance", sections.invariance_section),
        ("filters", sections.filters_section),
        ("occlusion", sections.occlusion_section),
        ("correspondence", sections.correspondence_section),
        ("probes", sections.probes_section),
        ("sanity", sections.sanity_section),
    ]
    for name, section in tqdm(stages, desc="report", disable=not study.options.progress):
        extra = {"checkpoints": sections.checkpoint_digests(study.checkpoints)} if name == "evolution" else {}
        results[name] = study.cache.run(name, study.key(name, **extra), lambda f=section: _timed(f, study))
    results["dataset"] = {**results["dataset"], "skipped": unreadable_met(results)}
    report = assemble(
        results,
        title=f"deconvlab report: {model_name}",
        model=model_name,
        data=str(data),
        weights=weights,
        options=study.options.key(),
    )
    write_json_atomic(study.out / "report.json", report)
    index = study.out / "index.html"
    write_bytes_atomic(index, html.render(report).encode())
    return index


def _timed(section, study: Study) -> dict:
    """The section's result with the seconds it took (kept in the cache: a reused stage keeps its time)."""
    start = time.perf_counter()
    result = section(study)
    return {**result, "seconds": round(time.perf_counter() - start, 2)}


def unreadable_met(results: dict) -> list[dict]:
    """Every unreadable file the sections met (their ``unreadable`` lists), once, by split and path, with
    the sections that met it.

    >>> corrupt = {"split": "test", "path": "b.png", "reason": "corrupt"}
    >>> met = {"unreadable": [corrupt]}
    >>> unreadable_met({"probes": met, "filters": {}, "occlusion": met})
    [{'split': 'test', 'path': 'b.png', 'reason': 'corrupt', 'sections': ['probes', 'occlusion']}]
    """
    met: dict[tuple[str, str], dict] = {}
    for name, result in results.items():
        for item in result.get("unreadable", []):
            met.setdefault((item["split"], item["path"]), {**item, "sections": []})["sections"].append(name)
    return [met[key] for key in sorted(met)]


def _chosen_channels(top9: dict) -> dict[str, list[int]]:
    return {layer["layer"]: [c["channel"] for c in layer["channels"]] for layer in top9["layers"]}


def assemble(results: dict, **header) -> dict:
    """The report dict: ``header``, the sections, the correspondence rows on top, and the checks."""
    report = {**header, **results}
    correspondence = results.get("correspondence", {})
    report["correspondence"] = correspondence.get("rows", [])
    report["correspondence_setup"] = {k: v for k, v in correspondence.items() if k != "rows"}
    report["checks"] = checks(report)
    report["seconds"] = {name: result.get("seconds") for name, result in results.items()}
    return report


def checks(report: dict) -> list[dict]:
    """The report's comparisons with ground truth (only those the data allows)."""
    found = []
    occlusion = report.get("occlusion", {})
    if "pointing_game_accuracy" in occlusion:
        found.append(
            _check(
                "pointing game accuracy (Fig. 7 (d))",
                occlusion["pointing_game_accuracy"],
                f">= {POINTING_GAME_MIN}",
                occlusion["pointing_game_accuracy"] >= POINTING_GAME_MIN,
            )
        )
    top9 = report.get("top9", {})
    if "fraction_in_field" in top9:
        found.append(
            _check(
                "projection energy inside the receptive field",
                top9["fraction_in_field"],
                f"> {MOSTLY}",
                top9["fraction_in_field"] > MOSTLY,
            )
        )
    if "fraction_on_object" in top9:
        found.append(
            _check(
                "projection energy on the object",
                top9["fraction_on_object"],
                f"> {MOSTLY}",
                top9["fraction_on_object"] > MOSTLY,
            )
        )
    rows = report.get("correspondence", [])
    if rows:
        layer = report["correspondence_setup"]["layers"]["last_conv"]
        delta = {row["part"]: row["mean"] for row in rows if row["layer"] == layer}
        for part, value in delta.items():
            if part != "random":
                found.append(
                    _check(
                        f"correspondence: {part} below random at {layer}",
                        value,
                        f"< random {delta['random']:.3f}",
                        value < delta["random"],
                    )
                )
    return found


def _check(name: str, value: float, rule: str, passed: bool) -> dict:
    return {"name": name, "value": float(value), "rule": rule, "passed": bool(passed)}
