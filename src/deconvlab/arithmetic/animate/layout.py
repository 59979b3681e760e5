"""Where everything of a frame goes, in pixels; shared by the raster and the SVG renderer.

A frame becomes a list of drawing operations (:class:`CellOp` and :class:`Text`), which the
renderers execute. Between frames of an animation only a few cells change (:func:`changes`): the
raster renderer draws those over the previous frame, the SVG stacks them in layers.

One layout serves every frame of an animation (GIF frames must share a size): it is computed from
all frames, reserving as many lines for the step text as the longest one needs. Text is measured
with DejaVu Sans, the font matplotlib ships (the SVG asks for the same font).

>>> from deconvlab.arithmetic.animate.model import build_animation, make_case
>>> frames = build_animation(make_case(4, 3)).frames
>>> layout = compute_layout(frames)
>>> x0, y0, x1, y1 = layout.cell_box(0, (1, 2))          # input cell (1, 2)
>>> x1 - x0 == y1 - y0 == layout.cell, layout.cell_box(0, (1, 3))[0] - x0
(True, 40)
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deconvlab.arithmetic.animate.model import Cell, Frame, Kind, Panel
from deconvlab.arithmetic.animate.style import DARK_TEXT, LABEL, CellStyle, cell_style, legend_style

MARGIN = 16
GAP = 32  # between panels
TITLE_SIZE, PANEL_TITLE_SIZE, CAPTION_SIZE, STEP_SIZE, LEGEND_SIZE = 17, 13, 13, 14, 12
SWATCH = 16
MIN_CONTENT_WIDTH = 620
MAX_CELL, MIN_CELL = 40, 10
FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"


@functools.lru_cache(maxsize=32)
def font(size: int, bold: bool = False):
    """DejaVu Sans from matplotlib's data folder (found without importing matplotlib)."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    root = Path(next(iter(spec.submodule_search_locations)))
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(root / "mpl-data" / "fonts" / "ttf" / name), size)


@functools.lru_cache(maxsize=8192)
def text_width(text: str, size: int, bold: bool = False) -> float:
    return font(size, bold).getlength(text)


def line_height(size: int) -> int:
    return round(size * 1.35)


@functools.lru_cache(maxsize=4096)
def wrap(text: str, width: float, size: int, bold: bool = False) -> tuple[str, ...]:
    """Greedy word wrap to ``width`` pixels.

    >>> wrap("a b c", 1000, 12), len(wrap("word " * 40, 200, 12)) > 1
    (('a b c',), True)
    """
    lines: list[str] = []
    for word in text.split(" "):
        if lines and text_width(f"{lines[-1]} {word}", size, bold) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return tuple(lines) or ("",)


@dataclass(frozen=True)
class Text:
    """A line of text: ``anchor`` 'la' = (x, y) is its top-left, 'mm' = its centre (Pillow's anchors)."""

    x: float
    y: float
    text: str
    size: int
    bold: bool = False
    anchor: str = "la"
    colour: str = DARK_TEXT


@dataclass(frozen=True)
class Layout:
    """Pixel positions shared by every frame of one animation."""

    width: int
    height: int
    cell: int
    content_width: int
    grid_origins: tuple[tuple[int, int], ...]
    panel_title_origins: tuple[tuple[int, int], ...]
    panel_title_width: tuple[int, ...]
    caption_y: int
    step_y: int
    legend_y: int

    def cell_box(self, panel: int, cell: Cell) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of ``cell`` = (row, col) of panel number ``panel``."""
        x, y = self.grid_origins[panel]
        return (x + cell[1] * self.cell, y + cell[0] * self.cell,
                x + (cell[1] + 1) * self.cell, y + (cell[0] + 1) * self.cell)


def _is_strip(frame: Frame) -> bool:
    return all(panel.shape[0] == 1 for panel in frame.panels)


def _cell_size(frame: Frame) -> int:
    shapes = [panel.shape for panel in frame.panels]
    if _is_strip(frame):
        cols, rows = max(c for _, c in shapes), 2 * len(shapes)
    else:
        cols, rows = sum(c for _, c in shapes) + 2 * (len(shapes) - 1), max(r for r, _ in shapes)
    return max(MIN_CELL, min(MAX_CELL, 1000 // cols, 640 // rows))


def compute_layout(frames: Sequence[Frame]) -> Layout:
    """Place the title, the panels (side by side; stacked for 1D strips), caption, step and legend."""
    first = frames[0]
    cell = _cell_size(first)
    sizes = [(c * cell, r * cell) for r, c in (p.shape for p in first.panels)]
    y = MARGIN + line_height(TITLE_SIZE) + 6
    origins, title_origins, title_widths = [], [], []
    if _is_strip(first):
        content = max(MIN_CONTENT_WIDTH, *(w for w, _ in sizes))
        for panel, (_, h) in zip(first.panels, sizes, strict=True):
            title_origins.append((MARGIN, y))
            title_widths.append(content)
            y += line_height(PANEL_TITLE_SIZE) * len(wrap(panel.title, content, PANEL_TITLE_SIZE)) + 4
            origins.append((MARGIN, y))
            y += h + 12
    else:
        slots = [max(w, 150) for w, _ in sizes]
        content = max(MIN_CONTENT_WIDTH, sum(slots) + GAP * (len(slots) - 1))
        title_lines = max(
            len(wrap(p.title, slot, PANEL_TITLE_SIZE)) for p, slot in zip(first.panels, slots, strict=True)
        )
        grid_y = y + line_height(PANEL_TITLE_SIZE) * title_lines + 4
        x = MARGIN
        for slot in slots:
            title_origins.append((x, y))
            title_widths.append(slot)
            origins.append((x, grid_y))
            x += slot + GAP
        y = grid_y + max(h for _, h in sizes) + 12
    caption_y = y
    y += line_height(CAPTION_SIZE) * sum(len(wrap(line, content, CAPTION_SIZE)) for line in first.caption)
    step_y = y + 4
    step_lines = max(len(wrap(f.step, content, STEP_SIZE, bold=True)) for f in frames)
    legend_y = step_y + line_height(STEP_SIZE) * step_lines + 8
    legend_rows = len(_legend_rows(first.legend, content))
    height = legend_y + legend_rows * (SWATCH + 8) + MARGIN
    return Layout(
        width=content + 2 * MARGIN, height=height, cell=cell, content_width=content,
        grid_origins=tuple(origins), panel_title_origins=tuple(title_origins),
        panel_title_width=tuple(title_widths), caption_y=caption_y, step_y=step_y, legend_y=legend_y,
    )


def _legend_rows(kinds: Sequence[Kind], width: int) -> list[list[tuple[Kind, int]]]:
    """Legend entries as rows of (kind, x offset)."""
    rows: list[list[tuple[Kind, int]]] = [[]]
    x = 0
    for kind in kinds:
        item = SWATCH + 6 + round(text_width(LABEL[kind], LEGEND_SIZE)) + 18
        if rows[-1] and x + item > width:
            rows.append([])
            x = 0
        rows[-1].append((kind, x))
        x += item
    return rows


def legend_entries(frame: Frame, layout: Layout) -> list[tuple[Kind, tuple[int, int, int, int], Text]]:
    """Each legend entry: its kind, the swatch box and the label."""
    entries = []
    for n, row in enumerate(_legend_rows(frame.legend, layout.content_width)):
        y = layout.legend_y + n * (SWATCH + 8)
        for kind, dx in row:
            x = MARGIN + dx
            label = Text(x + SWATCH + 6, y + SWATCH / 2, LABEL[kind], LEGEND_SIZE, anchor="lm")
            entries.append((kind, (x, y, x + SWATCH, y + SWATCH), label))
    return entries


def frame_texts(frame: Frame, layout: Layout) -> list[Text]:
    """Every text of ``frame`` except the cells' and the legend's: title, panel titles, caption, step."""
    texts = [Text(MARGIN, MARGIN, frame.title, TITLE_SIZE, bold=True)]
    for panel, (x, y), width in zip(
        frame.panels, layout.panel_title_origins, layout.panel_title_width, strict=True
    ):
        for n, line in enumerate(wrap(panel.title, width, PANEL_TITLE_SIZE)):
            texts.append(Text(x, y + n * line_height(PANEL_TITLE_SIZE), line, PANEL_TITLE_SIZE))
    y = layout.caption_y
    for caption in frame.caption:
        for line in wrap(caption, layout.content_width, CAPTION_SIZE):
            texts.append(Text(MARGIN, y, line, CAPTION_SIZE))
            y += line_height(CAPTION_SIZE)
    for n, line in enumerate(wrap(frame.step, layout.content_width, STEP_SIZE, bold=True)):
        texts.append(Text(MARGIN, layout.step_y + n * line_height(STEP_SIZE), line, STEP_SIZE, bold=True))
    return texts


def cell_text_sizes(layout: Layout) -> tuple[int, int]:
    """Font sizes of a cell's text and subtext; 0 where the cell is too small to hold it."""
    main = round(layout.cell * 0.34) if layout.cell >= 20 else 0
    sub = round(layout.cell * 0.24) if layout.cell >= 30 else 0
    return main, sub


@dataclass(frozen=True)
class CellOp:
    """Draw one cell: its box, look, texts; ``meta`` = SVG attributes naming what the cell is."""

    box: tuple[int, int, int, int]
    style: CellStyle
    text: str | None = None
    subtext: str | None = None
    sizes: tuple[int, int] = (0, 0)
    meta: tuple[tuple[str, str], ...] = ()


def _cell_meta(index: int, panel: Panel, cell: Cell) -> tuple[tuple[str, str], ...]:
    classes = [Kind(int(panel.roles[cell])).name.lower()]
    classes += [name for name, cells in (("footprint", panel.footprint), ("active", panel.active),
                                         ("done", panel.done)) if cell in cells]
    meta = [("class", " ".join(classes)), ("data-panel", str(index)), ("data-row", str(cell[0])),
            ("data-col", str(cell[1]))]
    if cell in panel.footprint:
        meta.append(("data-kernel", ",".join(map(str, panel.footprint[cell]))))
    return tuple(meta)


def frame_ops(frame: Frame, layout: Layout) -> list[CellOp | Text]:
    """Everything to draw for ``frame``, in drawing order: cells, texts, legend."""
    sizes = cell_text_sizes(layout)
    ops: list[CellOp | Text] = []
    for index, panel in enumerate(frame.panels):
        rows, cols = panel.shape
        for cell in ((r, c) for r in range(rows) for c in range(cols)):
            ops.append(CellOp(layout.cell_box(index, cell), cell_style(panel, cell), panel.text.get(cell),
                              panel.subtext.get(cell), sizes, _cell_meta(index, panel, cell)))
    ops.extend(frame_texts(frame, layout))
    for kind, box, label in legend_entries(frame, layout):
        ops.append(CellOp(box, legend_style(kind), meta=(("class", f"legend {kind.name.lower()}"),)))
        ops.append(label)
    return ops


def changes(op_lists: Sequence[list]) -> list[list]:
    """Each frame's operations that the previous frame lacks (the first frame: all of them).

    Cells never overlap and every frame draws every cell, so drawing a frame's changed cells over
    the previous frame gives the frame; texts that went away must be erased by the renderer.

    >>> changes([[1, 2, 3], [1, 4, 3], [1, 4, 3]])
    [[1, 2, 3], [4], []]
    """
    result = [list(op_lists[0])]
    for previous, ops in itertools.pairwise(op_lists):
        seen = set(previous)
        result.append([op for op in ops if op not in seen])
    return result
