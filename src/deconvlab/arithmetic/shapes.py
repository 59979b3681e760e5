"""Shape arithmetic for convolution and transposed convolution, as small pure functions.

Every function works per spatial axis: an int gives an int, a tuple gives a tuple.
The formulas are PyTorch's (see ``torch.nn.Conv2d`` and ``torch.nn.ConvTranspose2d``) and
Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IntOrTuple = int | Sequence[int]


def as_tuple(value: IntOrTuple, ndim: int, name: str) -> tuple[int, ...]:
    """Broadcast an int to ``ndim`` axes, or check a sequence has ``ndim`` ints.

    >>> as_tuple(3, 2, "kernel_size")
    (3, 3)
    >>> as_tuple((1, 2), 2, "stride")
    (1, 2)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected an int or a tuple of {ndim} ints, not a bool")
    if isinstance(value, int):
        return (value,) * ndim
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f"{name}={value!r}: expected an int or a tuple of {ndim} ints") from None
    if len(values) != ndim or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name}={value!r}: expected an int or a tuple of {ndim} ints")
    return values


def check_positive(values: tuple[int, ...], name: str) -> None:
    """Raise ValueError unless every value is >= 1 (stride, dilation, kernel size)."""
    if any(v < 1 for v in values):
        raise ValueError(f"{name}={values if len(values) > 1 else values[0]!r}: must be positive (>= 1)")


def check_non_negative(values: tuple[int, ...], name: str) -> None:
    """Raise ValueError unless every value is >= 0 (padding, output_padding)."""
    if any(v < 0 for v in values):
        raise ValueError(f"{name}={values if len(values) > 1 else values[0]!r}: must be >= 0")


def _per_axis(fn, input_size: IntOrTuple, **params: IntOrTuple):
    """Apply a one-axis function over every axis; unwrap if the input size was an int."""
    scalar = isinstance(input_size, int)
    ndim = 1 if scalar else len(tuple(input_size))
    sizes = as_tuple(input_size, ndim, "input_size")
    per_axis = {name: as_tuple(value, ndim, name) for name, value in params.items()}
    out = tuple(
        fn(size, **{name: v[axis] for name, v in per_axis.items()}) for axis, size in enumerate(sizes)
    )
    return out[0] if scalar else out


def _conv_axis(i: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    check_positive((kernel_size,), "kernel_size")
    check_positive((stride,), "stride")
    check_positive((dilation,), "dilation")
    check_non_negative((padding,), "padding")
    check_positive((i,), "input_size")
    # o = floor((i + 2p - d(k-1) - 1) / s) + 1
    span = i + 2 * padding - dilation * (kernel_size - 1)
    if span < 1:
        raise ValueError(
            f"input_size={i} with padding={padding}: the output would be empty, the padded input "
            f"({i + 2 * padding}) is smaller than the dilated kernel ({dilation * (kernel_size - 1) + 1})"
        )
    return (span - 1) // stride + 1


def conv_output_shape(
    input_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
):
    """Output size of a convolution: ``floor((i + 2p - d(k-1) - 1) / s) + 1``.

    >>> conv_output_shape(5, 3, stride=2, padding=1)   # floor((5 + 2 - 2 - 1) / 2) + 1
    3
    >>> conv_output_shape((224, 224), 7, stride=2, padding=1)
    (110, 110)
    """
    return _per_axis(
        _conv_axis, input_size, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation
    )


def _check_output_padding(output_padding: int, stride: int, dilation: int) -> None:
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding}: must be smaller than stride ({stride}) or dilation "
            f"({dilation}), i.e. < {max(stride, dilation)}"
        )


def _conv_transpose_axis(
    i: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    check_positive((kernel_size,), "kernel_size")
    check_positive((stride,), "stride")
    check_positive((dilation,), "dilation")
    check_non_negative((padding,), "padding")
    check_non_negative((output_padding,), "output_padding")
    check_positive((i,), "input_size")
    _check_output_padding(output_padding, stride, dilation)
    # o = (i - 1)s - 2p + d(k-1) + output_padding + 1
    out = (i - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(
            f"padding={padding}: the output would be empty ((i-1)s - 2p + d(k-1) + op + 1 = {out}); "
            f"padding crops more than the transposed convolution produces"
        )
    return out


def conv_transpose_output_shape(
    input_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
):
    """Output size of a transposed convolution: ``(i-1)s - 2p + d(k-1) + output_padding + 1``.

    >>> conv_transpose_output_shape(3, 3, stride=2, padding=1, output_padding=1)  # 4 - 2 + 2 + 1 + 1
    6
    >>> conv_transpose_output_shape((2, 3), (2, 2), stride=2)
    (4, 6)
    """
    return _per_axis(
        _conv_transpose_axis,
        input_size,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )


@dataclass(frozen=True)
class DirectConv:
    """One axis of the direct convolution that equals a transposed convolution.

    Insert ``zeros_between`` zeros between input cells, pad ``pad_before`` / ``pad_after`` zeros
    (a negative amount crops), then slide the spatially *flipped* kernel with stride 1 and the same
    dilation. ``pad_after`` exceeds ``pad_before`` by the output_padding.
    """

    input_size: int
    zeros_between: int
    stretched_size: int
    pad_before: int
    pad_after: int
    kernel_size: int
    dilation: int
    output_size: int
    stride: int = 1
    flipped: bool = True


def _direct_axis(
    i: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> DirectConv:
    out = _conv_transpose_axis(i, kernel_size, stride, padding, output_padding, dilation)
    edge = dilation * (kernel_size - 1) - padding  # p' = d(k-1) - p
    return DirectConv(
        input_size=i,
        zeros_between=stride - 1,
        stretched_size=(i - 1) * stride + 1,
        pad_before=edge,
        pad_after=edge + output_padding,
        kernel_size=kernel_size,
        dilation=dilation,
        output_size=out,
    )


def equivalent_direct_conv(
    input_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
):
    """The direct convolution equal to a transposed one (Dumoulin & Visin, relationships 8-14).

    Generalised to dilation and output_padding: zeros between inputs ``s - 1``, padding
    ``d(k-1) - p`` before and ``d(k-1) - p + output_padding`` after, stride 1, kernel flipped.

    >>> plan = equivalent_direct_conv(3, 3, stride=2, padding=1, output_padding=1)
    >>> (plan.zeros_between, plan.stretched_size, plan.pad_before, plan.pad_after, plan.output_size)
    (1, 5, 1, 2, 6)
    """
    return _per_axis(
        _direct_axis,
        input_size,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )
