"""The drawing model: every frame of a convolution-arithmetic picture as pure data.

A frame is a few *panels* (grids of cells) plus text. Each cell has a role (input, padding,
inserted zero, output, cropped, ...), and a frame marks the cells under the kernel (with the
kernel index each one multiplies), the cell being written and the cells already done. Everything
is computed here from the index arithmetic of ``deconvlab.arithmetic.shapes``; the renderers
(``raster``, ``svg``) only draw it, so a picture cannot disagree with the numbers.

Two axes always: a 1D case is drawn as a strip, a first axis of size 1 with kernel 1, stride 1.

>>> case = make_case(5, 3, stride=2, padding=1)
>>> anim = build_animation(case)
>>> len(anim.frames), case.output_size      # one frame per output position
(9, (3, 3))
>>> sorted(anim.frames[0].panels[0].footprint.items())[:2]   # padded cell -> kernel index
[((0, 0), (0, 0)), ((0, 1), (0, 1))]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from deconvlab.arithmetic.animate.captions import case_caption, format_number, index_text, values_text
from deconvlab.arithmetic.geometry import check_groups
from deconvlab.arithmetic.shapes import (
    as_tuple,
    conv_output_shape,
    conv_transpose_output_shape,
    equivalent_direct_conv,
)

Cell = tuple[int, int]
VIEWS = ("direct", "scatter")
MAX_CHANNELS = 8  # beyond this the stacked channel blocks are too small to read


class Kind(IntEnum):
    """What a cell is. Base roles are ordered by priority: a 2D cell takes the higher of its axes'."""

    INPUT = 0
    OUTPUT = 1
    KERNEL = 2
    INSERTED_ZERO = 3
    PADDING = 4
    OUTPUT_PADDING = 5
    CROPPED = 6
    ZERO = 7  # a zero entry of a matrix picture
    # overlays, never a base role (the kernel's footprint is drawn in the KERNEL colour)
    ACTIVE = 8
    DONE = 9
    GAP = 10  # the blank row or column between the channel blocks of a multi-channel panel


@dataclass(frozen=True)
class Case:
    """One convolution to draw, per axis (two axes; a 1D case has a leading axis of size 1).

    ``view`` is ``"conv"`` for a convolution, ``"direct"`` or ``"scatter"`` for a transposed one.
    Channels and groups have PyTorch's meaning: the weight is (out_channels, in_channels/groups, *k)
    for a convolution, (in_channels, out_channels/groups, *k) for a transposed one.
    """

    ndim: int
    input_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    output_padding: tuple[int, int]
    view: str
    in_channels: int = 1
    out_channels: int = 1
    groups: int = 1

    @property
    def transposed(self) -> bool:
        return self.view != "conv"

    @property
    def output_size(self) -> tuple[int, int]:
        if self.transposed:
            return conv_transpose_output_shape(
                self.input_size, self.kernel_size, stride=self.stride, padding=self.padding,
                output_padding=self.output_padding, dilation=self.dilation,
            )
        return conv_output_shape(
            self.input_size, self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation,
        )

    @property
    def channels(self) -> bool:
        """Whether more than one channel (or group) is drawn."""
        return (self.in_channels, self.out_channels, self.groups) != (1, 1, 1)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """PyTorch's weight layout of this case, drawn axes only."""
        first, second = (self.in_channels, self.out_channels) if self.transposed else (
            self.out_channels, self.in_channels)
        return (first, second // self.groups, *self.kernel_size[2 - self.ndim :])

    def axes(self) -> range:
        """The drawn axes: only the last one for a 1D strip."""
        return range(2 - self.ndim, 2)


def make_case(
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    output_padding=0,
    transposed: bool = False,
    view: str | None = None,
    ndim: int | None = None,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
) -> Case:
    """Check the parameters with the arithmetic core (its ValueErrors) and build a :class:`Case`.

    ``ndim`` defaults to the length of ``input_size`` if it is a tuple, else 2.

    >>> make_case(4, 2, stride=2, transposed=True, ndim=1).output_size
    (1, 8)
    >>> make_case(3, 5)
    Traceback (most recent call last):
    ...
    ValueError: input_size=3 with padding=0: the output would be empty, the padded input (3) is smaller than the dilated kernel (5)
    """  # noqa: E501
    if ndim is None:
        ndim = 2 if isinstance(input_size, int) else len(tuple(input_size))
    if ndim not in (1, 2):
        raise ValueError(f"ndim={ndim!r}: only 1D strips and 2D grids are drawn (ndim must be 1 or 2)")
    for name, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CHANNELS:
            raise ValueError(f"{name}={count!r}: must be an int from 1 to {MAX_CHANNELS} (channels drawn)")
    check_groups(groups, {"in_channels": in_channels, "out_channels": out_channels})
    params = {
        "input_size": input_size, "kernel_size": kernel_size, "stride": stride, "padding": padding,
        "dilation": dilation, "output_padding": output_padding,
    }
    per_axis = {name: as_tuple(value, ndim, name) for name, value in params.items()}
    geometry = {name: per_axis[name] for name in ("stride", "padding", "dilation")}
    if transposed:
        view = "direct" if view is None else view
        if view not in VIEWS:
            raise ValueError(f"view={view!r}: a transposed convolution is drawn as 'direct' or 'scatter'")
        conv_transpose_output_shape(
            per_axis["input_size"], per_axis["kernel_size"], output_padding=per_axis["output_padding"],
            **geometry,
        )
    else:
        if view not in (None, "conv"):
            raise ValueError(f"view={view!r}: views 'direct' and 'scatter' are for transposed=True only")
        if any(per_axis["output_padding"]):
            raise ValueError(f"output_padding={output_padding!r}: only a transposed convolution has one")
        conv_output_shape(per_axis["input_size"], per_axis["kernel_size"], **geometry)
        view = "conv"
    lead = {"input_size": 1, "kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1, "output_padding": 0}
    two_axes = {name: (lead[name],) * (2 - ndim) + values for name, values in per_axis.items()}
    return Case(ndim=ndim, view=view, **two_axes, in_channels=in_channels, out_channels=out_channels,
                groups=groups)


@dataclass(frozen=True, eq=False)
class Panel:
    """One grid of a frame.

    ``roles``: a (rows, cols) array of :class:`Kind`. ``footprint``: cell -> the kernel index
    (ky, kx) that multiplies it in this frame. ``values``: numbers mode only, NaN where empty.
    ``text``/``subtext``: what each cell shows (large, and small at the bottom).
    ``kernel_colours``: colour footprint cells by kernel index, out of ``kernel_shape`` (the matrix
    picture).
    """

    title: str
    roles: np.ndarray
    footprint: Mapping[Cell, Cell] = field(default_factory=dict)
    active: frozenset[Cell] = frozenset()
    done: frozenset[Cell] = frozenset()
    values: np.ndarray | None = None
    text: Mapping[Cell, str] = field(default_factory=dict)
    subtext: Mapping[Cell, str] = field(default_factory=dict)
    kernel_colours: bool = False
    kernel_shape: tuple[int, int] = (1, 1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.roles.shape


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture: panels left to right (a 1D strip: top to bottom), a title, caption lines,
    the step being shown and the legend's entries."""

    title: str
    panels: tuple[Panel, ...]
    caption: tuple[str, ...]
    step: str
    legend: tuple[Kind, ...]


@dataclass(frozen=True, eq=False)
class Animation:
    """The frames of one case, and in numbers mode its input, kernel and computed output."""

    case: Case
    frames: tuple[Frame, ...]
    x: np.ndarray | None = None
    w: np.ndarray | None = None
    output: np.ndarray | None = None


# ----------------------------------------------------------------------------------- per-axis roles


def _conv_axis_roles(i: int, p: int) -> list[Kind]:
    """Padded input of a convolution: ``p`` padding, ``i`` input cells, ``p`` padding."""
    return [Kind.PADDING] * p + [Kind.INPUT] * i + [Kind.PADDING] * p


@dataclass(frozen=True)
class _DirectAxis:
    """The zero-inserted, padded input of the direct view along one axis.

    Coordinates ``c`` are positions in the stretched input (input cell ``j`` is at ``c = j*s``);
    the grid starts at ``lo`` (negative when there is padding) so that cells cropped by a negative
    padding stay visible, marked CROPPED.
    """

    stride: int
    stretched: int
    pad_before: int
    pad_after: int
    output_padding: int

    @property
    def lo(self) -> int:
        return min(0, -self.pad_before)

    @property
    def hi(self) -> int:
        return max(self.stretched - 1, self.stretched - 1 + self.pad_after)

    def role(self, c: int) -> Kind:
        end = self.stretched - 1 + self.pad_after  # last padded coordinate
        if c < -self.pad_before or c > end:
            return Kind.CROPPED
        if c >= self.stretched:
            return Kind.OUTPUT_PADDING if c > end - self.output_padding else Kind.PADDING
        if c < 0:
            return Kind.PADDING
        return Kind.INPUT if c % self.stride == 0 else Kind.INSERTED_ZERO

    def roles(self) -> list[Kind]:
        return [self.role(c) for c in range(self.lo, self.hi + 1)]


def _direct_axis(case: Case, axis: int) -> _DirectAxis:
    plan = equivalent_direct_conv(
        case.input_size[axis], case.kernel_size[axis], stride=case.stride[axis],
        padding=case.padding[axis], output_padding=case.output_padding[axis], dilation=case.dilation[axis],
    )
    return _DirectAxis(
        case.stride[axis], plan.stretched_size, plan.pad_before, plan.pad_after, case.output_padding[axis]
    )


def _scatter_axis_roles(full: int, p: int, out: int) -> list[Kind]:
    """The scatter canvas: every position ``u = j*s + k*d`` a kernel reaches (``full`` of them), and
    beyond when output_padding adds more. Output index ``u - p``; outside ``0..out-1`` is cropped."""
    roles = []
    for u in range(max(full, p + out)):
        if not p <= u < p + out:
            roles.append(Kind.CROPPED)
        else:
            roles.append(Kind.OUTPUT if u < full else Kind.OUTPUT_PADDING)
    return roles


def _grid(rows: Sequence[Kind], cols: Sequence[Kind]) -> np.ndarray:
    """2D roles: the higher-priority role of the two axes."""
    return np.maximum(np.array(rows, dtype=np.int8)[:, None], np.array(cols, dtype=np.int8)[None, :])


# ----------------------------------------------------------------------------------- text helpers


def kernel_label(k: Cell, ndim: int) -> str:
    """``w12`` for kernel index (1, 2); ``w2`` in 1D; ``w1,12`` when an index has two digits.

    >>> kernel_label((1, 2), 2), kernel_label((0, 2), 1), kernel_label((1, 12), 2)
    ('w12', 'w2', 'w1,12')
    """
    drawn = k[2 - ndim :]
    sep = "," if any(v > 9 for v in drawn) else ""
    return "w" + sep.join(str(v) for v in drawn)


def _positions(shape: tuple[int, int]) -> list[Cell]:
    return list(itertools.product(range(shape[0]), range(shape[1])))


def _span(cells, axis: int) -> str:
    values = sorted({cell[axis] for cell in cells})
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}…{values[-1]}"


def _where(cells, case: Case, offset: Cell = (0, 0)) -> str:
    """'rows 1…3, cols 2…4' (or 'cells 2…4' in 1D) of ``cells`` shifted by ``-offset``."""
    shifted = [(r - offset[0], c - offset[1]) for r, c in cells]
    if case.ndim == 1:
        return f"cells {_span(shifted, 1)}"
    return f"rows {_span(shifted, 0)}, cols {_span(shifted, 1)}"


def _products(pairs: list[tuple[float, float]], total: float) -> str:
    """'3·0 + 1·2 + … = 7', shortened to the sum when there are more than 9 products."""
    if len(pairs) > 9:
        return f"the sum of {len(pairs)} products = {format_number(total)}"
    terms = " + ".join(f"{format_number(a)}·{format_number(b)}" for a, b in pairs)
    return f"{terms} = {format_number(total)}"


# ----------------------------------------------------------------------------------- panels


def _kernel_panel(case: Case, w: np.ndarray | None, flipped: bool) -> Panel:
    """The kernel; flipped (rotated 180°) in the direct view, where it slides over the input."""
    kh, kw = case.kernel_size
    roles = np.full((kh, kw), Kind.KERNEL, dtype=np.int8)
    index = {(r, c): ((kh - 1 - r, kw - 1 - c) if flipped else (r, c)) for r, c in _positions((kh, kw))}
    text = {cell: kernel_label(k, case.ndim) for cell, k in index.items()}
    values = None
    if w is not None:
        values = np.array([[w[index[(r, c)]] for c in range(kw)] for r in range(kh)], dtype=float)
        subtext, text = text, {cell: format_number(values[cell]) for cell in index}
    else:
        subtext = {}
    title = "kernel, flipped (rotated 180°)" if flipped else "kernel"
    return Panel(title, roles, values=values, text=text, subtext=subtext)


def _value_text(values: np.ndarray | None) -> dict[Cell, str]:
    if values is None:
        return {}
    return {(int(r), int(c)): format_number(values[r, c]) for r, c in np.argwhere(~np.isnan(values))}


def _footprint_subtext(footprint: Mapping[Cell, Cell], case: Case, w: np.ndarray | None) -> dict[Cell, str]:
    if w is None:
        return {cell: kernel_label(k, case.ndim) for cell, k in footprint.items()}
    return {cell: "×" + format_number(w[k]) for cell, k in footprint.items()}


def _output_panel(case: Case, active: Cell, done: Sequence[Cell], values: np.ndarray | None) -> Panel:
    """The output grid: the cell being written, the cells done, their values in numbers mode."""
    roles = np.full(case.output_size, Kind.OUTPUT, dtype=np.int8)
    return Panel(f"output y {_size_text(case, case.output_size)}", roles, active=frozenset({active}),
                 done=frozenset(done), values=values, text=_value_text(values))


def _size_text(case: Case, size: tuple[int, int]) -> str:
    return "×".join(str(v) for v in size[2 - case.ndim :])


# ----------------------------------------------------------------------------------- animations

LEGEND_CONV = (Kind.INPUT, Kind.PADDING, Kind.KERNEL, Kind.OUTPUT, Kind.ACTIVE, Kind.DONE)
LEGEND_DIRECT = (Kind.INPUT, Kind.INSERTED_ZERO, Kind.PADDING, Kind.OUTPUT_PADDING, Kind.CROPPED,
                 Kind.KERNEL, Kind.OUTPUT, Kind.ACTIVE, Kind.DONE)
LEGEND_SCATTER = (Kind.INPUT, Kind.KERNEL, Kind.OUTPUT, Kind.OUTPUT_PADDING, Kind.CROPPED, Kind.ACTIVE,
                  Kind.DONE)


def _legend(candidates: tuple[Kind, ...], panels: Sequence[Panel]) -> tuple[Kind, ...]:
    """The legend keeps the base roles that occur in some panel, the kernel, and the overlays."""
    present = set().union(*(set(np.unique(p.roles).tolist()) for p in panels))
    return tuple(k for k in candidates if k in present or k in (Kind.KERNEL, Kind.ACTIVE, Kind.DONE))


def _conv_frames(case: Case, x: np.ndarray | None, w: np.ndarray | None):
    """One frame per output position: the padded input, the kernel's footprint, the output."""
    (ph, pw), (sh, sw), (dh, dw) = case.padding, case.stride, case.dilation
    roles = _grid(_conv_axis_roles(case.input_size[0], ph), _conv_axis_roles(case.input_size[1], pw))
    padded = None if x is None else np.pad(x.astype(float), ((ph, ph), (pw, pw)))
    out_shape = case.output_size
    result = None if x is None else np.full(out_shape, np.nan)
    kernel = _kernel_panel(case, w, flipped=False)
    frames = []
    positions = _positions(out_shape)
    for n, (oy, ox) in enumerate(positions):
        footprint = {
            (oy * sh + ky * dh, ox * sw + kx * dw): (ky, kx) for ky, kx in _positions(case.kernel_size)
        }
        step = f"{index_text('y', (oy, ox), case.ndim)} reads {_where(footprint, case, (ph, pw))} of x"
        if x is not None:
            pairs = [(padded[cell], w[k]) for cell, k in footprint.items()]
            result[oy, ox] = sum(a * b for a, b in pairs)
            step = f"{index_text('y', (oy, ox), case.ndim)} = {_products(pairs, result[oy, ox])}"
        padding_note = f", padded by {values_text(case, case.padding)}" if any(case.padding) else ""
        source = Panel(
            f"input x {_size_text(case, case.input_size)}{padding_note}", roles, footprint=footprint,
            values=padded, text=_value_text(padded), subtext=_footprint_subtext(footprint, case, w),
        )
        output = _output_panel(case, (oy, ox), positions[:n], None if result is None else result.copy())
        panels = (source, kernel, output)
        frames.append(Frame(_frame_title(case, n, len(positions)), panels, case_caption(case), step,
                            _legend(LEGEND_CONV, panels)))
    return frames, result


def _direct_frames(case: Case, x: np.ndarray | None, w: np.ndarray | None):
    """The transposed convolution as a direct one: zeros between inputs, padding ``d(k-1) - p``,
    the flipped kernel sliding with stride 1; one frame per output position."""
    axes = [_direct_axis(case, 0), _direct_axis(case, 1)]
    roles = _grid(axes[0].roles(), axes[1].roles())
    origin = (-axes[0].lo, -axes[1].lo)  # grid cell of stretched coordinate (0, 0)
    values = None
    if x is not None:
        values = np.zeros(roles.shape)
        for jy, jx in _positions(case.input_size):
            values[origin[0] + jy * case.stride[0], origin[1] + jx * case.stride[1]] = x[jy, jx]
    out_shape = case.output_size
    result = None if x is None else np.full(out_shape, np.nan)
    kernel = _kernel_panel(case, w, flipped=True)
    (kh, kw), (dh, dw) = case.kernel_size, case.dilation
    frames = []
    positions = _positions(out_shape)
    for n, (oy, ox) in enumerate(positions):
        # padded coordinate o + k*d, i.e. stretched coordinate o - pad_before + k*d; weight w[K-1-k]
        footprint = {
            (origin[0] + oy - axes[0].pad_before + ky * dh, origin[1] + ox - axes[1].pad_before + kx * dw):
            (kh - 1 - ky, kw - 1 - kx)
            for ky, kx in _positions(case.kernel_size)
        }
        reads = _where(footprint, case, (origin[0] - axes[0].pad_before, origin[1] - axes[1].pad_before))
        step = f"{index_text('y', (oy, ox), case.ndim)} reads {reads} of the zero-inserted, padded input"
        if x is not None:
            pairs = [(values[cell], w[k]) for cell, k in footprint.items()]
            result[oy, ox] = sum(a * b for a, b in pairs)
            step = f"{index_text('y', (oy, ox), case.ndim)} = {_products(pairs, result[oy, ox])}"
        source = Panel(
            f"input x {_size_text(case, case.input_size)}, s−1 zeros inserted between cells, padded",
            roles, footprint=footprint, values=values, text=_value_text(values),
            subtext=_footprint_subtext(footprint, case, w),
        )
        output = _output_panel(case, (oy, ox), positions[:n], None if result is None else result.copy())
        panels = (source, kernel, output)
        frames.append(Frame(_frame_title(case, n, len(positions)), panels, case_caption(case), step,
                            _legend(LEGEND_DIRECT, panels)))
    return frames, result


def _scatter_frames(case: Case, x: np.ndarray | None, w: np.ndarray | None):
    """Each input cell stamps x[j]·w into the output at ``j*s + k*d - p``; one frame per input cell.

    The canvas shows every position a stamp reaches; what falls outside the output is cropped."""
    (s, d, p, k, i) = (case.stride, case.dilation, case.padding, case.kernel_size, case.input_size)
    out_shape = case.output_size
    full = [(i[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(2)]
    roles = _grid(*(_scatter_axis_roles(full[a], p[a], out_shape[a]) for a in range(2)))
    canvas = None if x is None else np.full(roles.shape, np.nan)
    input_roles = np.full(i, Kind.INPUT, dtype=np.int8)
    input_text = {} if x is None else {cell: format_number(x[cell]) for cell in _positions(i)}
    kernel = _kernel_panel(case, w, flipped=False)
    touched: set[Cell] = set()
    cropping = f", padding {values_text(case, p)} cropped each side" if any(p) else ""
    frames = []
    positions = _positions(i)
    for n, (jy, jx) in enumerate(positions):
        footprint = {
            (jy * s[0] + ky * d[0], jx * s[1] + kx * d[1]): (ky, kx) for ky, kx in _positions(k)
        }
        where = _where(footprint, case, (p[0], p[1]))
        step = f"{index_text('x', (jy, jx), case.ndim)} adds x·w to y at {where}"
        if x is not None:
            for cell, kk in footprint.items():
                canvas[cell] = np.nan_to_num(canvas[cell]) + x[jy, jx] * w[kk]
            step = f"{index_text('x', (jy, jx), case.ndim)} = {format_number(x[jy, jx])} adds " \
                   f"{format_number(x[jy, jx])}·w to y at {where}"
        source = Panel(f"input x {_size_text(case, i)}", input_roles, active=frozenset({(jy, jx)}),
                       done=frozenset(positions[:n]), values=None if x is None else x.astype(float),
                       text=input_text)
        output = Panel(
            f"output y {_size_text(case, out_shape)} (canvas {_size_text(case, roles.shape)}{cropping})",
            roles, footprint=footprint,
            done=frozenset(touched), values=None if canvas is None else canvas.copy(),
            text=_value_text(canvas), subtext=_footprint_subtext(footprint, case, w),
        )
        touched.update(footprint)
        panels = (source, kernel, output)
        frames.append(Frame(_frame_title(case, n, len(positions)), panels, case_caption(case), step,
                            _legend(LEGEND_SCATTER, panels)))
    result = None
    if canvas is not None:
        result = np.nan_to_num(canvas, nan=0.0)[p[0] : p[0] + out_shape[0], p[1] : p[1] + out_shape[1]]
    return frames, result


def _frame_title(case: Case, n: int, count: int) -> str:
    name = {"conv": "Convolution", "direct": "Transposed convolution, direct view",
            "scatter": "Transposed convolution, scatter view"}[case.view]
    return f"{name}: frame {n + 1} of {count}"


def _numbers(case: Case, x, w, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and kernel as 2D arrays: the given ones (checked), or small random integers (``seed``)."""
    rng = np.random.default_rng(seed)
    drawn_in = case.input_size[2 - case.ndim :]
    drawn_k = case.kernel_size[2 - case.ndim :]
    x = rng.integers(1, 4, drawn_in) if x is None else np.asarray(x, dtype=float)  # 1…3: every stamp shows
    w = rng.integers(-1, 3, drawn_k) if w is None else np.asarray(w, dtype=float)  # -1…2: sums can cancel
    for name, array, shape in (("x", x, drawn_in), ("w", w, drawn_k)):
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}: expected {shape} for this case")
    return x.reshape(case.input_size).astype(float), w.reshape(case.kernel_size).astype(float)


def build_animation(case: Case, *, numbers: bool = False, x=None, w=None, seed: int = 0) -> Animation:
    """All frames of ``case``; with ``numbers`` (or a given ``x``/``w``) the cells hold values.

    >>> anim = build_animation(make_case(3, 2, transposed=True, view="scatter", ndim=1),
    ...                        x=[1, 2, 3], w=[1, 10])
    >>> anim.output                                    # y[u] += x[j] w[k] at u = j + k
    array([ 1., 12., 23., 30.])
    >>> anim.frames[-1].step
    'x[2] = 3 adds 3·w to y at cells 2…3'
    """
    if case.channels:
        from deconvlab.arithmetic.animate.channels import channel_animation

        return channel_animation(case, numbers=numbers, x=x, w=w, seed=seed)
    if numbers or x is not None or w is not None:
        x, w = _numbers(case, x, w, seed)
    build = {"conv": _conv_frames, "direct": _direct_frames, "scatter": _scatter_frames}[case.view]
    frames, result = build(case, x, w)
    drawn = [None if a is None else a.reshape(a.shape[2 - case.ndim :]) for a in (x, w, result)]
    return Animation(case, tuple(frames), *drawn)
