"""Drawing the report's figures: image grids with Pillow, plots with matplotlib (Agg), written atomically.

Projections are shown as the paper shows them, zero at mid-grey and each one scaled by its own size:
``0.5 + p / (2 peak)``, clipped to [0, 1], where ``peak`` is the 99.5th percentile of ``|p|`` (not the
maximum, so that a few extreme pixels do not wash out the structure; at most 0.5% of the values clip).
The sign of every colour channel stays visible.

>>> import torch
>>> projection_rgb(torch.tensor([[[-2.0, 0.0, 1.0]]] * 3))[0].tolist()  # peak 2: -2 -> 0, 1 -> 0.75
[[0, 0, 0], [128, 128, 128], [191, 191, 191]]
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from deconvlab._io import write_bytes_atomic

DISPLAY_QUANTILE = 0.995  # of |projection|, mapped to black or white (see the module docstring)
GREY = (128, 128, 128)
WHITE = (255, 255, 255)


def projection_rgb(projection: torch.Tensor) -> np.ndarray:
    """A projection (3, H, W) as a uint8 (H, W, 3) picture, zero at mid-grey (see the module docstring)."""
    p = projection.detach().cpu().double()
    peak = float(np.quantile(p.abs().numpy(), DISPLAY_QUANTILE))
    scaled = 0.5 + p / (2 * peak) if peak > 0 else torch.full_like(p, 0.5)
    return (scaled.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def crop(picture: np.ndarray, box: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
    """``picture[y0:y1, x0:x1]``; with ``size`` (h, w), padded with grey on the side the box was clipped.

    A box clipped by the image's top edge (y0 == 0) and shorter than ``size`` is padded at the top, so
    every crop keeps the unit's centre where the unclipped field would have it.
    """
    y0, y1, x0, x1 = (int(v) for v in box)
    out = picture[y0:y1, x0:x1]
    if size is None:
        return out
    height, width = picture.shape[:2]
    pad_y, pad_x = max(size[0] - out.shape[0], 0), max(size[1] - out.shape[1], 0)
    top = pad_y if y0 == 0 and y1 < height else (pad_y // 2 if y0 == 0 else 0)
    left = pad_x if x0 == 0 and x1 < width else (pad_x // 2 if x0 == 0 else 0)
    canvas = np.empty((size[0], size[1], picture.shape[2]), dtype=picture.dtype)
    canvas[...] = GREY
    canvas[top : top + out.shape[0], left : left + out.shape[1]] = out
    return canvas


def tile(tiles: Sequence[np.ndarray], columns: int, cell: int, gap: int = 2) -> np.ndarray:
    """Tiles (uint8 (h, w, 3)) in a grid of ``columns``, each scaled (nearest) to fit a ``cell`` square."""
    rows = max(1, -(-len(tiles) // columns))
    side_w, side_h = columns * (cell + gap) - gap, rows * (cell + gap) - gap
    canvas = Image.new("RGB", (side_w, side_h), WHITE)
    for index, array in enumerate(tiles):
        picture = Image.fromarray(np.ascontiguousarray(array))
        factor = cell / max(picture.size)
        resample = Image.NEAREST if factor >= 1 else Image.BOX  # sharp pixels up, averaged down
        picture = picture.resize(
            (max(1, round(picture.width * factor)), max(1, round(picture.height * factor))), resample
        )
        r, c = divmod(index, columns)
        canvas.paste(picture, (c * (cell + gap), r * (cell + gap)))
    return np.asarray(canvas)


def side_by_side(blocks: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Pictures placed left to right on white, top-aligned."""
    height = max(b.shape[0] for b in blocks)
    width = sum(b.shape[1] for b in blocks) + gap * (len(blocks) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for block in blocks:
        canvas[: block.shape[0], x : x + block.shape[1]] = block
        x += block.shape[1] + gap
    return canvas


def stack(blocks: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Pictures placed top to bottom on white, left-aligned."""
    width = max(b.shape[1] for b in blocks)
    height = sum(b.shape[0] for b in blocks) + gap * (len(blocks) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    y = 0
    for block in blocks:
        canvas[y : y + block.shape[0], : block.shape[1]] = block
        y += block.shape[0] + gap
    return canvas


def label(picture: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """The picture with a line of text above it."""
    canvas = Image.new("RGB", (picture.shape[1], picture.shape[0] + height), WHITE)
    canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (0, height))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_png(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) picture as PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def new_figure(columns: int, rows: int = 1, size: float = 3.0):
    """A matplotlib figure and axes grid on the Agg backend (no display needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size * columns, size * rows), dpi=100)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def save_figure(path: str | os.PathLike, figure) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
