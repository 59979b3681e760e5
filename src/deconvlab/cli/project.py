"""``deconvlab project``: one unit's projection to pixel space, beside the image patch it sees.

deconvlab project --model zfnet-mini --image cat.png --layer features.12 --channel 5 -o out.png
deconvlab project --model zfnet --weights zf.pt --image cat.jpg --layer features.8 --channel 7 \\
    --position 6,6 --rule guided -o out.png

The image goes through the evaluation transform (RGB, shorter side to the model's input size, centre
crop, ImageNet normalisation). The picture shows, side by side and cut to the unit's receptive field:
the projection, then the input patch. Display normalisation, as the paper shows projections: the
projection is divided by twice its peak and centred on grey, ``0.5 + p / (2 peak)`` per pixel and colour
channel, clipped to [0, 1], where the peak is the 99.5th percentile of ``|p|``; zero is mid-grey and the
sign stays visible (the report's ``projection_rgb``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app

PANEL_SIDE = 224  # each panel is scaled (nearest) so that its longer side has at least this many pixels


@app.command()
def project(
    model: str = typer.Option("zfnet-mini", "--model", help="A registered model (deconvlab.models)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weight file (safe loader); may be left out for zfnet-mini (the demo's)."
    ),
    image: Path = typer.Option(..., "--image", help="The input image (any format Pillow reads)."),
    layer: str = typer.Option(..., "--layer", help="Module name, as in model.named_modules()."),
    channel: int = typer.Option(..., "--channel", help="Channel of the layer's output."),
    position: str = typer.Option("max", "--position", help="'y,x' in the layer's map, or 'max'."),
    rule: str = typer.Option("deconvnet", "--rule", help="deconvnet, guided or gradient."),
    engine: str = typer.Option("autograd", "--engine", help="autograd or mirror."),
    out: Path = typer.Option(..., "-o", "--out", help="The PNG to write."),
) -> None:
    """Project one unit of a layer to pixel space (Zeiler & Fergus 2014, sec. 2.1)."""
    try:
        summary = _project_to_png(model, weights, image, layer, channel, position, rule, engine, out)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)


def _project_to_png(model_name, weights, image_path, layer, channel, position, rule, engine, out) -> str:
    import torch

    from deconvlab.engine import project, receptive_field, strongest_units

    model = _load_model(model_name, weights)
    inputs = _load_image(image_path, model.input_size[-1])
    if position == "max":
        unit = strongest_units(model, inputs, layer, channels=[channel])[0]
    else:
        unit = torch.tensor([0, channel, *_parse_position(position)])
    projection = project(model, inputs, layer, unit[None], rule=rule, engine=engine)[0]
    box = receptive_field(model, layer, tuple(inputs.shape[1:])).box(int(unit[2]), int(unit[3]))
    _write_panels(projection, inputs[0], box, out)
    return (
        f"unit (channel {channel}, y {int(unit[2])}, x {int(unit[3])}) of {layer!r}, rule {rule}: "
        f"receptive field rows {box[0]}:{box[1]}, columns {box[2]}:{box[3]} -> {out}"
    )


def _load_model(name: str, weights: Path | None):
    from deconvlab.cli.scan import load_model

    return load_model(name, weights, "builtin")


def _load_image(path: Path, size: int):
    from PIL import Image, UnidentifiedImageError

    from deconvlab.data.transforms import normalize, resize_and_crop

    if not path.is_file():
        raise FileNotFoundError(f"--image={str(path)!r}: no such file")
    try:
        with Image.open(path) as picture:
            pixels = resize_and_crop(picture, size)
    except UnidentifiedImageError:
        raise ValueError(f"--image={str(path)!r}: Pillow cannot read it as an image") from None
    return normalize(pixels.copy())[None]  # a writable copy: np.asarray of a Pillow image is read-only


def _parse_position(position: str) -> tuple[int, int]:
    """'y,x' -> (y, x).

    >>> _parse_position("3, 4")
    (3, 4)
    """
    parts = position.split(",")
    try:
        y, x = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--position={position!r}: expected 'y,x' (two ints) or 'max'") from None
    return y, x


def _write_panels(projection, image, box, out: Path) -> None:
    """Projection and input patch under the receptive field, side by side, as one PNG."""
    import io

    import numpy as np
    from PIL import Image

    from deconvlab._io import write_bytes_atomic
    from deconvlab.data.transforms import denormalize
    from deconvlab.report.figures import projection_rgb

    y0, y1, x0, x1 = box
    panels = [projection_rgb(projection[:, y0:y1, x0:x1]), denormalize(image)[y0:y1, x0:x1]]
    scale = max(1, -(-PANEL_SIDE // max(y1 - y0, x1 - x0)))
    gap = np.full(((y1 - y0) * scale, 4, 3), 255, dtype=np.uint8)
    scaled = [np.repeat(np.repeat(panel, scale, axis=0), scale, axis=1) for panel in panels]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([scaled[0], gap, scaled[1]], axis=1)).save(buffer, format="PNG")
    write_bytes_atomic(out, buffer.getvalue())
