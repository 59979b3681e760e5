"""The drawing model of ``deconvlab animate`` against the index arithmetic and the arithmetic core.

References, independent of the model: the definitions (conv: output o reads input
``j = o*s - p + k*d``; transposed: input j stamps w[k] onto output ``o = j*s + k*d - p``), the core's
``conv`` / ``conv_transpose`` / shape functions, and Dumoulin & Visin's stated sizes.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deconvlab.arithmetic import conv, conv_output_shape, conv_transpose, conv_transpose_output_shape
from deconvlab.arithmetic.animate import GALLERY, Kind, animate, kernel_index_matrix, make_case
from deconvlab.arithmetic.animate.model import build_animation


@st.composite
def cases(draw, views=("conv", "direct", "scatter")):
    """A small valid case: per-axis sizes (1D or 2D), any view."""
    ndim = draw(st.sampled_from([1, 2]))
    axes = st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)
    view = draw(st.sampled_from(views))
    params = {
        "input_size": tuple(draw(axes)), "kernel_size": tuple(draw(st.lists(st.integers(1, 3),
                                                                              min_size=ndim, max_size=ndim))),
        "stride": tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))),
        "padding": tuple(draw(st.lists(st.integers(0, 3), min_size=ndim, max_size=ndim))),
        "dilation": tuple(draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))),
    }
    if view != "conv":
        params["output_padding"] = tuple(draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim)))
    try:
        case = make_case(**params, transposed=view != "conv", view=None if view == "conv" else view)
    except ValueError:
        assume(False)
    return case


def drawn(values, case):
    """The drawn axes of a per-axis tuple (the last one for a 1D strip)."""
    return tuple(values[2 - case.ndim :])


def numbered(case, seed=0):
    """x with distinct values 1, 2, ... (so an input cell is known by its value), random w."""
    x = np.arange(1, math.prod(drawn(case.input_size, case)) + 1, dtype=float).reshape(
        drawn(case.input_size, case))
    w = np.random.default_rng(seed).normal(size=drawn(case.kernel_size, case))
    return x, w


def core_result(case, x, w):
    params = {name: drawn(getattr(case, name), case) for name in ("stride", "padding", "dilation")}
    if case.transposed:
        return conv_transpose(x[None, None], w[None, None], output_padding=drawn(case.output_padding, case),
                              **params)[0, 0]
    return conv(x[None, None], w[None, None], **params)[0, 0]


def grid_positions(shape):
    return list(itertools.product(*(range(n) for n in shape)))


def reads_by_definition(case, o):
    """(input index, kernel index) pairs output o sums, from the definitions (2-axis indices)."""
    pairs = set()
    for k in grid_positions(case.kernel_size):
        if case.transposed:  # inputs j with j*s + k*d - p == o
            num = [o[a] + case.padding[a] - k[a] * case.dilation[a] for a in range(2)]
            if all(n % case.stride[a] == 0 and 0 <= n // case.stride[a] < case.input_size[a]
                   for a, n in enumerate(num)):
                pairs.add((tuple(n // case.stride[a] for a, n in enumerate(num)), k))
        else:
            j = tuple(o[a] * case.stride[a] - case.padding[a] + k[a] * case.dilation[a] for a in range(2))
            if all(0 <= j[a] < case.input_size[a] for a in range(2)):
                pairs.add((j, k))
    return pairs


@settings(max_examples=40, deadline=None)
@given(cases())
def test_frame_count_is_output_or_input_positions(case):
    anim = build_animation(case)
    counted = case.input_size if case.view == "scatter" else case.output_size
    assert len(anim.frames) == math.prod(counted)
    if case.transposed:
        assert case.output_size == conv_transpose_output_shape(
            case.input_size, case.kernel_size, stride=case.stride, padding=case.padding,
            output_padding=case.output_padding, dilation=case.dilation)
    else:
        assert case.output_size == conv_output_shape(case.input_size, case.kernel_size, stride=case.stride,
                                                     padding=case.padding, dilation=case.dilation)


@settings(max_examples=40, deadline=None)
@given(cases(views=("conv", "direct")))
def test_highlighted_input_cells_are_the_ones_the_output_reads(case):
    """Conv and direct view: frame n writes output n (row-major); the footprint's input cells (known
    by their values) with their kernel indices are exactly the pairs of the definition."""
    x, w = numbered(case)
    anim = build_animation(case, x=x, w=w)
    by_value = {v: j for j, v in np.ndenumerate(x.reshape(case.input_size))}
    outputs = grid_positions(case.output_size)
    for n, (frame, o) in enumerate(zip(anim.frames, outputs, strict=True)):
        source, output = frame.panels[0], frame.panels[-1]
        seen = {(by_value[source.values[cell]], k) for cell, k in source.footprint.items()
                if source.roles[cell] == Kind.INPUT}
        assert seen == reads_by_definition(case, o)
        assert len(source.footprint) == math.prod(case.kernel_size)
        assert output.active == {o} and output.done == set(outputs[:n])
        # every footprint cell that is not an input cell holds a zero (padding or inserted zero)
        assert all(source.values[cell] == 0 for cell in source.footprint if source.roles[cell] != Kind.INPUT)


@settings(max_examples=40, deadline=None)
@given(cases(views=("scatter",)))
def test_scatter_stamps_land_where_the_definition_says(case):
    """Scatter view: frame n stamps input n; its footprint, in output coordinates, is j*s + k*d - p;
    stamps outside the output are on cropped cells."""
    anim = build_animation(case)
    for n, (frame, j) in enumerate(zip(anim.frames, grid_positions(case.input_size), strict=True)):
        source, canvas = frame.panels[0], frame.panels[-1]
        assert source.active == {j} and source.done == set(grid_positions(case.input_size)[:n])
        output_cells = np.argwhere(np.isin(canvas.roles, [Kind.OUTPUT, Kind.OUTPUT_PADDING]))
        origin = output_cells.min(axis=0)
        assert tuple(output_cells.max(axis=0) - origin + 1) == case.output_size
        inside = {(tuple(int(v) for v in np.subtract(cell, origin)), k)
                  for cell, k in canvas.footprint.items() if canvas.roles[cell] != Kind.CROPPED}
        s, d, p = case.stride, case.dilation, case.padding
        lands = [(tuple(j[a] * s[a] + k[a] * d[a] - p[a] for a in range(2)), k)
                 for k in grid_positions(case.kernel_size)]
        expected = {(o, k) for o, k in lands if all(0 <= o[a] < case.output_size[a] for a in range(2))}
        assert inside == expected
        assert all(canvas.roles[cell] != Kind.OUTPUT_PADDING for cell in canvas.footprint)


@settings(max_examples=40, deadline=None)
@given(cases(), st.integers(0, 2**16))
def test_numbers_mode_equals_the_core(case, seed):
    """Numbers: the final output equals conv / conv_transpose; every frame's written value too."""
    x, w = numbered(case, seed)
    anim = build_animation(case, x=x, w=w)
    expected = core_result(case, x, w)
    np.testing.assert_allclose(anim.output, expected, rtol=1e-12, atol=1e-12)
    final = anim.frames[-1].panels[-1].values
    if case.view != "scatter":
        np.testing.assert_allclose(final.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
        for frame, o in zip(anim.frames, grid_positions(case.output_size), strict=True):
            (active,) = frame.panels[-1].active
            assert active == o
            np.testing.assert_allclose(frame.panels[-1].values[o], expected.reshape(case.output_size)[o],
                                       rtol=1e-12, atol=1e-12)


def test_numbers_mode_by_hand():
    """Dumoulin & Visin, Fig. 1.1: a 3x3 kernel over a 5x5 input, first output 12 (their numbers)."""
    x = np.array([[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]])
    w = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]])
    anim = animate(5, 3, x=x, w=w)
    np.testing.assert_array_equal(anim.output, [[12, 12, 17], [10, 17, 19], [9, 6, 14]])
    assert anim.frames[0].step == "y[0, 0] = 3·0 + 3·1 + 2·2 + 0·2 + 0·2 + 1·0 + 3·0 + 1·1 + 2·2 = 12"


def test_direct_view_pads_and_inserts_zeros_as_the_core_plans():
    """padding_strides_odd transposed: 3x3, s=2, p=1, a=1: zeros between (1), padding 1 before and 2
    after (the last one is output_padding's), as in Dumoulin & Visin, relationship 14."""
    anim = animate(3, 3, stride=2, padding=1, output_padding=1, transposed=True)
    source = anim.frames[0].panels[0]
    assert source.shape == (1 + 5 + 2, 1 + 5 + 2)
    row = [Kind(v) for v in source.roles[1]]
    assert row == [Kind.PADDING, Kind.INPUT, Kind.INSERTED_ZERO, Kind.INPUT, Kind.INSERTED_ZERO, Kind.INPUT,
                   Kind.PADDING, Kind.OUTPUT_PADDING]
    # the flipped kernel: the cell at the top-left of the footprint multiplies w[2, 2]
    assert anim.frames[0].panels[0].footprint[(0, 0)] == (2, 2)


def test_negative_direct_padding_crops_the_stretched_input():
    """p > d(k-1): the direct view's padding is negative, so input cells are cropped, not padded."""
    anim = animate(4, 2, stride=1, padding=2, transposed=True, ndim=1)  # p' = 1 - 2 = -1
    roles = [Kind(v) for v in anim.frames[0].panels[0].roles[0]]
    assert roles == [Kind.CROPPED, Kind.INPUT, Kind.INPUT, Kind.CROPPED]
    assert len(anim.frames) == conv_transpose_output_shape(4, 2, padding=2) == 1
    assert sorted(anim.frames[0].panels[0].footprint) == [(0, 1), (0, 2)]


def test_captions_substitute_the_numbers():
    anim = animate(6, 3, stride=2, padding=1)
    assert anim.frames[0].caption[1].endswith("= ⌊(6 + 2·1 − 1·(3−1) − 1) / 2⌋ + 1 = 3")
    tr = animate((2, 3), (2, 3), stride=(2, 1), padding=(0, 1), transposed=True)
    assert tr.frames[0].caption[1].endswith(
        "rows: (2−1)·2 − 2·0 + 1·(2−1) + 0 + 1 = 4;  cols: (3−1)·1 − 2·1 + 1·(3−1) + 0 + 1 = 3")


@pytest.mark.parametrize(
    ("params", "message_from"),
    [
        ({"input_size": 3, "kernel_size": 5}, lambda: conv_output_shape(3, 5)),
        ({"input_size": 3, "kernel_size": 3, "stride": 2, "output_padding": 2, "transposed": True},
         lambda: conv_transpose_output_shape(3, 3, stride=2, output_padding=2)),
        ({"input_size": 4, "kernel_size": 3, "stride": 0}, lambda: conv_output_shape(4, 3, stride=0)),
        ({"input_size": 2, "kernel_size": 2, "padding": 3, "transposed": True},
         lambda: conv_transpose_output_shape(2, 2, padding=3)),
    ],
)
def test_invalid_parameters_raise_the_core_error_before_drawing(tmp_path, params, message_from):
    with pytest.raises(ValueError) as core:
        message_from()
    path = tmp_path / "never.gif"
    with pytest.raises(ValueError) as ours:
        animate(**params, path=path)
    assert str(ours.value) == str(core.value)
    assert not path.exists()


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"view": "scatter"}, "view='scatter'"),
        ({"transposed": True, "view": "sideways"}, "view='sideways'"),
        ({"output_padding": 1}, "output_padding=1"),
        ({"ndim": 3}, "ndim=3"),
        ({"x": np.ones((4, 4))}, "x has shape (4, 4)"),
        ({"path": "out.jpg"}, "path='out.jpg'"),
    ],
)
def test_bad_arguments_name_the_parameter(params, needle):
    with pytest.raises(ValueError) as error:
        animate(5, 3, **params)
    assert needle in str(error.value)


# Dumoulin & Visin (2016), the figures of sections 2-5: (input, output) sizes of each named case.
DUMOULIN_VISIN_SIZES = {
    "no_padding_no_strides": ((4, 2), (2, 4)),
    "arbitrary_padding_no_strides": ((5, 6), (6, 5)),
    "same_padding_no_strides": ((5, 5), (5, 5)),
    "full_padding_no_strides": ((5, 7), (7, 5)),
    "no_padding_strides": ((5, 2), (2, 5)),
    "padding_strides": ((5, 3), (3, 5)),
    "padding_strides_odd": ((6, 3), (3, 6)),
    "dilation": ((7, 3), None),
}


def test_gallery_matches_dumoulin_visin_and_the_core():
    rows = {row.name: row for row in GALLERY}
    for name, (conv_sizes, transposed_sizes) in DUMOULIN_VISIN_SIZES.items():
        case = make_case(**rows[name].conv)
        assert (case.input_size[1], case.output_size[1]) == conv_sizes
        if transposed_sizes:
            case = make_case(**rows[name].transposed)
            assert (case.input_size[1], case.output_size[1]) == transposed_sizes
            # the transposed case undoes the shape of its convolution
            assert make_case(**rows[name].conv).input_size == case.output_size
    extras = {"dilation", "kernel2_stride2", "output_padding", "output_padding_dilation", "strip_1d"}
    assert extras <= set(rows)
    assert make_case(**rows["dilation"].transposed).dilation == (2, 2)
    assert make_case(**rows["strip_1d"].transposed).ndim == 1
    assert any(make_case(**row.transposed).output_padding != (0, 0) for row in GALLERY if row.transposed)


@settings(max_examples=25, deadline=None)
@given(cases(views=("conv", "direct")))
def test_matrix_picture_holds_the_kernel_index_of_the_definition(case):
    """Entry (o, j) of C names kernel index k iff j = o*s - p + k*d (C order over both axes); and the
    transposed case's C^T, filled with w, is the transposed convolution."""
    conv_input = case.output_size if case.transposed else case.input_size
    conv_output = case.input_size if case.transposed else case.output_size
    conv_case = make_case(conv_input, case.kernel_size, stride=case.stride, padding=case.padding,
                          dilation=case.dilation)
    assume(conv_case.output_size[0] * conv_case.output_size[1] * math.prod(conv_input) <= 2000)
    index = kernel_index_matrix(case)
    expected = np.full((math.prod(conv_case.output_size), math.prod(conv_input)), -1)
    for o in grid_positions(conv_case.output_size):
        for j, k in reads_by_definition(conv_case, o):
            row = np.ravel_multi_index(o, conv_case.output_size)
            expected[row, np.ravel_multi_index(j, conv_input)] = np.ravel_multi_index(k, case.kernel_size)
    np.testing.assert_array_equal(index, expected)
    if case.transposed and conv_case.output_size == tuple(conv_output):
        x, w = numbered(case)
        C = np.where(index >= 0, w.ravel()[index], 0.0)
        np.testing.assert_allclose((C.T @ x.ravel()).reshape(drawn(case.output_size, case)),
                                   core_result(case, x, w), rtol=1e-12, atol=1e-12)
