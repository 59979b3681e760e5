"""Pillow renderer: frames to images, GIF animations, PNG frames and contact sheets.

>>> from deconvlab.arithmetic.animate.model import build_animation, make_case
>>> images = render_frames(build_animation(make_case(4, 3)).frames)
>>> len(images), images[0].mode
(4, 'RGB')
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw

from deconvlab._io import write_atomic
from deconvlab.arithmetic.animate.layout import (
    CellOp,
    Layout,
    Text,
    changes,
    compute_layout,
    font,
    frame_ops,
)
from deconvlab.arithmetic.animate.model import Frame, Kind
from deconvlab.arithmetic.animate.style import (
    BACKGROUND,
    DARK_TEXT,
    FILL,
    GRID_LINE,
    KERNEL_TINT,
    LIGHT_TEXT,
    blend,
    hatch_ink,
    hatch_segments,
    rgb,
)

BORDER = 3  # width of the kernel footprint's border, inside the grid line
FRAME_MS = 700


def _draw_text(draw: ImageDraw.ImageDraw, text: Text) -> None:
    position = (text.x, text.y)
    draw.text(position, text.text, fill=text.colour, font=font(text.size, text.bold), anchor=text.anchor)


def _draw_cell(draw: ImageDraw.ImageDraw, op: CellOp) -> None:
    x0, y0, x1, y1 = op.box
    style = op.style
    draw.rectangle((x0, y0, x1, y1), fill=style.fill)
    if style.hatch:
        ink = hatch_ink(style.fill)
        for segment in hatch_segments(style.hatch, x0, y0, x1 - x0):
            draw.line(segment, fill=ink, width=1)
    draw.rectangle((x0, y0, x1, y1), outline=GRID_LINE, width=1)
    if style.border:
        draw.rectangle((x0 + 1, y0 + 1, x1 - 1, y1 - 1), outline=style.border, width=BORDER)
    main, sub = op.sizes
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if op.text and main:
        lift = main * 0.25 if op.subtext and sub else 0
        _draw_text(draw, Text(cx, cy - lift, op.text, main, anchor="mm", colour=style.text))
    if op.subtext and sub:
        _draw_text(draw, Text(cx, y1 - BORDER - 1, op.subtext, sub, anchor="md", colour=style.text))


def _draw(image: Image.Image, ops) -> Image.Image:
    draw = ImageDraw.Draw(image)
    for op in ops:
        if isinstance(op, CellOp):
            _draw_cell(draw, op)
        else:
            _draw_text(draw, op)
    return image


def render_frame(frame: Frame, layout: Layout | None = None) -> Image.Image:
    """Draw one frame of the drawing model onto a new RGB image of the layout's size."""
    layout = layout or compute_layout([frame])
    return _draw(Image.new("RGB", (layout.width, layout.height), BACKGROUND), frame_ops(frame, layout))


def render_frames(frames: Sequence[Frame]) -> list[Image.Image]:
    """Every frame, all with one layout (one size); each drawn as the previous one plus its changes."""
    layout = compute_layout(frames)
    op_lists = [frame_ops(frame, layout) for frame in frames]
    image = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    images = []
    for n, changed in enumerate(changes(op_lists)):
        if n:
            _erase_texts(image, set(op_lists[n - 1]) - set(op_lists[n]))
        images.append(_draw(image, changed).copy())
    return images


def _erase_texts(image: Image.Image, ops) -> None:
    """Paint the background over texts that the next frame no longer has (texts never overlap cells)."""
    draw = ImageDraw.Draw(image)
    for op in ops:
        if isinstance(op, Text):
            box = draw.textbbox((op.x, op.y), op.text, font=font(op.size, op.bold), anchor=op.anchor)
            draw.rectangle(box, fill=BACKGROUND)


def save_gif(images: Sequence[Image.Image], path: str | os.PathLike, frame_ms: int = FRAME_MS) -> None:
    """An endlessly looping GIF, written atomically; the last frame stays twice as long."""
    durations = [frame_ms] * (len(images) - 1) + [2 * frame_ms]
    palette = gif_palette()
    frames = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    write_atomic(path, lambda f: frames[0].save(
        f, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
    ))


@functools.lru_cache(maxsize=1)
def gif_palette() -> Image.Image:
    """One fixed palette for every GIF: each fill (plain and under the kernel), and its blends with the
    dark and the light text colour (the anti-aliased edges of letters)."""
    fills = {*FILL.values(), GRID_LINE, BACKGROUND}
    fills |= {blend(fill, FILL[Kind.KERNEL], KERNEL_TINT) for fill in set(fills)}
    fills |= {hatch_ink(fill) for fill in set(fills)}
    colours = {DARK_TEXT, LIGHT_TEXT} | fills
    for ink in (DARK_TEXT, LIGHT_TEXT):
        colours |= {blend(fill, ink, amount) for fill in fills for amount in (0.25, 0.5, 0.75)}
    flat = [channel for colour in sorted(colours) for channel in rgb(colour)]  # 155 colours
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat)
    return palette


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    write_atomic(path, lambda f: image.save(f, format="PNG", optimize=True))


def contact_sheet(images: Sequence[Image.Image], max_width: int = 2400) -> Image.Image:
    """All frames in a grid, in order, scaled down so the sheet is at most ``max_width`` wide."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    scale = min(1.0, max_width / (columns * width))
    tile = (round(width * scale), round(height * scale))
    sheet = Image.new("RGB", (columns * tile[0], rows * tile[1]), BACKGROUND)
    for n, image in enumerate(images):
        thumb = image if scale == 1.0 else image.resize(tile, Image.Resampling.LANCZOS)
        sheet.paste(thumb, ((n % columns) * tile[0], (n // columns) * tile[1]))
    draw = ImageDraw.Draw(sheet)
    for x in range(1, columns):
        draw.line((x * tile[0], 0, x * tile[0], sheet.height), fill=GRID_LINE)
    for y in range(1, rows):
        draw.line((0, y * tile[1], sheet.width, y * tile[1]), fill=GRID_LINE)
    return sheet
