"""``export_topk`` and ``deconvlab scan --export``: patches cut from the image files, projections drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.analyses import TopK, topk_scan
from deconvlab.cli import app
from deconvlab.data import ImageFolder
from deconvlab.engine import project
from deconvlab.export import export_topk
from deconvlab.report.figures import projection_rgb

SIZE = 16
NET = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU()
    )
    net.input_size = (3, 16, 16)
    return net
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """12 PNG files of exactly 16x16 (so the model sees the file's pixels), one unreadable, and the net."""
    root = tmp_path_factory.mktemp("export")
    (root / "tiny_net.py").write_text(NET)
    rng = np.random.default_rng(1)
    for i in range(12):
        path = root / "images" / ("a", "b")[i % 2] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 4:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return root


def net():
    namespace = {}
    exec(NET, namespace)  # the same net as the CLI imports with --model tiny_net:build
    return namespace["build"]()


def hand_box(layer: str, y: int, x: int) -> tuple[int, int, int, int]:
    """Layer 0: a 3x3 conv, padding 1 (rows y-1 .. y+1); layer 3: a 3x3 conv after a 2x2 pool (8 wide,
    jump 2, offset -1: rows 2y-1 .. 2y+6); clipped to the 16-pixel image."""
    size, jump = {"0": (3, 1), "3": (8, 2)}[layer]
    (y0, y1), (x0, x1) = ((max(jump * p - 1, 0), min(jump * p - 1 + size, SIZE)) for p in (y, x))
    return y0, y1, x0, x1


def test_patches_are_the_files_crops_and_projections_are_drawn_from_project(work, tmp_path):
    model = net()
    folder = ImageFolder(work / "images", image_size=SIZE, check=False)
    topk_scan(model, folder, ["0", "3"], k=3, batch_size=4, out=tmp_path / "scan", progress=False)
    topk = TopK.load(tmp_path / "scan" / "topk.json")
    index = export_topk(topk, model, folder, tmp_path / "export")
    assert index == tmp_path / "export" / "index.html"
    saved = json.loads((tmp_path / "scan" / "topk.json").read_text())
    checked = 0
    for layer in ("0", "3"):
        for channel, entries in enumerate(saved["layers"][layer]["channels"]):
            assert len(entries) == 3
            for rank, entry in enumerate(entries):
                y, x = entry["position"]
                y0, y1, x0, x1 = hand_box(layer, y, x)
                file = np.asarray(Image.open(entry["path"]).convert("RGB"))
                pictures = tmp_path / "export" / layer / f"{channel:04d}"
                patch = np.asarray(Image.open(pictures / f"patch-{rank}.png"))
                np.testing.assert_array_equal(patch, file[y0:y1, x0:x1])
                alone = project(model, folder[entry["image"]][0][None], layer, [[0, channel, y, x]])[0]
                drawn = Image.open(pictures / f"projection-{rank}.png")
                expected = projection_rgb(alone)[y0:y1, x0:x1]
                # the export projects a channel's images together (equal here; another BLAS may round a
                # value at a level edge the other way)
                difference = np.abs(np.asarray(drawn).astype(int) - expected.astype(int))
                assert difference.max() <= 1 and (difference == 0).mean() > 0.99
                checked += 1
    assert checked == (3 + 4) * 3
    layer_page = (tmp_path / "export" / "3" / "index.html").read_text()
    assert "0003/projection-2.png" in layer_page
    assert saved["layers"]["3"]["channels"][3][2]["path"] in layer_page
    assert "href='3/index.html'" in index.read_text() and "1 unreadable file(s)" in index.read_text()


def test_export_refuses_other_data_and_unknown_layers(work, tmp_path):
    model = net()
    folder = ImageFolder(work / "images", image_size=SIZE, check=False)
    topk = topk_scan(model, folder, ["0"], k=2, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"layers=\['3'\]: not in the scan"):
        export_topk(topk, model, folder, tmp_path / "e", layers=["3"])
    only_b = ImageFolder(work / "images" / "b", image_size=SIZE, check=False)
    with pytest.raises(ValueError, match="export with the data and split the scan read"):
        export_topk(topk, model, only_b, tmp_path / "e")
    with pytest.raises(ValueError, match="has no image"):
        export_topk(topk, model, torch.utils.data.Subset(folder, range(12)), tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_cli_export_writes_what_the_library_writes(work, tmp_path, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    argv = ["scan", "--model", "tiny_net:build", "--data", "images", "--layers", "3", "--k", "2",
            "--batch-size", "4", "--num-workers", "0", "--out", str(tmp_path / "scan"), "--no-progress",
            "--export", str(tmp_path / "cli")]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    model = net()
    folder = ImageFolder("images", image_size=SIZE, check=False)
    export_topk(TopK.load(tmp_path / "scan" / "topk.json"), model, folder, tmp_path / "library")
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert len(files) == 2 + 4 * 2 * 3  # two pages, 4 channels x 2 images x (patch, projection, original)
    for name in files:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "library" / name).read_bytes()
