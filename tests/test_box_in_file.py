"""Receptive-field boxes mapped back into the image files: ``box_in_file`` against a pixel-by-pixel
definition and a drawn rectangle, and ``topk.json``'s ``box_in_file`` from a real scan of files."""

from __future__ import annotations

import io
import json
import tarfile
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset
from torchvision.transforms.v2 import functional as F

from deconvlab.analyses import topk_scan
from deconvlab.data import ImageFolder, TarShards, box_in_file, read_image, resize_and_crop
from deconvlab.export import export_topk
from deconvlab.models import create

# (height, width) of files: odd, landscape and portrait, square, smaller than the input (upscaled), and
# centre crops that start at a half pixel, rounded half to even (69 - 64 = 5: round(2.5) = 2; 67 - 64 = 3:
# round(1.5) = 2; 60 -> 64 makes 71 -> 75, 75 - 64 = 11: round(5.5) = 6)
FILE_SIZES = [(97, 150), (150, 97), (81, 81), (64, 200), (41, 53), (333, 70), (64, 67), (64, 69), (71, 60)]


def transform_geometry(file_size, image_size):
    """The resized (height, width) and the crop's (top, left), read off torchvision's own output: the
    shape ``F.resize`` gives, and the row and column numbers that ``F.center_crop`` keeps."""
    resized = F.resize(torch.zeros(1, *file_size), [image_size], antialias=True).shape[-2:]
    rows = torch.arange(resized[0]).view(1, -1, 1).expand(1, *resized)
    columns = torch.arange(resized[1]).view(1, 1, -1).expand(1, *resized)
    top = int(F.center_crop(rows, [image_size, image_size])[0, 0, 0])
    left = int(F.center_crop(columns, [image_size, image_size])[0, 0, 0])
    return tuple(resized), (top, left)


def covered_pixels(start, end, offset, side, resized_side):
    """The file pixels p whose extent [p, p + 1), scaled into the resized image, overlaps the box's
    [start + offset, end + offset) by a positive length: the definition, one pixel at a time."""
    scale = Fraction(resized_side, side)
    return [p for p in range(side) if p * scale < end + offset and (p + 1) * scale > start + offset]


def test_hand_computed_case_on_a_real_file(tmp_path):
    # a 150 x 97 PNG (width x height): the shorter side 97 -> 64, the longer int(64 * 150 / 97) = 98,
    # columns cropped from (98 - 64) / 2 = 17
    path = tmp_path / "odd.png"
    pixels = np.random.default_rng(0).integers(0, 256, (97, 150, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    resized = F.resize(read_image(path), [64], antialias=True)
    assert tuple(resized.shape) == (3, 64, 98)
    np.testing.assert_array_equal(
        resize_and_crop(Image.open(path), 64), resized[:, :, 17:81].permute(1, 2, 0)
    )
    # rows [10, 30) scale by 97 / 64: [15.16, 45.47) -> [15, 46); columns [5, 40) -> resized [22, 57),
    # scale by 150 / 98: [33.67, 87.24) -> [33, 88)
    assert box_in_file((10, 30, 5, 40), (97, 150), 64) == (15, 46, 33, 88)
    assert box_in_file((0, 64, 0, 64), (97, 150), 64) == (0, 97, 26, 124)  # 17 * 150 / 98 = 26.02


@pytest.mark.parametrize("file_size", FILE_SIZES)
def test_every_box_maps_to_the_file_pixels_it_covers(file_size):
    image_size = 64
    (height, width), (top, left) = transform_geometry(file_size, image_size)
    rng = np.random.default_rng(sum(file_size))
    for _ in range(200):
        y0, y1 = sorted(rng.choice(image_size + 1, 2, replace=False).tolist())
        x0, x1 = sorted(rng.choice(image_size + 1, 2, replace=False).tolist())
        rows = covered_pixels(y0, y1, top, file_size[0], height)
        columns = covered_pixels(x0, x1, left, file_size[1], width)
        expected = (rows[0], rows[-1] + 1, columns[0], columns[-1] + 1)
        assert box_in_file((y0, y1, x0, x1), file_size, image_size) == expected, (y0, y1, x0, x1)


@pytest.mark.parametrize("file_size", [(97, 150), (150, 97), (333, 70)])
def test_a_rectangle_drawn_at_the_file_box_fills_the_box_after_the_transform(tmp_path, file_size):
    # downscaled files: the bilinear filter of an input pixel reaches at most one input pixel beyond
    # itself, so every pixel 2 or more inside the box sees only the rectangle, and 2 or more outside none
    image_size, box = 64, (9, 40, 21, 50)
    y0, y1, x0, x1 = box_in_file(box, file_size, image_size)
    pixels = np.zeros((*file_size, 3), np.uint8)
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(tmp_path / "rectangle.png")
    seen = resize_and_crop(Image.open(tmp_path / "rectangle.png"), image_size)[..., 0].astype(int)
    rows, columns = np.arange(image_size)[:, None], np.arange(image_size)[None, :]
    inside = (rows >= box[0] + 2) & (rows < box[1] - 2) & (columns >= box[2] + 2) & (columns < box[3] - 2)
    outside = (rows < box[0] - 2) | (rows >= box[1] + 2) | (columns < box[2] - 2) | (columns >= box[3] + 2)
    assert seen[inside].min() >= 254 and seen[outside].max() == 0


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three random images of different sizes in a flat folder, and the same images in one tar shard."""
    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(1)
    (root / "folder").mkdir()
    with tarfile.open(root / "shard-0.tar", "w") as tar:
        for name, (height, width) in zip("abc", [(97, 150), (120, 81), (70, 70)], strict=True):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
            (root / "folder" / f"{name}.png").write_bytes(buffer.getvalue())
            info = tarfile.TarInfo(f"{name}.png")
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
    return root


def _scan(dataset, out, export=None):
    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=4)
    top = topk_scan(model, dataset, ["features.0", "features.4"], k=3, batch_size=2, out=out, progress=False)
    if export is not None:
        export_topk(top, model, dataset, export, layers=["features.4"])
    return json.loads((out / "topk.json").read_text())


def test_scan_of_files_gives_boxes_in_the_files_that_map_back_to_the_boxes(images, tmp_path):
    image_size = 64
    saved = _scan(ImageFolder(images / "folder", image_size=image_size, check=False), tmp_path / "folder")
    entries = [e for layer in saved["layers"].values() for channel in layer["channels"] for e in channel]
    assert {e["path"].rsplit("/", 1)[-1] for e in entries} == {"a.png", "b.png", "c.png"}
    for entry in entries:
        width, height = Image.open(entry["path"]).size
        assert entry["file_size"] == [height, width]
        y0, y1, x0, x1 = entry["box_in_file"]
        assert 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
        # forward, by the geometry torchvision's transform has: file edge e -> e * resized / file - crop
        resized, crop = transform_geometry((height, width), image_size)
        for (start, end), side, resized_side, offset, (box_start, box_end) in zip(
            ((y0, y1), (x0, x1)),
            (height, width),
            resized,
            crop,
            np.reshape(entry["box"], (2, 2)),
            strict=True,
        ):
            forward_start = start * resized_side / side - offset
            forward_end = end * resized_side / side - offset
            assert box_start - 1 < forward_start <= box_start and box_end <= forward_end < box_end + 1
    # the same files in a tar shard: the same boxes in the files
    shard = _scan(TarShards(str(images / "shard-0.tar"), image_size=image_size), tmp_path / "shard")
    for name in saved["layers"]:
        for folder_channel, shard_channel in zip(
            saved["layers"][name]["channels"], shard["layers"][name]["channels"], strict=True
        ):
            assert [
                (e["path"].rsplit("/", 1)[-1], e["box"], e["file_size"], e["box_in_file"])
                for e in folder_channel
            ] == [(f"{e['path']}.png", e["box"], e["file_size"], e["box_in_file"]) for e in shard_channel]


def test_images_without_files_have_no_box_in_file(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    data = TensorDataset(torch.randn(4, 3, 8, 8), torch.zeros(4))
    topk_scan(model, data, ["1"], k=2, out=tmp_path, progress=False)
    entries = json.loads((tmp_path / "topk.json").read_text())["layers"]["1"]["channels"][0]
    assert len(entries) == 2 and all(
        "box" in e and "box_in_file" not in e and "file_size" not in e for e in entries
    )


def test_export_cuts_the_file_box_from_the_file(images, tmp_path):
    folder = ImageFolder(images / "folder", image_size=64, check=False)
    saved = _scan(folder, tmp_path / "scan", export=tmp_path / "export")
    for channel, entries in enumerate(saved["layers"]["features.4"]["channels"]):
        for rank, entry in enumerate(entries):
            y0, y1, x0, x1 = entry["box_in_file"]
            expected = np.asarray(Image.open(entry["path"]).convert("RGB").crop((x0, y0, x1, y1)))
            cut = np.asarray(
                Image.open(tmp_path / "export" / "features.4" / f"{channel:04d}" / f"original-{rank}.png")
            )
            np.testing.assert_array_equal(cut, expected)
    assert "0000/original-0.png" in (tmp_path / "export" / "features.4" / "index.html").read_text()
