"""A report on a folder much bigger than its samples: nothing is decoded up front, each section reads a
bounded sample (passing over unreadable files for the next candidate) and the report lists every
unreadable file it met, with the sections that met it.

Decodes are counted by wrapping ``deconvlab.data.folder.read_image``, the function image files are
decoded by (the report scans with ``num_workers=0``, so every decode happens in this process).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deconvlab.data.folder as folder_module
from deconvlab.data import read_image
from deconvlab.models import create
from deconvlab.report import ReportOptions, build_report
from deconvlab.report.html import image_sources
from deconvlab.report.study import Study

CLASSES = ("a", "b", "c")
PER_CLASS = {"train": 60, "val": 4, "test": 60}  # 372 files; the samples below read about 40
BROKEN = {  # the first file of class a in each split (sorted first): every section's first candidate
    "train": "a/000-broken.png",
    "val": "a/000-broken.png",
    "test": "a/000-broken.png",
}
OPTIONS = ReportOptions(
    layers=("features.0",),
    channels_per_layer=2,
    k=3,
    evolution_channels=1,
    evolution_images=10,
    invariance_images=2,
    occlusion_images_per_class=1,
    occlusion_classes=2,
    occlusion_shown=1,
    probe_train_images=12,
    probe_test_images=6,
    optimize_steps=0,
    sanity_images=2,
    batch_size=16,
    progress=False,
)


def make_folder(root: Path) -> dict[str, list[Path]]:
    """``root/{train,val,test}/<class>/NNN.png`` of random pixels and one corrupt file per split; each
    split's files in the order the listing gives them (sorted by class, then name)."""
    rng = np.random.default_rng(0)
    listing = {}
    for split, count in PER_CLASS.items():
        files = []
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            if f"{name}/" in BROKEN[split]:
                (root / split / BROKEN[split]).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
                files.append(root / split / BROKEN[split])
            for i in range(count):
                path = folder / f"{i + 1:03d}.png"
                Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(path)
                files.append(path)
        listing[split] = files
    return listing


@pytest.fixture(scope="module")
def folder_report(tmp_path_factory):
    """The report on the folder, with every decode counted by path."""
    root = tmp_path_factory.mktemp("photos")
    listing = make_folder(root)
    decodes: Counter = Counter()
    real = folder_module.read_image

    def counted(source, *args, **kwargs):
        decodes[Path(source)] += 1
        return real(source, *args, **kwargs)

    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=len(CLASSES)).eval()
    out = tmp_path_factory.mktemp("report")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    torch.save(model.state_dict(), checkpoints / "epoch-001.pt")
    patch = pytest.MonkeyPatch()
    patch.setattr(folder_module, "read_image", counted)
    try:
        study = Study(model, "zfnet-mini", str(root), out / "listed", OPTIONS)
        sizes = {split: len(study.dataset(split)) for split in PER_CLASS}
        decoded_by_listing = sum(decodes.values())
        build_report(
            model, out, model_name="zfnet-mini", data=str(root), checkpoints=checkpoints, options=OPTIONS
        )
    finally:
        patch.undo()
    report = json.loads((out / "report.json").read_text())
    return listing, sizes, decoded_by_listing, decodes, report, out


def test_listing_the_splits_decodes_nothing(folder_report):
    listing, sizes, decoded_by_listing, *_ = folder_report
    assert decoded_by_listing == 0
    assert sizes == {split: len(files) for split, files in listing.items()}  # corrupt files listed too


def test_every_unreadable_file_met_is_listed_with_its_reason_and_sections(folder_report):
    listing, _, _, _, report, out = folder_report
    # by hand: the corrupt file is the first candidate of every sample drawn from its split
    met_by = {
        "test": ["invariance", "occlusion", "probes"],
        "train": ["evolution", "probes"],
        "val": ["top9", "sanity"],
    }
    expected = []
    for split, sections in met_by.items():
        path = listing[split][0]
        with pytest.raises(ValueError) as error:  # the reason, from the decoder itself
            read_image(path)
        expected.append(
            {"split": split, "path": str(path), "reason": error.value.reason, "sections": sections}
        )
    assert report["dataset"]["skipped"] == expected
    page = (out / "index.html").read_text()
    for item in expected:
        assert item["path"] in page
    assert report["top9"]["images_scanned"] == len(listing["val"]) - 1


def test_each_section_reads_the_next_readable_candidates(folder_report):
    listing, sizes, _, _, report, _ = folder_report
    test = {path: i for i, path in enumerate(listing["test"])}
    first_of = {name: test[listing["test"][0].parent.parent / name / "001.png"] for name in CLASSES}
    # invariance: the first readable image of each of the first 2 classes (a's first is corrupt)
    assert report["invariance"]["images"] == [first_of["a"], first_of["b"]]
    # occlusion: 1 image of each of 2 classes spread over 3 (a and c)
    assert report["occlusion"]["images"] == [first_of["a"], first_of["c"]]
    assert (report["occlusion"]["classes_used"], report["occlusion"]["classes_listed"]) == (2, 3)
    # probes and sanity: evenly spread indices; index 0 (corrupt) stands aside for index 1
    assert report["probes"]["test_images"] == 6 and report["probes"]["train_images"] == 12
    assert report["sanity"]["images"] == [1, sizes["val"] - 1]
    records = {
        name: report[name]["samples"] for name in ("invariance", "occlusion", "probes", "sanity", "top9")
    }
    assert records["invariance"] == [{"split": "test", "used": 2, "listed": sizes["test"]}]
    assert records["probes"] == [
        {"split": "train", "used": 12, "listed": sizes["train"]},
        {"split": "test", "used": 6, "listed": sizes["test"]},
    ]
    assert records["top9"] == [{"split": "val", "used": sizes["val"] - 1, "listed": sizes["val"]}]
    # evolution: the scan of 10 spread training images skips the corrupt one (index 0)
    assert report["evolution"]["samples"] == [{"split": "train", "used": 9, "listed": sizes["train"]}]


def test_the_samples_are_bounded_as_documented(folder_report):
    """Outside the scanned split, each sample reads its images and the corrupt candidates it meets,
    occlusion draws its shown images again and the evolution projects its channels' strongest; the
    scanned split is read once by the scan, and again for the top-9's projections and pictures and the
    sanity checks."""
    listing, _, _, decodes, report, _ = folder_report
    o = OPTIONS
    samples = o.invariance_images + o.occlusion_images_per_class * o.occlusion_classes
    samples += o.probe_train_images + o.probe_test_images + o.evolution_images
    outside = [path for split in ("train", "test") for path in listing[split]]
    skipped = [item for item in report["dataset"]["skipped"] if item["split"] != "val"]
    met = sum(len(item["sections"]) for item in skipped)  # each section tries a corrupt file once
    assert sum(1 for path in outside if decodes[path]) <= samples + len(skipped)
    assert len(outside) > 8 * (samples + met)  # the folder is much bigger than the samples
    # the evolution's scan first checks the model on its first readable image: the corrupt file and the next
    evolution_again = 2 + o.evolution_channels * len(o.layers)  # and projects each channel's strongest
    assert sum(decodes[path] for path in outside) <= samples + met + o.occlusion_shown + evolution_again
    # the scan: every file, and first the corrupt one and the next, to find an image to check the model
    scan = len(listing["val"]) + 2
    top9_again = 2 * o.k * o.channels_per_layer * len(o.layers)  # projected, then drawn
    sanity = o.sanity_images + 1  # and the corrupt candidate
    assert sum(decodes[path] for path in listing["val"]) <= scan + top9_again + sanity


def test_the_page_says_how_many_images_each_section_read(folder_report):
    _, sizes, _, _, _, out = folder_report
    page = (out / "index.html").read_text()
    assert f"Images read: 2 of the test split's {sizes['test']}; 1 unreadable file passed over" in page
    assert (
        f"Images read: 12 of the train split's {sizes['train']}; 6 of the test split's {sizes['test']}"
        in page
    )
    assert "2 of the 3 classes, spread evenly" in page
    for source in image_sources(page):
        with Image.open(out / source) as image:
            image.verify()


def test_tar_shards_are_refused_with_the_reason(tmp_path):
    model = create("zfnet-mini", num_classes=3)
    with pytest.raises(ValueError, match="tar shards stream in order, without random access or splits"):
        Study(model, "zfnet-mini", str(tmp_path / "train-{000000..000001}.tar"), tmp_path / "r")
