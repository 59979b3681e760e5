"""``deconvlab report``: the report's numbers against independent computations and the ground truth.

One small end-to-end report on the trained demo network (the ``demo_model`` fixture), interrupted once
and resumed; one report on a user's image folder with an unreadable file; the pieces by hand.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.cli import app
from deconvlab.report import ReportOptions, build_report
from deconvlab.report.build import checks
from deconvlab.report.cache import StageCache
from deconvlab.report.figures import crop, tile
from deconvlab.report.html import image_sources

runner = CliRunner()

SMALL = ReportOptions(
    layers=("features.0", "features.12"),
    channels_per_layer=4,
    evolution_channels=2,
    evolution_images=200,
    occlusion_images_per_class=2,
    occlusion_shown=2,
    probe_train_images=600,
    probe_test_images=240,
    optimize_steps=16,  # a few steps: the numbers are checked, not the optimiser's reach
    sanity_images=2,
    progress=False,
)


# --- pieces -----------------------------------------------------------------------------------------


def test_checks_follow_their_rules():
    report = {
        "occlusion": {"pointing_game_accuracy": 0.75},
        "top9": {"fraction_in_field": 1.0, "fraction_on_object": 0.4},
        "correspondence": [
            {"layer": "c5", "part": "eye", "mean": 0.1, "std": 0.0},
            {"layer": "c5", "part": "nose", "mean": 0.3, "std": 0.0},
            {"layer": "c5", "part": "random", "mean": 0.2, "std": 0.0},
            {"layer": "fc7", "part": "eye", "mean": 0.9, "std": 0.0},
            {"layer": "fc7", "part": "random", "mean": 0.2, "std": 0.0},
        ],
        "correspondence_setup": {"layers": {"last_conv": "c5", "penultimate": "fc7"}},
    }
    found = {c["name"]: (c["value"], c["passed"]) for c in checks(report)}
    assert found == {
        "pointing game accuracy (Fig. 7 (d))": (0.75, False),
        "projection energy inside the receptive field": (1.0, True),
        "projection energy on the object": (0.4, False),
        "correspondence: eye below random at c5": (0.1, True),
        "correspondence: nose below random at c5": (0.3, False),
    }


def test_crop_pads_grey_on_the_side_the_field_was_clipped():
    picture = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    top_left = crop(picture, (0, 2, 0, 3), size=(4, 4))  # clipped at the top and the left
    np.testing.assert_array_equal(top_left[2:, 1:], picture[:2, :3])
    assert (top_left[:2] == 128).all() and (top_left[:, :1] == 128).all()
    bottom = crop(picture, (3, 5, 1, 5), size=(4, 4))  # clipped at the bottom only
    np.testing.assert_array_equal(bottom[:2], picture[3:5, 1:5])
    assert (bottom[2:] == 128).all()
    np.testing.assert_array_equal(crop(picture, (1, 3, 1, 4)), picture[1:3, 1:4])


def test_tile_places_each_tile_in_its_cell():
    red, blue = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    grid = tile([red, blue, red], columns=2, cell=4, gap=1)
    assert grid.shape == (9, 9, 3)
    assert (grid[:4, :4] == [255, 0, 0]).all() and (grid[:4, 5:] == [0, 0, 255]).all()
    assert (grid[5:, :4] == [255, 0, 0]).all() and (grid[5:, 5:] == 255).all()  # empty cell stays white


def test_stage_cache_recomputes_when_a_figure_is_gone(tmp_path):
    cache, calls = StageCache(tmp_path), []

    def compute():
        calls.append(1)
        (tmp_path / "a.png").write_bytes(b"png")
        return {"x": 1, "figures": ["a.png"]}

    cache.run("s", {"k": 1}, compute)
    cache.run("s", {"k": 1}, compute)
    (tmp_path / "a.png").unlink()
    assert cache.run("s", {"k": 1}, compute) == {"x": 1, "figures": ["a.png"]}
    assert len(calls) == 2


# --- the demo network, end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_report(demo_model, tmp_path_factory):
    """A small report, first interrupted by a corrupt checkpoint, then resumed. Returns what it needs."""
    model, run_dir = demo_model
    out = tmp_path_factory.mktemp("report")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    for path in run_dir.glob("epoch-*.pt"):
        shutil.copy(path, checkpoints / path.name)
    (checkpoints / "epoch-999.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="epoch-999.pt"):
        build_report(model, out, model_name="zfnet-mini", checkpoints=checkpoints, options=SMALL)
    stages = out / ".stages"
    before = {p.name: p.stat().st_mtime_ns for p in stages.glob("*.json")}
    (checkpoints / "epoch-999.pt").unlink()
    index = build_report(model, out, model_name="zfnet-mini", checkpoints=checkpoints, options=SMALL)
    after = {p.name: p.stat().st_mtime_ns for p in stages.glob("*.json")}
    report = json.loads((out / "report.json").read_text())
    return model, index, report, before, after, checkpoints


def test_report_resumes_after_an_interruption(demo_report):
    _, _, report, before, after, checkpoints = demo_report
    assert {"dataset.json", "top9.json"} <= set(before)  # finished before the corrupt checkpoint
    for name, stamp in before.items():  # nothing finished was computed again
        assert after[name] == stamp, name
    epochs = sorted(int(p.stem.split("-")[1]) for p in checkpoints.glob("epoch-*.pt"))
    assert report["evolution"]["epochs"] == epochs
    assert [step["epoch"] for step in report["evolution"]["steps"]] == epochs


def test_every_image_of_the_page_exists(demo_report):
    _, index, report, *_ = demo_report
    sources = image_sources(index.read_text())
    assert len(sources) >= 10
    for source in sources:
        assert not Path(source).is_absolute() and ".." not in source
        with Image.open(index.parent / source) as image:
            image.verify()
    assert all(c["passed"] for c in report["checks"]), report["checks"]


def test_ground_truth_checks_hold(demo_report):
    _, _, report, *_ = demo_report
    assert report["occlusion"]["pointing_game_accuracy"] >= 0.8
    last_conv = report["correspondence_setup"]["layers"]["last_conv"]
    delta = {row["part"]: row["mean"] for row in report["correspondence"] if row["layer"] == last_conv}
    assert {"left_eye", "right_eye", "nose", "random"} <= set(delta)
    for part in ("left_eye", "right_eye", "nose"):
        assert delta[part] < delta["random"], (part, delta)
    assert report["top9"]["fraction_in_field"] > 0.5
    assert report["top9"]["fraction_on_object"] > 0.5


def test_correspondence_rows_equal_a_direct_computation(demo_report):
    from deconvlab.data import BuiltinDataset

    model, _, report, *_ = demo_report
    setup = report["correspondence_setup"]
    assert setup["layers"] == {"last_conv": "classifier.0:input", "penultimate": "classifier.6:input"}
    data = BuiltinDataset("test")
    images = torch.stack([data[i][0] for i in setup["images"]])

    def pair_changes(boxes):  # layer 5 as the paper draws it: conv5, ReLU, max-pool, flattened
        occluded = images.clone()
        for n, (y0, y1, x0, x1) in enumerate(boxes):
            occluded[n, :, y0:y1, x0:x1] = 0.0
        with torch.no_grad():
            signs = torch.sign(model.features(images) - model.features(occluded)).flatten(1)
        return [
            float((signs[i] != signs[j]).double().mean())
            for i, j in itertools.combinations(range(len(signs)), 2)
        ]

    expected = {
        "nose": pair_changes(setup["boxes"]["nose"]),
        "random": [change for draw in setup["random_boxes"] for change in pair_changes(draw)],
    }
    for part, pairs in expected.items():
        row = next(
            r for r in report["correspondence"] if r["layer"] == "classifier.0:input" and r["part"] == part
        )
        np.testing.assert_allclose([row["mean"], row["std"]], [np.mean(pairs), np.std(pairs)], rtol=1e-6)


def test_occlusion_maps_equal_full_recomputation(demo_report):
    from deconvlab.analyses.occlusion import occlusion_map
    from deconvlab.data import BuiltinDataset

    model, _, report, *_ = demo_report
    section = report["occlusion"]
    data = BuiltinDataset("test")
    position = 0
    image_index, label = section["images"][position], section["labels"][position]
    reference = occlusion_map(
        model,
        data[image_index][0][None],
        window=section["window"],
        stride=section["stride"],
        incremental=False,
    )
    probability = reference.logits.softmax(dim=-1)[0, :, :, label]
    shown = section["shown"][str(position)]
    np.testing.assert_allclose(shown["true_probability"], probability, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(shown["predicted"], reference.logits.argmax(dim=-1)[0])
    # the pointing game from those maps, by hand
    iy, ix = np.unravel_index(int(probability.argmin()), probability.shape)
    centre = (
        section["positions_y"][iy] + section["window"] // 2,
        section["positions_x"][ix] + section["window"] // 2,
    )
    assert section["pointing_game_centres"][position] == list(centre)
    assert section["pointing_game_hits"][position] == bool(data.mask(image_index)[centre])


def test_top9_lists_equal_a_brute_force_scan(demo_report):
    from deconvlab.data import BuiltinDataset

    model, _, report, *_ = demo_report
    data = BuiltinDataset("val")
    layer = report["top9"]["layers"][-1]
    assert layer["layer"] == "features.12"
    with torch.no_grad():
        maxima = torch.cat(
            [
                model.features[:13](torch.stack([data[i][0] for i in range(s, min(s + 200, len(data)))]))
                .flatten(2)
                .amax(dim=2)
                for s in range(0, len(data), 200)
            ]
        )
    strongest = maxima.max(dim=0).values
    chosen = [c["channel"] for c in layer["channels"]]
    assert chosen == torch.argsort(strongest, descending=True, stable=True)[: len(chosen)].tolist()
    for record in layer["channels"]:
        column = maxima[:, record["channel"]].double()
        expected = sorted(range(len(column)), key=lambda i: (-float(column[i]), i))[:9]
        assert record["images"] == expected
        np.testing.assert_allclose(record["values"], column[expected], rtol=1e-5)


def test_optimised_images_reach_what_the_report_says(demo_report):
    """Each shown optimised image, read back from its PNG and measured by the library, reaches the
    activation the report gives; the dataset's best is the top-9's first value; the ratio is theirs."""
    from deconvlab.analyses.optimize import measure
    from deconvlab.data import normalize

    model, index, report, *_ = demo_report
    page = index.read_text()
    for layer in report["top9"]["layers"]:
        for record in layer["channels"]:
            shown = record["optimized"]
            with Image.open(index.parent / shown["image"]) as image:
                pixels = np.array(image.convert("RGB"))
            assert pixels.shape == (64, 64, 3)
            objective, largest = measure(model, layer["layer"], normalize(pixels)[None], [record["channel"]])
            np.testing.assert_allclose(shown["activation"], float(largest[0]), rtol=1e-5)
            assert shown["dataset_max"] == pytest.approx(record["values"][0], rel=1e-6)
            assert shown["ratio"] == pytest.approx(shown["activation"] / shown["dataset_max"])
            assert shown["steps"] == SMALL.optimize_steps
            assert f"{shown['activation']:.3f}" in page


def test_fig2_captions_name_each_image_as_the_dataset_does(demo_report):
    from deconvlab.data import BuiltinDataset

    _, index, report, *_ = demo_report
    data, page = BuiltinDataset("val"), index.read_text()
    for layer in report["top9"]["layers"]:
        for record in layer["channels"]:
            assert record["sources"] == [data.source(i) for i in record["images"]]
            assert record["classes"] == [data.classes[data.labels[i]] for i in record["images"]]
            for source, name in zip(record["sources"], record["classes"], strict=True):
                assert f"{source} ({name})" in page


def test_sanity_section_equals_a_direct_call(demo_report):
    from deconvlab.analyses.sanity import MEASURES, cascading_randomisation, default_units
    from deconvlab.data import BuiltinDataset

    model, index, report, *_ = demo_report
    section = report["sanity"]
    data = BuiltinDataset("val")
    assert section["images"] == [0, len(data) - 1]  # SMALL.sanity_images = 2, spread over the split
    inputs = torch.stack([data[i][0] for i in section["images"]])
    assert section["layer"] == "classifier.6"  # the logits: the last layer with parameters
    units = default_units(model, inputs, section["layer"])
    assert section["units"] == units.tolist()
    expected = cascading_randomisation(model, inputs, section["layer"], units, seed=SMALL.seed).to_json()
    assert [s["layer"] for s in section["cascading"]["deconvnet"]] == section["steps"]
    for rule, steps in expected.items():
        for got, want in zip(section["cascading"][rule], steps, strict=True):
            assert got["layer"] == want["layer"]
            for measure in MEASURES:
                assert got[measure] == pytest.approx(want[measure], abs=1e-9, nan_ok=True), (rule, got)
    page = index.read_text()
    assert "Sanity checks" in page and section["steps"][-1] in page
    for figure in section["figures"]:
        assert figure in image_sources(page)


# --- a user's folder --------------------------------------------------------------------------------


def image_folder(root: Path):
    """36 built-in images as PNG files in ``root/{train,val,test}/<class>/``, 3 classes; the source."""
    from deconvlab.data import BuiltinDataset

    source = BuiltinDataset("val", size=36)
    for i in range(len(source)):
        split = ("train", "train", "val", "test")[i % 4]
        folder = root / split / source.classes[source.labels[i] % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(source.image(i)).save(folder / f"{i}.png")
    return source


def test_report_on_a_folder_lists_the_unreadable_file(tmp_path):
    from deconvlab.models import create

    root = tmp_path / "photos"
    source = image_folder(root)
    broken = root / "test" / source.classes[0] / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    torch.manual_seed(0)
    weights = tmp_path / "mini.pt"
    torch.save(create("zfnet-mini", num_classes=3).state_dict(), weights)
    out = tmp_path / "report"
    args = ["--model", "zfnet-mini", "--weights", str(weights), "--data", str(root), "--out", str(out)]
    result = runner.invoke(app, ["report", *args, "--layers", "features.0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("index.html")
    report = json.loads((out / "report.json").read_text())
    # the probes read every test image (fewer than probe_test_images) and met it; nothing else did
    assert report["dataset"]["skipped"] == [
        {"split": "test", "path": str(broken), "reason": report["dataset"]["skipped"][0]["reason"],
         "sections": ["probes"]}
    ]  # fmt: skip
    assert report["dataset"]["skipped"][0]["reason"].startswith("UnidentifiedImageError")
    assert str(broken) in (out / "index.html").read_text()
    assert "pointing_game_accuracy" not in report["occlusion"]  # no masks: no ground truth
    assert report["correspondence"] == [] and "skipped" in report["correspondence_setup"]
    for source_path in image_sources((out / "index.html").read_text()):
        assert (out / source_path).is_file()


def test_report_refuses_bad_options(tmp_path):
    from deconvlab.models import create

    weights = tmp_path / "mini.pt"
    torch.save(create("zfnet-mini", num_classes=12).state_dict(), weights)
    base = ["report", "--model", "zfnet-mini", "--weights", str(weights), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*base, "--rules", "deconvnet,magic"])
    assert result.exit_code == 2 and "'magic' is not one of deconvnet, guided, gradient" in result.output
    result = runner.invoke(app, [*base, "--layers", "features.1"])
    assert result.exit_code == 2
    assert "['features.1'] are not conv layers" in result.output and "features.12" in result.output


def test_report_on_a_fully_convolutional_residual_net(tmp_path):
    """No nn.Linear and a residual block (F.relu, an addition): the report still holds every section.

    The penultimate features are the input of the last Conv2d (the 1x1 classifier); the top-9 crops
    of the block's conv need the receptive field of a net that is not a chain. The classifier has 30
    outputs for the folder's 3 classes, as an ImageNet model on a user's folder has 1000: predicted
    outputs beyond the dataset's classes are named by their index.
    """
    from torch import nn

    from deconvlab.analyses.invariance import translate
    from deconvlab.data import load_dataset

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
            self.shortcut = nn.Conv2d(8, 16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))

    root = tmp_path / "photos"
    image_folder(root)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        Residual(),
        nn.Conv2d(16, 30, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()
    model.input_size = (3, 64, 64)
    options = ReportOptions(layers=("0", "3.conv2"), channels_per_layer=2, occlusion_shown=1, progress=False)
    build_report(model, tmp_path / "report", model_name="fcn", data=str(root), options=options)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # conv1 5/2: 5, 2, 0; pool 3/2: 9, 4, 0; conv1 and conv2 of the block (3, pad 1): 17 then 25
    layers = {record["layer"]: record for record in report["top9"]["layers"]}
    assert layers["3.conv2"]["field_size"] == [25, 25]
    assert report["top9"]["fraction_in_field"] == pytest.approx(1.0)  # the exact backward stays inside
    assert report["invariance"]["layers"]["penultimate"] == "4:input"
    probes = {row["layer"]: row for row in report["probes"]["rows"]}
    assert probes["4:input"]["features"] == 16 * 2 * 2  # 16 channels pooled to 2x2
    # the penultimate distances are those of the residual block's output, computed by hand
    test_split = load_dataset(root, "test", image_size=64)
    image = torch.as_tensor(test_split[report["invariance"]["images"][0]][0])[None]
    sweep = report["invariance"]["sweeps"]["translation"]
    with torch.no_grad():
        still = model[:4](image).flatten()
        by_hand = [float((model[:4](translate(image, v)).flatten() - still).norm()) for v in sweep["values"]]
    np.testing.assert_allclose(sweep["distances"]["4:input"][0], by_hand, rtol=1e-4, atol=1e-5)


def test_top9_of_other_weights_does_not_resume_an_interrupted_scan(tmp_path):
    """A report stopped inside its top-9 scan leaves the scan's progress behind; run again on the same
    folder with other weights, the scan starts over (it neither resumes the other model's lists nor
    refuses to run) and gives what a report in a fresh folder gives."""
    from torch import nn

    from deconvlab.report.sections import top9_section
    from deconvlab.report.study import Study

    class Stopped(Exception):
        pass

    class StopsAt:  # the split, stopping at one image as a killed process would
        def __init__(self, data, at: int) -> None:
            self.data, self.at = data, at

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int):
            if index == self.at:
                raise Stopped
            return self.data[index]

    def net(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
        model.input_size = (3, 64, 64)
        return model

    options = ReportOptions(
        layers=("2",), channels_per_layer=2, batch_size=8, optimize_steps=0, progress=False
    )
    first = Study(net(0), "a", "builtin", tmp_path / "report", options)
    first._datasets["val"] = StopsAt(first.dataset("val"), at=200)  # after the checkpoint at 160 images
    with pytest.raises(Stopped):
        top9_section(first)
    assert list((tmp_path / "report" / ".stages" / "scan").rglob("*.pt")), "no progress was left behind"
    again = top9_section(Study(net(1), "b", "builtin", tmp_path / "report", options))
    fresh = top9_section(Study(net(1), "b", "builtin", tmp_path / "fresh", options))
    assert again["layers"][0]["channels"] == fresh["layers"][0]["channels"]
    assert again["images_scanned"] == fresh["images_scanned"] == len(first.dataset("val").data)
