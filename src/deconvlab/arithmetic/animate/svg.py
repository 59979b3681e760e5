"""Hand-written SVG renderer: one file per frame, or one animated file (SMIL, no script).

Every cell is a ``<rect>`` carrying ``data-panel``, ``data-row``, ``data-col`` and classes naming its
role and overlays (``footprint``, ``active``, ``done``); footprint cells also carry ``data-kernel``.
So the SVG can be checked against the index arithmetic by reading the XML. In an animated SVG,
frame n's cells are the layers ``<g class='cells'>`` 0 to n, later ones drawn over earlier ones.

>>> import xml.etree.ElementTree as ET
>>> from deconvlab.arithmetic.animate.model import build_animation, make_case
>>> frames = build_animation(make_case(4, 3)).frames
>>> root = ET.fromstring(animated_svg(frames))
>>> len(root.findall(".//{http://www.w3.org/2000/svg}g[@class='cells']"))
4
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from deconvlab.arithmetic.animate.layout import (
    FONT_FAMILY,
    CellOp,
    Layout,
    Text,
    changes,
    compute_layout,
    frame_ops,
)
from deconvlab.arithmetic.animate.model import Frame, Kind
from deconvlab.arithmetic.animate.raster import BORDER, FRAME_MS
from deconvlab.arithmetic.animate.style import BACKGROUND, FILL, GRID_LINE, HATCH, hatch_ink

PATTERN = 7
# DejaVu Sans metrics (em units): where the baseline lies for Pillow's vertical anchors.
_BASELINE = {"a": 0.928, "m": 0.346, "d": -0.236}
_P = PATTERN
_SLASHES = f"M-1,1 l2,-2 M0,{_P} l{_P},-{_P} M{_P - 1},{_P + 1} l2,-2"
_BACKSLASHES = f"M-1,{_P - 1} l2,2 M0,0 l{_P},{_P} M{_P - 1},-1 l2,2"
_HATCH_SHAPES = {  # one tile of each pattern; {ink} is filled in per pattern
    "diagonal": f"<path d='{_SLASHES}' stroke='{{ink}}' stroke-width='1'/>",
    "cross": f"<path d='{_SLASHES} {_BACKSLASHES}' stroke='{{ink}}' stroke-width='1'/>",
    "horizontal": f"<path d='M0,{_P / 2} h{_P}' stroke='{{ink}}' stroke-width='1'/>",
    "dots": f"<circle cx='{_P / 2}' cy='{_P / 2}' r='0.9' fill='{{ink}}'/>",
}


def _pattern_id(hatch: str, ink: str) -> str:
    return f"hatch-{hatch}-{ink[1:]}"


def _defs() -> str:
    """One pattern per hatch and ink (light ink on dark cells)."""
    patterns = []
    for hatch in sorted(set(HATCH.values())):
        for ink in sorted({hatch_ink(FILL[Kind.CROPPED]), hatch_ink(FILL[Kind.PADDING])}):
            patterns.append(
                f"<pattern id='{_pattern_id(hatch, ink)}' width='{PATTERN}' height='{PATTERN}' "
                f"patternUnits='userSpaceOnUse'>{_HATCH_SHAPES[hatch].format(ink=ink)}</pattern>"
            )
    return "<defs>" + "".join(patterns) + "</defs>"


def _text(text: Text) -> str:
    horizontal = {"l": "start", "m": "middle"}[text.anchor[0]]
    baseline = text.y + _BASELINE[text.anchor[1]] * text.size
    weight = " font-weight='bold'" if text.bold else ""
    return (f"<text x='{text.x:g}' y='{baseline:.1f}' font-size='{text.size}' text-anchor='{horizontal}' "
            f"fill='{text.colour}'{weight}>{escape(text.text)}</text>")


def _cell(op: CellOp) -> str:
    x0, y0, x1, y1 = op.box
    w, h, style = x1 - x0, y1 - y0, op.style
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in op.meta)
    parts = [f"<rect x='{x0}' y='{y0}' width='{w}' height='{h}' fill='{style.fill}' stroke='{GRID_LINE}' "
             f"stroke-width='1'{attributes}/>"]
    if style.hatch:
        pattern = _pattern_id(style.hatch, hatch_ink(style.fill))
        parts.append(f"<rect x='{x0}' y='{y0}' width='{w}' height='{h}' fill='url(#{pattern})'/>")
    if style.border:
        inset = 1 + BORDER / 2
        parts.append(f"<rect x='{x0 + inset}' y='{y0 + inset}' width='{w - 2 * inset}' "
                     f"height='{h - 2 * inset}' fill='none' stroke='{style.border}' "
                     f"stroke-width='{BORDER}'/>")
    main, sub = op.sizes
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if op.text and main:
        lift = main * 0.25 if op.subtext and sub else 0
        parts.append(_text(Text(cx, cy - lift, op.text, main, anchor="mm", colour=style.text)))
    if op.subtext and sub:
        parts.append(_text(Text(cx, y1 - BORDER - 1, op.subtext, sub, anchor="md", colour=style.text)))
    return "".join(parts)


def _elements(ops) -> str:
    return "".join(_cell(op) if isinstance(op, CellOp) else _text(op) for op in ops)


def _document(layout: Layout, body: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{layout.width}' height='{layout.height}' "
        f"viewBox='0 0 {layout.width} {layout.height}' font-family={quoteattr(FONT_FAMILY)}>"
        f"{_defs()}<rect width='{layout.width}' height='{layout.height}' fill='{BACKGROUND}'/>{body}</svg>\n"
    )


def frame_svg(frame: Frame, layout: Layout | None = None) -> str:
    """One frame as a standalone SVG document."""
    layout = layout or compute_layout([frame])
    return _document(layout, f"<g class='frame'>{_elements(frame_ops(frame, layout))}</g>")


def _animate_visibility(points: list[tuple[float, str]], duration_ms: int) -> str:
    times = ";".join(f"{t:.6g}" for t, _ in points)
    values = ";".join(v for _, v in points)
    return (f"<animate attributeName='visibility' calcMode='discrete' dur='{duration_ms}ms' "
            f"repeatCount='indefinite' keyTimes='{times}' values='{values}'/>")


def animated_svg(frames: Sequence[Frame], frame_ms: int = FRAME_MS) -> str:
    """All frames in one SVG, animated by SMIL ``<animate>`` (no script); without SMIL, frame 1 shows.

    Layers: ``<g class='cells' data-frame='n'>`` holds the cells frame n changes and stays visible from
    frame n to the end of the loop, over the earlier layers; ``<g class='texts' data-frame='n'>`` holds
    frame n's own texts, visible during frame n only; texts every frame shares are drawn once.
    """
    if len(frames) == 1:
        return frame_svg(frames[0])
    layout = compute_layout(frames)
    op_lists = [frame_ops(frame, layout) for frame in frames]
    texts = [[op for op in ops if isinstance(op, Text)] for ops in op_lists]
    shared = set(texts[0]).intersection(*texts[1:])
    count, duration = len(frames), len(frames) * frame_ms
    parts = [_elements(op for op in texts[0] if op in shared)]
    for n, changed in enumerate(changes(op_lists)):
        start = n / count
        cells = [op for op in changed if isinstance(op, CellOp)]
        shown = [(0.0, "hidden"), (start, "visible")] if n else []
        visibility = "hidden" if n else "visible"
        animation = _animate_visibility(shown, duration) if n else ""
        parts.append(f"<g class='cells' data-frame='{n}' visibility='{visibility}'>{animation}"
                     f"{_elements(cells)}</g>")
        own = ([] if n == 0 else [(0.0, "hidden")]) + [(start, "visible")]
        if n < count - 1:
            own.append(((n + 1) / count, "hidden"))
        parts.append(f"<g class='texts' data-frame='{n}' visibility='{visibility}'>"
                     f"{_animate_visibility(own, duration)}"
                     f"{_elements(op for op in texts[n] if op not in shared)}</g>")
    return _document(layout, "".join(parts))
