"""Image files as datasets that stream: listed once, each image decoded when it is indexed.

``ImageFiles`` holds only the listing (paths as one NumPy bytes array, labels as one int64 array: about
100 bytes per file, and no Python object per file, so DataLoader workers share it without copying);
``dataset[i]`` reads, resizes (shorter side), centre-crops and normalises file ``i``. Memory is therefore
O(batch) whatever the number of files. Three ways to list files:

- ``ImageFolder(root)``: ``root/<class>/**/<images>`` (sorted class names are the classes), or a flat
  ``root/<images>`` without classes (label -1);
- ``ImageList(file)``: a text file of image paths, one per line, optionally with a label;
- ``ImageFiles(paths, labels, classes)``: any listing.

A file that cannot be read raises ``UnreadableImage`` (path and reason) when it is indexed; the scan
skips it and lists it (``deconvlab.data.readable``). ``check=True`` instead decodes every file once
when the dataset is built and leaves the unreadable ones out of the listing (in ``.skipped``, with one
warning): what random access needs (training, the report's samples), at the cost of one decoding pass.

>>> files = ImageFiles(["a.png", "b.png"], labels=[1, 0], classes=["cat", "dog"], check=False)
>>> len(files), files.source(1), files.class_name(1)
(2, 'b.png', 'cat')
>>> files[0]  # doctest: +ELLIPSIS
Traceback (most recent call last):
deconvlab.data.decode.UnreadableImage: a.png: FileNotFoundError: ...
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deconvlab._io import cache_dir, write_atomic
from deconvlab.data.decode import UnreadableImage, read_image
from deconvlab.data.transforms import MEAN, STD, center_crop, normalize, resize_shorter

# A folder without train/val/test subfolders is split (when a split is asked for) by a hash of each
# file's path relative to the folder: 80/10/10.
SPLIT_BUCKETS = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}
NO_LABEL = -1
CACHE_MIN_FILES = 10_000  # folders of this many files keep their listing in the cache (see listing)


class ImageFiles(torch.utils.data.Dataset):
    """Images named by path: ``dataset[i] -> (normalised tensor (3, S, S), label)``, S = ``image_size``.

    ``paths``: a sequence, or a NumPy bytes array (as ``listing`` gives: no Python object per file);
    ``labels``: one int per path (-1: no class), or None for none at all; ``classes``: their names.
    ``max_pixels`` refuses larger images (default: Pillow's decompression-bomb limit). ``mean``/``std``:
    the normalisation. ``check``: decode every file now and leave out the unreadable ones (see above).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[int] | None = None,
        classes: Sequence[str] = (),
        *,
        image_size: int = 224,
        max_pixels: int | None = None,
        check: bool = True,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
        name: str = "files",
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r}: must be an int >= 1")
        labels = np.full(len(paths), NO_LABEL, np.int64) if labels is None else np.asarray(labels, np.int64)
        if len(labels) != len(paths):
            raise ValueError(f"labels: {len(labels)} labels for {len(paths)} paths; expected one per path")
        self.classes = list(classes)
        bad = labels[(labels < NO_LABEL) | (labels >= len(self.classes))]
        if len(bad):
            raise ValueError(f"labels: {bad[0]} is not -1 or the index of one of {len(self.classes)} classes")
        self.image_size, self.max_pixels = image_size, max_pixels
        self.mean, self.std = tuple(mean), tuple(std)
        self.name = name
        is_array = isinstance(paths, np.ndarray) and paths.dtype.kind == "S"
        self._paths = paths if is_array else np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)
        self.labels = labels
        self.skipped: list[tuple[Path, str]] = []
        if check:
            self._check()

    def _check(self) -> None:
        readable = []
        for index in range(len(self)):
            try:
                self.pixels(index)
            except UnreadableImage as error:
                self.skipped.append((self.path(index), error.reason))
            else:
                readable.append(index)
        self._paths, self.labels = self._paths[readable], self.labels[readable]
        if self.skipped:
            listed = "; ".join(f"{p}: {reason}" for p, reason in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more, see .skipped)" if len(self.skipped) > 5 else ""
            warnings.warn(f"skipped {len(self.skipped)} unreadable file(s) in {self.name}: {listed}{more}",
                          stacklevel=3)  # fmt: skip

    def __len__(self) -> int:
        return len(self._paths)

    def source(self, index: int) -> str:
        """The path of image ``index``, as listed."""
        return os.fsdecode(self._paths[index])

    def path(self, index: int) -> Path:
        return Path(self.source(index))

    @property
    def paths(self) -> list[Path]:
        """Every path, in order (a new list: prefer ``path(i)`` on millions of files)."""
        return [self.path(i) for i in range(len(self))]

    def class_name(self, index: int) -> str | None:
        """The class of image ``index``, or None when it has none."""
        label = int(self.labels[index])
        return None if label == NO_LABEL else self.classes[label]

    def pixels(self, index: int) -> torch.Tensor:
        """uint8 (3, S, S): file ``index`` decoded, shorter side resized to S, centre-cropped."""
        return self._pixels_and_file_size(index)[0]

    def _pixels_and_file_size(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        image = read_image(self.path(index), self.max_pixels)
        file_size = (int(image.shape[-2]), int(image.shape[-1]))
        return center_crop(resize_shorter(image, self.image_size), self.image_size), file_size

    def image(self, index: int) -> np.ndarray:
        """uint8 (S, S, 3) pixels of image ``index`` (resized and centre-cropped)."""
        return self.pixels(index).movedim(0, -1).numpy()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.item_and_file_size(index)[0]

    def item_and_file_size(self, index: int) -> tuple[tuple[torch.Tensor, int], tuple[int, int]]:
        """``(dataset[index], (height, width))``: the item and its file's size before the transform, from
        one decoding (the scan maps boxes back into the file with it, ``deconvlab.data.box_in_file``)."""
        pixels, file_size = self._pixels_and_file_size(index)
        return (normalize(pixels, self.mean, self.std), int(self.labels[index])), file_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, image_size={self.image_size}, size={len(self)})"


def folder_listing(
    root: str | os.PathLike, split: str | None = None, folders: list[Path] | None = None
) -> tuple[list[str], list[Path], list[int]]:
    """(classes, paths, labels) of ``root/<class>/**`` (or of a flat ``root/*``), sorted; hidden files
    and folders left out. ``split`` keeps the files whose path hash falls in that split. ``folders``, a
    list, receives every folder walked (``root`` first).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("dog/2.png", "cat/b/1.png", "cat/0.png", "dog/.hidden"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True); (root / name).touch()
    >>> classes, paths, labels = folder_listing(root)
    >>> classes, [p.relative_to(root).as_posix() for p in paths], labels
    (['cat', 'dog'], ['cat/0.png', 'cat/b/1.png', 'dog/2.png'], [0, 0, 1])
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r}: no such folder")
    if split is not None and split not in SPLIT_BUCKETS:
        raise ValueError(f"split={split!r}: choose one of {sorted(SPLIT_BUCKETS)} or None")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    walked = [] if folders is None else folders
    walked.append(root)
    paths, labels = [], []
    for label, folder in [(label, root / name) for label, name in enumerate(classes)] or [(NO_LABEL, root)]:
        for path in sorted(_files(folder, label != NO_LABEL, walked)):
            relative = path.relative_to(root).as_posix().encode()
            if split is None or zlib.crc32(relative) % 10 in SPLIT_BUCKETS[split]:
                paths.append(path)
                labels.append(label)
    return classes, paths, labels


def _files(folder: Path, recursive: bool, walked: list[Path]) -> list[Path]:
    if not recursive:
        return [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    found = []
    for directory, subfolders, names in os.walk(folder):
        walked.append(Path(directory))
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(directory, name) for name in names if not name.startswith(".")]
    return found


def listing(
    root: str | os.PathLike, split: str | None = None, min_files: int | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``folder_listing`` as arrays (paths: NumPy bytes, labels: int64), through a cache for large folders.

    A folder of at least ``min_files`` files (default ``CACHE_MIN_FILES``) is listed once and kept in
    ``cache_dir()/listings/``, keyed by the folder's absolute path, with the modification time of every
    folder in it (hidden ones left out, as in the listing): a file added,
    removed or renamed anywhere changes its folder's time, and the folder is listed again. Checking costs
    one ``stat`` per folder (a thousand for ImageNet), not one per file. A listing whose folders changed
    in the last two seconds is not kept (a change within the same tick would not show).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b/1.png", "a/0.png"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True); (root / name).touch()
    >>> classes, paths, labels = listing(root)
    >>> classes, [os.fsdecode(p)[len(str(root)) + 1:] for p in paths], labels.tolist()
    (['a', 'b'], ['a/0.png', 'b/1.png'], [0, 1])
    """
    root = Path(root)
    if split is not None and split not in SPLIT_BUCKETS:
        raise ValueError(f"split={split!r}: choose one of {sorted(SPLIT_BUCKETS)} or None")
    cached = _cached_listing(root)
    if cached is None:
        walked: list[Path] = []
        classes, paths, labels = folder_listing(root, folders=walked)
        relative = np.array([p.relative_to(root).as_posix().encode() for p in paths], np.bytes_)
        labels = np.asarray(labels, np.int64)
        if len(relative) >= (CACHE_MIN_FILES if min_files is None else min_files):
            folders = np.array([f.relative_to(root).as_posix().encode() for f in walked], np.bytes_)
            _keep_listing(root, classes, relative, labels, folders)
    else:
        classes, relative, labels = cached
    if split is not None:
        keep = np.array([zlib.crc32(r) % 10 in SPLIT_BUCKETS[split] for r in relative], bool)
        relative, labels = relative[keep], labels[keep]
    prefix = b"" if str(root) == "." else os.fsencode(str(root)) + b"/"
    return classes, np.char.add(prefix, relative) if len(relative) else relative, labels


def _listing_file(root: Path) -> Path:
    key = hashlib.sha256(os.fsencode(str(root.resolve()))).hexdigest()[:32]
    return cache_dir(create=False) / "listings" / f"{key}.npz"


def _folder_times(root: Path, folders) -> np.ndarray:
    return np.array([os.stat(root / os.fsdecode(f)).st_mtime_ns for f in folders], np.int64)


def _cached_listing(root: Path):
    """(classes, relative paths, labels) from the cache, or None when absent or out of date."""
    file = _listing_file(root)
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as saved:
            if str(saved["root"]) != str(root.resolve()):
                return None
            if np.array_equal(_folder_times(root, saved["folders"]), saved["times"]):
                return [str(c) for c in saved["classes"]], saved["paths"], saved["labels"]
    except (OSError, ValueError, KeyError):  # a folder gone, or a damaged cache file: list again
        pass
    file.unlink(missing_ok=True)  # out of date: never used again, even if the old times came back
    return None


def _keep_listing(root: Path, classes: list[str], relative, labels, folders: np.ndarray) -> None:
    times = _folder_times(root, folders)
    if times.max() > time.time_ns() - 2 * 10**9:
        return
    arrays = {"root": np.str_(str(root.resolve())), "classes": np.array(classes, np.str_), "paths": relative,
              "labels": labels, "folders": folders, "times": times}  # fmt: skip
    write_atomic(_listing_file(root), lambda f: np.savez(f, **arrays))


class ImageFolder(ImageFiles):
    """``root/<class>/**/<images>`` (the sorted subfolder names are the classes) or a flat folder of images
    (no classes, label -1). ``split`` keeps only the files whose path hash falls in that split (80/10/10);
    None keeps all. Listed by ``listing`` (cached for large folders). Other arguments: ``ImageFiles``."""

    def __init__(self, root: str | os.PathLike, image_size: int = 224, split: str | None = None, **options):
        classes, paths, labels = listing(root, split)
        self.root = Path(root)
        super().__init__(paths, labels, classes, image_size=image_size, name=str(root), **options)


def read_image_list(file: str | os.PathLike) -> tuple[list[str], list[Path], list[int] | None]:
    """(classes, paths, labels) of a text file of images: one per line, ``PATH``, ``PATH<tab>LABEL``, or
    ``PATH LABEL`` with an integer label (Caffe's and ImageNet's lists). Relative paths are relative to
    the file's folder; blank lines and lines starting with ``#`` are left out. Integer labels are class
    indices (classes ``'0'`` to the largest); other labels are class names, indexed in sorted order.

    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "list.txt"
    >>> _ = file.write_text("# photos\\nb/x.jpg\\tdog\\n/data/y.jpg\\tcat\\n")
    >>> classes, paths, labels = read_image_list(file)
    >>> classes, [p.relative_to(file.parent).as_posix() for p in paths[:1]], str(paths[1]), labels
    (['cat', 'dog'], ['b/x.jpg'], '/data/y.jpg', [1, 0])
    """
    file = Path(file)
    paths, names = [], []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, label = line.rsplit("\t", 1) if "\t" in line else (line, None)
        if label is None and len(parts := line.rsplit(None, 1)) == 2 and parts[1].isdigit():
            path, label = parts
        if paths and (label is None) != (names[-1] is None):
            raise ValueError(f"{file}:{number}: {line!r}: every line needs a label, or none does")
        paths.append(file.parent / path.strip())
        names.append(label.strip() if label is not None else None)
    if not names or names[0] is None:
        return [], paths, None
    if all(name.isdigit() for name in names):
        labels = [int(name) for name in names]
        return [str(i) for i in range(max(labels) + 1)], paths, labels
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    return classes, paths, [index[name] for name in names]


class ImageList(ImageFiles):
    """The images named in a text file (see ``read_image_list``). Other arguments: ``ImageFiles``."""

    def __init__(self, file: str | os.PathLike, image_size: int = 224, **options):
        classes, paths, labels = read_image_list(file)
        self.root = Path(file).parent
        super().__init__(paths, labels, classes, image_size=image_size, name=str(file), **options)
