"""Any model from one spec (``deconvlab.models.load_model``) and every command's ``--model``.

References: torchvision's and timm's own builders and metadata, state dicts the tests write into the
local caches (nothing is downloaded), and the engine called directly.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from typer.testing import CliRunner

from deconvlab.cli import app
from deconvlab.models import MissingExtraError, load_model

FACTORY = """
import torch
from torch import nn


def build():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    net.input_size = (3, 33, 33)
    return net
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """``my_nets.build`` importable from the working directory, as a user's own module would be."""
    (tmp_path / "my_nets.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield "my_nets:build"
    sys.modules.pop("my_nets", None)


def test_a_factory_from_the_working_directory(factory_module):
    model = load_model(factory_module, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert isinstance(model, torch.nn.Sequential) and not model.training
    assert model.input_size == (3, 33, 33) and model.mean == (0.5,) * 3 and model.std == (0.25,) * 3
    assert model.class_names is None and model.spec == "my_nets:build"


def test_torchvision_weights_file_sets_the_classes_and_loads_every_tensor(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=10)
    save_file(source.state_dict(), str(tmp_path / "r18.safetensors"))
    model = load_model("torchvision:resnet18", tmp_path / "r18.safetensors")
    assert model.fc.out_features == 10
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_default_weights_come_from_torch_hubs_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    expected = tmp_path / "torch" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_model("torchvision:squeezenet1_1", "DEFAULT")
    torch.manual_seed(1)
    published = torchvision.models.squeezenet1_1().state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(published, expected)
    model = load_model("torchvision:squeezenet1_1", "DEFAULT")
    torch.testing.assert_close(model.state_dict()["features.0.weight"], published["features.0.weight"])
    transform = weights.transforms()
    assert model.class_names == tuple(weights.meta["categories"]) and len(model.class_names) == 1000
    assert model.input_size == (3, *transform.crop_size * 2) and model.mean == tuple(transform.mean)


def test_timm_takes_input_size_and_normalisation_from_its_config(tmp_path):
    import timm

    reference = timm.create_model("inception_v3", pretrained=False)
    model = load_model("timm:inception_v3")
    assert model.input_size == reference.pretrained_cfg["input_size"] == (3, 299, 299)
    assert model.mean == reference.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


def test_timm_default_weights_come_from_the_hugging_face_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub
    import timm

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"models--timm--resnet10t\.c3_in1k/snapshots/"):
        load_model("timm:resnet10t", "DEFAULT")
    torch.manual_seed(2)
    published = timm.create_model("resnet10t", pretrained=False).state_dict()
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(published, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    model = load_model("timm:resnet10t", "DEFAULT")
    torch.testing.assert_close(model.state_dict()["fc.weight"], published["fc.weight"])
    assert len(model.class_names) == 1000


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(MissingExtraError, match=r'pip install "deconvlab\[timm\]"'):
        load_model("timm:resnet18")
    from deconvlab.cli import main

    monkeypatch.setattr(sys, "argv", ["deconvlab", "layers", "--model", "timm:resnet18"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --model='timm:resnet18' needs the 'timm' extra: pip install \"deconvlab[timm]\""
    ]


@pytest.mark.parametrize("bad", [{"mean": (0.5, 0.5)}, {"std": (1.0, 0.0, 1.0)}, {"input_size": 0}])
def test_bad_overrides_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="--(mean|std|input-size)="):
        load_model("zfnet-mini", **bad)


def test_layers_lists_shapes_and_fields_of_a_users_own_model(factory_module):
    result = CliRunner().invoke(app, ["layers", "--model", factory_module, "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output[result.output.index("{") :])
    rows = {row["name"]: row for row in table["layers"]}
    # by hand: conv 3/2 on 33 -> 16; conv 3/1 -> 14: field 3 + 2 * 2 = 7, jump 2; pooling sees it all
    assert rows["0"]["shape"] == [4, 16, 16] and (rows["0"]["field_size"], rows["0"]["jump"]) == (3, 2)
    assert rows["2"]["shape"] == [5, 14, 14] and (rows["2"]["field_size"], rows["2"]["jump"]) == (7, 2)
    assert rows["6"]["shape"] == [2] and rows["6"]["field_size"] is None
    assert all(row["refused"] == {} for row in table["layers"])  # ReLU chain: every engine and rule
    assert [name for name, row in rows.items() if row["default"]] == ["0", "2"]


def test_project_on_a_torchvision_model_with_its_own_normalisation(tmp_path):
    import numpy as np
    from PIL import Image

    from deconvlab.data.transforms import normalize, resize_and_crop
    from deconvlab.engine import project, receptive_field, strongest_units

    torch.manual_seed(3)
    source = torchvision.models.squeezenet1_0(num_classes=4).eval()
    torch.save(source.state_dict(), tmp_path / "sq.pt")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 80, 3), np.uint8)).save(tmp_path / "i.png")
    argv = ["project", "--model", "torchvision:squeezenet1_0", "--weights", str(tmp_path / "sq.pt"),
            "--image", str(tmp_path / "i.png"), "--layer", "features.3", "--channel", "2",
            "--input-size", "64", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
            "-o", str(tmp_path / "out.png")]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "i.png") as picture:
        inputs = normalize(resize_and_crop(picture, 64).copy(), mean=(0.5,) * 3, std=(0.5,) * 3)[None]
    unit = strongest_units(source, inputs, "features.3", channels=[2])
    assert f"(channel 2, y {int(unit[0, 2])}, x {int(unit[0, 3])})" in result.output
    expected = project(source, inputs, "features.3", unit)[0]
    y0, y1, x0, x1 = receptive_field(source, "features.3", (3, 64, 64)).box(*unit[0, 2:].tolist())
    png = np.asarray(Image.open(tmp_path / "out.png"))
    scale = png.shape[0] // (y1 - y0)
    shown = png[::scale, : (x1 - x0) * scale : scale].astype(float)
    crop = expected[:, y0:y1, x0:x1].double().numpy()
    peak = np.quantile(np.abs(crop), 0.995)  # the display rule of report.figures.projection_rgb
    reference = ((0.5 + crop / (2 * peak)).clip(0, 1) * 255).round().transpose(1, 2, 0)
    np.testing.assert_allclose(shown, reference, atol=1)


def test_an_unknown_layer_is_one_line_and_writes_nothing(tmp_path, factory_module):
    from PIL import Image

    Image.new("RGB", (40, 40)).save(tmp_path / "x.png")
    argv = ["project", "--model", factory_module, "--image", str(tmp_path / "x.png"), "--layer", "nope",
            "--channel", "0", "-o", str(tmp_path / "out.png")]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "layer='nope'" in result.output
    assert not (tmp_path / "out.png").exists()
