"""How each kind of cell looks, shared by the raster and SVG renderers.

Colours are chosen so that their grey levels differ by at least 18 (of 255): the pictures stay
readable printed in grayscale. Padding, inserted zeros, output_padding zeros and cropped cells are
also hatched, and kernel cells carry a thick border and the label of their weight.

>>> round(luminance(FILL[Kind.INPUT])), round(luminance(FILL[Kind.PADDING]))
(131, 255)
>>> cell_style(Panel("t", np.array([[Kind.PADDING]], dtype=np.int8)), (0, 0)).hatch
'diagonal'
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np

from deconvlab.arithmetic.animate.model import Cell, Kind, Panel

FILL = {
    Kind.KERNEL: "#1f3a68",
    Kind.CROPPED: "#505050",
    Kind.ACTIVE: "#d9480f",
    Kind.INPUT: "#4a90d9",
    Kind.DONE: "#6cbf66",
    Kind.OUTPUT_PADDING: "#eca060",
    Kind.OUTPUT: "#a9dfa1",
    Kind.INSERTED_ZERO: "#ffe9a0",
    Kind.PADDING: "#ffffff",
    Kind.ZERO: "#f2f2f2",
    Kind.GAP: "#ffffff",
}

HATCH = {
    Kind.PADDING: "diagonal",
    Kind.INSERTED_ZERO: "dots",
    Kind.OUTPUT_PADDING: "horizontal",
    Kind.CROPPED: "cross",
}

LABEL = {
    Kind.INPUT: "input x",
    Kind.PADDING: "padding (zeros)",
    Kind.INSERTED_ZERO: "inserted zeros",
    Kind.OUTPUT_PADDING: "zeros of output_padding",
    Kind.CROPPED: "cropped",
    Kind.KERNEL: "kernel w (label: weight index)",
    Kind.OUTPUT: "output y",
    Kind.ACTIVE: "current cell",
    Kind.DONE: "done",
    Kind.ZERO: "zero entry",
    Kind.GAP: "between channels",
}

GRID_LINE = "#404040"
DARK_TEXT = "#111111"
LIGHT_TEXT = "#ffffff"
KERNEL_TINT = 0.4  # how much of the kernel colour a footprint cell takes
BACKGROUND = "#ffffff"


def rgb(colour: str) -> tuple[int, int, int]:
    """'#1f3a68' -> (31, 58, 104)."""
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def hex_colour(value) -> str:
    return "#" + "".join(f"{round(v):02x}" for v in value)


@functools.lru_cache(maxsize=1024)
def luminance(colour: str) -> float:
    """Grey level (ITU-R 601, what Pillow's ``convert("L")`` uses), 0-255."""
    r, g, b = rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b


@functools.lru_cache(maxsize=1024)
def blend(base: str, top: str, amount: float) -> str:
    """``amount`` of ``top`` over ``base``.

    >>> blend("#ffffff", "#000000", 0.5)
    '#808080'
    """
    return hex_colour([(1 - amount) * a + amount * b for a, b in zip(rgb(base), rgb(top), strict=True)])


@functools.lru_cache(maxsize=1024)
def text_colour(fill: str) -> str:
    return LIGHT_TEXT if luminance(fill) < 120 else DARK_TEXT


@functools.lru_cache(maxsize=1024)
def hatch_ink(fill: str) -> str:
    """Hatching a bit darker than light cells, lighter than dark ones."""
    return "#a0a0a0" if luminance(fill) < 120 else "#8a8a8a"


def kernel_index_colour(k: Cell, kernel_shape: tuple[int, int]) -> str:
    """A distinct hue per kernel weight, alternating light and dark (the matrix picture)."""
    n = k[0] * kernel_shape[1] + k[1]
    count = kernel_shape[0] * kernel_shape[1]
    hue = n / max(count, 1)
    lightness = 0.42 if n % 2 else 0.68
    return hex_colour(255 * v for v in colorsys.hls_to_rgb(hue, lightness, 0.65))


@dataclass(frozen=True)
class CellStyle:
    """What a renderer draws for one cell: fill, optional hatch, optional thick border, text colour."""

    fill: str
    hatch: str | None
    border: str | None
    text: str


def cell_style(panel: Panel, cell: Cell) -> CellStyle:
    """The look of ``cell`` in ``panel``: role colour, then done/current, then the kernel overlay."""
    base = Kind(int(panel.roles[cell]))
    fill, hatch, border = FILL[base], HATCH.get(base), None
    if base in (Kind.INPUT, Kind.OUTPUT):
        if cell in panel.done:
            fill = FILL[Kind.DONE]
        if cell in panel.active:
            fill = FILL[Kind.ACTIVE]
    if cell in panel.footprint:
        if panel.kernel_colours:
            fill, hatch = kernel_index_colour(panel.footprint[cell], panel.kernel_shape), None
        else:
            fill, border = blend(fill, FILL[Kind.KERNEL], KERNEL_TINT), FILL[Kind.KERNEL]
    return CellStyle(fill, hatch, border, text_colour(fill))


def legend_style(kind: Kind) -> CellStyle:
    """The swatch of a legend entry, drawn like a cell of that kind."""
    fill = FILL[kind]
    border = FILL[Kind.KERNEL] if kind == Kind.KERNEL else None
    return CellStyle(fill, HATCH.get(kind), border, text_colour(fill))


def hatch_segments(kind: str, x0: float, y0: float, size: float, step: float = 7.0):
    """Line segments (x0, y0, x1, y1) of a hatch pattern inside the square at (x0, y0).

    ``dots`` gives zero-length segments (points). Shared by both renderers.

    >>> hatch_segments("horizontal", 0, 0, 14)
    [(0, 7.0, 14, 7.0)]
    """
    steps = [float(t) for t in np.arange(step, size, step)]
    if kind == "horizontal":
        return [(x0, y0 + t, x0 + size, y0 + t) for t in steps]
    if kind == "dots":
        return [(x0 + a, y0 + b, x0 + a, y0 + b) for a in steps for b in steps]
    segments = []
    for t in (float(t) for t in np.arange(step, 2 * size, step)):  # lines x + y = t, clipped to the square
        start = (x0 + min(t, size), y0 + max(0.0, t - size))
        end = (x0 + max(0.0, t - size), y0 + min(t, size))
        segments.append((*start, *end))
        if kind == "cross":  # and lines x - y = t - size
            start = (x0 + max(0.0, t - size), y0 + max(0.0, size - t))
            end = (x0 + min(size, t), y0 + min(size, 2 * size - t))
            segments.append((*start, *end))
    return segments
