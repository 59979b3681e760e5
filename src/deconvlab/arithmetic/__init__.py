"""Floor 1: NumPy-only convolution arithmetic, the reference every other part of deconvlab trusts.

Nothing here imports torch at module level; only ``conv_transpose(..., method="gradient")``
imports it lazily.
"""

from deconvlab.arithmetic.animate import animate
from deconvlab.arithmetic.conv import conv
from deconvlab.arithmetic.geometry import ConvGeometry, TransposeGeometry, conv_geometry, transpose_geometry
from deconvlab.arithmetic.matrix import TransposeVsInverse, conv_matrix, transpose_vs_inverse
from deconvlab.arithmetic.shapes import (
    DirectConv,
    conv_output_shape,
    conv_transpose_output_shape,
    equivalent_direct_conv,
)
from deconvlab.arithmetic.transpose import METHODS, conv_transpose, flipped_weight

__all__ = [
    "METHODS",
    "ConvGeometry",
    "DirectConv",
    "TransposeGeometry",
    "TransposeVsInverse",
    "animate",
    "conv",
    "conv_geometry",
    "conv_matrix",
    "conv_output_shape",
    "conv_transpose",
    "conv_transpose_output_shape",
    "equivalent_direct_conv",
    "flipped_weight",
    "transpose_geometry",
    "transpose_vs_inverse",
]
