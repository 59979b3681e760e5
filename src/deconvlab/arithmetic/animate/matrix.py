"""The matrix picture: C and C^T of a small case, each entry coloured by the kernel weight it holds.

The entries come from the core's :func:`deconvlab.arithmetic.conv_matrix`, called with the kernel
``w[k] = 1 + flat index of k``, so that an entry's value names its weight. A transposed case draws the
convolution C it is the transpose of (input: the transposed output), then C^T, its own matrix.

>>> from deconvlab.arithmetic.animate.model import make_case
>>> frame = matrix_picture(make_case(4, 2, stride=2, ndim=1))
>>> [panel.shape for panel in frame.panels]          # C: 2 outputs x 4 inputs, and C^T
[(2, 4), (4, 2)]
>>> sorted(frame.panels[0].footprint.items())        # (row, col) -> kernel index
[((0, 0), (0, 0)), ((0, 1), (0, 1)), ((1, 2), (0, 0)), ((1, 3), (0, 1))]
"""

from __future__ import annotations

import math

import numpy as np

from deconvlab.arithmetic.animate.captions import parameter_line
from deconvlab.arithmetic.animate.model import Case, Frame, Kind, Panel, kernel_label
from deconvlab.arithmetic.matrix import conv_matrix

MAX_SIDE = 100  # rows or columns of C: beyond this the cells are too small to read


def kernel_index_matrix(case: Case) -> np.ndarray:
    """C as an integer array: -1 for a zero entry, else the flat index of the weight it holds.

    With channels, the index runs over the whole weight ``case.weight_shape`` and C is made of
    (channel x channel) blocks; a block outside a group is zero. A transposed case's C is the
    convolution from its output channels to its input channels: the same weight array.
    """
    conv_input = case.output_size if case.transposed else case.input_size
    conv_channels = case.out_channels if case.transposed else case.in_channels
    shape = (*case.weight_shape[:2], *case.kernel_size)
    labels = np.arange(1, math.prod(shape) + 1, dtype=float).reshape(shape)
    C = conv_matrix((conv_channels, *conv_input), labels, stride=case.stride, padding=case.padding,
                    dilation=case.dilation, groups=case.groups)
    return C.toarray().astype(int) - 1


def _panel(title: str, index: np.ndarray, case: Case) -> Panel:
    cells = np.argwhere(index >= 0)
    taps = math.prod(case.kernel_size)
    footprint = {(int(r), int(c)): divmod(int(index[r, c]) % taps, case.kernel_size[1]) for r, c in cells}
    text = {cell: kernel_label(k, case.ndim) for cell, k in footprint.items()}
    subtext = {}
    if case.channels:  # which kernel slice w[a, b]: the channel block
        slices = case.weight_shape[1]
        subtext = {
            (int(r), int(c)): "{},{}".format(*divmod(int(index[r, c]) // taps, slices)) for r, c in cells
        }
    roles = np.full(index.shape, Kind.ZERO, dtype=np.int8)
    return Panel(title, roles, footprint=footprint, text=text, subtext=subtext, kernel_colours=True,
                 kernel_shape=case.kernel_size)


def matrix_picture(case: Case) -> Frame:
    """One frame with C and C^T side by side (cells: kernel weight index; rows and columns in C order)."""
    index = kernel_index_matrix(case)
    if max(index.shape) > MAX_SIDE:
        raise ValueError(
            f"input_size={case.input_size[2 - case.ndim:]}: C would be {index.shape[0]}×{index.shape[1]}; "
            f"the matrix picture is for small cases (at most {MAX_SIDE} rows and columns)"
        )
    rows, cols = index.shape
    if case.transposed:
        names = (f"C {rows}×{cols}: the convolution y → x this transposes", f"Cᵀ {cols}×{rows}: this "
                 "transposed convolution, x → y")
        step = "Cᵀ's column j holds the kernel stamped by input cell j: the scatter view; its rows are the " \
               "direct view's windows, the kernel read backwards (flipped)"
    else:
        names = (f"C {rows}×{cols}: the convolution x → y", f"Cᵀ {cols}×{rows}: its transpose, y → x")
        step = "C's row o holds the kernel placed at output o's window; Cᵀ = the transposed convolution"
    caption = (parameter_line(case),
               "entry (o, j) of C holds w[k] when j = o·s − p + k·d on every axis (indices in C order); "
               "colour and label: which weight")
    if case.channels:
        caption += (f"{case.in_channels}→{case.out_channels} channels, groups {case.groups}: one block of "
                    "rows per output channel of C, one block of columns per input channel; small label a,b: "
                    "the kernel slice w[a, b]; blocks across groups are zero; Cᵀ swaps the blocks",)
    return Frame("Convolution as a matrix", (_panel(names[0], index, case), _panel(names[1], index.T, case)),
                 caption, step, (Kind.ZERO,))
