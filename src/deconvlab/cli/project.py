"""``deconvlab project``: one unit's projection to pixel space, beside the image patch it sees.

deconvlab project --model zfnet-mini --image cat.png --layer features.12 --channel 5 -o out.png
deconvlab project --model zfnet --weights zf.pt --image cat.jpg --layer features.8 --channel 7 \\
    --position 6,6 --rule guided -o out.png
deconvlab project --model torchvision:resnet50 --weights DEFAULT --image cat.jpg --layer layer3 \\
    --channel 7 -o out.png

The image goes through the evaluation transform (RGB, shorter side to the model's input size, centre
crop, the model's normalisation: its weights' metadata, ``--mean``/``--std``, or ImageNet's).
The picture shows, side by side and cut to the unit's receptive field:
the projection, then the input patch. Display normalisation, as the paper shows projections: the
projection is divided by twice its peak and centred on grey, ``0.5 + p / (2 peak)`` per pixel and colour
channel, clipped to [0, 1], where the peak is the 99.5th percentile of ``|p|``; zero is mid-grey and the
sign stays visible (the report's ``projection_rgb``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from deconvlab.cli._app import app
from deconvlab.cli._model import INPUT_SIZE, MEAN, STD, WEIGHTS, load_cli_model, model_option

PANEL_SIDE = 224  # each panel is scaled (nearest) so that its longer side has at least this many pixels


@app.command()
def project(
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    image: Path = typer.Option(..., "--image", help="The input image (any format Pillow reads)."),
    layer: str = typer.Option(..., "--layer", help="Module name, as in model.named_modules()."),
    channel: int = typer.Option(..., "--channel", help="Channel of the layer's output."),
    position: str = typer.Option("max", "--position", help="'y,x' in the layer's map, or 'max'."),
    rule: str = typer.Option("deconvnet", "--rule", help="deconvnet, guided or gradient."),
    engine: str = typer.Option("autograd", "--engine", help="autograd or mirror."),
    out: Path = typer.Option(..., "-o", "--out", help="The PNG to write."),
    input_size: int | None = INPUT_SIZE,
    mean: str | None = MEAN,
    std: str | None = STD,
) -> None:
    """Project one unit of a layer to pixel space (Zeiler & Fergus 2014, sec. 2.1)."""
    try:
        network = load_cli_model(model, weights, "builtin", input_size, mean, std)
        summary = _project_to_png(network, image, layer, channel, position, rule, engine, out)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)


def _project_to_png(model, image_path, layer, channel, position, rule, engine, out) -> str:
    import torch

    from deconvlab.engine import project, receptive_field, strongest_units

    inputs = _load_image(image_path, model.input_size[-1], model.mean, model.std)
    if position == "max":
        unit = strongest_units(model, inputs, layer, channels=[channel])[0]
    else:
        unit = torch.tensor([0, channel, *_parse_position(position)])
    projection = project(model, inputs, layer, unit[None], rule=rule, engine=engine)[0]
    box = receptive_field(model, layer, tuple(inputs.shape[1:])).box(int(unit[2]), int(unit[3]))
    _write_panels(projection, inputs[0], box, out, model.mean, model.std)
    return (
        f"unit (channel {channel}, y {int(unit[2])}, x {int(unit[3])}) of {layer!r}, rule {rule}: "
        f"receptive field rows {box[0]}:{box[1]}, columns {box[2]}:{box[3]} -> {out}"
    )


def _load_image(path: Path, size: int, mean, std):
    from deconvlab.data.decode import UnreadableImage, read_image
    from deconvlab.data.transforms import normalize, resize_and_crop

    if not path.is_file():
        raise FileNotFoundError(f"--image={str(path)!r}: no such file")
    try:  # the library's reader: corrupt, truncated or too large (a decompression bomb) is an error
        pixels = resize_and_crop(read_image(path), size)
    except UnreadableImage as error:
        raise ValueError(f"--image={str(path)!r}: not a readable image ({error.reason})") from None
    # a writable copy: np.asarray of a Pillow image is read-only
    return normalize(pixels.copy(), mean=mean, std=std)[None]


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


def _write_panels(projection, image, box, out: Path, mean, std) -> None:
    """Projection and input patch under the receptive field, side by side, as one PNG."""
    import io

    import numpy as np
    from PIL import Image

    from deconvlab._io import write_bytes_atomic
    from deconvlab.data.transforms import denormalize
    from deconvlab.report.figures import projection_rgb

    y0, y1, x0, x1 = box
    patch = denormalize(image, mean=mean, std=std)[y0:y1, x0:x1]
    panels = [projection_rgb(projection[:, y0:y1, x0:x1]), patch]
    scale = max(1, -(-PANEL_SIDE // max(y1 - y0, x1 - x0)))
    gap = np.full(((y1 - y0) * scale, 4, 3), 255, dtype=np.uint8)
    scaled = [np.repeat(np.repeat(panel, scale, axis=0), scale, axis=1) for panel in panels]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([scaled[0], gap, scaled[1]], axis=1)).save(buffer, format="PNG")
    write_bytes_atomic(out, buffer.getvalue())
