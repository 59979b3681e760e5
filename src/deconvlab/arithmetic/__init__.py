"""Floor 1: NumPy-only convolution arithmetic, the reference every other part of deconvlab trusts.

Nothing here imports torch at module level; only ``conv_transpose(..., method="gradient")``
imports it lazily.
"""

from deconvlab.arithmetic.shapes import (
    DirectConv,
    conv_output_shape,
    conv_transpose_output_shape,
    equivalent_direct_conv,
)

__all__ = [
    "DirectConv",
    "conv_output_shape",
    "conv_transpose_output_shape",
    "equivalent_direct_conv",
]
