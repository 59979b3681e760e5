"""The Arithmetic page: everything the sliders show, computed by ``deconvlab.arithmetic``.

One square 2D case (one channel in, one out) gives the output size with its formula, the equivalent
direct convolution of a transposed one, the matrix C (or C^T) with each entry numbered by the kernel
tap it holds, and the PyTorch call that computes the same thing.

>>> page = describe(input=5, kernel=3, stride=2, padding=1, dilation=1, output_padding=1, transposed=True)
>>> page["output_size"], page["formula"]
(10, 'o = (i - 1)s - 2p + d(k - 1) + output_padding + 1 = (5 - 1)*2 - 2*1 + 1*(3 - 1) + 1 + 1 = 10')
>>> page["pytorch"]
'torch.nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1, dilation=1, bias=False)'
>>> page["matrix"]["rows"], page["matrix"]["cols"]   # C^T: one row per output cell, one column per input cell
(100, 25)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from deconvlab.arithmetic import (
    conv_matrix,
    conv_output_shape,
    conv_transpose_output_shape,
    equivalent_direct_conv,
    transpose_geometry,
)

MATRIX_CELL_LIMIT = 40_000  # rows x cols beyond which the page shows no matrix (it would not be legible)
MAX_FRAMES = 150  # animations drawn live (about 20-40 ms a frame)
# cells drawn (frames x cells a frame) of a multi-channel animation: the one-channel worst case the page
# allows (input 12, kernel 7, stride 4, transposed, scatter: 144 x 2794, about 11 s as SVG) and no more
MAX_CHANNEL_CELLS = 450_000
MEDIA_TYPES = {"svg": "image/svg+xml", "gif": "image/gif"}


def describe(
    *,
    input: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    output_padding: int,
    transposed: bool,
) -> dict:
    """The page's content for one case; invalid combinations raise the arithmetic core's ValueError."""
    if transposed:
        out = conv_transpose_output_shape(
            input, kernel, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation
        )
    else:
        if output_padding:
            raise ValueError(
                f"output_padding={output_padding}: only a transposed convolution has output_padding"
            )
        out = conv_output_shape(input, kernel, stride=stride, padding=padding, dilation=dilation)
    case = dict(i=input, k=kernel, s=stride, p=padding, d=dilation, a=output_padding, o=out)
    return {
        "transposed": transposed,
        "input_size": input,
        "output_size": out,
        "input_shape": [1, 1, input, input],
        "output_shape": [1, 1, out, out],
        "formula": (transposed_formula if transposed else conv_formula)(**case),
        "direct": direct_plan(case) if transposed else None,
        "pytorch": pytorch_module(case, transposed),
        "pytorch_functional": pytorch_functional(case, transposed),
        "matrix": tap_matrix(case, transposed),
    }


def conv_formula(*, i, k, s, p, d, a, o) -> str:
    """The convolution output-size formula with the numbers substituted.

    >>> conv_formula(i=5, k=3, s=2, p=1, d=1, a=0, o=3)
    'o = floor((i + 2p - d(k - 1) - 1) / s) + 1 = floor((5 + 2*1 - 1*(3 - 1) - 1) / 2) + 1 = 3'
    """
    numbers = f"floor(({i} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1"
    return f"o = floor((i + 2p - d(k - 1) - 1) / s) + 1 = {numbers} = {o}"


def transposed_formula(*, i, k, s, p, d, a, o) -> str:
    """The transposed-convolution output-size formula with the numbers substituted."""
    return (
        "o = (i - 1)s - 2p + d(k - 1) + output_padding + 1 = "
        f"({i} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {a} + 1 = {o}"
    )


def direct_plan(case: dict) -> dict:
    """The direct convolution equal to the transposed one (per axis; both axes are the same here)."""
    plan = equivalent_direct_conv(
        case["i"],
        case["k"],
        stride=case["s"],
        padding=case["p"],
        output_padding=case["a"],
        dilation=case["d"],
    )
    k, d = plan.kernel_size, plan.dilation
    text = (
        f"insert {plan.zeros_between} zero(s) between input cells "
        f"({plan.input_size} -> {plan.stretched_size}), pad {plan.pad_before} before and {plan.pad_after} "
        f"after (negative: crop), then slide the flipped {k}x{k} kernel with stride 1 and dilation {d}: "
        f"{plan.stretched_size} + {plan.pad_before} + {plan.pad_after} - {d}*({k} - 1) = {plan.output_size}"
    )
    fields = ("zeros_between", "stretched_size", "pad_before", "pad_after", "kernel_size", "dilation")
    return {
        **{name: getattr(plan, name) for name in fields},
        "stride": 1,
        "flipped": True,
        "output_size": plan.output_size,
        "text": text,
    }


def pytorch_module(case: dict, transposed: bool) -> str:
    """The torch.nn module computing this case, with every parameter spelled out."""
    common = f"kernel_size={case['k']}, stride={case['s']}, padding={case['p']}"
    if transposed:
        return (
            f"torch.nn.ConvTranspose2d(1, 1, {common}, output_padding={case['a']}, "
            f"dilation={case['d']}, bias=False)"
        )
    return f"torch.nn.Conv2d(1, 1, {common}, dilation={case['d']}, bias=False)"


def pytorch_functional(case: dict, transposed: bool) -> str:
    """The functional call, with the tensor shapes in and out."""
    name = "conv_transpose2d" if transposed else "conv2d"
    extra = f", output_padding={case['a']}" if transposed else ""
    return (
        f"torch.nn.functional.{name}(x, w, stride={case['s']}, padding={case['p']}{extra}, "
        f"dilation={case['d']})  # x: (1, 1, {case['i']}, {case['i']}), w: (1, 1, {case['k']}, {case['k']})"
        f" -> (1, 1, {case['o']}, {case['o']})"
    )


def tap_matrix(case: dict, transposed: bool) -> dict:
    """C (or C^T for a transposed convolution) with entry t+1 where it holds kernel tap t, else 0.

    Taps are numbered row by row: tap ``t`` is ``w[t // k, t % k]``. Rows are output cells, columns
    input cells, both in row-major order. ``taps`` is None when the matrix is too large to draw.
    """
    i, k, o = case["i"], case["k"], case["o"]
    rows, cols = o * o, i * i
    out = {"rows": rows, "cols": cols, "name": "C^T" if transposed else "C", "taps": None}
    if rows * cols > MATRIX_CELL_LIMIT:
        return out
    numbered = np.arange(1, k * k + 1, dtype=np.float64).reshape(1, 1, k, k)
    params = dict(stride=case["s"], padding=case["p"], dilation=case["d"])
    if transposed:
        geo = transpose_geometry((1, i, i), numbered.shape, output_padding=case["a"], **params)
        adjoint = geo.adjoint.output_size  # may exceed i when output_padding >= stride: crop those rows
        C = conv_matrix((1, o, o), numbered, **params).toarray().reshape(*adjoint, o * o)
        matrix = C[:i, :i].reshape(i * i, o * o).T
    else:
        matrix = conv_matrix((1, i, i), numbered, **params).toarray()
    out["taps"] = matrix.astype(int).tolist()
    return out


def animation(
    *,
    input: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    output_padding: int,
    transposed: bool,
    view: str,
    format: str,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
) -> tuple[bytes, str]:
    """The case drawn by ``deconvlab.arithmetic.animate`` as (bytes, media type): animated SVG or GIF.

    Drawing takes tens of milliseconds per frame, so cases with more than :data:`MAX_FRAMES` frames
    are refused with a ValueError that says so (``deconvlab animate`` draws them offline), before
    drawing. Channels and groups are drawn as stacked blocks, one frame per position as with one channel.
    """
    import tempfile
    from pathlib import Path

    from deconvlab.arithmetic.animate import build_animation, make_case, save

    if not transposed and output_padding:
        raise ValueError(f"output_padding={output_padding}: only a transposed convolution has output_padding")
    case = make_case(
        input,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        transposed=transposed,
        view=view if transposed else None,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
    )
    frames = math.prod(case.input_size if case.view == "scatter" else case.output_size)
    if frames > MAX_FRAMES:
        raise ValueError(
            f"this case has {frames} frames; the live page draws at most {MAX_FRAMES} "
            "(use a smaller input, or `deconvlab animate` to draw it to a file)"
        )
    if case.channels:
        one = build_animation(dataclasses.replace(case, in_channels=1, out_channels=1, groups=1)).frames[0]
        source, kernel, output = (panel.roles.size for panel in one.panels)
        cells = frames * (
            case.in_channels * source + math.prod(case.weight_shape[:2]) * kernel + case.out_channels * output
        )
        if cells > MAX_CHANNEL_CELLS:
            raise ValueError(
                f"in_channels={in_channels}, out_channels={out_channels}: this case draws {cells} cells "
                f"over its frames; the live page draws at most {MAX_CHANNEL_CELLS} (use fewer channels, a "
                "smaller input, or `deconvlab animate` to draw it to a file)"
            )
    drawn = build_animation(case)
    with tempfile.TemporaryDirectory(prefix="deconvlab-animation-") as folder:
        path = Path(folder) / f"animation.{format}"
        save(drawn, path)
        return path.read_bytes(), MEDIA_TYPES[format]
