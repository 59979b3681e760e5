"""``deconvlab scan`` from the command line, alone and under torchrun with two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deconvlab.analyses import topk_scan
from deconvlab.cli import app
from deconvlab.data import load_dataset
from deconvlab.models import create, load_weights

LAYERS = "features.0,features.4"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Random zfnet-mini weights with 4 classes, and an image folder of 40 images in val/<class>/."""
    root = tmp_path_factory.mktemp("scan-cli")
    torch.manual_seed(0)
    torch.save(create("zfnet-mini", num_classes=4).state_dict(), root / "weights.pt")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        folder = root / "images" / "val" / name
        folder.mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def args(root, out, *extra):
    return [
        "scan",
        "--model",
        "zfnet-mini",
        "--weights",
        str(root / "weights.pt"),
        "--data",
        str(root / "images"),
        "--layers",
        LAYERS,
        "--k",
        "4",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_cli_writes_the_library_result(setup):
    result = CliRunner().invoke(app, args(setup, setup / "cli"))
    assert result.exit_code == 0, result.output
    model = load_weights(create("zfnet-mini", num_classes=4), setup / "weights.pt")
    expected = topk_scan(
        model,
        load_dataset(setup / "images", "val", image_size=64),
        LAYERS.split(","),
        k=4,
        batch_size=8,
        out=setup / "library",
        progress=False,
    )
    assert (setup / "cli" / "topk.json").read_bytes() == (setup / "library" / "topk.json").read_bytes()
    assert expected.num_images == 40 and len(expected.layers["features.4"].values) == 64


def test_torchrun_two_processes_equal_one(setup):
    single = setup / "single"
    assert CliRunner().invoke(app, args(setup, single)).exit_code == 0
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "deconvlab",
        *args(setup, setup / "two"),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (setup / "two" / "topk.json").read_bytes() == (single / "topk.json").read_bytes()
    assert not list((setup / "two" / ".scan-progress").glob("*.pt"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "no/such/folder"}, "no such folder"),
        ({"--layers": "classifier.6"}, "has no spatial axes"),
        ({"--model": "nonet"}, "not a registered model"),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_no_output(setup, change, message):
    argv = args(setup, setup / "bad")
    for option, value in change.items():
        argv[argv.index(option) + 1] = value
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and message in result.output
    assert not (setup / "bad" / "topk.json").exists()


def test_without_weights_beyond_the_demo_the_weights_are_random_and_said_so(setup):
    argv = [a for a in args(setup, setup / "random") if a not in ("--weights", str(setup / "weights.pt"))]
    argv[argv.index("--model") + 1] = "zfnet"
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "--model zfnet without --weights: random weights" in result.output


def test_without_weights_zfnet_mini_on_builtin_uses_the_demo_network(demo_model, tmp_path):
    model, _ = demo_model
    argv = ["scan", "--layers", "features.0", "--k", "2", "--out", str(tmp_path / "cli"), "--no-progress"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    expected = topk_scan(model, load_dataset("builtin", "val"), ["features.0"], k=2, progress=False)
    assert (tmp_path / "cli" / "topk.json").read_text() == json.dumps(
        expected.to_json(), indent=2, sort_keys=True
    ) + "\n"
