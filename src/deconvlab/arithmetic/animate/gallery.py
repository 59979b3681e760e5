"""The gallery: Dumoulin & Visin's cases, and the ones they lack, with an index.html.

Each row pairs a convolution with its transposed convolution (drawn in both views), so the index
shows them side by side with their formulas. Rows from "A guide to convolution arithmetic for deep
learning" (2016) keep the names of the conv_arithmetic repository's animations.

>>> [row.name for row in GALLERY][:3]
['no_padding_no_strides', 'arbitrary_padding_no_strides', 'same_padding_no_strides']
>>> make_case(**GALLERY[0].conv).output_size, make_case(**GALLERY[0].transposed).output_size
((2, 2), (4, 4))
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from pathlib import Path

from deconvlab._io import write_bytes_atomic
from deconvlab.arithmetic.animate.captions import case_caption
from deconvlab.arithmetic.animate.model import Case, build_animation, make_case

GALLERY_FORMATS = ("gif", "svg")


@dataclass(frozen=True)
class GalleryRow:
    """A convolution and its transposed convolution (``make_case`` keyword arguments; None: absent)."""

    name: str
    title: str
    source: str
    conv: dict | None
    transposed: dict | None


def _conv(i, k, **kw) -> dict:
    return {"input_size": i, "kernel_size": k, **kw}


def _transposed(i, k, **kw) -> dict:
    return {"input_size": i, "kernel_size": k, "transposed": True, **kw}


DV = "Dumoulin & Visin"
EXTRA = "deconvlab (missing from Dumoulin & Visin)"
GALLERY = (
    GalleryRow("no_padding_no_strides", "No padding, no strides", DV, _conv(4, 3), _transposed(2, 3)),
    GalleryRow("arbitrary_padding_no_strides", "Arbitrary padding, no strides", DV,
               _conv(5, 4, padding=2), _transposed(6, 4, padding=2)),
    GalleryRow("same_padding_no_strides", "Half (same) padding, no strides", DV,
               _conv(5, 3, padding=1), _transposed(5, 3, padding=1)),
    GalleryRow("full_padding_no_strides", "Full padding, no strides", DV,
               _conv(5, 3, padding=2), _transposed(7, 3, padding=2)),
    GalleryRow("no_padding_strides", "No padding, strides", DV,
               _conv(5, 3, stride=2), _transposed(2, 3, stride=2)),
    GalleryRow("padding_strides", "Padding, strides", DV,
               _conv(5, 3, stride=2, padding=1), _transposed(3, 3, stride=2, padding=1)),
    GalleryRow("padding_strides_odd", "Padding, strides (odd)", DV, _conv(6, 3, stride=2, padding=1),
               _transposed(3, 3, stride=2, padding=1, output_padding=1)),
    GalleryRow("dilation", "Dilation (the transposed one is new)", f"{DV} + deconvlab",
               _conv(7, 3, dilation=2), _transposed(3, 3, dilation=2)),
    GalleryRow("kernel2_stride2", "Kernel 2, stride 2 (no overlap)", EXTRA,
               _conv(4, 2, stride=2), _transposed(2, 2, stride=2)),
    GalleryRow("output_padding", "output_padding: one more row and column", EXTRA,
               _conv(8, 3, stride=2), _transposed(3, 3, stride=2, output_padding=1)),
    GalleryRow("output_padding_dilation", "output_padding ≥ stride (allowed by dilation): zeros no stamp "
               "reaches", EXTRA, None, _transposed(3, 3, dilation=2, output_padding=1)),
    GalleryRow("strip_1d", "1D strip", EXTRA, _conv(7, 3, stride=2, padding=1, ndim=1),
               _transposed(4, 3, stride=2, padding=1, output_padding=1, ndim=1)),
    # weight sharing: the transposed convolution of the same weight maps the conv's outputs back
    GalleryRow("channels_2_to_3", "2 → 3 channels: each output sums a kernel slice over every input",
               EXTRA, _conv(4, 3, in_channels=2, out_channels=3),
               _transposed(2, 3, in_channels=3, out_channels=2)),
    GalleryRow("groups_2", "groups = 2: each output reads only the inputs of its group", EXTRA,
               _conv(5, 3, stride=2, padding=1, ndim=1, in_channels=4, out_channels=2, groups=2),
               _transposed(3, 3, stride=2, padding=1, ndim=1, in_channels=2, out_channels=4, groups=2)),
    GalleryRow("depthwise", "Depthwise (groups = channels): one kernel slice per channel", EXTRA,
               _conv(4, 3, in_channels=3, out_channels=3, groups=3),
               _transposed(2, 3, in_channels=3, out_channels=3, groups=3)),
)


@dataclass(frozen=True)
class GalleryItem:
    """One rendered animation of the gallery."""

    stem: str
    label: str
    case: Case
    frames: int
    files: tuple[str, ...]


def row_cases(row: GalleryRow) -> list[tuple[str, str, Case]]:
    """(file stem, label, case) of each animation of a row: the conv, the transposed in both views."""
    cases = []
    if row.conv is not None:
        cases.append((row.name, "convolution", make_case(**row.conv)))
    if row.transposed is not None:
        for view in ("direct", "scatter"):
            cases.append((f"{row.name}_transposed_{view}", f"transposed, {view} view",
                          make_case(**row.transposed, view=view)))
    return cases


def render_gallery(directory: str | os.PathLike, formats=GALLERY_FORMATS) -> dict[str, list[GalleryItem]]:
    """Render every gallery row into ``directory`` (``formats``: 'gif', 'svg', 'png' = contact sheet)
    and write ``index.html``; returns the items per row name."""
    from deconvlab.arithmetic.animate import save

    directory = Path(directory)
    unknown = set(formats) - {"gif", "svg", "png"}
    if unknown:
        raise ValueError(f"formats={tuple(formats)!r}: each must be 'gif', 'svg' or 'png'")
    rows: dict[str, list[GalleryItem]] = {}
    started = time.perf_counter()
    for row in GALLERY:
        items = []
        for stem, label, case in row_cases(row):
            animation = build_animation(case)
            files = []
            for suffix in formats:
                save(animation, directory / f"{stem}.{suffix}")
                files.append(f"{stem}.{suffix}")
            items.append(GalleryItem(stem, label, case, len(animation.frames), tuple(files)))
        rows[row.name] = items
    seconds = time.perf_counter() - started
    write_bytes_atomic(directory / "index.html", index_html(rows, seconds).encode())
    return rows


def _figure(item: GalleryItem) -> str:
    picture = next((f for f in item.files if not f.endswith(".svg")), item.files[0])
    links = " · ".join(f"<a href='{html.escape(f)}'>{Path(f).suffix[1:]}</a>" for f in item.files)
    caption = "<br>".join(html.escape(line) for line in case_caption(item.case))
    return (f"<figure><figcaption><b>{html.escape(item.label)}</b> · {item.frames} frames · {links}"
            f"</figcaption><img src='{html.escape(picture)}' alt='{html.escape(item.stem)}' loading='lazy'>"
            f"<p class='formula'>{caption}</p></figure>")


def index_html(rows: dict[str, list[GalleryItem]], seconds: float) -> str:
    """The gallery page: one section per row, its animations side by side with their formulas."""
    sections = []
    for row in GALLERY:
        figures = "".join(_figure(item) for item in rows[row.name])
        sections.append(f"<section id='{row.name}'><h2>{html.escape(row.title)}</h2>"
                        f"<p class='source'>{html.escape(row.source)} · <code>{row.name}</code></p>"
                        f"<div class='row'>{figures}</div></section>")
    count = sum(len(items) for items in rows.values())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>deconvlab: convolution arithmetic gallery</title><style>"
        "body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:1.5em;color:#111}"
        ".row{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}"
        "figure{margin:0;flex:1 1 30%;min-width:320px;max-width:720px}"
        "img{width:100%;border:1px solid #ccc}"
        ".formula{font-size:.85em}.source{color:#555;margin-top:-.6em}</style></head><body>"
        "<h1>Convolution arithmetic, drawn by deconvlab</h1>"
        f"<p>{count} animations rendered in {seconds:.1f} s by <code>deconvlab animate --gallery</code>. "
        "Cases after Dumoulin &amp; Visin, <i>A guide to convolution arithmetic for deep learning</i> "
        "(2016), plus the ones they lack. Each transposed convolution is drawn twice: as a direct "
        "convolution (zeros inserted, padding d(k−1)−p, kernel flipped) and as a scatter of the kernel.</p>"
        + "".join(sections) + "</body></html>\n"
    )
