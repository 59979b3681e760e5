"""``deconvlab explain``: a convolution or transposed convolution, explained from its sizes.

Prints the output shape with the arithmetic written out, the equivalent direct convolution, the
matching PyTorch call, a worked numeric example, the matrix C for small sizes, and checks on the
spot that conv_transpose with the convolution's own weight equals that convolution's gradient
with respect to its input (torch autograd). ``--json`` prints the same facts for programs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import typer

from deconvlab.cli._app import app

MATRIX_PRINT_LIMIT = 40  # print C only when both of its sides are at most this
OPTION_NAMES = {"input_size": "input", "kernel_size": "kernel"}  # Case field -> command-line option


@dataclass(frozen=True)
class Case:
    """The user's parameters, one int per spatial axis."""

    transposed: bool
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_channels: int
    out_channels: int

    @property
    def ndim(self) -> int:
        return len(self.input_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """PyTorch's layout: (C_in, C_out/g, *K) transposed, (C_out, C_in/g, *K) direct."""
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def conv_params(self) -> dict:
        """stride, padding, dilation, groups as keyword arguments (ints when the same on every axis)."""
        return {
            "stride": _compact(self.stride),
            "padding": _compact(self.padding),
            "dilation": _compact(self.dilation),
            "groups": self.groups,
        }

    def transpose_params(self, output_padding: tuple[int, ...]) -> dict:
        """The keyword arguments of conv_transpose, in PyTorch's order."""
        return {
            "stride": _compact(self.stride),
            "padding": _compact(self.padding),
            "output_padding": _compact(output_padding),
            "dilation": _compact(self.dilation),
            "groups": self.groups,
        }


def _compact(values: tuple[int, ...]):
    return values[0] if len(set(values)) == 1 else values


def parse_sizes(text: str, name: str) -> tuple[int, ...]:
    """``"5"`` -> (5,), ``"5,7"`` -> (5, 7); a clear error otherwise.

    >>> parse_sizes("5, 7", "input")
    (5, 7)
    """
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"--{name}={text!r}: expected an int or comma-separated ints like 5,7"
        ) from None
    return values


def make_case(
    *,
    transposed: bool,
    in_channels: int,
    out_channels: int,
    groups: int,
    **sizes: str,
) -> Case:
    """Parse the size options and broadcast single ints to the number of spatial axes (1 to 3)."""
    from deconvlab.arithmetic.geometry import check_groups

    option = {name: OPTION_NAMES.get(name, name.replace("_", "-")) for name in sizes}
    parsed = {name: parse_sizes(text, option[name]) for name, text in sizes.items()}
    ndim = max(len(v) for v in parsed.values())
    if ndim > 3:
        raise typer.BadParameter(f"{ndim} spatial axes: explain handles 1D to 3D")
    for name, values in parsed.items():
        if len(values) not in (1, ndim):
            raise typer.BadParameter(
                f"--{option[name]}={sizes[name]!r}: give 1 or {ndim} values, one per spatial axis"
            )
        parsed[name] = values * ndim if len(values) == 1 else values
    try:
        check_groups(groups, {"--in-channels": in_channels, "--out-channels": out_channels})
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return Case(transposed, groups=groups, in_channels=in_channels, out_channels=out_channels, **parsed)


def _sample(case: Case):
    """Readable numbers: x counts 1, 2, 3, ... and so does w (float64)."""
    import numpy as np

    x_shape = (1, case.in_channels, *case.input_size)
    x = np.arange(1.0, 1 + math.prod(x_shape)).reshape(x_shape)
    w = np.arange(1.0, 1 + math.prod(case.weight_shape)).reshape(case.weight_shape)
    return x, w


def _shape_arithmetic(case: Case, output_size: tuple[int, ...]) -> list[str]:
    lines = []
    for axis in range(case.ndim):
        i, k, s, p, d, op = (
            getattr(case, f)[axis]
            for f in ("input_size", "kernel_size", "stride", "padding", "dilation", "output_padding")
        )
        if case.transposed:
            formula = "(i-1)*s - 2p + d(k-1) + output_padding + 1"
            numbers = f"({i}-1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1"
        else:
            formula = "floor((i + 2p - d(k-1) - 1) / s) + 1"
            numbers = f"floor(({i} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1"
        lines.append(f"axis {axis}: {formula} = {numbers} = {output_size[axis]}")
    return lines


def _pad_words(amount: int) -> str:
    return f"pad {amount}" if amount >= 0 else f"crop {-amount}"


def _direct_equivalent(plans) -> list[str]:
    lines = [
        f"axis {axis}: insert {plan.zeros_between} zero(s) between the {plan.input_size} inputs -> "
        f"{plan.stretched_size}; {_pad_words(plan.pad_before)} before, {_pad_words(plan.pad_after)} after; "
        f"slide the flipped kernel ({plan.kernel_size} taps, dilation {plan.dilation}) with stride 1 "
        f"-> {plan.output_size}"
        for axis, plan in enumerate(plans)
    ]
    lines.append("weight: flipped along every spatial axis, in/out channels swapped within each group")
    return lines


def _keywords(params: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items())


def _pytorch_calls(case: Case, transpose_params: dict) -> list[str]:
    n = case.ndim
    conv_params = case.conv_params()
    layer_params = {
        "kernel_size": _compact(case.kernel_size),
        **(transpose_params if case.transposed else conv_params),
    }
    layer = f"ConvTranspose{n}d" if case.transposed else f"Conv{n}d"
    function = f"conv_transpose{n}d" if case.transposed else f"conv{n}d"
    used = transpose_params if case.transposed else conv_params
    return [
        f"torch.nn.functional.{function}(x, w, {_keywords(used)})",
        f"torch.nn.{layer}({case.in_channels}, {case.out_channels}, {_keywords(layer_params)}, bias=False)"
        f"  # its .weight has shape {case.weight_shape}",
    ]


def _check(case: Case, x, w, transpose_params: dict) -> dict:
    """conv_transpose with the conv's own weight vs torch autograd's input gradient of that conv."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from deconvlab.arithmetic import METHODS, conv_transpose

    conv_fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[case.ndim]
    conv_params = case.conv_params()
    if case.transposed:  # the convolution is the one from y's shape back to x's
        seed_small, u_shape = x, conv_transpose(x, w, **transpose_params).shape
    else:  # the convolution is the one asked for; seed its gradient with g = 1, 2, 3, ...
        u_shape = x.shape
        out_shape = conv_fn(
            torch.zeros(u_shape, dtype=torch.float64), torch.from_numpy(w), **conv_params
        ).shape
        seed_small = np.arange(1.0, 1 + math.prod(out_shape)).reshape(tuple(out_shape))
    u = torch.zeros(u_shape, dtype=torch.float64, requires_grad=True)
    out = conv_fn(u, torch.from_numpy(w), **conv_params)
    seed = torch.zeros(out.shape, dtype=torch.float64)  # extra rows when stride <= output_padding < dilation
    seed[tuple(slice(0, n) for n in seed_small.shape)] = torch.from_numpy(seed_small)
    (gradient,) = torch.autograd.grad(out, u, seed)
    gradient = gradient.numpy()
    transpose_fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[case.ndim]
    candidates = {name: conv_transpose(seed_small, w, method=name, **transpose_params) for name in METHODS}
    candidates[f"torch {transpose_fn.__name__}"] = transpose_fn(
        torch.from_numpy(seed_small), torch.from_numpy(w), **transpose_params
    ).numpy()
    differences = {name: float(np.abs(value - gradient).max()) for name, value in candidates.items()}
    seed_name = "x" if case.transposed else "g"
    return {
        "statement": (
            f"conv_transpose({seed_name}, w, {_keywords(transpose_params)}) equals the gradient of "
            f"{conv_fn.__name__}(u, w, {_keywords(conv_params)}) with respect to u, seeded with "
            f"{'x' if case.transposed else 'g = 1, 2, 3, ... (the shape of y)'} "
            f"(torch autograd)"
        ),
        "seed": seed_small.tolist(),
        "gradient": gradient.tolist(),
        "max_abs_difference": differences,
        "equal": bool(max(differences.values()) <= 1e-9 * max(1.0, float(np.abs(gradient).max()))),
    }


def explanation(case: Case) -> dict:
    """Everything ``deconvlab explain`` prints, as plain data."""
    import numpy as np

    from deconvlab.arithmetic import conv, conv_matrix, conv_transpose, equivalent_direct_conv

    x, w = _sample(case)
    conv_params = case.conv_params()
    if case.transposed:
        transpose_params = case.transpose_params(case.output_padding)
        y = conv_transpose(x, w, **transpose_params)
        # y = C^T x, C the conv from y's shape back to x's; its rows past x's size (there are some
        # when stride <= output_padding < dilation) are cropped
        C = conv_matrix(y.shape[1:], w, **conv_params)
        conv_output = tuple(
            i + op // s for i, op, s in zip(case.input_size, case.output_padding, case.stride, strict=True)
        )
        rows = np.arange(C.shape[0]).reshape(case.in_channels, *conv_output)
        C = C[rows[(slice(None), *(slice(0, i) for i in case.input_size))].ravel()].T
        plan_input = case.input_size
    else:
        y = conv(x, w, **conv_params)
        C = conv_matrix(x.shape[1:], w, **conv_params)
        # the output_padding that gives the transpose back x's size: the remainder conv floored away
        remainder = tuple(
            (i + 2 * p - d * (k - 1) - 1) % s
            for i, k, s, p, d in zip(
                case.input_size, case.kernel_size, case.stride, case.padding, case.dilation, strict=True
            )
        )
        transpose_params = case.transpose_params(remainder)
        plan_input = y.shape[2:]
    plans = equivalent_direct_conv(
        tuple(plan_input),
        case.kernel_size,
        stride=case.stride,
        padding=case.padding,
        output_padding=transpose_params["output_padding"],
        dilation=case.dilation,
    )
    small = max(C.shape) <= MATRIX_PRINT_LIMIT
    return {
        "operation": "conv_transpose" if case.transposed else "conv",
        "x_shape": list(x.shape),
        "w_shape": list(w.shape),
        "y_shape": list(y.shape),
        "shape_arithmetic": _shape_arithmetic(case, y.shape[2:]),
        "transpose_params": transpose_params,
        "direct_equivalent": _direct_equivalent(plans),
        "pytorch": _pytorch_calls(case, transpose_params),
        "x": x.tolist(),
        "w": w.tolist(),
        "y": y.tolist(),
        "matrix_shape": list(C.shape),
        "matrix": C.toarray().tolist() if small else None,
        "check": _check(case, x, w, transpose_params),
    }


def _array_text(values, indent: str = "    ") -> str:
    """Integers print without decimals; the leading batch axis of one sample is dropped."""
    import numpy as np

    array = np.asarray(values)
    if array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if np.all(array == np.round(array)):
        array = array.astype(np.int64)
    text = np.array2string(array, max_line_width=120)
    return "\n".join((indent + line).rstrip() for line in text.splitlines())


def render(facts: dict) -> str:
    """The explanation as text for a terminal."""
    transposed = facts["operation"] == "conv_transpose"
    title = "Transposed convolution" if transposed else "Convolution"
    check = facts["check"]
    sections = [
        f"{title}: x {tuple(facts['x_shape'])}, w {tuple(facts['w_shape'])} -> y {tuple(facts['y_shape'])}",
        "Output size per spatial axis",
        *("  " + line for line in facts["shape_arithmetic"]),
        "Equivalent direct convolution"
        + (
            " (Dumoulin & Visin's relationships, with dilation and output_padding)"
            if transposed
            else f" of its transpose, conv_transpose(g, w, {_keywords(facts['transpose_params'])})"
        ),
        *("  " + line for line in facts["direct_equivalent"]),
        "PyTorch",
        *("  " + line for line in facts["pytorch"]),
        "Worked example (x and w count 1, 2, 3, ...)",
        "  x =",
        _array_text(facts["x"]),
        "  w =",
        _array_text(facts["w"]),
        "  y =",
        _array_text(facts["y"]),
    ]
    rows, cols = facts["matrix_shape"]
    what = "y = C^T x: C^T" if transposed else "y = C x: C"
    if facts["matrix"] is None:
        sections.append(f"The matrix: {what} is {rows} x {cols}, too large to print (try a smaller --input)")
    else:
        sections += [
            f"The matrix: {what} is {rows} x {cols} (one sample, C order)",
            _array_text(facts["matrix"]),
        ]
    differences = ", ".join(f"{name} {value:.1e}" for name, value in check["max_abs_difference"].items())
    sections += [
        "Checked on the spot",
        f"  {check['statement']}:",
        f"  {'EQUAL' if check['equal'] else 'NOT EQUAL'}, max |difference| per method: {differences}",
    ]
    return "\n".join(sections)


def default_case() -> Case:
    """The case ``deconvlab explain`` shows without options: 5 inputs, kernel 3, stride 2, padding 1."""
    return make_case(
        transposed=True,
        in_channels=1,
        out_channels=1,
        groups=1,
        input_size="5",
        kernel_size="3",
        stride="2",
        padding="1",
        output_padding="1",
        dilation="1",
    )


@app.command()
def explain(
    input: str = typer.Option("5", "--input", help="Input size, e.g. 5 or 5,7 (1D to 3D)."),
    kernel: str = typer.Option("3", "--kernel", help="Kernel size, e.g. 3 or 3,2."),
    stride: str = typer.Option("2", "--stride", help="Stride, e.g. 2 or 2,1."),
    padding: str = typer.Option("1", "--padding", help="Zero padding (a transposed conv crops it)."),
    output_padding: str = typer.Option(
        "1", "--output-padding", help="Transposed only: extra size at the end."
    ),
    dilation: str = typer.Option("1", "--dilation", help="Spacing between kernel taps."),
    groups: int = typer.Option(1, "--groups", help="Channel groups; must divide both channel counts."),
    in_channels: int = typer.Option(1, "--in-channels", help="Channels of x."),
    out_channels: int = typer.Option(1, "--out-channels", help="Channels of y."),
    transposed: bool = typer.Option(
        True, "--transposed/--direct", help="Explain conv_transpose (default) or conv."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Explain a (transposed) convolution: shapes, direct equivalent, PyTorch call, matrix, gradient check."""
    case = make_case(
        transposed=transposed,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        input_size=input,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        output_padding=output_padding if transposed else "0",
        dilation=dilation,
    )
    try:
        facts = explanation(case)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps(facts, sort_keys=True) if as_json else render(facts))
