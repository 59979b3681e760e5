"""``deconvlab project``: the PNG holds the library's projection and the image patch, side by side."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.cli import app
from deconvlab.data.transforms import normalize, resize_and_crop
from deconvlab.engine import project, receptive_field
from deconvlab.models import create


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project-cli")
    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=5)
    torch.save(model.state_dict(), folder / "w.pt")
    pixels = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "in.png")
    return folder, model


def test_png_is_projection_beside_patch(files):
    folder, model = files
    out = folder / "out.png"
    args = [
        "project",
        "--model",
        "zfnet-mini",
        "--weights",
        str(folder / "w.pt"),
        "--image",
        str(folder / "in.png"),
    ]
    args += [
        "--layer",
        "features.8",
        "--channel",
        "3",
        "--position",
        "2,5",
        "--rule",
        "guided",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with Image.open(folder / "in.png") as picture:
        pixels = resize_and_crop(picture, 64)
    inputs = normalize(pixels.copy())[None]
    expected = project(model, inputs, "features.8", [[0, 3, 2, 5]], rule="guided")[0]
    y0, y1, x0, x1 = receptive_field(model, "features.8", (3, 64, 64)).box(2, 5)
    png = np.asarray(Image.open(out))
    scale = png.shape[0] // (y1 - y0)
    assert png.shape == ((y1 - y0) * scale, 2 * (x1 - x0) * scale + 4, 3)
    shown = png[::scale, : (x1 - x0) * scale : scale].astype(float)
    crop = expected[:, y0:y1, x0:x1]
    # display normalisation (report.figures): 0.5 + p / (2 peak), peak = 99.5th percentile of |p|, clipped
    peak = np.quantile(crop.abs().double().numpy(), 0.995)
    reference = ((0.5 + crop.double().numpy() / (2 * peak)).clip(0, 1) * 255).round().transpose(1, 2, 0)
    np.testing.assert_allclose(shown, reference, atol=1)
    patch = png[::scale, (x1 - x0) * scale + 4 :: scale]
    np.testing.assert_array_equal(patch, pixels[y0:y1, x0:x1])


def test_errors_exit_2_with_the_reason(files):
    folder, _ = files
    base = ["project", "--weights", str(folder / "w.pt"), "--image", str(folder / "in.png"), "-o", "x.png"]
    result = CliRunner().invoke(app, [*base, "--layer", "features.99", "--channel", "0"])
    assert result.exit_code == 2 and "layer='features.99'" in result.output
    result = CliRunner().invoke(app, [*base, "--layer", "features.8", "--channel", "0", "--position", "2"])
    assert result.exit_code == 2 and "--position='2'" in result.output
    result = CliRunner().invoke(app, [*base, "--layer", "features.8", "--channel", "500"])
    assert result.exit_code == 2 and "channel 500 out of range" in result.output
