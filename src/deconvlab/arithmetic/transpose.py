"""Transposed convolution (``torch.nn.functional.conv_transpose{1,2,3}d``) computed five ways.

All five give the same numbers (the tests hold them to 1e-10 in float64):

- ``"scatter"``: the definition, and the tests' oracle. Every input element ``x[i]`` adds its
  weighted kernel into the output at ``i*stride + k*dilation - padding``; the Python loop runs
  over kernel taps k, each tap one strided add of a channel contraction.
- ``"col2im"`` (the default, ``method=None``): one GEMM for all taps at once (weight^T @ input,
  "columns"), then col2im: one strided add per tap. Fewer, larger BLAS calls than scatter.
- ``"zero_insert"``: the fractionally strided convolution. Insert stride-1 zeros between input
  elements, pad dilation*(k-1)-padding before and that plus output_padding after (negative crops),
  then ``conv`` with stride 1 and the kernel flipped along every spatial axis, its in/out
  channels swapped within each group: the paper's "flipping each filter vertically and
  horizontally".
- ``"matrix"``: ``vec(y) = C^T vec(x)`` with ``C = conv_matrix(...)`` of the adjoint convolution.
- ``"gradient"``: the gradient of ``torch.nn.functional.conv{1,2,3}d`` with respect to its input,
  by autograd, seeded with x (torch imported only here).

The adjoint convolution maps the transposed output back to x's shape. When
stride <= output_padding < dilation it gives ``input_size + output_padding // stride`` outputs per
axis, more than x has: conv_transpose is the adjoint of that convolution followed by cropping, so
"matrix" and "gradient" pad x with zeros to that size (equivalently, drop C's extra rows).
"""

from __future__ import annotations

import itertools

import numpy as np

from deconvlab.arithmetic.conv import add_bias, as_float_arrays, conv, pad_or_crop
from deconvlab.arithmetic.geometry import TransposeGeometry, transpose_geometry
from deconvlab.arithmetic.matrix import conv_matrix
from deconvlab.arithmetic.shapes import IntOrTuple, equivalent_direct_conv

DEFAULT_METHOD = "col2im"


def _taps(geo: TransposeGeometry):
    """Every kernel offset (a tuple per tap) with the output slice it scatters into.

    The slice is taken in the uncropped output, whose axis has ``(i-1)*s + d*(k-1) + 1 +
    output_padding`` cells; tap k of input i lands at ``i*s + k*d``.
    """
    for tap in itertools.product(*(range(k) for k in geo.kernel_size)):
        where = tuple(
            slice(t * d, t * d + (i - 1) * s + 1, s)
            for t, d, i, s in zip(tap, geo.dilation, geo.input_size, geo.stride, strict=True)
        )
        yield tap, (slice(None), slice(None)) + where


def _accumulate(contributions, geo: TransposeGeometry, n: int, dtype) -> np.ndarray:
    """Sum per-tap contributions (N, C_out, *input_size) into the output, then crop the padding."""
    uncropped = tuple(
        (i - 1) * s + d * (k - 1) + 1 + op
        for i, s, d, k, op in zip(
            geo.input_size, geo.stride, geo.dilation, geo.kernel_size, geo.output_padding, strict=True
        )
    )
    y = np.zeros((n, geo.out_channels, *uncropped), dtype)
    for where, part in contributions:
        y[where] += part
    return y[
        (slice(None), slice(None))
        + tuple(slice(p, p + o) for p, o in zip(geo.padding, geo.output_size, strict=True))
    ]


def _grouped(w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    """The weight as (groups, C_in/groups, C_out/groups, *K)."""
    g = geo.groups
    return w.reshape(g, geo.in_channels // g, geo.out_channels // g, *geo.kernel_size)


def _scatter(x: np.ndarray, w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    n, g = x.shape[0], geo.groups
    xg = x.reshape(n, g, geo.in_channels // g, -1)
    wg = _grouped(w, geo)

    def contributions():
        for tap, where in _taps(geo):
            part = np.einsum("ngci,gco->ngoi", xg, wg[(Ellipsis, *tap)])
            yield where, part.reshape(n, geo.out_channels, *geo.input_size)

    return _accumulate(contributions(), geo, n, x.dtype)


def _col2im(x: np.ndarray, w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    n, g = x.shape[0], geo.groups
    xg = x.reshape(n, g, geo.in_channels // g, -1)
    wt = _grouped(w, geo).reshape(g, geo.in_channels // g, -1).transpose(0, 2, 1)  # (g, C_out/g*K, C_in/g)
    columns = np.matmul(wt, xg)  # (N, g, C_out/g * K, prod(input_size)): one GEMM per sample and group
    columns = columns.reshape(n, geo.out_channels, *geo.kernel_size, *geo.input_size)
    contributions = ((where, columns[(slice(None), slice(None), *tap)]) for tap, where in _taps(geo))
    return _accumulate(contributions, geo, n, x.dtype)


def flipped_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A transposed convolution's weight (C_in, C_out/g, *K) as the direct conv weight (C_out, C_in/g, *K).

    In/out channels are swapped within each group and every spatial axis is reversed.

    >>> flipped_weight(np.arange(6.0).reshape(1, 2, 3), 1)   # C_in=1, C_out=2, K=3
    array([[[2., 1., 0.]],
    <BLANKLINE>
           [[5., 4., 3.]]])
    """
    c_in, c_out_g, *kernel = w.shape
    swapped = w.reshape(groups, c_in // groups, c_out_g, *kernel).swapaxes(1, 2)
    direct = swapped.reshape(groups * c_out_g, c_in // groups, *kernel)
    return np.flip(direct, axis=tuple(range(2, direct.ndim)))


def _zero_insert(x: np.ndarray, w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    plans = equivalent_direct_conv(
        geo.input_size,
        geo.kernel_size,
        stride=geo.stride,
        padding=geo.padding,
        output_padding=geo.output_padding,
        dilation=geo.dilation,
    )
    stretched = np.zeros(x.shape[:2] + tuple(p.stretched_size for p in plans), x.dtype)
    stretched[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in geo.stride)] = x
    padded = pad_or_crop(stretched, tuple(p.pad_before for p in plans), tuple(p.pad_after for p in plans))
    return conv(padded, flipped_weight(w, geo.groups), dilation=geo.dilation, groups=geo.groups)


def _adjoint_seed(x: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    """x padded with zeros at the end to the adjoint convolution's output size (the cropped rows)."""
    extra = tuple(a - i for a, i in zip(geo.adjoint.output_size, geo.input_size, strict=True))
    return pad_or_crop(x, (0,) * geo.ndim, extra)


def _matrix(x: np.ndarray, w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    C = conv_matrix(
        (geo.out_channels, *geo.output_size),
        w,
        stride=geo.stride,
        padding=geo.padding,
        dilation=geo.dilation,
        groups=geo.groups,
    )
    seed = _adjoint_seed(x, geo).reshape(x.shape[0], -1)
    y = (C.T @ seed.T).T
    return np.asarray(y, x.dtype).reshape(x.shape[0], geo.out_channels, *geo.output_size)


def _gradient(x: np.ndarray, w: np.ndarray, geo: TransposeGeometry) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    convs = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
    if geo.ndim not in convs:
        raise ValueError(f"method='gradient': torch has conv1d/2d/3d only, x has {geo.ndim} spatial axes")
    u = torch.from_numpy(np.zeros((x.shape[0], geo.out_channels, *geo.output_size), x.dtype))
    u.requires_grad_(True)
    weight = torch.from_numpy(np.ascontiguousarray(w))
    y = convs[geo.ndim](
        u, weight, stride=geo.stride, padding=geo.padding, dilation=geo.dilation, groups=geo.groups
    )
    seed = torch.from_numpy(np.ascontiguousarray(_adjoint_seed(x, geo)))
    (grad,) = torch.autograd.grad(y, u, grad_outputs=seed)
    return grad.numpy()


METHODS = {
    "col2im": _col2im,
    "scatter": _scatter,
    "zero_insert": _zero_insert,
    "matrix": _matrix,
    "gradient": _gradient,
}


def conv_transpose(
    x,
    w,
    bias=None,
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    method: str | None = None,
) -> np.ndarray:
    """Transposed convolution exactly as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    x is (N, C_in, *S), w is (C_in, C_out/groups, *K) (PyTorch's ConvTranspose layout). method is
    one of ``METHODS`` ("col2im", "scatter", "zero_insert", "matrix", "gradient"); None means
    "col2im", the fastest. Output size per axis: (S-1)*stride - 2*padding + dilation*(K-1) +
    output_padding + 1.

    >>> x = np.array([[[1.0, 2.0]]])                 # N=1, C_in=1, length 2
    >>> w = np.array([[[1.0, 10.0, 100.0]]])         # C_in=1, C_out=1, kernel 3
    >>> conv_transpose(x, w, stride=2)               # 1*w at 0..2, 2*w at 2..4
    array([[[  1.,  10., 102.,  20., 200.]]])
    >>> conv_transpose(x, w, stride=2, padding=1, output_padding=1, method="scatter")
    array([[[ 10., 102.,  20., 200.]]])
    """
    if method is not None and method not in METHODS:
        raise ValueError(f"method={method!r}: expected None or one of {tuple(METHODS)}")
    x, w, bias = as_float_arrays(x, w, bias)
    geo = transpose_geometry(
        x.shape[1:],
        w.shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    y = METHODS[method or DEFAULT_METHOD](x, w, geo)
    return add_bias(y, bias)
