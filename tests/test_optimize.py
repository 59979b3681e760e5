"""Feature visualisation by optimisation: each part against its definition, the optimum where it is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.analyses.optimize import (
    ClipSmallContribution,
    ClipSmallNorm,
    GaussianBlur,
    L2Decay,
    Recipe,
    measure,
    normalize_pixels,
    optimize,
)
from deconvlab.analyses.optimize_image import FourierImage, PixelImage, Robustness, fourier_scale
from deconvlab.cli import app
from deconvlab.data import load_dataset, normalize
from deconvlab.models import create

FAST = {"steps": 24, "progress": False}


def tiny_net(dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3, stride=2), torch.nn.ReLU()
    )
    return net.to(dtype)


# --- the parameterisation of Olah et al. 2017 -------------------------------------------------------


def test_fourier_scale_is_one_over_frequency():
    h, w = 6, 7
    expected = np.empty((h, w // 2 + 1))
    for i in range(h):
        for j in range(w // 2 + 1):
            fy, fx = (i if i <= h // 2 else i - h) / h, j / w  # cycles per pixel, as numpy's fftfreq
            expected[i, j] = 1 / max(np.hypot(fy, fx), 1 / max(h, w))
    np.testing.assert_allclose(fourier_scale(h, w).numpy(), expected)


@pytest.mark.parametrize("decorrelate", [False, True])
def test_fourier_pixels_follow_the_definition(decorrelate):
    image = FourierImage(decorrelate=decorrelate)
    params = image.init((2, 3, 6, 7), torch.Generator().manual_seed(0), torch.float64, "cpu") * 50
    spectrum = params[..., 0].numpy() + 1j * params[..., 1].numpy()
    spatial = np.fft.irfft2(spectrum * fourier_scale(6, 7).numpy(), s=(6, 7), norm="ortho") / 4
    if decorrelate:  # Lucid's colour matrix, each column divided by the largest column norm
        lucid = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
        spatial = np.einsum("ij,njhw->nihw", lucid / np.linalg.norm(lucid, axis=0).max(), spatial)
    np.testing.assert_allclose(image.pixels(params, (6, 7)).numpy(), 1 / (1 + np.exp(-spatial)), rtol=1e-12)


@pytest.mark.parametrize(("decorrelate", "size"), [(True, (8, 8)), (True, (7, 9)), (False, (5, 6))])
def test_fourier_round_trip_image_spectrum_image(decorrelate, size):
    image = FourierImage(decorrelate=decorrelate)
    pixels = torch.rand((2, 3, *size), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pixels = pixels * 0.98 + 0.01
    torch.testing.assert_close(image.pixels(image.spectrum_of(pixels), size), pixels, rtol=1e-10, atol=1e-10)


def test_robustness_shift_only_is_a_zero_filled_shift():
    image = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    moved = Robustness(shift=0.2, scales=(1.0,), degrees=(0,))(image, torch.Generator().manual_seed(3))
    matches = []
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            reference = torch.zeros_like(image)  # reference[y + dy, x + dx] = image[y, x]
            ys, xs = slice(max(dy, 0), 10 + min(dy, 0)), slice(max(dx, 0), 10 + min(dx, 0))
            reference[..., ys, xs] = image[..., max(-dy, 0) : 10 - max(dy, 0), max(-dx, 0) : 10 - max(dx, 0)]
            if torch.allclose(moved, reference, atol=1e-6):
                matches.append((dy, dx))
    assert len(matches) == 1 and matches[0] != (0, 0)


# --- the regularisers of Yosinski et al. 2015 -----------------------------------------------------------


def test_regularizers_follow_their_definitions():
    rng = np.random.default_rng(0)
    pixels, gradient = rng.random((2, 3, 9, 9)), rng.standard_normal((2, 3, 9, 9))
    mean = np.array([0.4, 0.5, 0.6]).reshape(3, 1, 1)
    t = {name: torch.from_numpy(v) for name, v in (("p", pixels), ("g", gradient), ("m", mean))}

    decayed = L2Decay(0.1)(t["p"], t["g"], 1, t["m"]).numpy()
    np.testing.assert_allclose(decayed - mean, 0.9 * (pixels - mean))

    for score, rule in (
        (np.linalg.norm(pixels - mean, axis=1), ClipSmallNorm(30)),
        (np.abs(((pixels - mean) * gradient).sum(axis=1)), ClipSmallContribution(70)),
    ):
        expected = pixels.copy()
        for n in range(2):
            small = score[n] < np.percentile(score[n], rule.percentile)
            expected[n][:, small] = np.broadcast_to(mean, (3, 9, 9))[:, small]
        np.testing.assert_allclose(rule(t["p"], t["g"], 1, t["m"]).numpy(), expected)

    blur = GaussianBlur(1.0, every=4)
    assert blur(t["p"], t["g"], 3, t["m"]) is t["p"]  # only every 4th step
    offsets = np.arange(-3, 4)
    kernel = np.exp(-(offsets**2) / 2)
    kernel /= kernel.sum()
    padded = np.pad(pixels, ((0, 0), (0, 0), (3, 3), (3, 3)), mode="reflect")
    rows = sum(kernel[i] * padded[:, :, i : i + 9, :] for i in range(7))
    expected = sum(kernel[i] * rows[:, :, :, i : i + 9] for i in range(7))
    np.testing.assert_allclose(blur(t["p"], t["g"], 4, t["m"]).numpy(), expected, rtol=1e-6)


# --- the optimisation ---------------------------------------------------------------------------------


def test_l2_decay_ascent_converges_to_the_filter():
    """<w, x> - decay: the fixed point of x <- (1 - d)(x + lr w / rms(w)) is (1 - d) lr w / (d rms(w))."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 1, 8, bias=False).double()
    recipe = Recipe(PixelImage(), "sgd", 0.01, regularizers=(L2Decay(0.05),), clamp=False)
    result = optimize(
        torch.nn.Sequential(conv), "0", [0], recipe=recipe, size=(3, 8, 8), mean=(0, 0, 0), std=(1, 1, 1),
        steps=400, progress=False,
    )  # fmt: skip
    w = conv.weight[0].detach()
    expected = 0.95 * 0.01 * w / (0.05 * w.pow(2).mean().sqrt())
    torch.testing.assert_close(result.pixels[0], expected, rtol=1e-6, atol=1e-9)


def test_fourier_ascent_approaches_the_box_optimum():
    """Pixels in (0, 1), objective <w, pixels - 0.5>: the optimum is pixel 1 where w > 0, 0 where w < 0.

    A smooth filter of a plain colour space: the 1/f scaling favours smooth images, the sigmoid slows
    the pixels near 0 and 1, and a pixel where w is near 0 hardly moves; those are left out.
    """
    conv = torch.nn.Conv2d(3, 1, 8, bias=False)
    y = torch.arange(8.0) + 0.5
    pattern = torch.cos(torch.pi * y[:, None] / 4) + torch.sin(torch.pi * y[None, :] / 4)
    conv.weight.data[0] = torch.tensor([1.0, -0.5, 0.3]).view(3, 1, 1) * pattern
    recipe = Recipe(FourierImage(decorrelate=False), "adam", 0.05)
    result = optimize(
        torch.nn.Sequential(conv), "0", [0], recipe=recipe, size=(3, 8, 8), mean=(0.5,) * 3, std=(1,) * 3,
        steps=150, progress=False,
    )  # fmt: skip
    w = conv.weight[0].detach()
    clear = w.abs() > 0.25 * w.abs().max()
    assert torch.equal((result.pixels[0] > 0.5)[clear], (w > 0)[clear])
    assert float(result.objective[0]) > 0.85 * float(w.abs().sum() / 2)


@pytest.mark.parametrize("recipe", ["fourier", "pixel"])
def test_same_seed_same_images(recipe):
    net = tiny_net()
    first = optimize(net, "2", [1, 4], recipe=recipe, size=(3, 16, 16), seed=5, **FAST)
    again = optimize(net, "2", [1, 4], recipe=recipe, size=(3, 16, 16), seed=5, **FAST)
    other = optimize(net, "2", [1, 4], recipe=recipe, size=(3, 16, 16), seed=6, **FAST)
    assert torch.equal(first.pixels, again.pixels) and torch.equal(first.objective, again.objective)
    assert not torch.allclose(first.pixels, other.pixels)


@pytest.mark.parametrize(
    ("recipe", "objective"),
    [("pixel", "mean"), ("pixel", "centre"), ("pixel", (1, 2)), ("fourier", "centre")],
)
def test_batched_channels_equal_one_at_a_time(recipe, objective):
    net = tiny_net(torch.float64)
    settings = {"recipe": recipe, "objective": objective, "size": (3, 16, 16), "seed": 2, "steps": 40}
    settings.update(tol=0.1, patience=4, progress=False)
    batch = optimize(net, "2", [0, 3, 4], **settings)
    for i, channel in enumerate([0, 3, 4]):
        alone = optimize(net, "2", [channel], **settings)
        torch.testing.assert_close(batch.pixels[i], alone.pixels[0], rtol=1e-9, atol=1e-9)
        assert batch.steps[i] == alone.steps[0]
    assert max(batch.steps) < 40  # the convergence rule stopped every channel, each at its own step


def test_float64_model_gives_float64_images_that_beat_noise():
    net = tiny_net(torch.float64)
    result = optimize(net, "2", [0, 1, 2], size=(3, 16, 16), **FAST)
    assert result.pixels.dtype == result.inputs.dtype == torch.float64
    noise = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (result.objective > measure(net, "2", normalize_pixels(noise), [0, 1, 2])[0]).all()


def test_linear_layer_units():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3)
    )
    result = optimize(net, "3", [2], size=(3, 8, 8), **FAST)
    with torch.no_grad():
        direct = net(result.inputs)[0, 2]
    np.testing.assert_allclose(float(result.objective[0]), float(direct), rtol=1e-5)
    np.testing.assert_allclose(float(result.maximum[0]), float(direct), rtol=1e-5)


def test_optimised_images_beat_the_best_of_64_random_images_on_the_demo_network(demo_model):
    model, _ = demo_model
    channels = [0, 1, 2, 3]
    result = optimize(model, "features.8", channels, objective="centre", steps=64, progress=False)
    noise = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    best = torch.stack(
        [measure(model, "features.8", normalize_pixels(noise), [c] * 64, "centre")[0].max() for c in channels]
    )
    assert (result.objective > best).all(), (result.objective, best)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": "nope"}, "layer='nope': not a module"),
        ({"channels": [7]}, r"channels=\[7\]: out of range; layer '2' has 5 channels"),
        ({"channels": []}, "channels=.*non-empty"),
        ({"steps": 0}, "steps=0: must be an int >= 1"),
        ({"tol": -1.0}, "tol=-1.0"),
        ({"objective": "max"}, "objective='max'"),
        ({"objective": (9, 0)}, r"objective=\(9, 0\): outside"),
        ({"recipe": "deepdream"}, "recipe='deepdream': not a recipe"),
        ({"size": (3, 16)}, r"size=\(3, 16\)"),
        ({"mean": (0.5,)}, r"mean=\(0.5,\)"),
    ],
)
def test_bad_parameters_raise_value_errors_naming_them(kwargs, message):
    arguments = {"layer": "2", "channels": [0], "size": (3, 16, 16), **FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        optimize(tiny_net(), arguments.pop("layer"), arguments.pop("channels"), **arguments)


def test_bad_parts_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match=r"L2Decay\(rate\)=1.5"):
        L2Decay(1.5)
    with pytest.raises(ValueError, match=r"GaussianBlur\(every=0\)"):
        GaussianBlur(1.0, every=0)
    with pytest.raises(ValueError, match=r"ClipSmallNorm\(percentile\)=101"):
        ClipSmallNorm(101)
    with pytest.raises(ValueError, match="use PixelImage"):
        Recipe(FourierImage(), "adam", 0.05, regularizers=(L2Decay(0.1),))
    with pytest.raises(ValueError, match=r"Recipe\(optimizer='lbfgs'\)"):
        Recipe(PixelImage(), "lbfgs", 0.05)
    with pytest.raises(ValueError, match="decorrelation needs 3 channels"):
        FourierImage(decorrelate=True).init((1, 1, 4, 4), torch.Generator(), torch.float32, "cpu")


# --- the command line --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=5)
    path = tmp_path_factory.mktemp("optimize-cli") / "w.pt"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def test_cli_writes_pngs_and_json_that_match_a_recomputation(weights, tmp_path):
    path, model = weights
    base = ["optimize", "--model", "zfnet-mini", "--weights", str(path), "--layer", "features.8"]
    base += ["--channels", "3,0", "--steps", "12", "--no-progress"]
    args = [*base, "--data", "builtin", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "optimize.json").read_text())
    assert sorted(report["channels"]) == ["0", "3"]
    dataset = load_dataset("builtin", "val", image_size=64)
    with torch.no_grad():
        maps = torch.cat(
            [
                model.features[:9](torch.stack([dataset[i][0] for i in range(s, min(s + 200, len(dataset)))]))
                for s in range(0, len(dataset), 200)
            ]
        )
    for channel in (3, 0):
        entry = report["channels"][str(channel)]
        png = np.array(Image.open(tmp_path / f"channel-{channel}.png"))
        with torch.no_grad():
            out = model.features[:9](normalize(png)[None])[0, channel]
        np.testing.assert_allclose(entry["activation"], float(out.max()), rtol=1e-5)
        np.testing.assert_allclose(
            entry["objective"], float(out[out.shape[0] // 2, out.shape[1] // 2]), rtol=1e-5
        )
        np.testing.assert_allclose(entry["dataset_max"], float(maps[:, channel].amax()), rtol=1e-5)
        assert entry["steps"] == 12 and entry["seconds"] > 0
    again = tmp_path / "again"
    result = CliRunner().invoke(app, [*base, "--out", str(again)])  # with --weights, no data by default
    assert result.exit_code == 0, result.output
    assert json.loads((again / "optimize.json").read_text())["channels"]["0"]["dataset_max"] is None


def test_cli_errors_exit_2_with_the_reason(weights, tmp_path):
    path, _ = weights
    base = ["optimize", "--weights", str(path), "--out", str(tmp_path), "--no-progress"]
    result = CliRunner().invoke(app, [*base, "--layer", "features.8", "--channels", "0,x"])
    assert result.exit_code == 2 and "--channels='0,x'" in result.output
    result = CliRunner().invoke(
        app, [*base, "--layer", "features.8", "--channels", "0", "--objective", "top"]
    )
    assert result.exit_code == 2 and "--objective='top'" in result.output
    result = CliRunner().invoke(app, [*base, "--layer", "features.99", "--channels", "0"])
    assert result.exit_code == 2 and "layer='features.99'" in result.output
    assert not (tmp_path / "optimize.json").exists()
