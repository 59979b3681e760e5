"""``deconvlab serve --data FOLDER``: the folder is listed, not decoded, when the explorer loads; the scan
decodes what it scans, and a file that cannot be read is passed over and named.

Decodes are counted by wrapping ``deconvlab.data.folder.read_image``, the function image files are
decoded by (the explorer's scan runs without worker processes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import deconvlab.data.folder as folder_module  # noqa: E402
from deconvlab.data import read_image  # noqa: E402
from deconvlab.serve import ServeConfig, create_app  # noqa: E402

PER_CLASS = 20
SCAN_IMAGES = 3


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """An explorer on ``train/{a,b}/``: 20 images per class and a corrupt file first in class a."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    files = []
    for name in ("a", "b"):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        if name == "a":
            files.append(folder / "000-broken.png")
            files[-1].write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        for i in range(PER_CLASS):
            files.append(folder / f"{i + 1:03d}.png")
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(files[-1])
    decodes: Counter = Counter()
    real = folder_module.read_image

    def counted(source, *args, **kwargs):
        decodes[Path(source)] += 1
        return real(source, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(folder_module, "read_image", counted)
    config = ServeConfig(model="zfnet-mini", data=str(root), split="train", layers=("features.0",),
                         scan_images=SCAN_IMAGES)  # fmt: skip
    app = create_app(config)
    try:
        with TestClient(app) as client:
            assert app.state.explorer.wait(120), client.get("/api/status").json()
            loaded = Counter(decodes)
            yield client, files, loaded
    finally:
        patch.undo()


def test_loading_decodes_only_what_it_scans(explorer):
    client, files, loaded = explorer
    assert client.get("/api/status").json()["dataset_size"] == len(files)  # listed, the corrupt one too
    # the layers are measured on the first readable image, the scan checks the model on it again and
    # reads its SCAN_IMAGES images: the corrupt file is tried each time
    assert loaded == Counter({files[0]: 3, files[1]: 3, files[2]: 1})
    assert sum(loaded.values()) < len(files) // 4


def test_the_scan_names_the_file_it_could_not_read(explorer):
    client, files, _ = explorer
    with pytest.raises(ValueError) as error:  # the reason, from the decoder itself
        read_image(files[0])
    units = client.get("/api/units", params={"layer": "features.0"}).json()
    assert units["skipped"] == [{"path": str(files[0]), "reason": error.value.reason}]
    assert units["num_images"] == SCAN_IMAGES - 1
    seen = {unit["image"] for channel in units["channels"] for unit in channel["units"]}
    assert seen == {"dataset:1", "dataset:2"}


def test_an_unreadable_dataset_image_is_a_422_naming_it(explorer):
    client, files, _ = explorer
    response = client.get("/api/image.png", params={"ref": "dataset:0"})
    assert response.status_code == 422
    assert response.json()["error"].startswith(f"image='dataset:0': {files[0]} cannot be read (")
    assert client.get("/api/image.png", params={"ref": "dataset:1"}).status_code == 200


def test_the_images_offered_are_the_first_readable_of_each_class(explorer):
    client, files, _ = explorer
    first_b = files.index(files[0].parent.parent / "b" / "001.png")
    assert client.get("/api/images").json()["dataset"] == ["dataset:1", f"dataset:{first_b}"]
