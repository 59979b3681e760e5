"""Export a scan's top-k as pictures: each channel's patches, their projections, and an ``index.html``.

Like DeepVis's ``crop_max_patches``: for every layer and channel of a ``topk.json``, and for each of its
k images (strongest first),

- ``<layer>/<channel>/patch-<rank>.png``: the unit's receptive-field box cut from the image as the
  model saw it (``dataset.image(i)``: the file decoded, resized and centre-cropped), the box clipped to
  the image as ``topk.json`` gives it;
- ``<layer>/<channel>/projection-<rank>.png``: the unit projected to pixels
  (``deconvlab.engine.project``, by ``rule``), drawn as the report draws projections (zero at mid-grey,
  ``deconvlab.report.figures.projection_rgb`` of the whole projection), cut to the same box;
- ``<layer>/<channel>/original-<rank>.png``, for an image file: the same box cut from the file itself at
  its own resolution (``topk.json``'s ``box_in_file``);

then ``<layer>/index.html`` (a row per channel: the file names, values and pictures) and ``index.html``
(a link per layer), written last: a folder with an ``index.html`` is complete. Every file is written
atomically. A layer without a receptive field (``"field": null``) is exported whole-image.

An interface, like the report: it reads the lists (floor 3) and draws them.

>>> import tempfile, torch
>>> from torch.utils.data import TensorDataset
>>> from deconvlab.analyses import topk_scan
>>> class Pictures(TensorDataset):  # a dataset that gives its pixels, as the image datasets do
...     def image(self, i):
...         return (self.tensors[0][i].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
>>> data = Pictures(torch.rand(5, 3, 8, 8), torch.zeros(5))
>>> out = Path(tempfile.mkdtemp())
>>> index = export_topk(topk_scan(model, data, ["0"], k=2, progress=False), model, data, out)
>>> sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))[:4]
['0/0000/patch-0.png', '0/0000/patch-1.png', '0/0000/projection-0.png', '0/0000/projection-1.png']
>>> Image.open(out / "0/0000/patch-0.png").size  # the 3x3 field of a 3x3 convolution
(3, 3)
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from deconvlab._io import write_bytes_atomic
from deconvlab.analyses.scan_topk import TopK
from deconvlab.data import box_in_file, read_image
from deconvlab.engine import project
from deconvlab.report.figures import projection_rgb

__all__ = ["export_topk"]


def export_topk(
    topk: TopK,
    model: torch.nn.Module,
    dataset,
    out: str | os.PathLike,
    *,
    layers: Sequence[str] | None = None,
    rule: str = "deconvnet",
) -> Path:
    """Write the patches and projections of ``topk`` (scanned from ``dataset`` with ``model``) under
    ``out``; returns ``out/index.html``. ``layers``: a subset of the scanned layers (default all).

    ``dataset`` must be the scanned one (same order): where it names its images (``source(i)``) they
    must match the names in ``topk``; it must give ``image(i)``, the pixels the model saw (uint8 H x W x 3).
    """
    out = Path(out)
    layers = list(topk.layers if layers is None else layers)
    unknown = [name for name in layers if name not in topk.layers]
    if unknown:
        raise ValueError(f"layers={unknown}: not in the scan; it has {', '.join(topk.layers)}")
    if not callable(getattr(dataset, "image", None)):
        raise ValueError(f"dataset={type(dataset).__name__}: has no image(i) giving the pixels the model saw")
    _check_same_data(topk, dataset)
    for name in layers:
        channels = range(len(topk.layers[name].values))
        rows = [_export_channel(topk, model, dataset, out, name, c, rule) for c in channels]
        write_bytes_atomic(out / name / "index.html", _layer_page(name, topk, rows).encode())
    write_bytes_atomic(out / "index.html", _index_page(topk, layers).encode())
    return out / "index.html"


def _check_same_data(topk: TopK, dataset) -> None:
    source = getattr(dataset, "source", None)
    if source is None:
        return
    for index, (path, _) in topk.sources.items():
        if index >= len(dataset) or (path is not None and source(index) != path):
            found = source(index) if index < len(dataset) else f"no image (it has {len(dataset)})"
            raise ValueError(
                f"dataset: image {index} of the scan is {path!r}, but this dataset's is {found!r}; "
                "export with the data and split the scan read"
            )


def _export_channel(topk, model, dataset, out, layer, channel, rule) -> list[dict]:
    """The pictures of one channel's entries, written; one dict per entry for the page."""
    entries = topk.layers[layer].entries(channel)
    if not entries:
        return []
    inputs = torch.stack([dataset[image][0] for image, _, _ in entries])
    units = [[row, channel, y, x] for row, (_, _, (y, x)) in enumerate(entries)]
    projections = project(model, inputs, layer, units, rule=rule)
    field = topk.fields.get(layer)
    folder = out / layer / f"{channel:04d}"
    shown = []
    for rank, (image, value, (y, x)) in enumerate(entries):
        picture = np.asarray(dataset.image(image))
        y0, y1, x0, x1 = field.box(y, x) if field is not None else (0, picture.shape[0], 0, picture.shape[1])
        _write_png(folder / f"patch-{rank}.png", picture[y0:y1, x0:x1])
        _write_png(folder / f"projection-{rank}.png", projection_rgb(projections[rank])[y0:y1, x0:x1])
        file_size = topk.file_sizes.get(image)
        original = file_size is not None and callable(getattr(dataset, "path", None))
        if original:
            fy0, fy1, fx0, fx1 = box_in_file((y0, y1, x0, x1), file_size, picture.shape[0])
            pixels = read_image(dataset.path(image))[:, fy0:fy1, fx0:fx1]
            _write_png(folder / f"original-{rank}.png", pixels.movedim(0, -1).numpy())
        path, class_name = topk.sources.get(image, (None, None))
        shown.append({"rank": rank, "image": image, "path": path, "class": class_name, "value": value,
                      "original": original})  # fmt: skip
    return shown


def _write_png(path: Path, pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td{padding:2px;vertical-align:top}"
    "img{width:64px;height:64px;object-fit:contain;image-rendering:pixelated;background:#ddd}"
    "th{text-align:right;padding-right:8px}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _index_page(topk: TopK, layers: list[str]) -> str:
    items = "".join(
        f"<li><a href='{quote(name)}/index.html'>{html.escape(name)}</a> "
        f"({len(topk.layers[name].values)} channels)</li>"
        for name in layers
    )
    summary = f"<p>{topk.num_images} images scanned, top {topk.k} per channel.</p>"
    if topk.skipped:
        summary += f"<p>{len(topk.skipped)} unreadable file(s) skipped (listed in topk.json).</p>"
    return _page("Top-k patches", f"{summary}<ul>{items}</ul>")


def _layer_page(layer: str, topk: TopK, rows: list[list[dict]]) -> str:
    lines = []
    for channel, shown in enumerate(rows):
        cells = []
        for kind in ("patch", "projection", "original"):
            for entry in (e for e in shown if kind != "original" or e["original"]):
                name = entry["path"] if entry["path"] is not None else f"image {entry['image']}"
                kind_of = f" ({entry['class']})" if entry["class"] else ""
                caption = f"{name}{kind_of}: {entry['value']:.4g}"
                cells.append(
                    f"<td><img loading='lazy' src='{channel:04d}/{kind}-{entry['rank']}.png' "
                    f"title='{html.escape(caption, quote=True)}' alt='{kind} {entry['rank']}'></td>"
                )
        lines.append(f"<tr><th>{channel}</th>{''.join(cells)}</tr>")
    intro = (
        f"<p><a href='../index.html'>all layers</a>. Per channel: the top {topk.k} receptive-field patches, "
        "strongest first, then their projections, then the boxes cut from the files at their own "
        "resolution (hover for the file and value).</p>"
    )
    body = f"{intro}<table>{''.join(lines)}</table>"
    return _page(f"Layer {layer}", body)
