"""A convolution as a sparse matrix C, and why its transpose is not its inverse.

For one sample, ``conv(x)`` is linear in x, so ``vec(conv(x)) = C @ vec(x)`` for a matrix C
(rows: output (channel, position), columns: input (channel, position), both in C order).
The transposed convolution is ``C.T``; the pseudo-inverse is ``C^+ = C^T (C C^T)^-1`` when C has
full row rank. They coincide up to a scale only when the windows do not overlap and every window
sees the whole kernel with one channel (stride equal to kernel, no padding): then C C^T = ||w||^2 I.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from deconvlab.arithmetic.geometry import Padding, conv_geometry
from deconvlab.arithmetic.shapes import IntOrTuple

DENSE_LIMIT = 4096  # transpose_vs_inverse forms dense matrices and an SVD: keep them small


def _grid(shape: tuple[int, ...]) -> np.ndarray:
    """Every index of an array of this shape, in C order, as rows of a (prod(shape), ndim) array."""
    return np.indices(shape).reshape(len(shape), -1).T


def conv_matrix(
    input_shape: tuple[int, ...],
    w,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> scipy.sparse.csr_array:
    """The sparse matrix C of ``conv`` on one sample of shape ``input_shape = (C_in, *S)``.

    ``C @ x.ravel() == conv(x[None], w, ...).ravel()``; C has one row per output element and one
    column per input element; entry (row (o_c, o), column (i_c, i)) is ``w[o_c, i_c % (C_in/groups), k]``
    where ``i = o*stride - pad_before + k*dilation``.

    >>> C = conv_matrix((1, 4), np.array([[[1.0, 2.0]]]), stride=2)   # windows (0,1) and (2,3)
    >>> C.toarray()
    array([[1., 2., 0., 0.],
           [0., 0., 1., 2.]])
    """
    w = np.asarray(w)
    geo = conv_geometry(
        input_shape, w.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    outputs, taps = _grid(geo.output_size), _grid(geo.kernel_size)
    # source position of output o and tap k: o*stride - pad_before + k*dilation
    source = (
        outputs[:, None, :] * np.array(geo.stride)
        - np.array(geo.pad_before)
        + taps[None, :, :] * np.array(geo.dilation)
    )
    inside = np.all((source >= 0) & (source < np.array(geo.input_size)), axis=-1)
    out_index, tap_index = np.nonzero(inside)  # pairs whose source is not padding
    in_index = np.ravel_multi_index(tuple(source[out_index, tap_index].T), geo.input_size)

    in_per_group, out_per_group = geo.in_channels // groups, geo.out_channels // groups
    out_channel = np.arange(geo.out_channels)[:, None, None]
    in_channel = (out_channel // out_per_group) * in_per_group + np.arange(in_per_group)[None, :, None]
    values = w.reshape(geo.out_channels, in_per_group, -1)[:, :, tap_index]
    rows = np.broadcast_to(out_channel * math.prod(geo.output_size) + out_index, values.shape)
    cols = in_channel * math.prod(geo.input_size) + in_index
    shape = (geo.out_channels * math.prod(geo.output_size), geo.in_channels * math.prod(geo.input_size))
    return scipy.sparse.csr_array((values.ravel(), (rows.ravel(), cols.ravel())), shape=shape)


@dataclass(frozen=True)
class TransposeVsInverse:
    """How far the transpose C^T and the pseudo-inverse C^+ are from undoing a convolution C.

    Norms of matrices are spectral (largest singular value): 0 means an exact inverse on that side.
    Reconstruction errors are relative, ``||R C x - x|| / ||x||`` for R = C^T or C^+.
    """

    matrix_shape: tuple[int, int]
    rank: int
    transpose_gram_error: float  # ||C^T C - I||
    pinv_gram_error: float  # ||C^+ C - I||
    transpose_reconstruction_error: float
    pinv_reconstruction_error: float
    weight_norm_squared: float  # ||w||^2
    pinv_is_scaled_transpose: bool  # C^+ == C^T / ||w||^2 (to 1e-10 relative)


def transpose_vs_inverse(
    input_shape: tuple[int, ...],
    w,
    x=None,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> TransposeVsInverse:
    """Compare C^T and C^+ as inverses of the convolution C (small sizes: dense SVD inside).

    x, one sample of ``input_shape``, defaults to standard normal numbers (seed 0).

    Overlapping windows (kernel 3, stride 1): the transpose does not undo C; here C is wide
    (3 outputs, 5 inputs), so nothing can, and even C^+ only projects onto its row space.

    >>> r = transpose_vs_inverse((1, 5), np.array([[[1.0, 2.0, 1.0]]]))
    >>> r.matrix_shape, r.rank, r.transpose_gram_error > 1, round(r.pinv_gram_error, 6)
    ((3, 5), 3, True, 1.0)

    Stride equal to kernel, one channel: C^+ is C^T scaled by 1 / ||w||^2 = 1/5.

    >>> transpose_vs_inverse((1, 6), np.array([[[1.0, 2.0]]]), stride=2).pinv_is_scaled_transpose
    True
    """
    w = np.asarray(w, dtype=np.float64)
    C = conv_matrix(input_shape, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if max(C.shape) > DENSE_LIMIT:
        raise ValueError(
            f"input_shape={tuple(input_shape)}: C is {C.shape[0]}x{C.shape[1]}; transpose_vs_inverse forms "
            f"dense matrices, so both sides must be at most {DENSE_LIMIT}"
        )
    dense = C.toarray()
    pinv = np.linalg.pinv(dense)
    x = np.random.default_rng(0).standard_normal(C.shape[1]) if x is None else np.asarray(x, float).ravel()
    if x.size != C.shape[1]:
        raise ValueError(f"x has {x.size} elements: expected one sample of input_shape={tuple(input_shape)}")
    identity = np.eye(C.shape[1])
    norm_w = float(np.sum(w**2))
    scaled = dense.T / norm_w
    return TransposeVsInverse(
        matrix_shape=C.shape,
        rank=int(np.linalg.matrix_rank(dense)),
        transpose_gram_error=float(np.linalg.norm(dense.T @ dense - identity, 2)),
        pinv_gram_error=float(np.linalg.norm(pinv @ dense - identity, 2)),
        transpose_reconstruction_error=float(np.linalg.norm(dense.T @ (dense @ x) - x) / np.linalg.norm(x)),
        pinv_reconstruction_error=float(np.linalg.norm(pinv @ (dense @ x) - x) / np.linalg.norm(x)),
        weight_norm_squared=norm_w,
        pinv_is_scaled_transpose=bool(np.allclose(pinv, scaled, rtol=0, atol=1e-10 * np.abs(scaled).max())),
    )
