"""Image-folder datasets: ``root/<class name>/<image files>``, read with Pillow.

Every file is decoded once when the dataset is built, resized (shorter side) and centre-cropped to
``image_size``, and kept in memory as uint8 (``N * image_size**2 * 3`` bytes: 10,000 images at 224
pixels take 1.5 GB). A file that is not an image, is corrupt or truncated, or is a decompression
bomb is skipped, and listed with its reason in ``.skipped``; one warning gives the count. A long
run therefore never stops on one bad file.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deconvlab.data.transforms import normalize, resize_and_crop

# A flat folder (no train/val/test subfolders) is split by a hash of each file's relative path.
SPLIT_BUCKETS = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}


class ImageFolder(torch.utils.data.Dataset):
    """One subfolder per class (sorted names are the classes); ``dataset[i] -> (tensor, label)``.

    ``split`` keeps only the files whose path hash falls in that split (80/10/10); None keeps all.
    ``max_pixels`` refuses larger images (default: Pillow's decompression-bomb limit).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 224,
        split: str | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root={str(root)!r}: no such folder")
        if split is not None and split not in SPLIT_BUCKETS:
            raise ValueError(f"split={split!r}: choose one of {sorted(SPLIT_BUCKETS)} or None")
        self.image_size = image_size
        self.max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")
        if not self.classes:
            raise ValueError(f"root={str(root)!r}: no class subfolders (expected root/<class>/<images>)")
        self.paths: list[Path] = []
        self.labels: list[int] = []
        self.skipped: list[tuple[Path, str]] = []
        images = []
        for label, path in self._files(split):
            try:
                images.append(self._read(path))
            except Exception as error:  # noqa: BLE001 - any unreadable file is reported, never fatal
                self.skipped.append((path, f"{type(error).__name__}: {error}"))
                continue
            self.paths.append(path)
            self.labels.append(label)
        self.images = np.stack(images) if images else np.empty((0, image_size, image_size, 3), np.uint8)
        if self.skipped:
            listed = "; ".join(f"{p}: {reason}" for p, reason in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more, see .skipped)" if len(self.skipped) > 5 else ""
            warnings.warn(f"skipped {len(self.skipped)} unreadable file(s) in {self.root}: {listed}{more}",
                          stacklevel=2)  # fmt: skip

    def _files(self, split: str | None) -> list[tuple[int, Path]]:
        files = []
        for label, name in enumerate(self.classes):
            for path in sorted((self.root / name).rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    relative = path.relative_to(self.root).as_posix().encode()
                    if split is None or zlib.crc32(relative) % 10 in SPLIT_BUCKETS[split]:
                        files.append((label, path))
        return files

    def _read(self, path: Path) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    raise ValueError(
                        f"decompression bomb refused: {width}x{height} pixels exceeds "
                        f"max_pixels={self.max_pixels}"
                    )
                image.draft("RGB", (self.image_size, self.image_size))  # JPEG: decode at reduced scale
                image.load()
                return resize_and_crop(image, self.image_size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(self.images[index]), self.labels[index]

    def image(self, index: int) -> np.ndarray:
        """uint8 (H, W, 3) pixels of image ``index`` (resized and centre-cropped)."""
        return self.images[index]

    def __repr__(self) -> str:
        return f"ImageFolder(root={str(self.root)!r}, image_size={self.image_size}, size={len(self)})"
