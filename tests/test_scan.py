"""Top-k scans: equal to a brute-force reference, resumable exactly, deterministic ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from deconvlab.analyses import TopK, topk_scan
from deconvlab.data import ImageFiles, ImageFolder

LAYERS = ["0", "1", "4"]


def setup():
    """A tiny model and 64 images with deliberate ties: image 40 repeats image 7; image 50 is constant,
    so many positions tie inside it."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )  # fmt: skip
    images = torch.randn(64, 3, 16, 16)
    images[40] = images[7]
    images[50] = 0.25
    return model, TensorDataset(images, torch.arange(64))


def brute_force(model, dataset, layers, k, batch_size):
    """Every activation kept, then sorted by (-value, image index); positions from numpy's first argmax."""
    maps = {name: [] for name in layers}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: maps[name].append(o.clone())
        )
        for name in layers
    ]
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            model(torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]))
    for handle in handles:
        handle.remove()
    expected = {}
    for name in layers:
        acts = torch.cat(maps[name]).numpy()  # (N, C, H, W)
        flat = acts.reshape(*acts.shape[:2], -1)
        best, where = flat.max(axis=2), flat.argmax(axis=2)
        rows = []
        for c in range(acts.shape[1]):
            order = sorted(range(len(acts)), key=lambda i, c=c: (-best[i, c], i))[:k]
            rows.append((order, best[order, c], [divmod(int(where[i, c]), acts.shape[3]) for i in order]))
        expected[name] = rows
    return expected


def test_scan_equals_brute_force_reference():
    model, dataset = setup()
    result = topk_scan(model, dataset, LAYERS, k=5, batch_size=16, progress=False)
    expected = brute_force(model, dataset, LAYERS, k=5, batch_size=16)
    assert result.num_images == 64 and result.k == 5
    for name in LAYERS:
        layer = result.layers[name]
        assert layer.values.shape == (len(expected[name]), 5)
        for c, (images, values, positions) in enumerate(expected[name]):
            assert layer.images[c].tolist() == images
            np.testing.assert_array_equal(layer.values[c], values)
            assert layer.positions[c].tolist() == [list(p) for p in positions]
    # the constant image 50 ties everywhere inside; the duplicate pair 7/40 ties and 7 comes first
    ties = [c for c, (images, _, _) in enumerate(expected["0"]) if 7 in images and 40 in images]
    for c in ties:
        assert result.layers["0"].images[c].tolist().index(7) < result.layers["0"].images[c].tolist().index(
            40
        )


def test_fewer_images_than_k_and_json_round_trip(tmp_path):
    model, dataset = setup()
    subset = torch.utils.data.Subset(dataset, range(3))
    result = topk_scan(model, subset, ["3"], k=5, batch_size=2, out=tmp_path, progress=False)
    text = (tmp_path / "topk.json").read_bytes()
    loaded = TopK.load(tmp_path / "topk.json")
    channel = loaded.to_json()["layers"]["3"]["channels"][0]
    assert sorted(entry["image"] for entry in channel) == [0, 1, 2] and loaded.to_json() == result.to_json()
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == text
    assert b'"version": 2' in text and not (tmp_path / ".scan-progress" / "rank0-of1.pt").exists()


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    model, dataset = setup()
    topk_scan(model, dataset, LAYERS, k=4, batch_size=6, out=tmp_path / "whole", progress=False)

    def stop_after_five(done):
        if done == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        topk_scan(
            model,
            dataset,
            LAYERS,
            k=4,
            batch_size=6,
            out=tmp_path / "cut",
            progress=False,
            checkpoint_every=2,
            on_batch=stop_after_five,
        )
    assert not (tmp_path / "cut" / "topk.json").exists()  # nothing claims to be complete
    saved = torch.load(tmp_path / "cut" / ".scan-progress" / "rank0-of1.pt", weights_only=True)
    assert saved["batches_done"] == 4
    seen = []
    topk_scan(
        model,
        dataset,
        LAYERS,
        k=4,
        batch_size=6,
        out=tmp_path / "cut",
        progress=False,
        resume=True,
        checkpoint_every=2,
        on_batch=seen.append,
    )
    assert seen == list(range(5, 12))  # 11 batches of 6; the first 4 came from the checkpoint
    assert (tmp_path / "cut" / "topk.json").read_bytes() == (tmp_path / "whole" / "topk.json").read_bytes()


def test_resume_refuses_a_checkpoint_of_another_scan(tmp_path):
    model, dataset = setup()
    with pytest.raises(Interrupt):
        topk_scan(
            model,
            dataset,
            LAYERS,
            k=4,
            batch_size=6,
            out=tmp_path,
            progress=False,
            checkpoint_every=1,
            on_batch=lambda done: (_ for _ in ()).throw(Interrupt()),
        )
    with pytest.raises(ValueError, match="other settings or weights"):
        topk_scan(model, dataset, LAYERS, k=3, batch_size=6, out=tmp_path, progress=False, resume=True)


@pytest.mark.parametrize(
    ("layers", "dataset_size", "message"),
    [
        (["7"], 64, r"layer='7': output \(1, 3\) has no spatial axes"),
        (["nope"], 64, r"layers=\['nope'\]: not modules of the model"),
        (["0"], 0, "dataset: it is empty"),
    ],
)
def test_bad_input_leaves_no_result_file(tmp_path, layers, dataset_size, message):
    model, dataset = setup()
    (tmp_path / "topk.json").write_text("{}")  # an older result is not touched by a scan that cannot start
    with pytest.raises(ValueError, match=message):
        topk_scan(model, torch.utils.data.Subset(dataset, range(dataset_size)), layers, out=tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 0}, "k=0"), ({"batch_size": -1}, "batch_size=-1"), ({"resume": True}, "resume=True: needs out")],
)
def test_bad_arguments(kwargs, message):
    model, dataset = setup()
    with pytest.raises(ValueError, match=message):
        topk_scan(model, dataset, ["0"], **kwargs)


def test_worker_processes_give_the_same_result():
    model, dataset = setup()
    inline = topk_scan(model, dataset, LAYERS, k=3, batch_size=16, progress=False)
    workers = topk_scan(model, dataset, LAYERS, k=3, batch_size=16, num_workers=2, progress=False)
    assert workers.to_json() == inline.to_json()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision runs only on CUDA")
def test_amp_matches_float32_on_gpu():
    model, dataset = setup()
    full = topk_scan(model, dataset, LAYERS, k=4, batch_size=16, progress=False, device="cuda")
    half = topk_scan(model, dataset, LAYERS, k=4, batch_size=16, progress=False, device="cuda", amp=True)
    for name in LAYERS:
        np.testing.assert_allclose(half.layers[name].values, full.layers[name].values, rtol=2e-2, atol=2e-2)


def test_bfloat16_autocast_on_the_cpu_matches_float32():
    # bfloat16 keeps 8 bits of mantissa: each value within a few parts in a hundred of float32's
    model, dataset = setup()
    full = topk_scan(model, dataset, LAYERS, k=4, batch_size=16, progress=False, device="cpu")
    brain = topk_scan(
        model, dataset, LAYERS, k=4, batch_size=16, progress=False, device="cpu", amp="bfloat16"
    )
    for name in LAYERS:
        assert brain.layers[name].values.dtype == np.float32
        np.testing.assert_allclose(brain.layers[name].values, full.layers[name].values, rtol=3e-2, atol=3e-2)
        assert not np.array_equal(
            brain.layers[name].values, full.layers[name].values
        )  # it did run in bfloat16


@pytest.mark.parametrize(
    ("amp", "message"), [(True, "float16 autocast needs a CUDA device"), ("int8", "expected False, True")]
)
def test_autocast_that_cannot_run_is_refused(amp, message):
    model, dataset = setup()
    with pytest.raises(ValueError, match=message):
        topk_scan(model, dataset, LAYERS, k=4, batch_size=16, progress=False, device="cpu", amp=amp)


def _image_folder(root, count=12, broken=(3, 8)):
    """``count`` random PNG files in root/<a|b>/, the ``broken`` ones not images; their paths in order."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = root / ("a", "b")[i % 2] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in broken:
            path.write_bytes(b"\x89PNG truncated")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return sorted(paths)


def test_unreadable_files_are_skipped_in_workers_and_listed_and_entries_name_their_files(tmp_path):
    model, _ = setup()
    paths = _image_folder(tmp_path / "images")
    folder = ImageFolder(tmp_path / "images", image_size=16, check=False)
    result = topk_scan(model, folder, ["0", "3"], k=3, batch_size=4, num_workers=2, out=tmp_path / "s",
                       progress=False)  # fmt: skip
    readable = [p for p in paths if b"truncated" not in p.read_bytes()]
    assert result.num_images == 10
    assert [(Path(p).name, "UnidentifiedImageError" in r) for p, r in result.skipped] == [
        ("08.png", True),
        ("03.png", True),
    ]  # fmt: skip: dataset order, a/ before b/
    # the reference: the readable files alone, listed by hand, scanned in one batch without workers
    reference = ImageFiles(readable, [0 if p.parent.name == "a" else 1 for p in readable], ["a", "b"],
                           image_size=16)  # fmt: skip
    expected = topk_scan(model, reference, ["0", "3"], k=3, batch_size=16, progress=False)
    saved = json.loads((tmp_path / "s" / "topk.json").read_text())
    assert saved["skipped"] == [{"path": str(p), "reason": r} for p, r in result.skipped]
    for name in ("0", "3"):
        want = expected.to_json()["layers"][name]["channels"]
        got = saved["layers"][name]["channels"]
        assert [[(e["path"], e["class"], e["position"]) for e in c] for c in got] == [
            [(e["path"], e["class"], e["position"]) for e in c] for c in want]  # fmt: skip
        np.testing.assert_allclose([[e["value"] for e in c] for c in got],
                                   [[e["value"] for e in c] for c in want], rtol=1e-5)  # fmt: skip
    # boxes by hand: layer 0 is a 3x3 conv with padding 1 (rows y-1..y+1), layer 3 a 3x3 conv after a
    # 2x2 pool (field 3 + 2 * 2 = 8 wide, jump 2, offset -1 - 0 = -1: rows 2y-1 .. 2y+6), clipped to 16
    for name, size, jump in (("0", 3, 1), ("3", 8, 2)):
        for entry in (e for c in saved["layers"][name]["channels"] for e in c):
            y, x = entry["position"]
            rows = [max(jump * y - 1, 0), min(jump * y - 1 + size, 16)]
            columns = [max(jump * x - 1, 0), min(jump * x - 1 + size, 16)]
            assert entry["box"] == rows + columns
            assert entry["path"] == folder.source(entry["image"]) and entry["class"] in ("a", "b")


def test_resume_with_skipped_files_equals_uninterrupted_run(tmp_path):
    model, _ = setup()
    _image_folder(tmp_path / "images", count=14, broken=(1, 6, 12))
    folder = ImageFolder(tmp_path / "images", image_size=16, check=False)
    options = {"k": 2, "batch_size": 2, "progress": False, "checkpoint_every": 1}
    topk_scan(model, folder, LAYERS, out=tmp_path / "whole", **options)
    with pytest.raises(Interrupt):
        topk_scan(model, folder, LAYERS, out=tmp_path / "cut", on_batch=_stop_at(4), **options)
    topk_scan(model, folder, LAYERS, out=tmp_path / "cut", resume=True, **options)
    assert (tmp_path / "cut" / "topk.json").read_bytes() == (tmp_path / "whole" / "topk.json").read_bytes()
    assert len(json.loads((tmp_path / "whole" / "topk.json").read_text())["skipped"]) == 3


def _stop_at(batches):
    def stop(done):
        if done == batches:
            raise Interrupt

    return stop


def test_positions_are_found_where_the_maximum_reaches_the_floor():
    # strongest_positions with a floor: every maximum as without it; the first argmax (numpy's) where
    # the maximum is not below its channel's floor (NaN included), (0, 0) elsewhere
    from deconvlab.analyses.scan_hooks import strongest_positions

    maps = torch.randint(0, 4, (5, 3, 4, 6)).float()  # small integers: many ties
    maps[1, 2] = float("nan")
    floor = torch.tensor([2.0, 3.0, float("-inf")])
    values, positions = strongest_positions(maps, "x", floor)
    flat = maps.flatten(2).numpy()
    np.testing.assert_array_equal(values.numpy(), flat.max(axis=2))
    for b in range(5):
        for c in range(3):
            if values[b, c] < floor[c]:
                assert positions[b, c].tolist() == [0, 0]
            else:
                assert positions[b, c].tolist() == list(divmod(int(np.argmax(flat[b, c])), 6))
