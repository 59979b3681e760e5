"""Every invalid parameter raises ValueError naming the parameter, quoting its value and stating the rule.

Where PyTorch has the same operation, the test also checks that PyTorch refuses the case too, so
each case is really invalid and not a limitation of ours.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deconvlab.arithmetic import conv, conv_matrix, conv_transpose, transpose_vs_inverse


def zeros(*shape):
    return np.zeros(shape)


TRANSPOSE_CASES = [
    # (x shape, w shape, kwargs, message fragment, torch refuses it too)
    ((1, 4, 5), (4, 1, 3), dict(groups=3), "groups=3: must divide the input channels (4)", True),
    ((1, 4, 5), (4, 1, 3), dict(groups=0), "groups=0: must be a positive int", True),
    ((1, 3, 5), (4, 1, 3), {}, "weight and input channels disagree", True),
    (
        (1, 1, 5),
        (1, 1, 3),
        dict(stride=2, output_padding=2),
        "output_padding=2: must be smaller than stride",
        True,
    ),
    (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        dict(stride=2, output_padding=(0, 3), dilation=(1, 3)),
        "output_padding=3",
        True,
    ),
    ((1, 1, 1), (1, 1, 1), dict(padding=1), "the output would be empty", True),
    ((1, 1, 5), (1, 1, 3), dict(stride=0), "stride=0: must be positive", True),
    ((1, 1, 5, 5), (1, 1, 3, 3), dict(dilation=(1, 0)), "dilation=(1, 0): must be positive", True),
    ((1, 1, 5), (1, 1, 0), {}, "kernel_size=0: must be positive", True),
    ((1, 1, 5), (1, 1, 3), dict(padding=-1), "padding=-1: must be >= 0", True),
    ((1, 1, 5), (1, 1, 3), dict(padding="same"), "padding='same': a transposed convolution takes int", True),
    (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        dict(stride=(1, 2, 3)),
        "stride=(1, 2, 3): expected an int or a tuple of 2",
        True,
    ),
    ((1, 5), (1, 1, 3), {}, "x.shape=(1, 5): expected a batch (N, C, *spatial)", False),
    ((1, 1, 5), (1, 1, 3, 3), {}, "w.shape=(1, 1, 3, 3): expected 3 axes", True),
    ((1, 1, 5), (1, 1, 3), dict(method="fft"), "method='fft': expected None or one of", False),
]


def torch_refuses(fn, x_shape, w_shape, kwargs):
    try:
        fn(torch.zeros(x_shape, dtype=torch.float64), torch.zeros(w_shape, dtype=torch.float64), **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return True
    return False


@pytest.mark.parametrize("x_shape, w_shape, kwargs, message, torch_also", TRANSPOSE_CASES)
def test_conv_transpose_rejects(x_shape, w_shape, kwargs, message, torch_also):
    with pytest.raises(ValueError, match=re.escape(message)):
        conv_transpose(zeros(*x_shape), zeros(*w_shape), **kwargs)
    if torch_also:
        fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d}[len(x_shape)]
        assert torch_refuses(fn, x_shape, w_shape, kwargs)


CONV_CASES = [
    (
        (1, 1, 6),
        (1, 1, 3),
        dict(stride=2, padding="same"),
        "padding='same' with stride=2: 'same' needs stride 1",
    ),
    (
        (1, 1, 6),
        (1, 1, 3),
        dict(padding="half"),
        "padding='half': expected an int, a tuple of ints, or one of",
    ),
    (
        (1, 4, 6),
        (3, 2, 3),
        dict(groups=2),
        "groups=2: must divide the input channels (4) and the output channels (3)",
    ),
    ((1, 3, 6), (4, 2, 3), {}, "weight and input channels disagree"),
    ((1, 1, 2, 5), (1, 1, 3, 3), {}, "the output would be empty along spatial axis 0"),
    ((1, 1, 6), (1, 1, 3), dict(dilation=0), "dilation=0: must be positive"),
    ((1, 1, 6), (1, 1, 3), dict(padding=(1, 1)), "padding=(1, 1): expected an int or a tuple of 1 ints"),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs, message", CONV_CASES)
def test_conv_and_conv_matrix_reject(x_shape, w_shape, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        conv(zeros(*x_shape), zeros(*w_shape), **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        conv_matrix(x_shape[1:], zeros(*w_shape), **kwargs)
    fn = {3: F.conv1d, 4: F.conv2d}[len(x_shape)]
    assert torch_refuses(fn, x_shape, w_shape, kwargs)


def test_bias_needs_one_value_per_output_channel():
    with pytest.raises(
        ValueError, match=re.escape("bias.shape=(3,): expected (2,), one value per output channel")
    ):
        conv(zeros(1, 1, 5), zeros(2, 1, 3), zeros(3))
    with pytest.raises(ValueError, match=re.escape("bias.shape=(1, 2): expected (2,)")):
        conv_transpose(zeros(1, 1, 5), zeros(1, 2, 3), zeros(1, 2))


def test_gradient_method_needs_one_to_three_spatial_axes():
    x, w = zeros(1, 1, 2, 2, 2, 2), zeros(1, 1, 1, 1, 1, 1)
    assert conv_transpose(x, w, method="scatter").shape == (1, 1, 2, 2, 2, 2)  # numpy methods: any ndim
    with pytest.raises(ValueError, match=re.escape("method='gradient': torch has conv1d/2d/3d only")):
        conv_transpose(x, w, method="gradient")


def test_transpose_vs_inverse_rejects_large_or_mismatched_input():
    with pytest.raises(ValueError, match="must be at most 4096"):
        transpose_vs_inverse((1, 80, 80), zeros(1, 1, 3, 3))
    with pytest.raises(
        ValueError, match=re.escape("x has 3 elements: expected one sample of input_shape=(1, 5)")
    ):
        transpose_vs_inverse((1, 5), np.ones((1, 1, 2)), x=np.ones(3))


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 4),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 5),
    output_padding=st.integers(0, 4),
    dilation=st.integers(1, 3),
)
def test_ours_refuses_exactly_where_torch_refuses(size, kernel, stride, padding, output_padding, dilation):
    """Over valid and invalid parameters: torch refuses <=> we raise ValueError; otherwise equal values."""
    params = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    x, w = np.arange(1.0, size + 1).reshape(1, 1, size), np.arange(1.0, kernel + 1).reshape(1, 1, kernel)
    try:
        expected = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), **params).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            conv_transpose(x, w, **params)
        return
    np.testing.assert_allclose(conv_transpose(x, w, **params), expected, rtol=1e-12)
