"""``deconvlab animate``: convolution-arithmetic pictures for any parameters.

Examples::

    deconvlab animate --input 5 --kernel 3 --stride 2 --padding 1 -o conv.gif
    deconvlab animate --input 3 --stride 2 --padding 1 --output-padding 1 --transposed \\
        --view scatter --numbers -o scatter.svg
    deconvlab animate --ndim 1 --input 7 --transposed -o strip.png      # a 1D strip, contact sheet
    deconvlab animate --matrix --input 4 -o matrix.png                    # C and C^T
    deconvlab animate --in-channels 2 --out-channels 4 --groups 2 --numbers -o groups.gif
    deconvlab animate --gallery gallery/                                  # every case + index.html
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app


def _value(text: str, name: str):
    """'5' -> 5, '5,7' -> (5, 7) (per axis)."""
    from deconvlab.cli.explain import parse_sizes

    values = parse_sizes(text, name)
    return values[0] if len(values) == 1 else values


@app.command()
def animate(
    input: str = typer.Option("5", "--input", help="Input size, e.g. 5 or 5,7."),
    kernel: str = typer.Option("3", "--kernel", help="Kernel size, e.g. 3 or 3,2."),
    stride: str = typer.Option("1", "--stride", help="Stride, e.g. 2 or 2,1."),
    padding: str = typer.Option("0", "--padding", help="Zero padding (a transposed conv crops it)."),
    dilation: str = typer.Option("1", "--dilation", help="Spacing between kernel taps."),
    output_padding: str = typer.Option(
        "0", "--output-padding", help="Transposed only: extra rows/cols at the end (< stride or dilation)."
    ),
    transposed: bool = typer.Option(False, "--transposed", help="Draw conv_transpose instead of conv."),
    view: str = typer.Option(
        None, "--view", help="Transposed only: 'direct' (zeros inserted, flipped kernel) or 'scatter'."
    ),
    ndim: int = typer.Option(None, "--ndim", help="1 draws a 1D strip; default: 2."),
    in_channels: int = typer.Option(1, "--in-channels", help="Input channels (stacked top to bottom)."),
    out_channels: int = typer.Option(1, "--out-channels", help="Output channels."),
    groups: int = typer.Option(
        1, "--groups", help="Channel groups: each output channel reads only the inputs of its group."
    ),
    numbers: bool = typer.Option(False, "--numbers", help="Fill the cells with small integers and sums."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --numbers values."),
    output: Path = typer.Option(None, "-o", "--output", help="Output file: .gif, .png or .svg."),
    frame: int = typer.Option(None, "--frame", help="Write only this frame (0-based) as .png or .svg."),
    each_frame: bool = typer.Option(False, "--each-frame", help="Write every frame: OUT_000.png, ..."),
    gallery: Path = typer.Option(None, "--gallery", help="Render the whole gallery into this folder."),
    matrix: bool = typer.Option(False, "--matrix", help="Draw the matrices C and C^T instead (small cases)."),
) -> None:
    """Draw convolution arithmetic: every step of a conv or transposed conv, with labels and formulas."""
    from deconvlab.arithmetic.animate import (
        build_animation,
        check_path,
        make_case,
        matrix_picture,
        render_gallery,
        save,
    )

    if gallery is not None:
        rows = render_gallery(gallery)
        count = sum(len(items) for items in rows.values())
        typer.echo(f"{count} animations in {gallery}; open {gallery / 'index.html'}")
        return
    if output is None:
        raise typer.BadParameter("give -o/--output (a .gif, .png or .svg file), or --gallery DIR")
    sizes = {name: _value(text, option) for name, text, option in (
        ("input_size", input, "input"), ("kernel_size", kernel, "kernel"), ("stride", stride, "stride"),
        ("padding", padding, "padding"), ("dilation", dilation, "dilation"),
        ("output_padding", output_padding, "output-padding"),
    )}
    try:
        case = make_case(**sizes, transposed=transposed, view=view, ndim=ndim, in_channels=in_channels,
                         out_channels=out_channels, groups=groups)
        check_path(output)
        if matrix:
            frames = [matrix_picture(case)]
        else:
            frames = build_animation(case, numbers=numbers, seed=seed).frames
        written = save(frames, output, frame=frame, each_frame=each_frame)
    except ValueError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    more = f" (and {len(written) - 1} more)" if len(written) > 1 else ""
    typer.echo(f"wrote {written[0]}{more}: {len(frames)} frame(s)")
