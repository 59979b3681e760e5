"""Weight sharing across channels and groups: the frames of a multi-channel case.

Every (output channel, input channel) pair of a group is a one-channel convolution with one kernel
slice, drawn by the one-channel builders of :mod:`.model`; a frame stacks them. The input channels
are stacked top to bottom, the kernel slices form a block grid in PyTorch's weight layout, and each
output channel holds the sum of its group's pairs:

- convolution, weight (C_out, C_in/g, *k): ``y[o] = Σ_i x[i] ⋆ w[o, i]``, block row o = output o;
- transposed convolution, weight (C_in, C_out/g, *k): ``y[o] = Σ_i x[i] ⋆ᵀ w[i, o]``, block row i =
  input i, which scatters into the output channels of its group: the same layout, read with the
  channel axes swapped, as the matrix transpose implies.

>>> from deconvlab.arithmetic.animate.model import build_animation, make_case
>>> case = make_case(3, 2, ndim=1, in_channels=2, out_channels=3)
>>> w = [[[1, 0], [0, 0]], [[0, 0], [0, 1]], [[1, 0], [0, 1]]]      # (C_out, C_in, k) = (3, 2, 2)
>>> anim = build_animation(case, x=[[1, 2, 3], [10, 20, 30]], w=w)
>>> anim.output                    # y0 = x0 ⋆ [1, 0], y1 = x1 ⋆ [0, 1], y2 = x0 ⋆ [1, 0] + x1 ⋆ [0, 1]
array([[ 1.,  2.],
       [20., 30.],
       [21., 32.]])
>>> [panel.shape for panel in anim.frames[0].panels]   # 2 inputs, 3x2 kernel blocks, 3 outputs
[(3, 3), (5, 5), (5, 2)]
>>> for part in anim.frames[0].step.split("; "):
...     print(part)
y[0]: y0 = x0·w[0,0] + x1·w[0,1] = 1 + 0 = 1
y1 = x0·w[1,0] + x1·w[1,1] = 0 + 20 = 20
y2 = x0·w[2,0] + x1·w[2,1] = 1 + 20 = 21
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from deconvlab.arithmetic.animate.captions import case_caption, format_number, index_text
from deconvlab.arithmetic.animate.model import (
    Animation,
    Case,
    Frame,
    Kind,
    Panel,
    _footprint_subtext,
    _positions,
    _value_text,
    build_animation,
)


def pairs(case: Case) -> list[list[tuple[int, tuple[int, int]]]]:
    """For each output channel: (input channel, weight block (a, b)) of every pair of its group.

    >>> pairs(Case(1, (1, 3), (1, 1), (1, 1), (0, 0), (1, 1), (0, 0), "conv", 4, 2, 2))
    [[(0, (0, 0)), (1, (0, 1))], [(2, (1, 0)), (3, (1, 1))]]
    """
    per_in, per_out = case.in_channels // case.groups, case.out_channels // case.groups
    result = []
    for o in range(case.out_channels):
        inputs = range((o // per_out) * per_in, (o // per_out + 1) * per_in)
        result.append([(i, (i, o % per_out) if case.transposed else (o, i % per_in)) for i in inputs])
    return result


def _numbers(case: Case, x, w, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x as (C_in, *drawn input), w in PyTorch's layout: the given ones (checked), or small integers."""
    rng = np.random.default_rng(seed)
    x_shape = (case.in_channels, *case.input_size[2 - case.ndim :])
    x = rng.integers(1, 4, x_shape) if x is None else np.asarray(x, dtype=float)
    w = rng.integers(-1, 3, case.weight_shape) if w is None else np.asarray(w, dtype=float)
    for name, array, shape in (("x", x, x_shape), ("w", w, case.weight_shape)):
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}: expected {shape} for this case")
    return x.astype(float), w.astype(float)


def stack(blocks: Sequence[Sequence[Panel]], title: str) -> Panel:
    """One panel of equally shaped blocks (rows of columns), a GAP row/column between blocks."""
    rows, cols = blocks[0][0].shape
    shape = (len(blocks) * (rows + 1) - 1, len(blocks[0]) * (cols + 1) - 1)
    roles = np.full(shape, Kind.GAP, dtype=np.int8)
    with_values = blocks[0][0].values is not None
    values = np.full(shape, np.nan) if with_values else None
    footprint, text, subtext, active, done = {}, {}, {}, set(), set()
    for r, line in enumerate(blocks):
        for c, block in enumerate(line):
            top, left = r * (rows + 1), c * (cols + 1)
            roles[top : top + rows, left : left + cols] = block.roles
            if with_values:
                values[top : top + rows, left : left + cols] = block.values
            footprint.update({(a + top, b + left): k for (a, b), k in block.footprint.items()})
            text.update({(a + top, b + left): t for (a, b), t in block.text.items()})
            subtext.update({(a + top, b + left): t for (a, b), t in block.subtext.items()})
            active.update((a + top, b + left) for a, b in block.active)
            done.update((a + top, b + left) for a, b in block.done)
    return Panel(
        title,
        roles,
        footprint=footprint,
        active=frozenset(active),
        done=frozenset(done),
        values=values,
        text=text,
        subtext=subtext,
    )


def _summed(panels: Sequence[Panel]) -> Panel:
    """The first panel with the values of all of them added (NaN, not yet written, stays NaN)."""
    if panels[0].values is None:
        return panels[0]
    values = np.sum([p.values for p in panels], axis=0)
    return dataclasses.replace(panels[0], values=values, text=_value_text(values))


def _unlabelled(panel: Panel, case: Case) -> Panel:
    """Footprint cells labelled by kernel index only: several slices share a cell in a stacked panel."""
    return dataclasses.replace(panel, subtext=_footprint_subtext(panel.footprint, case, None))


def _step(case: Case, groups, frames: Sequence[Sequence[Frame]], n: int, where: tuple[int, int]) -> str:
    """'y0[1, 2] = x0·w[0,0] + x1·w[0,1] (= 3 + 4 = 7); ...' at the frame's output cell (or input cell)."""
    name = "x" if case.view == "scatter" else "y"
    parts = []
    for o, group in enumerate(groups):
        terms = " + ".join(f"x{i}·w[{a},{b}]" for i, (a, b) in group)
        values = [frames[o][m][n].panels[-1].values for m in range(len(group))]
        sums = ""
        if values[0] is not None and case.view != "scatter":
            sums = " = " + " + ".join(format_number(v[where]) for v in values)
            sums += f" = {format_number(np.sum([v[where] for v in values]))}" if len(values) > 1 else ""
        parts.append(f"y{o} = {terms}{sums}")
    cell = index_text(name, where, case.ndim)
    return f"{cell}: " + "; ".join(parts)


def channel_animation(case: Case, *, numbers: bool = False, x=None, w=None, seed: int = 0) -> Animation:
    """The frames of a multi-channel case: one per output position (per input position when scattering),
    like the one-channel case; output channel o shows the sum over the pairs of its group."""
    one = dataclasses.replace(case, in_channels=1, out_channels=1, groups=1)
    with_numbers = numbers or x is not None or w is not None
    if with_numbers:
        x, w = _numbers(case, x, w, seed)
    groups = pairs(case)
    built = [
        [
            build_animation(one, x=x[i], w=w[block]) if with_numbers else build_animation(one)
            for i, block in group
        ]
        for group in groups
    ]
    frames = [[anim.frames for anim in line] for line in built]
    first_use = {}
    for o, group in enumerate(groups):
        for m, (i, _) in enumerate(group):
            first_use.setdefault(i, (o, m))
    by_block = {block: (o, m) for o, group in enumerate(groups) for m, (_, block) in enumerate(group)}
    rows, cols = case.weight_shape[:2]
    count = len(frames[0][0])
    positions = _positions(case.input_size if case.view == "scatter" else case.output_size)
    out = []
    for n in range(count):
        sources = [frames[o][m][n].panels[0] for o, m in (first_use[i] for i in range(case.in_channels))]
        source = stack(
            [[_unlabelled(p, one)] for p in sources], f"input x: {case.in_channels} channels, top to bottom"
        )
        kernels = [
            [frames[o][m][n].panels[1] for o, m in (by_block[(a, b)] for b in range(cols))]
            for a in range(rows)
        ]
        layout = (
            "row: input channel i, column: output o of its group"
            if case.transposed
            else "row: output channel o, column: input of its group"
        )
        kernel = stack(
            kernels,
            f"kernel slices w[{'i, o' if case.transposed else 'o, i'}], groups {case.groups} ({layout})",
        )
        outputs = [
            _unlabelled(_summed([frames[o][m][n].panels[-1] for m in range(len(group))]), one)
            for o, group in enumerate(groups)
        ]
        output = stack(
            [[p] for p in outputs],
            f"output y: {case.out_channels} channels, each the sum of its group's pairs",
        )
        first = frames[0][0][n]
        out.append(
            Frame(
                first.title,
                (source, kernel, output),
                case_caption(case),
                _step(case, groups, frames, n, positions[n]),
                first.legend,
            )
        )
    result = None
    if with_numbers:
        result = np.stack(
            [
                np.sum([built[o][m].output for m in range(len(group))], axis=0)
                for o, group in enumerate(groups)
            ]
        )
    return Animation(case, tuple(out), x, w, result)
