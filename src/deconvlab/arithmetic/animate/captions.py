"""Captions: the shape formulas of a case with its numbers substituted, and small text helpers.

>>> from deconvlab.arithmetic.animate.model import make_case
>>> case_caption(make_case(5, 3, stride=2, padding=1))[1]
'o = ⌊(i + 2p − d(k−1) − 1) / s⌋ + 1 = ⌊(5 + 2·1 − 1·(3−1) − 1) / 2⌋ + 1 = 3'
>>> case_caption(make_case(3, 3, stride=2, padding=1, output_padding=1, transposed=True))[1]
'o = (i−1)·s − 2p + d(k−1) + a + 1 = (3−1)·2 − 2·1 + 1·(3−1) + 1 + 1 = 6'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deconvlab.arithmetic.animate.model import Case


def format_number(value: float) -> str:
    """Integers without a decimal point, other values with 3 significant digits.

    >>> format_number(3.0), format_number(-0.0), format_number(0.12345), format_number(-2.5)
    ('3', '0', '0.123', '-2.5')
    """
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return f"{value:.3g}"


def index_text(name: str, index: tuple[int, int], ndim: int) -> str:
    """``y[1, 2]``, or ``y[2]`` for a 1D strip.

    >>> index_text("y", (1, 2), 2), index_text("x", (0, 4), 1)
    ('y[1, 2]', 'x[4]')
    """
    return f"{name}[{', '.join(str(v) for v in index[2 - ndim :])}]"


def _conv_formula(i: int, k: int, s: int, p: int, d: int, o: int) -> str:
    return f"⌊({i} + 2·{p} − {d}·({k}−1) − 1) / {s}⌋ + 1 = {o}"


def _transposed_formula(i: int, k: int, s: int, p: int, d: int, a: int, o: int) -> str:
    return f"({i}−1)·{s} − 2·{p} + {d}·({k}−1) + {a} + 1 = {o}"


def _per_axis(case: Case, text: Callable[[int], str]) -> str:
    """One text if the drawn axes agree, else 'rows: ...; cols: ...'."""
    texts = [text(axis) for axis in case.axes()]
    if len(set(texts)) == 1:
        return texts[0]
    return f"rows: {texts[0]};  cols: {texts[1]}"


def values_text(case: Case, values: tuple[int, int]) -> str:
    """One number if the drawn axes agree, else a tuple: '1' or '(1, 2)'."""
    drawn = [values[axis] for axis in case.axes()]
    return str(drawn[0]) if len(set(drawn)) == 1 else "(" + ", ".join(map(str, drawn)) + ")"


def parameter_line(case: Case) -> str:
    """'i = 5, k = 3, s = 2, p = 1, d = 1 → o = 3' (plus 'a = ...', the output_padding, if transposed)."""
    names = [("i", case.input_size), ("k", case.kernel_size), ("s", case.stride), ("p", case.padding),
             ("d", case.dilation)]
    if case.transposed:
        names.append(("a", case.output_padding))
    params = ", ".join(f"{name} = {values_text(case, values)}" for name, values in names)
    return f"{params}  →  o = {values_text(case, case.output_size)}"


def channel_caption(case: Case) -> str:
    """How the channels combine, with the weight's shape.

    >>> from deconvlab.arithmetic.animate.model import make_case
    >>> channel_caption(make_case(4, 3, transposed=True, in_channels=4, out_channels=2, groups=2))
    'transposed: y[o] = Σ x[i] ⋆ᵀ w[i, o] over the inputs i of o’s group; w is (C_in, C_out/g, k) = (4, 1, 3×3), groups = 2: input i scatters through block row i (the convolution’s layout, channel axes swapped)'
    """  # noqa: E501
    shape = f"({', '.join(map(str, case.weight_shape[:2]))}, {'×'.join(map(str, case.weight_shape[2:]))})"
    if case.transposed:
        return (f"transposed: y[o] = Σ x[i] ⋆ᵀ w[i, o] over the inputs i of o’s group; w is "
                f"(C_in, C_out/g, k) = {shape}, groups = {case.groups}: input i scatters through block row i "
                "(the convolution’s layout, channel axes swapped)")
    return (f"convolution: y[o] = Σ x[i] ⋆ w[o, i] over the inputs i of o’s group; w is (C_out, C_in/g, k) = "
            f"{shape}, groups = {case.groups}: output o reads through block row o")


def case_caption(case: Case) -> tuple[str, ...]:
    """The caption lines: parameters, the shape formula with numbers, how the view computes, and how the
    channels combine (multi-channel cases only)."""
    lines = _one_channel_caption(case)
    return (*lines, channel_caption(case)) if case.channels else lines


def _one_channel_caption(case: Case) -> tuple[str, ...]:
    i, k, s, p, d, a, o = (case.input_size, case.kernel_size, case.stride, case.padding, case.dilation,
                           case.output_padding, case.output_size)
    if not case.transposed:
        formula = "o = ⌊(i + 2p − d(k−1) − 1) / s⌋ + 1 = " + _per_axis(
            case, lambda x: _conv_formula(i[x], k[x], s[x], p[x], d[x], o[x])
        )
        how = "y[o] = Σₖ x_padded[o·s + k·d] · w[k]: the kernel slides with stride s over the padded input"
        return (parameter_line(case), formula, how)
    formula = "o = (i−1)·s − 2p + d(k−1) + a + 1 = " + _per_axis(
        case, lambda x: _transposed_formula(i[x], k[x], s[x], p[x], d[x], a[x], o[x])
    )
    if case.view == "direct":
        between = values_text(case, tuple(v - 1 for v in s))
        before = tuple(d[x] * (k[x] - 1) - p[x] for x in range(2))
        after = tuple(before[x] + a[x] for x in range(2))
        how = (
            f"direct: {between} zero(s) between inputs (s−1), padding d(k−1)−p = {values_text(case, before)} "
            f"before and d(k−1)−p+a = {values_text(case, after)} after (negative crops), stride 1, "
            "kernel flipped"
        )
    else:
        how = "scatter: y[j·s + k·d − p] += x[j] · w[k]; stamps outside 0…o−1 are cropped by the padding"
    return (parameter_line(case), formula, how)
