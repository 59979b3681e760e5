"""Checked parameters of one convolution or transposed convolution, per spatial axis.

Every public function of ``deconvlab.arithmetic`` turns its arguments into a geometry first, so
bad input stops here with a ``ValueError`` that names the parameter, quotes its value and states
the rule, before any array arithmetic could fail with a broadcasting error.
"""

from __future__ import annotations

from dataclasses import dataclass

from deconvlab.arithmetic.shapes import (
    IntOrTuple,
    as_tuple,
    check_positive,
    conv_output_shape,
    conv_transpose_output_shape,
)

Padding = IntOrTuple | str
PADDING_MODES = ("valid", "same", "full")


@dataclass(frozen=True)
class ConvGeometry:
    """A direct convolution (N, in_channels, *input_size) -> (N, out_channels, *output_size).

    Padding is stored per axis as zeros added before and after ('same' with an even kernel pads
    one more zero after than before, as PyTorch does).
    """

    in_channels: int
    out_channels: int
    groups: int
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    output_size: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.input_size)


@dataclass(frozen=True)
class TransposeGeometry:
    """A transposed convolution (N, in_channels, *input_size) -> (N, out_channels, *output_size)."""

    in_channels: int
    out_channels: int
    groups: int
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    output_size: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.input_size)

    @property
    def adjoint(self) -> ConvGeometry:
        """The direct convolution whose adjoint (then cropped) this transposed convolution is.

        It maps this output back to the input's channels, with the same weight read as
        (out_channels=in_channels, in_channels/groups, *kernel). When output_padding >= stride
        (possible if dilation > stride) it produces ``input_size + output_padding // stride``
        outputs per axis, more than this input has: the extra rows are cropped.
        """
        return conv_geometry(
            (self.out_channels, *self.output_size),
            (self.in_channels, self.out_channels // self.groups, *self.kernel_size),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as Python prints a tuple: ``(5,)``, ``(2, 3)``."""
    return "(" + ", ".join(str(v) for v in shape) + ("," if len(shape) == 1 else "") + ")"


def _axis_values(value: IntOrTuple, ndim: int, name: str, minimum: int) -> tuple[int, ...]:
    """One int per spatial axis, each at least ``minimum``; the error quotes the value as given."""
    values = as_tuple(value, ndim, name)
    if any(v < minimum for v in values):
        rule = "must be positive (>= 1)" if minimum == 1 else f"must be >= {minimum}"
        raise ValueError(f"{name}={value!r}: {rule}")
    return values


def check_groups(groups: int, channels: dict[str, int]) -> None:
    """Raise ValueError unless ``groups`` is a positive int dividing every named channel count."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups={groups!r}: must be a positive int")
    counts = " and ".join(f"{name} ({count})" for name, count in channels.items())
    for name, count in channels.items():
        if count % groups:
            which = f"; it does not divide {name} ({count})" if len(channels) > 1 else ""
            raise ValueError(f"groups={groups}: must divide {counts}{which}")


def _check_arrays(input_shape: tuple[int, ...], weight_shape: tuple[int, ...], what: str) -> int:
    """Check ranks: the input is (C, *spatial) per sample, the weight (A, B, *kernel)."""
    if len(input_shape) < 2:
        raise ValueError(
            f"input_shape={shape_text(input_shape)}: expected (C, *spatial) for one sample, with at "
            f"least one spatial axis"
        )
    ndim = len(input_shape) - 1
    if len(weight_shape) != ndim + 2:
        raise ValueError(
            f"w.shape={shape_text(weight_shape)}: expected {ndim + 2} axes, {what}, to match an input "
            f"with {ndim} spatial axes"
        )
    check_positive(tuple(weight_shape[2:]), "kernel_size")
    check_positive(tuple(input_shape[1:]), "input_size")
    return ndim


def _resolve_padding(
    padding: Padding, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Zeros before and after each axis for an int, a tuple, 'valid', 'same' or 'full'."""
    ndim = len(kernel)
    span = tuple(d * (k - 1) for k, d in zip(kernel, dilation, strict=True))
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * ndim, (0,) * ndim
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' with stride={stride if ndim > 1 else stride[0]}: 'same' needs "
                    f"stride 1 (as in PyTorch)"
                )
            before = tuple(total // 2 for total in span)
            return before, tuple(total - b for total, b in zip(span, before, strict=True))
        if padding == "full":
            return span, span
        raise ValueError(f"padding={padding!r}: expected an int, a tuple of ints, or one of {PADDING_MODES}")
    pads = _axis_values(padding, ndim, "padding", 0)
    return pads, pads


def conv_geometry(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> ConvGeometry:
    """Check a direct convolution of one sample ``(C_in, *S)`` by a weight ``(C_out, C_in/groups, *K)``.

    >>> g = conv_geometry((3, 5, 7), (4, 3, 3, 3), stride=2, padding=1)
    >>> g.output_size, g.out_channels
    ((3, 4), 4)
    """
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    ndim = _check_arrays(input_shape, weight_shape, "(C_out, C_in/groups, *kernel)")
    in_channels, out_channels = input_shape[0], weight_shape[0]
    check_groups(groups, {"the input channels": in_channels, "the output channels": out_channels})
    if weight_shape[1] * groups != in_channels:
        raise ValueError(
            f"w.shape={shape_text(weight_shape)} and x has {in_channels} channels: the weight's "
            f"C_in/groups axis is {weight_shape[1]}, so with groups={groups} the input must have "
            f"{weight_shape[1] * groups} channels (weight and input channels disagree)"
        )
    kernel = weight_shape[2:]
    stride_t, dilation_t = (
        _axis_values(stride, ndim, "stride", 1),
        _axis_values(dilation, ndim, "dilation", 1),
    )
    before, after = _resolve_padding(padding, kernel, stride_t, dilation_t)
    spatial = input_shape[1:]
    for axis, (size, k, d, b, a) in enumerate(zip(spatial, kernel, dilation_t, before, after, strict=True)):
        if size + b + a < d * (k - 1) + 1:
            raise ValueError(
                f"padding={padding!r}: the output would be empty along spatial axis {axis}: the padded "
                f"input ({size} + {b} + {a} = {size + b + a}) is smaller than the dilated kernel "
                f"(dilation*(kernel-1)+1 = {d * (k - 1) + 1})"
            )
    padded = tuple(size + b + a for size, b, a in zip(spatial, before, after, strict=True))
    output = conv_output_shape(padded, kernel, stride=stride_t, padding=0, dilation=dilation_t)
    return ConvGeometry(
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        input_size=spatial,
        kernel_size=kernel,
        stride=stride_t,
        dilation=dilation_t,
        pad_before=before,
        pad_after=after,
        output_size=output,
    )


def transpose_geometry(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> TransposeGeometry:
    """Check a transposed convolution of one sample ``(C_in, *S)`` by a weight ``(C_in, C_out/groups, *K)``.

    >>> g = transpose_geometry((4, 3, 4), (4, 3, 3, 3), stride=2, padding=1, output_padding=1)
    >>> g.output_size, g.out_channels
    ((6, 8), 3)
    """
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    ndim = _check_arrays(input_shape, weight_shape, "(C_in, C_out/groups, *kernel)")
    if isinstance(padding, str):
        raise ValueError(
            f"padding={padding!r}: a transposed convolution takes int or tuple padding only "
            f"(PyTorch's ConvTranspose has no 'same' or 'valid')"
        )
    in_channels = input_shape[0]
    if weight_shape[0] != in_channels:
        raise ValueError(
            f"w.shape={shape_text(weight_shape)} and x has {in_channels} channels: a transposed "
            f"convolution's weight is (C_in, C_out/groups, *kernel), so its first axis must be {in_channels} "
            f"(weight and input channels disagree)"
        )
    check_groups(groups, {"the input channels": in_channels})
    out_channels = weight_shape[1] * groups
    params = {
        "stride": _axis_values(stride, ndim, "stride", 1),
        "padding": _axis_values(padding, ndim, "padding", 0),
        "output_padding": _axis_values(output_padding, ndim, "output_padding", 0),
        "dilation": _axis_values(dilation, ndim, "dilation", 1),
    }
    output = conv_transpose_output_shape(input_shape[1:], weight_shape[2:], **params)
    return TransposeGeometry(
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        input_size=input_shape[1:],
        kernel_size=weight_shape[2:],
        output_size=output,
        **params,
    )
