"""deconvlab.arithmetic against PyTorch in float64: conv, every conv_transpose method, conv_matrix.

References: torch.nn.functional.conv{1,2,3}d / conv_transpose{1,2,3}d, torch's autograd gradient of
conv with respect to its input, and the adjoint identity <conv(u), y> = <u, conv_transpose(y)>.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deconvlab.arithmetic import METHODS, conv, conv_matrix, conv_transpose, transpose_vs_inverse

CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TRANSPOSES = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_SIZE = {1: 7, 2: 5, 3: 3}  # spatial sizes stay small in 3D
# torch's own note when its 'same' needs a padded copy (our reference, not our code)
SAME_COPY_WARNING = "ignore:Using padding='same' with even kernel lengths"


def assert_rel_close(actual, expected, rel=1e-10):
    """Every element within rel * max|expected| (a relative error on the whole array)."""
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=rel * scale)


def per_axis(draw, ndim, values):
    """Either one int for every axis or a tuple of per-axis ints (both forms must work)."""
    picked = tuple(draw(values) for _ in range(ndim))
    return picked[0] if draw(st.booleans()) and len(set(picked)) == 1 else picked


@st.composite
def transposed_cases(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    size = tuple(draw(st.integers(1, MAX_SIZE[ndim])) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    # padding up to 2 past dilation*(k-1); output_padding anywhere below max(stride, dilation)
    padding = tuple(draw(st.integers(0, d * (k - 1) + 2)) for k, d in zip(kernel, dilation, strict=True))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True))
    seed = draw(st.integers(0, 2**16))
    return dict(
        x_shape=(batch, c_in, *size),
        w_shape=(c_in, c_out // groups, *kernel),
        params=dict(
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups
        ),
        seed=seed,
    )


def torch_transpose(x, w, b, params):
    """torch's conv_transpose, or None where torch refuses the parameters (empty output)."""
    fn = TRANSPOSES[x.ndim - 2]
    try:
        return fn(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **params).numpy()
    except RuntimeError:
        return None


def torch_input_gradient(x, w, out_shape, params):
    """Autograd gradient of conv{1,2,3}d w.r.t. its input u, seeded with x (padded where conv gives more)."""
    u = torch.zeros(out_shape, dtype=torch.float64, requires_grad=True)
    conv_params = {k: v for k, v in params.items() if k != "output_padding"}
    y = CONVS[x.ndim - 2](u, torch.from_numpy(w), **conv_params)
    seed = torch.zeros(y.shape, dtype=torch.float64)
    seed[tuple(slice(0, n) for n in x.shape)] = torch.from_numpy(x)
    (grad,) = torch.autograd.grad(y, u, seed)
    return grad.numpy()


def draw_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x, w = rng.standard_normal(case["x_shape"]), rng.standard_normal(case["w_shape"])
    b = rng.standard_normal(case["w_shape"][1] * case["params"]["groups"])
    return x, w, b


def check_every_method(case, x, w, b, expected):
    gradient = torch_input_gradient(x, w, expected.shape, case["params"])
    assert_rel_close(gradient + b.reshape(1, -1, *(1,) * (x.ndim - 2)), expected)
    for method in (None, *METHODS):
        actual = conv_transpose(x, w, b, method=method, **case["params"])
        assert actual.dtype == np.float64
        assert_rel_close(actual, expected)
        assert_rel_close(conv_transpose(x, w, method=method, **case["params"]), gradient)


@settings(max_examples=120, deadline=None)
@given(transposed_cases())
def test_every_method_equals_torch_and_the_input_gradient(case):
    x, w, b = draw_arrays(case)
    expected = torch_transpose(x, w, b, case["params"])
    assume(expected is not None)  # torch refuses an empty output; the error tests cover ours
    check_every_method(case, x, w, b, expected)


@pytest.mark.parametrize(
    "x_shape, w_shape, params",
    [
        # stride <= output_padding < dilation: the adjoint conv gives input + op//stride outputs
        ((2, 2, 4), (2, 3, 3), dict(stride=1, padding=0, output_padding=2, dilation=3, groups=1)),
        (
            (1, 4, 3, 2),
            (4, 1, 2, 3),
            dict(stride=(2, 1), padding=1, output_padding=(2, 1), dilation=3, groups=2),
        ),
        ((2, 3, 2, 2, 3), (3, 1, 2, 2, 2), dict(stride=1, padding=0, output_padding=1, dilation=2, groups=3)),
        # padding larger than dilation*(k-1): the equivalent direct conv crops (negative padding)
        (
            (2, 2, 6, 5),
            (2, 2, 3, 2),
            dict(stride=3, padding=(3, 2), output_padding=(2, 0), dilation=1, groups=1),
        ),
        # non-square, batch 3, the benchmark's parameters
        ((3, 4, 5, 7), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1)),
    ],
)
def test_every_method_on_the_edge_cases(x_shape, w_shape, params):
    case = dict(x_shape=x_shape, w_shape=w_shape, params=params, seed=7)
    x, w, b = draw_arrays(case)
    expected = torch_transpose(x, w, b, params)
    assert expected is not None
    check_every_method(case, x, w, b, expected)


@st.composite
def conv_cases(draw, padding_modes=("valid", "same", "full")):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    size = tuple(draw(st.integers(1, MAX_SIZE[ndim] + 2)) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = per_axis(draw, ndim, st.integers(1, 3))
    padding = draw(st.sampled_from([*padding_modes, "ints"]))
    if padding == "same":
        stride = 1
    else:
        stride = per_axis(draw, ndim, st.integers(1, 3))
    if padding == "ints":
        padding = per_axis(draw, ndim, st.integers(0, 3))
    return dict(
        x_shape=(draw(st.integers(1, 2)), c_in, *size),
        w_shape=(c_out, c_in // groups, *kernel),
        params=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
        seed=draw(st.integers(0, 2**16)),
    )


def torch_conv(x, w, b, params):
    """torch's conv ('full' spelled as its explicit padding), or None where torch refuses."""
    params = dict(params)
    if params["padding"] == "full":
        d = np.broadcast_to(params["dilation"], (x.ndim - 2,))
        params["padding"] = tuple(int(di * (k - 1)) for di, k in zip(d, w.shape[2:], strict=True))
    try:
        return CONVS[x.ndim - 2](
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **params
        ).numpy()
    except RuntimeError:
        return None


@pytest.mark.filterwarnings(SAME_COPY_WARNING)
@settings(max_examples=100, deadline=None)
@given(conv_cases())
def test_conv_equals_torch(case):
    rng = np.random.default_rng(case["seed"])
    x, w = rng.standard_normal(case["x_shape"]), rng.standard_normal(case["w_shape"])
    b = rng.standard_normal(case["w_shape"][0])
    expected = torch_conv(x, w, b, case["params"])
    assume(expected is not None)
    assert_rel_close(conv(x, w, b, **case["params"]), expected)


@pytest.mark.filterwarnings(SAME_COPY_WARNING)
@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_conv_matrix_times_input_is_conv(case):
    rng = np.random.default_rng(case["seed"])
    x, w = rng.standard_normal(case["x_shape"][1:]), rng.standard_normal(case["w_shape"])
    expected = torch_conv(x[None], w, np.zeros(w.shape[0]), case["params"])
    assume(expected is not None)
    C = conv_matrix(x.shape, w, **case["params"])
    assert C.shape == (expected.size, x.size)
    assert_rel_close(C @ x.ravel(), expected.ravel())


@settings(max_examples=60, deadline=None)
@given(conv_cases(padding_modes=()))
def test_adjoint_identity(case):
    """<conv(u), y> == <u, conv_transpose(y)> with the same weight, output_padding restoring u's size."""
    params = case["params"]
    rng = np.random.default_rng(case["seed"])
    u, w = rng.standard_normal(case["x_shape"]), rng.standard_normal(case["w_shape"])
    assume(torch_conv(u, w, np.zeros(w.shape[0]), params) is not None)
    ndim = u.ndim - 2
    stride, padding, dilation = (
        np.broadcast_to(params[k], (ndim,)) for k in ("stride", "padding", "dilation")
    )
    # the sizes conv floors away come back as output_padding: (S + 2p - d(k-1) - 1) mod s
    output_padding = tuple(
        int(v)
        for v in (np.array(u.shape[2:]) + 2 * padding - dilation * (np.array(w.shape[2:]) - 1) - 1) % stride
    )
    y = rng.standard_normal(conv(u, w, **params).shape)
    back = conv_transpose(y, w, output_padding=output_padding, **params)
    lhs, rhs = np.vdot(conv(u, w, **params), y), np.vdot(u, back)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10 * np.abs(u).sum() * np.abs(back).max())


@pytest.mark.parametrize("method", [None, *METHODS])
def test_float32_stays_float32_and_matches_torch(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    params = dict(stride=2, padding=1, output_padding=1, dilation=1, groups=2)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), **params).numpy()
    actual = conv_transpose(x, w, method=method, **params)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.filterwarnings(SAME_COPY_WARNING)
def test_conv_float32_stays_float32():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    actual = conv(x, w, padding="same")
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_hand_computed_transposed_convolution():
    """Stride 2, kernel [1, 10, 100]: x[0]*w at positions 0-2, x[1]*w at 2-4 (overlapping at 2)."""
    x, w = np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]])
    for method in (None, *METHODS):
        np.testing.assert_array_equal(
            conv_transpose(x, w, stride=2, method=method), [[[1, 10, 102, 20, 200]]]
        )


def test_transpose_vs_inverse_without_overlap():
    """w = [1, 2], stride 2 on 4 inputs: C = [[1,2,0,0],[0,0,1,2]], by hand.

    C^T C has blocks [[1,2],[2,4]] (eigenvalues 5 and 0), so ||C^T C - I|| = 4; C^+ C projects onto
    the 2-dim row space, so ||C^+ C - I|| = 1. x = [1,2,3,6] lies in that row space: C^T C x = 5x
    (relative error 4) while C^+ C x = x. C^+ = C^T / ||w||^2 = C^T / 5.
    """
    r = transpose_vs_inverse((1, 4), np.array([[[1.0, 2.0]]]), np.array([1.0, 2.0, 3.0, 6.0]), stride=2)
    assert (r.matrix_shape, r.rank, r.pinv_is_scaled_transpose) == ((2, 4), 2, True)
    np.testing.assert_allclose(
        [r.transpose_gram_error, r.pinv_gram_error, r.transpose_reconstruction_error, r.weight_norm_squared],
        [4.0, 1.0, 4.0, 5.0],
        rtol=1e-12,
    )
    assert r.pinv_reconstruction_error < 1e-14


def test_transpose_vs_inverse_with_overlap_and_when_tall():
    """w = [1, 1], stride 1: overlapping windows, C C^T = [[2,1],[1,2]] is not ||w||^2 I.

    On 3 inputs C = [[1,1,0],[0,1,1]]; C^T C has eigenvalues 0, 1, 3, so ||C^T C - I|| = 2.
    With padding 'full' on 2 inputs C = [[1,0],[1,1],[0,1]] is tall with full column rank:
    C^+ is then an exact left inverse, yet C^T C = [[2,1],[1,2]] is still not I (norm of difference 2).
    """
    w = np.array([[[1.0, 1.0]]])
    wide = transpose_vs_inverse((1, 3), w)
    assert (wide.matrix_shape, wide.rank, wide.pinv_is_scaled_transpose) == ((2, 3), 2, False)
    np.testing.assert_allclose([wide.transpose_gram_error, wide.pinv_gram_error], [2.0, 1.0], rtol=1e-12)
    tall = transpose_vs_inverse((1, 2), w, padding="full")
    assert (tall.matrix_shape, tall.rank) == ((3, 2), 2)
    np.testing.assert_allclose(tall.transpose_gram_error, 2.0, rtol=1e-12)
    assert tall.pinv_gram_error < 1e-12 and tall.pinv_reconstruction_error < 1e-12


@pytest.mark.parametrize("method", [None, *METHODS])
def test_views_with_negative_strides_are_accepted(method):
    """Flipped views (negative strides) in, the same numbers as contiguous copies."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 2, 5, 4))[..., ::-1], rng.standard_normal((2, 3, 3, 2))[:, :, ::-1]
    expected = F.conv_transpose2d(torch.from_numpy(x.copy()), torch.from_numpy(w.copy()), stride=2).numpy()
    assert_rel_close(conv_transpose(x, w, stride=2, method=method), expected)
    assert_rel_close(
        conv(x, w.swapaxes(0, 1), padding=1),
        F.conv2d(torch.from_numpy(x.copy()), torch.from_numpy(w.swapaxes(0, 1).copy()), padding=1).numpy(),
    )
