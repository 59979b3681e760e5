"""Data: transforms against NumPy and Pillow, decoding against Pillow, streaming folders and lists with bad
files, the built-in dataset."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from deconvlab.data import (
    MEAN,
    STD,
    BuiltinDataset,
    ImageFolder,
    ImageList,
    Readable,
    UnreadableImage,
    center_crop,
    collate_readable,
    denormalize,
    input_half_range,
    load_dataset,
    normalize,
    read_image,
    resize_and_crop,
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
    torch.testing.assert_close(normalize(torch.from_numpy(image).permute(2, 0, 1)), tensor)  # CHW tensor


def test_normalize_with_other_statistics():
    image = np.random.default_rng(1).integers(0, 256, size=(3, 6, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    expected = (image.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    tensor = normalize(image, mean=mean, std=std)
    np.testing.assert_allclose(tensor.permute(1, 2, 0).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(denormalize(tensor, mean=mean, std=std), image)
    # the extremes of each channel: 0 and 255 pixels, over all channels
    extremes = normalize(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8), mean=mean, std=std)
    assert input_half_range(mean=mean, std=std) == pytest.approx(float(extremes.abs().max()), rel=1e-6)
    assert input_half_range() == pytest.approx(float(normalize(np.array([[[0] * 3, [255] * 3]], np.uint8))
                                                     .abs().max()), rel=1e-6)  # fmt: skip


def test_normalize_rejects_wrong_arrays_and_statistics():
    with pytest.raises(ValueError, match="expected uint8"):
        normalize(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        normalize(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"image tensor of dtype torch.float32"):
        normalize(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"std=\[0.1, 0.0, 0.1\]: expected 3 positive"):
        normalize(np.zeros((2, 2, 3), np.uint8), std=(0.1, 0, 0.1))
    with pytest.raises(ValueError, match=r"mean=\[0.5\]: expected 3 values"):
        input_half_range(mean=(0.5,))


def test_crops_equal_numpy_slices():
    pixels = _ramp(300, 260)
    image = Image.fromarray(pixels)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)
    np.testing.assert_array_equal(np.asarray(center_crop(image, 224)), pixels[18:242, 38:262])
    np.testing.assert_array_equal(center_crop(tensor, 224).permute(1, 2, 0).numpy(), pixels[18:242, 38:262])

    def five(p):
        return [p[:224, :224], p[:224, -224:], p[-224:, :224], p[-224:, -224:], p[18:242, 38:262]]

    expected = five(pixels) + five(pixels[:, ::-1])  # the crops of the image, then of its mirror image
    for crops in ([np.asarray(c) for c in ten_crop(image, 224)],
                  [c.permute(1, 2, 0).numpy() for c in ten_crop(tensor, 224)]):  # fmt: skip
        assert len(crops) == 10
        for crop, want in zip(crops, expected, strict=True):
            np.testing.assert_array_equal(crop, want)
    with pytest.raises(ValueError, match="crop size=300"):
        center_crop(image, 300)
    with pytest.raises(ValueError, match=r"crop size=261: larger than the image \(300x260\)"):
        ten_crop(tensor, 261)


def test_resize_shorter_keeps_the_aspect_ratio_and_equals_pillow():
    assert resize_shorter(Image.new("RGB", (400, 200)), 64).size == (128, 64)
    assert resize_shorter(Image.new("RGB", (90, 300)), 30).size == (30, 100)
    flat = Image.new("RGB", (100, 50), (10, 20, 30))  # a constant image stays constant
    np.testing.assert_array_equal(np.asarray(resize_shorter(flat, 20)), np.full((20, 40, 3), (10, 20, 30)))
    # a tensor is resized as Pillow's antialiased bilinear filter does (to the same pixels here)
    pixels = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(pixels).resize((40, 30), Image.Resampling.BILINEAR))
    resized = resize_shorter(torch.from_numpy(pixels).permute(2, 0, 1), 30).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(resized.astype(int), reference.astype(int), atol=1)
    # resize_and_crop of a Pillow image: Pillow resize to 40x30, then the middle 30 columns
    np.testing.assert_allclose(resize_and_crop(Image.fromarray(pixels), 30).astype(int),
                               reference[:, 5:35].astype(int), atol=1)  # fmt: skip


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


def _encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


_png_bytes = _encoded
_PIXELS = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "image, format",
    [
        (Image.fromarray(_PIXELS), "JPEG"),  # torchvision's decoders
        (Image.fromarray(_PIXELS).convert("L"), "JPEG"),
        (Image.fromarray(_PIXELS), "PNG"),
        (Image.fromarray(_PIXELS).convert("L"), "PNG"),
        (Image.fromarray(_PIXELS), "WEBP"),
        (Image.fromarray(_PIXELS).convert("CMYK"), "JPEG"),  # Pillow's
        (Image.fromarray(_PIXELS).quantize(16), "PNG"),
        (Image.fromarray(_PIXELS).convert("RGBA"), "PNG"),
        (Image.fromarray(_PIXELS[..., 0].astype(np.uint16) * 257), "PNG"),
        (Image.fromarray(_PIXELS), "BMP"),
        (Image.fromarray(_PIXELS).quantize(16), "GIF"),
    ],
)
def test_read_image_equals_pillow_and_to_rgb(image, format):
    data = _encoded(image, format)
    with Image.open(io.BytesIO(data)) as reference:
        expected = np.asarray(to_rgb(reference))
    decoded = read_image(data)
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 30, 40)
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), expected)


def _write_folder(root, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _bad_folder(root):
    good = _png_bytes(Image.new("RGB", (40, 30), (200, 10, 10)))
    _write_folder(
        root,
        {
            "cat/a.png": good,
            "cat/gray16.png": _png_bytes(Image.fromarray(np.full((30, 30), 257 * 9, dtype=np.uint16))),
            "cat/notes.txt": b"not an image",
            "dog/b.png": _png_bytes(Image.new("P", (30, 50), 3)),
            "dog/truncated.png": good[: len(good) // 2],
            "dog/garbage.jpg": bytes(range(256)) * 4,
        },
    )


def test_image_folder_reports_and_skips_bad_files(tmp_path):
    _bad_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 3 unreadable file"):
        data = ImageFolder(tmp_path, image_size=16)
    assert data.classes == ["cat", "dog"]
    assert [p.name for p in data.paths] == ["a.png", "gray16.png", "b.png"]
    assert data.labels.tolist() == [0, 0, 1]
    assert sorted(p.name for p, _reason in data.skipped) == ["garbage.jpg", "notes.txt", "truncated.png"]
    assert all(reason for _path, reason in data.skipped)
    np.testing.assert_array_equal(data.image(0), np.full((16, 16, 3), (200, 10, 10), dtype=np.uint8))
    np.testing.assert_array_equal(data.image(1), np.full((16, 16, 3), 9, dtype=np.uint8))
    tensor, label = data[2]
    assert label == 1 and tensor.shape == (3, 16, 16)
    torch.testing.assert_close(tensor, normalize(data.image(2)))
    assert data.source(2) == str(tmp_path / "dog" / "b.png") and data.class_name(2) == "dog"


def test_streaming_folder_skips_unreadable_files_in_worker_processes(tmp_path):
    _bad_folder(tmp_path)
    data = ImageFolder(tmp_path, image_size=16, check=False)  # listed, nothing decoded
    assert len(data) == 6 and not data.skipped
    assert len(pickle.dumps(data)) < 2000  # what each worker receives: the listing, no pixels
    with pytest.raises(UnreadableImage, match=r"notes.txt: UnidentifiedImageError"):
        data[2]
    loader = DataLoader(Readable(data), batch_size=4, num_workers=2, collate_fn=collate_readable)
    batches = list(loader)
    assert [b.indices for b in batches] == [[0, 1, 3], []]
    assert [(s.index, Path(s.path).name) for b in batches for s in b.skipped] == [
        (2, "notes.txt"), (4, "garbage.jpg"), (5, "truncated.png")]  # fmt: skip
    assert batches[1].images is None
    torch.testing.assert_close(batches[0].images, torch.stack([data[i][0] for i in (0, 1, 3)]))
    assert batches[0].labels.tolist() == [0, 0, 1]


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    _write_folder(tmp_path, {"a/big.png": _png_bytes(Image.new("L", (200, 100))), "a/ok.png": _png_bytes(
        Image.new("L", (50, 50)))})  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 1"):
        data = ImageFolder(tmp_path, image_size=8, max_pixels=10_000)
    assert [p.name for p in data.paths] == ["ok.png"]
    assert "decompression bomb refused: 200x100 pixels exceeds max_pixels=10000" in data.skipped[0][1]
    assert read_image(tmp_path / "a" / "big.png", max_pixels=20_000).shape == (3, 100, 200)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)  # Pillow's own guard holds too, read when used
    with pytest.raises(
        UnreadableImage, match=r"DecompressionBombWarning: Image size \(20000 pixels\) exceeds"
    ):
        read_image(tmp_path / "a" / "big.png")


def test_load_dataset_folders_and_errors(tmp_path):
    png = _png_bytes(Image.new("RGB", (20, 20), (1, 2, 3)))
    _write_folder(tmp_path / "split", {"train/x/1.png": png, "val/x/2.png": png, "val/y/3.png": png})
    val = load_dataset(tmp_path / "split", split="val", image_size=8)
    assert val.classes == ["x", "y"] and len(val) == 2
    every = load_dataset(tmp_path / "split", image_size=8)  # split None: every split, classes by name
    assert [every.path(i).relative_to(tmp_path / "split").as_posix() for i in range(3)] == [
        "train/x/1.png", "val/x/2.png", "val/y/3.png"]  # fmt: skip
    assert every.classes == ["x", "y"] and every.labels.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"split='test': .* has split subfolders \['train', 'val'\]"):
        load_dataset(tmp_path / "split", split="test")
    with pytest.raises(ValueError, match="split='eval': choose one of"):
        load_dataset(tmp_path / "split", split="eval")
    with pytest.raises(ValueError, match="not 'builtin', and no such folder or file"):
        load_dataset(tmp_path / "missing")
    _write_folder(tmp_path / "bad", {"x/1.txt": b"text"})
    with pytest.raises(ValueError, match="no readable images"), pytest.warns(UserWarning):
        load_dataset(tmp_path / "bad")
    # a folder without split subfolders: every file, or (when asked) a split by path hash, 80/10/10
    _write_folder(tmp_path / "flat", {f"c{i % 2}/{i}.png": png for i in range(40)})
    assert len(load_dataset(tmp_path / "flat")) == 40
    splits = [set(ImageFolder(tmp_path / "flat", 8, split=s).paths) for s in ("train", "val", "test")]
    assert sum(len(s) for s in splits) == 40
    assert set.union(*splits) == set(ImageFolder(tmp_path / "flat", 8).paths)
    assert set(load_dataset(tmp_path / "flat", split="val", check=False).paths) == splits[1]


def test_flat_folder_of_images_has_no_classes(tmp_path):
    pixels = [np.full((12, 12, 3), v, np.uint8) for v in (10, 20, 30)]
    _write_folder(tmp_path, {f"{name}.png": _png_bytes(Image.fromarray(p))
                             for name, p in zip("bca", pixels, strict=True)})  # fmt: skip
    data = load_dataset(tmp_path, image_size=12)
    assert data.classes == [] and data.labels.tolist() == [-1, -1, -1]
    assert [p.name for p in data.paths] == ["a.png", "b.png", "c.png"]  # sorted
    assert data.class_name(0) is None
    np.testing.assert_array_equal(data.image(0), pixels[2])


def test_list_of_files_with_and_without_labels(tmp_path):
    for name, value in (("one.png", 1), ("two words.png", 2), ("sub/three.png", 3)):
        _write_folder(tmp_path, {name: _png_bytes(Image.new("RGB", (9, 9), (value,) * 3))})
    (tmp_path / "plain.txt").write_text(
        "one.png\n\n# a comment\ntwo words.png\n" + f"{tmp_path}/sub/three.png\n"
    )
    plain = load_dataset(tmp_path / "plain.txt", image_size=9)
    assert [p.name for p in plain.paths] == ["one.png", "two words.png", "three.png"]  # the file's order
    assert plain.classes == [] and [plain.image(i)[0, 0, 0] for i in range(3)] == [1, 2, 3]
    (tmp_path / "numbers.txt").write_text("one.png 3\ntwo words.png 0\n")
    numbers = ImageList(tmp_path / "numbers.txt", 9)
    assert numbers.classes == ["0", "1", "2", "3"] and numbers.labels.tolist() == [3, 0]
    (tmp_path / "named.txt").write_text("one.png\tdog\ntwo words.png\tcat\nmissing.png\tcat\n")
    named = ImageList(tmp_path / "named.txt", 9, check=False)
    assert named.classes == ["cat", "dog"] and named.labels.tolist() == [1, 0, 0]
    with pytest.raises(UnreadableImage, match="missing.png: FileNotFoundError"):
        named[2]
    (tmp_path / "mixed.txt").write_text("one.png\tdog\ntwo words.png\n")
    with pytest.raises(ValueError, match=r"mixed.txt:2: 'two words.png': every line needs a label"):
        ImageList(tmp_path / "mixed.txt")
    with pytest.raises(ValueError, match="split='val': .* is a list of files, which has no splits"):
        load_dataset(tmp_path / "plain.txt", split="val")


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
