"""Data: transforms against NumPy slicing, image folders with bad files, the built-in dataset."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deconvlab.data import (
    MEAN,
    STD,
    BuiltinDataset,
    ImageFolder,
    center_crop,
    denormalize,
    load_dataset,
    normalize,
    resize_shorter,
    ten_crop,
    to_rgb,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))


def _ramp(width: int, height: int) -> np.ndarray:
    """An RGB image whose pixels all differ, so that crops are identifiable."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + 3 * y) % 256], axis=-1).astype(np.uint8)


def test_normalize_follows_the_definition_and_denormalize_inverts_it():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    expected = (image.astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)
    tensor = normalize(image)
    np.testing.assert_allclose(tensor.permute(1, 2, 0).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(denormalize(tensor), image)
    batch = normalize(np.stack([image, image]))
    assert batch.shape == (2, 3, 5, 4)
    torch.testing.assert_close(batch[1], tensor)


def test_normalize_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="expected uint8"):
        normalize(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        normalize(np.zeros((4, 4), dtype=np.uint8))


def test_crops_equal_numpy_slices():
    pixels = _ramp(300, 260)
    image = Image.fromarray(pixels)
    np.testing.assert_array_equal(np.asarray(center_crop(image, 224)), pixels[18:242, 38:262])
    crops = [np.asarray(c) for c in ten_crop(image, 224)]
    expected = [pixels[:224, :224], pixels[:224, -224:], pixels[-224:, :224], pixels[-224:, -224:]]
    expected.append(pixels[18:242, 38:262])
    expected += [e[:, ::-1] for e in expected]
    assert len(crops) == 10
    for crop, want in zip(crops, expected, strict=True):
        np.testing.assert_array_equal(crop, want)
    with pytest.raises(ValueError, match="crop size=300"):
        center_crop(image, 300)


def test_resize_shorter_keeps_the_aspect_ratio():
    assert resize_shorter(Image.new("RGB", (400, 200)), 64).size == (128, 64)
    assert resize_shorter(Image.new("RGB", (90, 300)), 30).size == (30, 100)
    flat = Image.new("RGB", (100, 50), (10, 20, 30))  # a constant image stays constant
    np.testing.assert_array_equal(np.asarray(resize_shorter(flat, 20)), np.full((20, 40, 3), (10, 20, 30)))


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("L", (2, 2), 77), (77, 77, 77)),
        (Image.new("I;16", (2, 2), 257 * 200), (200, 200, 200)),
        (Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)), (255, 255, 255)),
        (Image.new("RGBA", (2, 2), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("RGBA", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("RGB", (2, 2), (5, 6, 7)).quantize(4), (5, 6, 7)),  # palette
        (Image.new("1", (2, 2), 1), (255, 255, 255)),
        (Image.new("CMYK", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),
    ],
)
def test_every_mode_becomes_rgb(image, expected):
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == expected


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_folder(root, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_image_folder_reports_and_skips_bad_files(tmp_path):
    good = _png_bytes(Image.new("RGB", (40, 30), (200, 10, 10)))
    _write_folder(
        tmp_path,
        {
            "cat/a.png": good,
            "cat/gray16.png": _png_bytes(Image.fromarray(np.full((30, 30), 257 * 9, dtype=np.uint16))),
            "cat/notes.txt": b"not an image",
            "dog/b.png": _png_bytes(Image.new("P", (30, 50), 3)),
            "dog/truncated.png": good[: len(good) // 2],
            "dog/garbage.jpg": bytes(range(256)) * 4,
        },
    )
    with pytest.warns(UserWarning, match="skipped 3 unreadable file"):
        data = ImageFolder(tmp_path, image_size=16)
    assert data.classes == ["cat", "dog"]
    assert [p.name for p in data.paths] == ["a.png", "gray16.png", "b.png"]
    assert data.labels == [0, 0, 1]
    assert sorted(p.name for p, _reason in data.skipped) == ["garbage.jpg", "notes.txt", "truncated.png"]
    assert all(reason for _path, reason in data.skipped)
    np.testing.assert_array_equal(data.image(0), np.full((16, 16, 3), (200, 10, 10), dtype=np.uint8))
    np.testing.assert_array_equal(data.image(1), np.full((16, 16, 3), 9, dtype=np.uint8))
    tensor, label = data[2]
    assert label == 1 and tensor.shape == (3, 16, 16)
    torch.testing.assert_close(tensor, normalize(data.image(2)))


def test_decompression_bombs_are_refused(tmp_path):
    _write_folder(tmp_path, {"a/big.png": _png_bytes(Image.new("L", (200, 100))), "a/ok.png": _png_bytes(
        Image.new("L", (50, 50)))})  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 1"):
        data = ImageFolder(tmp_path, image_size=8, max_pixels=10_000)
    assert [p.name for p in data.paths] == ["ok.png"]
    assert "decompression bomb refused: 200x100" in data.skipped[0][1]
    assert ImageFolder(tmp_path, image_size=8).max_pixels == Image.MAX_IMAGE_PIXELS


def test_load_dataset_folders_and_errors(tmp_path):
    png = _png_bytes(Image.new("RGB", (20, 20), (1, 2, 3)))
    _write_folder(tmp_path / "split", {"train/x/1.png": png, "val/x/2.png": png, "val/y/3.png": png})
    val = load_dataset(tmp_path / "split", split="val", image_size=8)
    assert val.classes == ["x", "y"] and len(val) == 2
    with pytest.raises(ValueError, match="not 'builtin' and no such folder"):
        load_dataset(tmp_path / "missing")
    _write_folder(tmp_path / "bad", {"x/1.txt": b"text"})
    with pytest.raises(ValueError, match="no readable images"), pytest.warns(UserWarning):
        load_dataset(tmp_path / "bad", split="train")
    # a flat folder is split 80/10/10 by path hash: the three splits partition the files
    _write_folder(tmp_path / "flat", {f"c{i % 2}/{i}.png": png for i in range(40)})
    splits = [set(ImageFolder(tmp_path / "flat", 8, split=s).paths) for s in ("train", "val", "test")]
    assert sum(len(s) for s in splits) == 40
    assert set.union(*splits) == set(ImageFolder(tmp_path / "flat", 8).paths)


def test_builtin_is_deterministic_and_prefix_stable():
    first = BuiltinDataset("train", size=36, cache=False)
    again = BuiltinDataset("train", size=36, cache=False)
    cached = BuiltinDataset("train", size=36)  # generated, then written to the cache
    from_cache = BuiltinDataset("train", size=36)
    prefix = BuiltinDataset("train", size=24, cache=False)
    other_seed = BuiltinDataset("train", size=36, seed=1, cache=False)
    for data in (again, cached, from_cache):
        np.testing.assert_array_equal(data.images, first.images)
        np.testing.assert_array_equal(data.masks, first.masks)
        np.testing.assert_array_equal(data.boxes, first.boxes)
        assert data.labels == first.labels
    np.testing.assert_array_equal(prefix.images, first.images[:24])
    assert not np.array_equal(other_seed.images, first.images)
    assert not np.array_equal(BuiltinDataset("val", size=36, cache=False).images, first.images)


def test_builtin_ground_truth_is_consistent():
    data = BuiltinDataset("val", size=48, cache=False)
    assert len(data.classes) >= 10
    assert np.bincount(data.labels).tolist() == [4] * 12  # balanced
    for i in range(len(data)):
        mask = data.mask(i)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert 0.03 < mask.mean() < 0.6
        for name, (y0, y1, x0, x1) in data.parts(i).items():
            assert rows[0] <= y0 < y1 <= rows[-1] + 1 and cols[0] <= x0 < x1 <= cols[-1] + 1, name
            assert mask[y0:y1, x0:x1].any()
        tensor, label = data[i]
        assert label == data.labels[i]
        torch.testing.assert_close(tensor, normalize(data.image(i)))


def test_builtin_faces_have_eyes_and_nose_in_a_fixed_arrangement():
    data = BuiltinDataset("test", size=60, cache=False)
    faces = [i for i in range(len(data)) if data.classes[data.labels[i]] == "face"]
    assert len(faces) == 5
    for i in faces:
        parts = data.parts(i)
        centres = {name: ((y0 + y1) / 2, (x0 + x1) / 2) for name, (y0, y1, x0, x1) in parts.items()}
        # rotation is within 30 degrees: the left eye (viewer's left) stays left of the nose, the nose
        # left of the right eye; the eyes are 0.72 head radii apart, the head 1.9 radii wide
        assert centres["left_eye"][1] < centres["nose"][1] < centres["right_eye"][1]
        eye_distance = np.hypot(*np.subtract(centres["left_eye"], centres["right_eye"]))
        head_width = parts["head"][3] - parts["head"][2]
        np.testing.assert_allclose(eye_distance / head_width, 0.72 / 1.9, atol=0.08)


def test_builtin_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split='training'"):
        BuiltinDataset("training")
    with pytest.raises(ValueError, match="image_size=8"):
        BuiltinDataset(image_size=8)
    with pytest.raises(ValueError, match="size=0"):
        BuiltinDataset(size=0)
