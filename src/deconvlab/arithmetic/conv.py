"""Direct convolution (cross-correlation, as ``torch.nn.functional.conv{1,2,3}d``) in NumPy.

The JAX way (``jax/_src/lax_reference.py``): pad, take a strided window view of the input
(``sliding_window_view``; no copy), then contract channels and kernel taps with the weight
(``tensordot``, one BLAS call per group). No kernel flip: like PyTorch, ``conv`` correlates,
``y[o] = sum_k w[k] x[o*stride + k*dilation - padding]``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from deconvlab.arithmetic.geometry import ConvGeometry, Padding, conv_geometry, shape_text
from deconvlab.arithmetic.shapes import IntOrTuple


def as_float_arrays(x, w, bias=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Arrays in one floating dtype: float32 stays float32, float64 stays float64, ints become float64."""
    arrays = [np.asarray(a) for a in (x, w) + (() if bias is None else (bias,))]
    dtype = np.result_type(*arrays)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    x, w, *rest = (a.astype(dtype, copy=False) for a in arrays)
    if x.ndim < 3:
        raise ValueError(
            f"x.shape={shape_text(x.shape)}: expected a batch (N, C, *spatial) with at least one spatial axis"
        )
    return x, w, (rest[0] if rest else None)


def add_bias(y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Add one value per output channel (axis 1); check there is exactly one per channel."""
    if bias is None:
        return y
    if bias.shape != (y.shape[1],):
        raise ValueError(
            f"bias.shape={shape_text(bias.shape)}: expected ({y.shape[1]},), one value per output channel"
        )
    return y + bias.reshape(1, -1, *(1,) * (y.ndim - 2))


def pad_or_crop(x: np.ndarray, before: tuple[int, ...], after: tuple[int, ...]) -> np.ndarray:
    """Add zeros around every spatial axis (axes 2...); a negative amount crops instead.

    Pads first, then crops, so a crop larger than the input eats into the other side's zeros.

    >>> pad_or_crop(np.arange(1.0, 5.0).reshape(1, 1, 4), (1,), (-2,))
    array([[[0., 1., 2.]]])
    """
    widths = [(0, 0), (0, 0)] + [(max(b, 0), max(a, 0)) for b, a in zip(before, after, strict=True)]
    padded = np.pad(x, widths)
    return padded[
        (slice(None), slice(None))
        + tuple(
            slice(max(-b, 0), size - max(-a, 0))
            for size, b, a in zip(padded.shape[2:], before, after, strict=True)
        )
    ]


def window_view(
    xp: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> np.ndarray:
    """A (N, C, *out, *kernel) view of a padded input: ``view[n, c, o, k] = xp[n, c, o*stride + k*dilation]``.

    >>> window_view(np.arange(6.0).reshape(1, 1, 6), (2,), (2,), (3,))[0, 0]
    array([[0., 3.],
           [2., 5.]])
    """
    ndim = len(kernel)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    windows = sliding_window_view(xp, span, axis=tuple(range(2, 2 + ndim)))
    every = (slice(None), slice(None))
    return windows[
        every + tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, d) for d in dilation)
    ]


def correlate(xp: np.ndarray, w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Stride-``geo.stride`` cross-correlation of an already padded batch, one tensordot per group."""
    n, g, ndim = xp.shape[0], geo.groups, geo.ndim
    windows = window_view(xp, geo.kernel_size, geo.stride, geo.dilation)
    windows = windows.reshape(n, g, geo.in_channels // g, *windows.shape[2:])
    wg = w.reshape(g, geo.out_channels // g, *w.shape[1:])
    taps = list(range(2 + ndim, 2 + 2 * ndim))  # kernel axes of one group's windows (N, C, *out, *k)
    per_group = [
        np.tensordot(windows[:, j], wg[j], axes=([1, *taps], [1, *range(2, 2 + ndim)])) for j in range(g)
    ]  # each (N, *out, C_out/g)
    y = np.moveaxis(np.stack(per_group, axis=1), -1, 2)  # (N, g, C_out/g, *out)
    return y.reshape(n, geo.out_channels, *geo.output_size)


def conv(
    x,
    w,
    bias=None,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolution exactly as ``torch.nn.functional.conv{1,2,3}d`` (any number of spatial axes).

    x is (N, C_in, *S), w is (C_out, C_in/groups, *K). padding is an int, a tuple, or 'valid',
    'same' (stride 1 only, the extra zero of an even kernel goes after, as in PyTorch) or 'full'
    (dilation*(K-1) zeros each side). float32 stays float32, float64 stays float64.

    >>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])        # N=1, C=1, length 4
    >>> w = np.array([[[1.0, 10.0]]])                  # C_out=1, C_in=1, kernel 2
    >>> conv(x, w)                                     # 1*1+10*2, 1*2+10*3, 1*3+10*4
    array([[[21., 32., 43.]]])
    >>> conv(x, w, stride=2, padding=1)                # windows (0,1), (2,3), (4,0)
    array([[[10., 32.,  4.]]])
    """
    x, w, bias = as_float_arrays(x, w, bias)
    geo = conv_geometry(
        x.shape[1:], w.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    y = correlate(pad_or_crop(x, geo.pad_before, geo.pad_after), w, geo)
    return add_bias(y, bias)
