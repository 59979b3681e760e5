"""Pictures of tied-weight models: filter grids and image grids (Pillow, no matplotlib).

>>> import numpy as np
>>> tile(np.zeros((5, 3, 4))).size   # 5 tiles of 3x4 in 3 columns, 2 rows, 1-pixel gaps
(14, 7)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def _normalise_each(tiles: np.ndarray) -> np.ndarray:
    """Stretch every tile to [0, 1] on its own (a flat tile becomes mid-grey)."""
    flat = tiles.reshape(len(tiles), -1)
    low = flat.min(axis=1)
    span = flat.max(axis=1) - low
    scale = np.where(span > 0, span, 1.0)
    out = (flat - low[:, None]) / scale[:, None]
    out[span == 0] = 0.5
    return out.reshape(tiles.shape)


def tile(
    tiles: np.ndarray,
    *,
    columns: int | None = None,
    normalise: bool = True,
    scale: int = 1,
    gap: int = 1,
) -> Image.Image:
    """A grid picture of ``tiles``: ``(n, h, w)`` grey or ``(n, h, w, 3)`` colour, values in [0, 1].

    ``normalise`` stretches each tile to its own range (right for filters, whose sign and scale
    are arbitrary); ``columns`` defaults to a near-square grid; ``scale`` enlarges every pixel.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    if tiles.ndim not in (3, 4) or (tiles.ndim == 4 and tiles.shape[-1] != 3) or len(tiles) == 0:
        raise ValueError(f"tiles: expected a non-empty (n, h, w) or (n, h, w, 3) array, got {tiles.shape}")
    if normalise:
        tiles = _normalise_each(tiles)
    n, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap) + tiles.shape[3:])
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = t
    pixels = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def filters_picture(weight: np.ndarray, *, scale: int = 4) -> Image.Image:
    """Conv filters ``(n_filters, channels, kh, kw)``: grey tiles for 1 channel, colour for 3.

    >>> filters_picture(np.random.default_rng(0).normal(size=(6, 3, 5, 5)), scale=1).size
    (17, 11)
    """
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(f"weight: expected (n_filters, 1 or 3 channels, kh, kw), got {weight.shape}")
    tiles = weight[:, 0] if weight.shape[1] == 1 else weight.transpose(0, 2, 3, 1)
    return tile(tiles, scale=scale)
