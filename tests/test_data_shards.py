"""Tar shards (WebDataset layout) scanned: the same lists as the same images in a folder, with workers,
resumed, and under torchrun; unreadable samples skipped and listed by key."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from deconvlab.analyses import topk_scan
from deconvlab.cli import app
from deconvlab.data import ImageFiles, TarShards, load_dataset
from deconvlab.data.shards import SHARD_STRIDE

SIZE, SHARDS, PER_SHARD = 16, 4, 5
BROKEN = {"s1-2": b"\x89PNG cut", "s3-0": b"GIF89a nonsense"}  # not images
NET = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3))
    net.input_size = (3, 16, 16)
    return net
"""


def net():
    namespace = {}
    exec(NET, namespace)  # the net the CLI imports with --model shard_net:build
    return namespace["build"]()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 shards of 5 samples (PNG + class), written with tarfile; the same images as files, in order.
    Two samples are not images and one has no image at all (only its class)."""
    root = tmp_path_factory.mktemp("shards")
    (root / "shard_net.py").write_text(NET)
    rng = np.random.default_rng(3)
    files, labels = [], []
    (root / "files").mkdir()
    for shard in range(SHARDS):
        with tarfile.open(root / f"train-{shard:06d}.tar", "w") as tar:
            for i in range(PER_SHARD):
                key, label = f"s{shard}-{i}", i % 2
                members = {"cls": str(label).encode()}
                if (shard, i) != (2, 4):  # the last sample of shard 2 has no image
                    pixels = rng.integers(0, 256, (SIZE + 4 * i, SIZE, 3), dtype=np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="PNG")
                    members["png"] = BROKEN.get(key, buffer.getvalue())
                    if key not in BROKEN:
                        (root / "files" / f"{key}.png").write_bytes(buffer.getvalue())
                        files.append(root / "files" / f"{key}.png")
                        labels.append(label)
                for extension, payload in members.items():
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return root, files, labels


def pattern(root) -> str:
    return str(root / "train-{000000..000003}.tar")


def test_shards_scan_as_the_same_images_in_files(data, tmp_path):
    root, files, labels = data
    shards = load_dataset(pattern(root), image_size=SIZE)
    assert isinstance(shards, TarShards) and len(shards.urls) == SHARDS
    result = topk_scan(net(), shards, ["0", "3"], k=4, batch_size=3, out=tmp_path, progress=False)
    reference = topk_scan(net(), ImageFiles(files, labels, ["0", "1"], image_size=SIZE), ["0", "3"], k=4,
                          batch_size=3, progress=False)  # fmt: skip
    assert result.num_images == len(files) == SHARDS * PER_SHARD - 3
    saved = json.loads((tmp_path / "topk.json").read_text())
    for name in ("0", "3"):
        got, want = saved["layers"][name]["channels"], reference.to_json()["layers"][name]["channels"]
        # keys are the names: a file s1-3.png is the sample with key s1-3; classes from the cls members
        assert [[(e["path"], e["class"], e["position"], e["box"]) for e in c] for c in got] == [
            [(os.path.basename(e["path"])[:-4], e["class"], e["position"], e["box"]) for e in c]
            for c in want]  # fmt: skip
        np.testing.assert_allclose([[e["value"] for e in c] for c in got],
                                   [[e["value"] for e in c] for c in want], rtol=1e-5)  # fmt: skip
        for entry in (e for c in got for e in c):  # the index: shard * SHARD_STRIDE + position
            shard, position = map(int, entry["path"][1:].split("-"))
            assert entry["image"] == shard * SHARD_STRIDE + position
    skipped = [(item["path"], item["reason"].split(" ")[0]) for item in saved["skipped"]]
    assert skipped == [
        ("s1-2", "UnidentifiedImageError:"),
        ("s2-4", "no"),
        ("s3-0", "UnidentifiedImageError:"),
    ]
    assert saved["skipped"][1]["reason"] == "no image in the sample (its members: cls)"


def test_workers_and_resume_give_the_same_bytes(data, tmp_path):
    root, _, _ = data
    options = {"k": 3, "batch_size": 2, "progress": False}
    shards = load_dataset(pattern(root), image_size=SIZE)
    topk_scan(net(), shards, ["0", "3"], out=tmp_path / "one", **options)
    topk_scan(net(), shards, ["0", "3"], out=tmp_path / "workers", num_workers=2, **options)
    whole = (tmp_path / "one" / "topk.json").read_bytes()
    assert (tmp_path / "workers" / "topk.json").read_bytes() == whole

    class Stop(Exception):
        pass

    def stop(batches):
        if batches == 7:  # shards of 5 in batches of 2: shards 0 and 1 (3 batches each) are complete
            raise Stop

    with pytest.raises(Stop):
        topk_scan(net(), shards, ["0", "3"], out=tmp_path / "cut", on_batch=stop, **options)
    saved = torch.load(tmp_path / "cut" / ".scan-progress" / "rank0-of1.pt", weights_only=True)
    assert saved["shards"] == [0, 1] and saved["count"] == 9
    seen = []
    topk_scan(net(), shards, ["0", "3"], out=tmp_path / "cut", resume=True, on_batch=seen.append, **options)
    assert len(seen) == 6  # shards 2 and 3 only
    assert (tmp_path / "cut" / "topk.json").read_bytes() == whole


def test_torchrun_two_processes_on_shards_equal_one(data, tmp_path, monkeypatch):
    root, _, _ = data
    argv = ["scan", "--model", "shard_net:build", "--data", pattern(root), "--layers", "0,3", "--k", "3",
            "--batch-size", "2", "--num-workers", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "deconvlab", *argv, "--out", str(tmp_path / "two")]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process
    try:
        single = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "single")])
    finally:
        torch.set_num_threads(threads)
    assert single.exit_code == 0, single.output
    assert (tmp_path / "two" / "topk.json").read_bytes() == (tmp_path / "single" / "topk.json").read_bytes()
    assert json.loads((tmp_path / "two" / "topk.json").read_text())["num_images"] == SHARDS * PER_SHARD - 3


def test_bad_shard_specs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"4 shard\(s\) not found, the first '.*train-000000.tar'"):
        load_dataset(str(tmp_path / "train-{000000..000003}.tar"))
    (tmp_path / "one.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="split='val': .* are tar shards, which have no splits"):
        load_dataset(str(tmp_path / "one.tar"), "val")
    with pytest.raises(ValueError, match="no readable image in 1 shard"):
        topk_scan(nn.Sequential(nn.Conv2d(3, 1, 1)), TarShards(str(tmp_path / "one.tar"), image_size=4))


def test_export_of_shards_is_refused_before_scanning(data, tmp_path, monkeypatch):
    root, _, _ = data
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    argv = ["scan", "--model", "shard_net:build", "--data", pattern(root), "--out", str(tmp_path / "s"),
            "--export", str(tmp_path / "e"), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "--export: data=" in result.output
    assert "no random access" in result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / "e").exists()
