"""Convolution-arithmetic pictures for any parameters, in pure Python (Pillow; no LaTeX, no ImageMagick).

Convolution and transposed convolution (``direct`` view: zeros inserted, padding, flipped kernel;
``scatter`` view: each input stamps its weighted kernel into the output), 2D grids and 1D strips, with
real numbers if asked, as GIF, PNG (one frame or a contact sheet) and SVG (one frame or animated).

The frames are pure data (:mod:`.model`), computed from ``deconvlab.arithmetic.shapes``; the
renderers (:mod:`.raster`, :mod:`.svg`) only draw them.

>>> import numpy as np
>>> anim = animate(3, 3, stride=2, padding=1, output_padding=1, transposed=True, view="scatter",
...                x=np.ones((3, 3)), w=np.ones((3, 3)))
>>> len(anim.frames), anim.output.shape             # one frame per input cell; output 6x6
(9, (6, 6))
>>> anim.output[:2]                                 # how many stamps overlap on each output cell
array([[1., 2., 1., 2., 1., 1.],
       [2., 4., 2., 4., 2., 2.]])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deconvlab.arithmetic.animate.gallery import GALLERY, render_gallery
from deconvlab.arithmetic.animate.layout import compute_layout
from deconvlab.arithmetic.animate.matrix import kernel_index_matrix, matrix_picture
from deconvlab.arithmetic.animate.model import (
    Animation,
    Case,
    Frame,
    Kind,
    Panel,
    build_animation,
    make_case,
)

FORMATS = (".gif", ".png", ".svg")

__all__ = [
    "FORMATS",
    "GALLERY",
    "Animation",
    "Case",
    "Frame",
    "Kind",
    "Panel",
    "animate",
    "build_animation",
    "kernel_index_matrix",
    "make_case",
    "matrix_picture",
    "render_gallery",
    "save",
]


def check_path(path: str | os.PathLike) -> Path:
    """The output path, if its suffix is one we write (checked before anything is drawn)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"path={str(path)!r}: the file name must end in one of {', '.join(FORMATS)}")
    return path


def save(
    frames: Animation | Sequence[Frame],
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    each_frame: bool = False,
) -> list[Path]:
    """Write frames by the path's suffix; returns the files written.

    ``.gif``: the animation. ``.png``: frame ``frame``, else the only frame, else a contact sheet of
    all. ``.svg``: frame ``frame``, else one animated SVG. ``each_frame``: one ``stem_NNN.png/.svg``
    per frame instead.
    """
    from deconvlab._io import write_bytes_atomic
    from deconvlab.arithmetic.animate import raster, svg

    path = check_path(path)
    frames = tuple(frames.frames if isinstance(frames, Animation) else frames)
    suffix = path.suffix.lower()
    if frame is not None and not -len(frames) <= frame < len(frames):
        raise ValueError(f"frame={frame}: there are {len(frames)} frames (0…{len(frames) - 1})")
    if each_frame or frame is not None:
        chosen = range(len(frames)) if each_frame else [frame % len(frames)]
        numbered = [path.with_name(f"{path.stem}_{n:03d}{path.suffix}") for n in chosen]
        targets = numbered if each_frame else [path]
        if suffix == ".svg":
            layout = compute_layout(frames)
            for n, target in zip(chosen, targets, strict=True):
                write_bytes_atomic(target, svg.frame_svg(frames[n], layout).encode())
        else:
            images = raster.render_frames(frames)
            for n, target in zip(chosen, targets, strict=True):
                _save_image(raster, [images[n]], target)
        return targets
    if suffix == ".svg":
        write_bytes_atomic(path, svg.animated_svg(frames).encode())
    else:
        _save_image(raster, raster.render_frames(frames), path)
    return [path]


def _save_image(raster, images, path: Path) -> None:
    if path.suffix.lower() == ".gif":
        raster.save_gif(images, path)
    elif len(images) == 1:
        raster.save_png(images[0], path)
    else:
        raster.save_png(raster.contact_sheet(images), path)


def animate(
    input_size=5,
    kernel_size=3,
    *,
    stride=1,
    padding=0,
    dilation=1,
    output_padding=0,
    transposed: bool = False,
    view: str | None = None,
    ndim: int | None = None,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    numbers: bool = False,
    x=None,
    w=None,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    frame: int | None = None,
    each_frame: bool = False,
) -> Animation:
    """Draw a convolution (``transposed=False``) or a transposed one, ``view`` 'direct' or 'scatter'.

    Sizes and hyper-parameters are ints or per-axis tuples, PyTorch's meaning; ``ndim=1`` draws a
    strip. ``in_channels``, ``out_channels``, ``groups``: PyTorch's meaning; the channels are drawn as
    stacked blocks (:mod:`.channels`). ``numbers`` fills the cells with small random integers
    (``seed``), or give ``x``/``w``.
    With ``path`` (.gif, .png, .svg) the frames are also written (see :func:`save`). Invalid
    parameters raise the arithmetic core's ValueError before anything is drawn.

    >>> anim = animate(5, 3, stride=2, padding=1)
    >>> len(anim.frames), anim.frames[0].caption[1]
    (9, 'o = ⌊(i + 2p − d(k−1) − 1) / s⌋ + 1 = ⌊(5 + 2·1 − 1·(3−1) − 1) / 2⌋ + 1 = 3')
    """
    case = make_case(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        output_padding=output_padding, transposed=transposed, view=view, ndim=ndim,
        in_channels=in_channels, out_channels=out_channels, groups=groups,
    )
    if path is not None:
        check_path(path)
    animation = build_animation(case, numbers=numbers, x=x, w=w, seed=seed)
    if path is not None:
        save(animation, path, frame=frame, each_frame=each_frame)
    return animation
