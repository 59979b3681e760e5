"""Rendered pictures read back: GIF/PNG with Pillow (pixels of highlighted cells), SVG with ElementTree,
the CLI, the gallery and the matrix picture. Highlighted cells are computed here from the definition
``padded cell = o*s + k*d``, not taken from the model."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deconvlab.arithmetic import conv_output_shape
from deconvlab.arithmetic.animate import (
    GALLERY,
    Kind,
    animate,
    make_case,
    matrix_picture,
    render_gallery,
    save,
)
from deconvlab.arithmetic.animate.layout import compute_layout
from deconvlab.arithmetic.animate.model import LEGEND_CONV, LEGEND_DIRECT, LEGEND_SCATTER
from deconvlab.arithmetic.animate.raster import render_frame
from deconvlab.arithmetic.animate.style import FILL, KERNEL_TINT, blend, kernel_index_colour, luminance, rgb

SVG = "{http://www.w3.org/2000/svg}"
CONV = {"input_size": 5, "kernel_size": 3, "stride": 2, "padding": 1}


def conv_footprint(o, k=3, s=2, d=1):
    """Padded-grid cells under the kernel for output o (2D), by the definition."""
    return {(o[0] * s + ky * d, o[1] * s + kx * d) for ky, kx in itertools.product(range(k), repeat=2)}


def border_pixel(image, layout, panel, cell):
    x0, y0, _, _ = layout.cell_box(panel, cell)
    return image.getpixel((x0 + 2, y0 + 2))


def centre_pixel(image, layout, panel, cell):
    x0, y0, x1, y1 = layout.cell_box(panel, cell)
    return image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))


@pytest.fixture(scope="module")
def conv_anim():
    return animate(**CONV)


def test_gif_frames_show_the_kernel_where_the_definition_says(tmp_path, conv_anim):
    path = tmp_path / "conv.gif"
    save(conv_anim, path)
    layout = compute_layout(conv_anim.frames)
    outputs = list(itertools.product(range(3), repeat=2))
    with Image.open(path) as gif:
        assert gif.n_frames == len(conv_anim.frames) == 9
        assert gif.size == (layout.width, layout.height)
        for n in (0, 4, 8):
            gif.seek(n)
            image = gif.convert("RGB")
            under = conv_footprint(outputs[n])
            for cell in itertools.product(range(7), repeat=2):
                colour = border_pixel(image, layout, 0, cell)
                assert (colour == rgb(FILL[Kind.KERNEL])) == (cell in under), (n, cell, colour)
            # the output cell being computed, and those done before it
            for m, o in enumerate(outputs):
                expected = Kind.ACTIVE if m == n else Kind.DONE if m < n else Kind.OUTPUT
                assert centre_pixel(image, layout, 2, o) == rgb(FILL[expected])


def test_single_frame_png_and_contact_sheet(tmp_path, conv_anim):
    one, sheet = tmp_path / "frame.png", tmp_path / "sheet.png"
    save(conv_anim, one, frame=4)
    save(conv_anim, sheet)
    layout = compute_layout(conv_anim.frames)
    with Image.open(one) as image:
        image = image.convert("RGB")
        expected = render_frame(conv_anim.frames[4], layout)
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
        # an input cell under the kernel: tinted fill at its centre (no text without --numbers)
        assert centre_pixel(image, layout, 0, (3, 3)) == rgb(blend(FILL[Kind.INPUT], FILL[Kind.KERNEL],
                                                                  KERNEL_TINT))
    with Image.open(sheet) as image:
        assert image.size == (3 * layout.width, 3 * layout.height)  # 9 frames: 3 x 3 at full size


def test_each_frame_files(tmp_path):
    anim = animate(4, 2, stride=2, transposed=True, view="scatter", ndim=1, path=tmp_path / "s.svg",
                   each_frame=True)
    files = sorted(tmp_path.glob("s_*.svg"))
    assert [f.name for f in files] == [f"s_{n:03d}.svg" for n in range(len(anim.frames))] and len(files) == 4
    for n, file in enumerate(files):
        root = ET.parse(file).getroot()
        footprint = {(int(r.get("data-row")), int(r.get("data-col"))): r.get("data-kernel")
                     for r in root.iter(f"{SVG}rect") if "footprint" in r.get("class", "").split()}
        # input n stamps w[0], w[1] at canvas positions 2n, 2n + 1 (s = 2, d = 1, p = 0)
        assert footprint == {(0, 2 * n): "0,0", (0, 2 * n + 1): "0,1"}


def _svg_frames(root):
    """Per frame: (panel, row, col) -> rect attributes, the cell layers 0..n drawn in order."""
    layers = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cells"]
    state, frames = {}, []
    for layer in sorted(layers, key=lambda g: int(g.get("data-frame"))):
        for rect in layer.iter(f"{SVG}rect"):
            if rect.get("data-panel") is not None:
                key = tuple(int(rect.get(name)) for name in ("data-panel", "data-row", "data-col"))
                state[key] = rect
        frames.append(dict(state))
    return frames


def test_animated_svg_cells_follow_the_definition(tmp_path):
    path = tmp_path / "conv.svg"
    anim = animate(**CONV, path=path)
    root = ET.parse(path).getroot()
    frames = _svg_frames(root)
    assert len(frames) == len(anim.frames) == math.prod(conv_output_shape((5, 5), 3, stride=2, padding=1))
    texts = [g for g in root.iter(f"{SVG}g") if g.get("class") == "texts"]
    assert len(texts) == 9 and all(g.find(f"{SVG}animate") is not None for g in texts)
    for n, (cells, o) in enumerate(zip(frames, itertools.product(range(3), repeat=2), strict=True)):
        under = {(r, c) for (panel, r, c), rect in cells.items()
                 if panel == 0 and "footprint" in rect.get("class").split()}
        assert under == conv_footprint(o), n
        active = [(r, c) for (panel, r, c), rect in cells.items()
                  if panel == 2 and "active" in rect.get("class").split()]
        assert active == [o]
        padding = {(r, c) for (panel, r, c), rect in cells.items() if panel == 0 and
                   "padding" in rect.get("class").split()}
        assert padding == {cell for cell in itertools.product(range(7), repeat=2) if 0 in cell or 6 in cell}


def test_numbers_svg_frame_shows_the_sum(tmp_path):
    x = np.arange(9.0).reshape(3, 3)
    w = np.array([[1.0, 0.0], [0.0, -1.0]])
    anim = animate(3, 2, x=x, w=w, path=tmp_path / "n.svg", frame=3)
    texts = [t.text for t in ET.parse(tmp_path / "n.svg").getroot().iter(f"{SVG}text")]
    # output (1, 1) = x[1,1]*1 + x[2,2]*(-1) = 4 - 8
    assert anim.frames[3].step == "y[1, 1] = 4·1 + 5·0 + 7·0 + 8·-1 = -4" and anim.frames[3].step in texts


def test_legend_colours_differ_in_grayscale():
    """Every legend's colours differ by at least 18 grey levels (of 255), and a footprint cell's tint
    stays distinguishable from the cell's own colour."""
    for legend in (LEGEND_CONV, LEGEND_DIRECT, LEGEND_SCATTER):
        greys = sorted(luminance(FILL[kind]) for kind in legend)
        assert min(b - a for a, b in itertools.pairwise(greys)) >= 18, legend
    for kind in (Kind.INPUT, Kind.PADDING, Kind.INSERTED_ZERO, Kind.OUTPUT):
        tinted = blend(FILL[kind], FILL[Kind.KERNEL], KERNEL_TINT)
        assert luminance(FILL[kind]) - luminance(tinted) >= 30


def test_grayscale_picture_keeps_roles_apart(conv_anim):
    layout = compute_layout(conv_anim.frames)
    grey = render_frame(conv_anim.frames[0], layout).convert("L")
    where = {Kind.INPUT: (0, (5, 5)), Kind.KERNEL: (1, (0, 0)), Kind.OUTPUT: (2, (2, 2)),
             Kind.ACTIVE: (2, (0, 0))}
    values = {kind: centre_pixel(grey, layout, panel, cell) for kind, (panel, cell) in where.items()}
    assert min(abs(a - b) for a, b in itertools.combinations(values.values(), 2)) >= 18, values


def test_matrix_picture_png_colours_each_entry_by_its_weight(tmp_path):
    case = make_case(4, 3, stride=2, padding=1)
    frame = matrix_picture(case)
    path = tmp_path / "matrix.png"
    save([frame], path)
    layout = compute_layout([frame])
    C = frame.panels[0]
    assert C.shape == (4, 16) and frame.panels[1].shape == (16, 4)
    with Image.open(path) as image:
        image = image.convert("RGB")
        for o, j in itertools.product(range(4), range(16)):
            (oy, ox), (jy, jx) = divmod(o, 2), divmod(j, 4)
            k = (jy - (oy * 2 - 1), jx - (ox * 2 - 1))  # j = o*s - p + k*d, d = 1
            holds = all(0 <= v < 3 for v in k)
            expected = kernel_index_colour(k, (3, 3)) if holds else FILL[Kind.ZERO]
            assert border_pixel(image, layout, 0, (o, j)) == rgb(expected), (o, j)
            assert border_pixel(image, layout, 1, (j, o)) == rgb(expected), (j, o)


def test_cli_draws_and_refuses_invalid_parameters(tmp_path):
    from deconvlab.cli import app

    runner = CliRunner()
    out = tmp_path / "t.gif"
    result = runner.invoke(app, ["animate", "--input", "3", "--stride", "2", "--padding", "1",
                                 "--output-padding", "1", "--transposed", "--view", "scatter", "--numbers",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 9
    result = runner.invoke(app, ["animate", "--matrix", "--input", "3", "--transposed", "-o",
                                 str(tmp_path / "m.svg")])
    assert result.exit_code == 0, result.output
    assert ET.parse(tmp_path / "m.svg").getroot().tag == f"{SVG}svg"
    bad = tmp_path / "bad.gif"
    result = runner.invoke(app, ["animate", "--input", "3", "--kernel", "3", "--stride", "2",
                                 "--output-padding", "2", "--transposed", "-o", str(bad)])
    assert result.exit_code == 2 and "output_padding=2" in result.output and not bad.exists()


def test_gallery_renders_every_case_with_an_index(tmp_path):
    rows = render_gallery(tmp_path, formats=("svg",))
    index = (tmp_path / "index.html").read_text()
    assert [row.name for row in GALLERY] == list(rows)
    for row in GALLERY:
        assert f"id='{row.name}'" in index
        for item in rows[row.name]:
            root = ET.parse(tmp_path / f"{item.stem}.svg").getroot()
            layers = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cells"]
            assert len(layers) == item.frames
            assert f"src='{item.stem}.svg'" in index
            counted = item.case.input_size if item.case.view == "scatter" else item.case.output_size
            assert item.frames == math.prod(counted)
