"""Shape arithmetic against PyTorch's own output shapes (property tests)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deconvlab.arithmetic import conv_output_shape, conv_transpose_output_shape, equivalent_direct_conv


@st.composite
def transposed_case(draw):
    i, k = draw(st.integers(1, 7)), draw(st.integers(1, 4))
    s, d = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    p = draw(st.integers(0, d * (k - 1) + 2))
    op = draw(st.integers(0, max(s, d) - 1))
    return i, k, s, p, op, d


@settings(max_examples=80, deadline=None)
@given(transposed_case())
def test_conv_transpose_shape_matches_torch(case):
    i, k, s, p, op, d = case
    x, w = torch.zeros(1, 1, i), torch.zeros(1, 1, k)
    try:
        expected = F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op, dilation=d).shape[-1]
    except RuntimeError:
        with pytest.raises(ValueError):
            conv_transpose_output_shape(i, k, stride=s, padding=p, output_padding=op, dilation=d)
        return
    assert conv_transpose_output_shape(i, k, stride=s, padding=p, output_padding=op, dilation=d) == expected
    plan = equivalent_direct_conv(i, k, stride=s, padding=p, output_padding=op, dilation=d)
    assert plan.output_size == expected
    # the direct conv's own arithmetic gives the same size
    assert plan.stretched_size + plan.pad_before + plan.pad_after - d * (k - 1) == expected


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(0, 4), st.integers(1, 3))
def test_conv_shape_matches_torch(i, h, k, s_p, d):
    s, p = max(1, s_p), s_p
    x, w = torch.zeros(1, 1, i, h), torch.zeros(1, 1, k, k)
    try:
        expected = tuple(F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-2:])
    except RuntimeError:
        with pytest.raises(ValueError):
            conv_output_shape((i, h), k, stride=s, padding=p, dilation=d)
        return
    assert conv_output_shape((i, h), k, stride=s, padding=p, dilation=d) == expected


@pytest.mark.parametrize(
    "kwargs, rule",
    [
        (dict(stride=0), "stride"),
        (dict(dilation=0), "dilation"),
        (dict(output_padding=2, stride=2), "output_padding"),
        (dict(padding=-1), "padding"),
    ],
)
def test_invalid_parameters_name_the_rule(kwargs, rule):
    with pytest.raises(ValueError, match=rule):
        conv_transpose_output_shape(4, 3, **kwargs)
