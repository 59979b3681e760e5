"""Multi-channel animations (weight sharing across channels and groups) against the arithmetic core.

References, independent of the drawing model: the core's ``conv`` / ``conv_transpose`` with
``groups``, the definition of which input channels an output channel reads (those of its group), and
``C @ x == conv(x)`` for the matrix picture.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from deconvlab.arithmetic import conv, conv_transpose
from deconvlab.arithmetic.animate import GALLERY, Kind, kernel_index_matrix, make_case, matrix_picture, save
from deconvlab.arithmetic.animate.layout import compute_layout
from deconvlab.arithmetic.animate.matrix import MAX_SIDE
from deconvlab.arithmetic.animate.model import build_animation
from deconvlab.arithmetic.animate.style import FILL, rgb


@st.composite
def channel_cases(draw, views=("conv", "direct", "scatter")):
    """A small valid case with 1-4 channels each side and groups dividing both."""
    ndim = draw(st.sampled_from([1, 2]))
    view = draw(st.sampled_from(views))
    groups = draw(st.sampled_from([1, 2]))
    per_axis = lambda lo, hi: tuple(draw(st.lists(st.integers(lo, hi), min_size=ndim, max_size=ndim)))  # noqa: E731
    params = {
        "input_size": per_axis(1, 3),
        "kernel_size": per_axis(1, 3),
        "stride": per_axis(1, 2),
        "padding": per_axis(0, 2),
        "dilation": per_axis(1, 2),
        "in_channels": groups * draw(st.integers(1, 2)),
        "out_channels": groups * draw(st.integers(1, 2)),
        "groups": groups,
    }
    if view != "conv":
        params["output_padding"] = per_axis(0, 1)
    assume((params["in_channels"], params["out_channels"]) != (1, 1))  # one channel: tests/test_animate.py
    try:
        return make_case(**params, transposed=view != "conv", view=None if view == "conv" else view)
    except ValueError:
        assume(False)


def drawn(values, case):
    return tuple(values[2 - case.ndim :])


def numbered(case, seed=0):
    """x with distinct values 1, 2, ... across all channels, random w in the case's weight layout."""
    shape = (case.in_channels, *drawn(case.input_size, case))
    x = np.arange(1, math.prod(shape) + 1, dtype=float).reshape(shape)
    return x, np.random.default_rng(seed).normal(size=case.weight_shape)


def core_result(case, x, w):
    params = {name: drawn(getattr(case, name), case) for name in ("stride", "padding", "dilation")}
    if case.transposed:
        return conv_transpose(
            x[None], w, output_padding=drawn(case.output_padding, case), groups=case.groups, **params
        )[0]
    return conv(x[None], w, groups=case.groups, **params)[0]


def blocks(panel, count, size):
    """The ``count`` equally sized blocks of a panel stacked top to bottom (a GAP row between)."""
    rows = size[0]
    assert panel.shape[0] == count * (rows + 1) - 1
    for b in range(1, count):
        assert np.all(panel.roles[b * (rows + 1) - 1] == Kind.GAP)
    return [slice(b * (rows + 1), b * (rows + 1) + rows) for b in range(count)]


@settings(max_examples=30, deadline=None)
@given(channel_cases(), st.integers(0, 2**16))
def test_channel_frames_equal_the_core(case, seed):
    """The output equals conv / conv_transpose with groups; the last frame's output blocks hold it; in
    the conv and direct views every frame's written cell holds the core's value in every channel."""
    x, w = numbered(case, seed)
    anim = build_animation(case, x=x, w=w)
    expected = core_result(case, x, w)
    np.testing.assert_allclose(anim.output, expected, rtol=1e-12, atol=1e-12)
    counted = case.input_size if case.view == "scatter" else case.output_size
    assert len(anim.frames) == math.prod(counted)
    out_size = case.output_size
    for n, frame in enumerate(anim.frames):
        source, kernel, output = frame.panels
        blocks(source, case.in_channels, ((source.shape[0] + 1) // case.in_channels - 1,))
        if case.view == "scatter":
            continue
        o = list(itertools.product(*(range(v) for v in out_size)))[n]
        for c, rows in enumerate(blocks(output, case.out_channels, out_size)):
            assert (rows.start + o[0], o[1]) in output.active
            np.testing.assert_allclose(
                output.values[rows][o], expected.reshape(-1, *out_size)[c][o], rtol=1e-12, atol=1e-12
            )
    if case.view == "scatter":  # the canvas, cropped by the padding, is the output
        final = anim.frames[-1].panels[-1]
        canvas = (final.shape[0] + 1) // case.out_channels - 1
        p = case.padding
        for c, rows in enumerate(blocks(final, case.out_channels, (canvas, final.shape[1]))):
            cropped = np.nan_to_num(final.values[rows])[p[0] : p[0] + out_size[0], p[1] : p[1] + out_size[1]]
            np.testing.assert_allclose(cropped, expected.reshape(-1, *out_size)[c], rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(channel_cases())
def test_kernel_blocks_are_the_weight_slices_of_each_pair(case):
    """Block (a, b) of the kernel panel shows w[a, b] (rotated 180° in the direct view): conv rows are
    output channels, transposed rows are input channels: the channel axes swapped."""
    x, w = numbered(case)
    kernel = build_animation(case, x=x, w=w).frames[0].panels[1]
    kh, kw = case.kernel_size
    rows, cols = case.weight_shape[:2]
    assert kernel.shape == (rows * (kh + 1) - 1, cols * (kw + 1) - 1)
    for a, b in itertools.product(range(rows), range(cols)):
        block = kernel.values[a * (kh + 1) : a * (kh + 1) + kh, b * (kw + 1) : b * (kw + 1) + kw]
        expected = w[a, b].reshape(kh, kw)
        np.testing.assert_array_equal(block, expected[::-1, ::-1] if case.view == "direct" else expected)


def test_each_output_channel_reads_only_its_group():
    """groups=2, 4 -> 2 channels: output 0 sums inputs 0, 1; output 1 sums inputs 2, 3 (the step says so,
    and zeroing the other group's inputs leaves each output unchanged)."""
    case = make_case(3, 2, ndim=1, in_channels=4, out_channels=2, groups=2)
    x, w = numbered(case)
    anim = build_animation(case, x=x, w=w)
    assert anim.frames[0].step.startswith("y[0]: y0 = x0·w[0,0] + x1·w[0,1] = ")
    assert "; y1 = x2·w[1,0] + x3·w[1,1] = " in anim.frames[0].step
    for o, others in ((0, [2, 3]), (1, [0, 1])):
        masked = x.copy()
        masked[others] = 0
        np.testing.assert_allclose(build_animation(case, x=masked, w=w).output[o], anim.output[o], rtol=1e-12)


def test_transposed_of_the_same_weight_is_the_adjoint():
    """The gallery's 2 -> 3 row: the transposed case takes the conv's weight array as it is, and
    <conv(x), y> == <x, conv_transpose(y)>: the transpose swaps the channel axes, not the array."""
    row = {r.name: r for r in GALLERY}["channels_2_to_3"]
    forward, backward = make_case(**row.conv), make_case(**row.transposed, view="scatter")
    assert forward.weight_shape == backward.weight_shape == (3, 2, 3, 3)
    x, w = numbered(forward)
    y = np.random.default_rng(1).normal(size=(3, *forward.output_size))
    there = build_animation(forward, x=x, w=w).output
    back = build_animation(backward, x=y, w=w).output
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(there, y), np.vdot(x, back), rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(channel_cases(views=("conv", "direct")))
def test_matrix_picture_has_channel_blocks(case):
    """C filled with w times x is the core's conv (the conv a transposed case transposes); a block is
    zero exactly when its output and input channels lie in different groups."""
    conv_in = case.out_channels if case.transposed else case.in_channels
    conv_out = case.in_channels if case.transposed else case.out_channels
    spatial_in = drawn(case.output_size if case.transposed else case.input_size, case)
    index = kernel_index_matrix(case)
    assume(index.size <= 4000)
    _, w = numbered(case)
    C = np.where(index >= 0, w.ravel()[np.maximum(index, 0)], 0.0)
    x = np.random.default_rng(2).normal(size=(conv_in, *spatial_in))
    params = {name: drawn(getattr(case, name), case) for name in ("stride", "padding", "dilation")}
    np.testing.assert_allclose(
        C @ x.ravel(), conv(x[None], w, groups=case.groups, **params).ravel(), rtol=1e-10, atol=1e-10
    )
    rows_per, cols_per = index.shape[0] // conv_out, index.shape[1] // conv_in
    for o, i in itertools.product(range(conv_out), range(conv_in)):
        block = index[o * rows_per : (o + 1) * rows_per, i * cols_per : (i + 1) * cols_per]
        same_group = o // (conv_out // case.groups) == i // (conv_in // case.groups)
        if not same_group:
            assert np.all(block == -1)
    if max(index.shape) > MAX_SIDE:  # too big to draw legibly: refused with the size, not drawn
        with pytest.raises(ValueError, match=f"C would be {index.shape[0]}×{index.shape[1]}"):
            matrix_picture(case)
        return
    frame = matrix_picture(case)
    assert frame.panels[0].shape == index.shape and frame.panels[1].shape == index.T.shape


def test_rendered_frame_marks_the_window_in_every_input_channel(tmp_path):
    """Depthwise 3 channels: in frame 0 each input block's window (cells 0..2, by the definition) has the
    kernel's border colour; the gap rows are blank."""
    case = make_case(4, 3, in_channels=3, out_channels=3, groups=3)
    anim = build_animation(case)
    path = tmp_path / "frame.png"
    save(anim, path, frame=0)
    layout = compute_layout(anim.frames)
    with Image.open(path) as image:
        image = image.convert("RGB")
        for b in range(3):
            for r, c in itertools.product(range(4), range(4)):
                x0, y0, _, _ = layout.cell_box(0, (b * 5 + r, c))
                under = r < 3 and c < 3
                assert (image.getpixel((x0 + 2, y0 + 2)) == rgb(FILL[Kind.KERNEL])) == under, (b, r, c)
            if b:
                x0, y0, x1, y1 = layout.cell_box(0, (b * 5 - 1, 0))
                assert image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == rgb(FILL[Kind.GAP])


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"in_channels": 0}, "in_channels=0"),
        ({"out_channels": 9}, "out_channels=9"),
        (
            {"in_channels": 2, "out_channels": 3, "groups": 2},
            "groups=2: must divide in_channels (2) and out_channels (3); it does not divide out_channels (3)",
        ),
        ({"groups": 0}, "groups=0"),
    ],
)
def test_bad_channel_arguments_name_the_parameter(params, needle):
    with pytest.raises(ValueError) as error:
        make_case(5, 3, **params)
    assert needle in str(error.value)


def test_given_arrays_must_have_the_channel_shapes():
    case = make_case(3, 2, ndim=1, in_channels=2, out_channels=2)
    with pytest.raises(ValueError, match=r"w has shape \(2, 2\): expected \(2, 2, 2\)"):
        build_animation(case, x=np.ones((2, 3)), w=np.ones((2, 2)))


def test_cli_channels_and_groups(tmp_path):
    from deconvlab.cli import app

    runner = CliRunner()
    out = tmp_path / "g.gif"
    result = runner.invoke(
        app,
        [
            "animate",
            "--input",
            "3",
            "--in-channels",
            "2",
            "--out-channels",
            "4",
            "--groups",
            "2",
            "--transposed",
            "--view",
            "scatter",
            "--numbers",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 9
    result = runner.invoke(
        app,
        [
            "animate",
            "--matrix",
            "--input",
            "3",
            "--in-channels",
            "2",
            "--groups",
            "2",
            "--out-channels",
            "2",
            "-o",
            str(tmp_path / "m.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.gif"
    result = runner.invoke(app, ["animate", "--in-channels", "3", "--groups", "2", "-o", str(bad)])
    assert result.exit_code == 2 and "groups=2" in result.output and not bad.exists()


def test_explorer_animation_draws_channels_and_refuses_too_many_cells():
    """GET /api/arithmetic/animation with channels: the SVG the library draws for the same case (one
    frame per output cell), a groups error naming the parameter, and the live page's cell budget."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from deconvlab.arithmetic.animate import svg
    from deconvlab.data import BuiltinDataset
    from deconvlab.models import create
    from deconvlab.serve import Loaded, ServeConfig, create_app

    def loader(progress):
        return Loaded(
            model=create("zfnet-mini", num_classes=4),
            dataset=BuiltinDataset("val", 64, size=4, cache=False),
            name="t",
        )

    base = dict(input=3, kernel=2, stride=1, padding=0, dilation=1, output_padding=0, transposed=False)
    with TestClient(create_app(ServeConfig(loader=loader))) as client:
        params = {
            p["name"]: p["schema"]
            for p in client.get("/openapi.json").json()["paths"]["/api/arithmetic/animation"]["get"][
                "parameters"
            ]
        }
        assert params["in_channels"]["maximum"] == params["groups"]["maximum"] == 4
        response = client.get(
            "/api/arithmetic/animation", params={**base, "in_channels": 2, "out_channels": 4, "groups": 2}
        )
        assert response.status_code == 200, response.text
        case = make_case(3, 2, in_channels=2, out_channels=4, groups=2)
        assert response.text == svg.animated_svg(build_animation(case).frames)
        assert len(build_animation(case).frames) == 4  # (3 - 2 + 1)^2 output cells
        bad = client.get("/api/arithmetic/animation", params={**base, "in_channels": 2, "groups": 3})
        assert bad.status_code == 422 and "groups=3" in bad.json()["error"]
        big = {
            **base,
            "input": 12,
            "kernel": 7,
            "stride": 4,
            "transposed": True,
            "view": "scatter",
            "in_channels": 4,
            "out_channels": 4,
        }
        refused = client.get("/api/arithmetic/animation", params=big)
        assert refused.status_code == 422 and "cells" in refused.json()["error"]
