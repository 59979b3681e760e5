"""The listing cache of large folders: the same listing as a walk, reused while no folder's time changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deconvlab.data import ImageFolder
from deconvlab.data.folder import folder_listing, listing

PAST = 1_600_000_000  # 2020: folder times well before "now", so that the listing may be kept


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "images"
    for i in range(30):
        path = root / ("cat", "dog", "eel")[i % 3] / ("deep" if i % 4 == 0 else "") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    age(root)
    return root


def age(root: Path, when: int = PAST) -> None:
    """Every folder's time set to ``when`` (long ago): what a folder left alone since then looks like."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (when, when))


def walked(root: Path, split=None):
    classes, paths, labels = folder_listing(root, split)
    return classes, [str(p) for p in paths], labels


def listed(root: Path, split=None, min_files=1):
    classes, paths, labels = listing(root, split, min_files=min_files)
    return classes, [os.fsdecode(p) for p in paths], labels.tolist()


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "listings").glob("*.npz"))


def test_cached_listing_equals_the_walk_and_follows_changes(root, tmp_path):
    assert listed(root) == walked(root) and len(cache_files(tmp_path)) == 1
    assert listed(root) == walked(root)  # from the cache
    assert listed(root, "val") == walked(root, "val") and listed(root, "train") == walked(root, "train")
    (root / "dog" / "deep" / "new.png").touch()  # a nested folder's time changes
    assert listed(root) == walked(root) and str(root / "dog" / "deep" / "new.png") in listed(root)[1]
    (root / "cat" / "003.png").unlink()
    assert listed(root) == walked(root)
    age(root, PAST + 10)
    assert listed(root) == walked(root) and len(cache_files(tmp_path)) == 1
    (root / "eel" / "empty" / "inner").mkdir(parents=True)  # folders without files are watched too
    age(root, PAST + 20)
    assert listed(root) == walked(root)
    (root / "eel" / "empty" / "inner" / "late.png").touch()
    assert str(root / "eel" / "empty" / "inner" / "late.png") in listed(root)[1]
    (root / "fox").mkdir()  # a new class changes the root's time
    (root / "fox" / "x.png").touch()
    assert listed(root)[0] == ["cat", "dog", "eel", "fox"] == walked(root)[0]


def test_the_cache_is_keyed_by_folder_times(root, tmp_path):
    before = listed(root)
    age(root)  # the same times as the cached ones ...
    (root / "eel" / "002.png").rename(root / "eel" / "zzz.png")
    age(root)  # ... kept through a rename: the cache cannot see it, so it answers (what it is keyed by)
    assert listed(root) == before != walked(root)
    os.utime(root / "eel", (PAST + 1, PAST + 1))  # any change of the folder's time: listed again
    assert listed(root) == walked(root)


def test_small_and_fresh_folders_are_not_kept(root, tmp_path):
    assert listed(root, min_files=31) == walked(root) and cache_files(tmp_path) == []
    (root / "cat" / "fresh.png").touch()  # changed just now: within the clock's tick, not kept
    assert listed(root) == walked(root) and cache_files(tmp_path) == []
    assert not (tmp_path / "cache").exists()  # looking did not make the cache folder


def test_image_folder_lists_through_the_cache(root, tmp_path, monkeypatch):
    folder = ImageFolder(root, image_size=8, check=False)
    assert cache_files(tmp_path) == []  # 30 files: below the default size for a cache
    monkeypatch.setattr("deconvlab.data.folder.CACHE_MIN_FILES", 30)
    for _ in range(2):  # listed and kept, then read back
        folder = ImageFolder(root, image_size=8, check=False)
        assert [str(p) for p in folder.paths] == walked(root)[1] and folder.labels.tolist() == walked(root)[2]
        assert folder.classes == ["cat", "dog", "eel"] and len(cache_files(tmp_path)) == 1
