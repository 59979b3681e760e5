"""Every entry point that reads a file, run on every item of the bad-input corpus (``tests/data/bad``).

Images: the library's reader, an image folder, the explorer's upload endpoint and ``deconvlab
project --image``. Weight files: ``load_weights`` and ``deconvlab project --weights``. Model specs:
``load_model`` and ``deconvlab project --model``. Each must give
a clear error naming the file (a 4xx JSON answer over HTTP, exit status 2 and no traceback on the CLI)
and write nothing; the two unusual but valid images must be read, the same way everywhere. Adding a
file to the corpus adds its tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.cli import app as cli
from deconvlab.data import load_dataset
from deconvlab.data.decode import UnreadableImage, read_image
from deconvlab.models import create, load_model, load_weights

CORPUS = Path(__file__).parent / "data" / "bad"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

IMAGES = sorted(path.name for path in (CORPUS / "images").iterdir())
BAD_IMAGES = [name for name in IMAGES if name not in corpus.VALID]
WEIGHT_NAMES = (
    "wrong-shape.pt",
    "wrong-keys.pt",
    "nan.pt",
    "runs-code.pt",
    "bad-header.safetensors",
    "truncated.pt",
    "empty.pt",
    "folder.pt",
)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-weights")
    corpus.write(folder, corpus.weights(folder))
    assert sorted(path.name for path in folder.iterdir()) == sorted(WEIGHT_NAMES)
    torch.manual_seed(1)
    good = create("zfnet-mini", num_classes=12)
    torch.save(good.state_dict(), folder.parent / "good.pt")
    return folder


def good_png(path: Path) -> Path:
    Image.fromarray(corpus.picture()).save(path)
    return path


def reference_rgb(name: str) -> np.ndarray:
    """The valid images as RGB from their definition: 16-bit scaled by 1/257, CMYK by Pillow."""
    with Image.open(CORPUS / "images" / name) as image:
        if name == "16bit.png":
            gray = np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        return np.asarray(image.convert("RGB"))


def run_project(tmp_path: Path, image: Path, weights: Path | None, model: str = "zfnet-mini"):
    out = tmp_path / "out.png"
    args = [
        "project",
        "--model",
        model,
        *(["--weights", str(weights)] if weights else []),
        "--image",
        str(image),
    ]
    result = CliRunner().invoke(cli, [*args, "--layer", "features.0", "--channel", "1", "-o", str(out)])
    return result, out


# ---- images ----


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_the_reader_names_the_file_and_the_reason(name):
    path = CORPUS / "images" / name
    with pytest.raises(UnreadableImage) as caught:
        read_image(path)
    assert caught.value.path == str(path) and caught.value.reason


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_an_image_folder_leaves_the_file_out_and_says_why(tmp_path, name):
    good = good_png((tmp_path / "cats").mkdir() or tmp_path / "cats" / "good.png")
    bad = tmp_path / "cats" / name
    source = CORPUS / "images" / name
    if source.is_dir():  # not a file, so not one of the folder's images at all
        bad.mkdir()
        dataset = load_dataset(tmp_path, image_size=16)
        assert dataset.skipped == []
    else:
        bad.write_bytes(source.read_bytes())
        with pytest.warns(UserWarning, match=name):
            dataset = load_dataset(tmp_path, image_size=16)
        assert [path for path, _ in dataset.skipped] == [bad]
    assert [dataset.source(i) for i in range(len(dataset))] == [str(good)]


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_the_cli_refuses_the_image_without_a_traceback(tmp_path, weight_files, name):
    result, out = run_project(tmp_path, CORPUS / "images" / name, weight_files.parent / "good.pt")
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and name in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("name", corpus.VALID)
def test_unusual_valid_images_are_read_alike_by_the_reader_and_the_upload(name):
    from deconvlab.serve.images import decode_upload

    expected = reference_rgb(name)
    np.testing.assert_array_equal(read_image(CORPUS / "images" / name).permute(1, 2, 0).numpy(), expected)
    data = (CORPUS / "images" / name).read_bytes()
    np.testing.assert_array_equal(decode_upload(data, max_bytes=10**6, max_pixels=10**6), expected)


def test_the_cli_reads_a_good_image_with_good_weights(tmp_path, weight_files):
    """The control: the same command succeeds, so the refusals above are the files' doing."""
    result, out = run_project(tmp_path, good_png(tmp_path / "good.png"), weight_files.parent / "good.pt")
    assert result.exit_code == 0, result.output
    assert Image.open(out).format == "PNG"


# ---- the upload endpoint ----


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from deconvlab.data import BuiltinDataset
    from deconvlab.serve import Loaded, ServeConfig, create_app

    def loader(progress):
        return Loaded(
            create("zfnet-mini", num_classes=12), BuiltinDataset("val", 64, size=12, cache=False), "t"
        )

    app = create_app(ServeConfig(loader=loader, scan_images=12))
    with TestClient(app) as client:
        assert app.state.explorer.wait(120)
        yield client


@pytest.mark.parametrize("name", [name for name in BAD_IMAGES if (CORPUS / "images" / name).is_file()])
def test_the_upload_endpoint_refuses_the_file_with_a_4xx(client, name):
    response = client.post("/api/upload", content=(CORPUS / "images" / name).read_bytes())
    assert response.status_code in (400, 413, 415), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == response.status_code and "Traceback" not in response.text
    assert client.get("/api/images").json()["uploads"] == []  # nothing kept


# ---- weight files ----


@pytest.mark.parametrize("name", WEIGHT_NAMES)
def test_load_weights_names_the_file_and_leaves_the_model_alone(weight_files, name):
    torch.manual_seed(2)
    model = create("zfnet-mini", num_classes=12)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        load_weights(model, weight_files / name)
    assert str(weight_files / name) in str(caught.value)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not (weight_files / corpus.PWNED).exists()  # the pickle's code never ran


@pytest.mark.parametrize("name", WEIGHT_NAMES)
def test_the_cli_refuses_the_weights_without_a_traceback(tmp_path, weight_files, name):
    result, out = run_project(tmp_path, good_png(tmp_path / "good.png"), weight_files / name)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and name in result.output and "Traceback" not in result.output
    assert not out.exists() and not (weight_files / corpus.PWNED).exists()


# ---- model specs ----


@pytest.fixture
def spec_folder(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    corpus.write(folder, corpus.spec_modules())
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for module in ("bad_specs", "broken_on_import", "syntax_error"):
        sys.modules.pop(module, None)


@pytest.mark.parametrize("spec", corpus.SPECS)
def test_load_model_names_the_spec_and_the_rule(spec_folder, spec):
    with pytest.raises(ValueError, match=f"--model='{spec}': "):
        load_model(spec)


@pytest.mark.parametrize("spec", corpus.SPECS)
def test_the_cli_refuses_the_spec_without_a_traceback(tmp_path, spec_folder, spec):
    result, out = run_project(tmp_path, good_png(tmp_path / "good.png"), None, model=spec)
    assert result.exit_code == 2, result.output
    assert f"--model='{spec}'" in result.output and "Traceback" not in result.output
    assert not out.exists()
