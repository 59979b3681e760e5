"""The top-k lists of a scan: per layer and channel, the k images with the strongest activation.

Each image enters a channel's list once, with its strongest value in that channel and where it is.
Order: larger value first; equal values by smaller image index. That order is total, so the top k of
a union of lists is the same whichever way the union is split: batches, resumed runs and ranks all
merge exactly.

In ``topk.json`` each entry gives the image's index, path and class, the value, the unit's ``position``
(y, x) in the layer's map and, where the layer's receptive field is known, its ``box`` (y0, y1, x0, x1),
half-open, in the pixels of the network's input (the file resized and centre-cropped). An image read from
a file (folder, list or shard) also gives ``file_size`` (height, width) and ``box_in_file``: the same box
in the file's own pixels (``deconvlab.data.box_in_file``: the crop's offset and the resize undone, starts
floored and ends ceiled), the box to cut from the original file.

>>> import numpy as np
>>> layer = LayerTopK.empty(channels=1, k=2, shape=(1, 4, 4))
>>> layer = layer.merged(np.array([[5.0], [7.0], [5.0]]), np.array([10, 11, 12]), np.zeros((3, 1, 2), int))
>>> layer.images.tolist(), layer.values.tolist()  # 7 first; the tie at 5 goes to image 10
([[11, 10]], [[7.0, 5.0]])
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deconvlab._io import write_json_atomic
from deconvlab.data.transforms import box_in_file
from deconvlab.engine.receptive import ReceptiveField

FORMAT_VERSION = 2  # 2: entries as objects with path, class and box (and file_size, box_in_file from
# files: optional keys, which readers of 2 need not know); skipped files; fields
NO_IMAGE = np.iinfo(np.int64).max  # an empty slot: sorts after every real image at equal value


@dataclass(frozen=True, eq=False)
class LayerTopK:
    """One layer's lists: ``values`` (C, k) float32, ``images`` (C, k) int64 dataset indices, ``positions``
    (C, k, 2) (y, x) in the layer's map; ``shape`` the layer's (C, H, W). Slots beyond the number of
    images scanned hold image ``NO_IMAGE`` and value -inf."""

    values: np.ndarray
    images: np.ndarray
    positions: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def empty(cls, channels: int, k: int, shape: tuple[int, ...]) -> LayerTopK:
        return cls(
            values=np.full((channels, k), -np.inf, np.float32),
            images=np.full((channels, k), NO_IMAGE, np.int64),
            positions=np.zeros((channels, k, 2), np.int64),
            shape=tuple(int(s) for s in shape),
        )

    def merged(self, values: np.ndarray, images: np.ndarray, positions: np.ndarray) -> LayerTopK:
        """The top k of these lists and new candidates: ``values`` (B, C), ``images`` (B,) or (B, C),
        ``positions`` (B, C, 2)."""
        k = self.values.shape[1]
        values = np.asarray(values, np.float32)
        images = np.broadcast_to(np.asarray(images, np.int64).reshape(len(values), -1), values.shape)
        all_values = np.concatenate([self.values, values.T], axis=1)
        all_images = np.concatenate([self.images, images.T], axis=1)
        all_positions = np.concatenate([self.positions, np.swapaxes(positions, 0, 1)], axis=1)
        order = np.lexsort((all_images, -all_values), axis=1)[:, :k]  # last key sorts first
        return LayerTopK(
            values=np.take_along_axis(all_values, order, 1),
            images=np.take_along_axis(all_images, order, 1),
            positions=np.take_along_axis(all_positions, order[..., None], 1),
            shape=self.shape,
        )

    def union(self, other: LayerTopK) -> LayerTopK:
        """The top k of both lists (of two disjoint sets of images: batches, shards, ranks)."""
        return self.merged(other.values.T, other.images.T, np.swapaxes(other.positions, 0, 1))

    def entries(self, channel: int) -> list[tuple[int, float, tuple[int, int]]]:
        """(image index, value, (y, x)) of one channel, strongest first, empty slots left out."""
        return [
            (int(i), float(v), (int(p[0]), int(p[1])))
            for i, v, p in zip(
                self.images[channel], self.values[channel], self.positions[channel], strict=True
            )
            if i != NO_IMAGE
        ]

    def to_json(
        self, sources: dict | None = None, field: ReceptiveField | None = None, file_sizes: dict | None = None
    ) -> dict:
        """The lists as JSON: per channel, entries strongest first, each with the image's index, path
        and class (from ``sources``: index -> (path, class)), the value, the (y, x) of the unit and, with
        ``field``, its receptive-field box (y0, y1, x0, x1) in the input's pixels; an image in
        ``file_sizes`` (index -> (height, width)) also gets its ``file_size`` and the box in the file."""
        sources, file_sizes = sources or {}, file_sizes or {}
        channels = []
        for channel in range(len(self.values)):
            entries = []
            for image, value, (y, x) in self.entries(channel):
                path, class_name = sources.get(image, (None, None))
                entry = {
                    "image": image,
                    "path": path,
                    "class": class_name,
                    "value": value,
                    "position": [y, x],
                }
                if field is not None:
                    entry["box"] = list(field.box(y, x))
                if image in file_sizes:
                    entry["file_size"] = list(file_sizes[image])
                    if field is not None:
                        entry["box_in_file"] = list(box_in_file(entry["box"], file_sizes[image],
                                                                field.input_size[0]))  # fmt: skip
                entries.append(entry)
            channels.append(entries)
        return {"shape": list(self.shape), "channels": channels}

    @classmethod
    def from_json(cls, obj: dict, k: int) -> LayerTopK:
        layer = cls.empty(len(obj["channels"]), k, tuple(obj["shape"]))
        for c, entries in enumerate(obj["channels"]):
            for slot, entry in enumerate(entries):
                layer.images[c, slot] = entry["image"]
                layer.values[c, slot] = entry["value"]
                layer.positions[c, slot] = entry["position"]
        return layer


@dataclass(frozen=True, eq=False)
class TopK:
    """A scan's result: ``k``, ``num_images`` scanned, and a ``LayerTopK`` per layer name; ``sources``
    (image index -> (path or key, class name), None where the dataset gives none) for the images in the
    lists, the ``skipped`` files (path, reason), each layer's receptive field (None: no boxes), and
    ``file_sizes`` (image index -> the file's (height, width)) for the images read from files.

    ``save`` writes JSON with a top-level ``"version"``, sorted keys and no timestamps or host names,
    so two scans of the same data and model compare byte for byte.
    """

    k: int
    num_images: int
    layers: dict[str, LayerTopK]
    sources: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, ReceptiveField | None] = field(default_factory=dict)
    file_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        layers = {}
        for name, layer in self.layers.items():
            receptive = self.fields.get(name)
            layers[name] = layer.to_json(self.sources, receptive, self.file_sizes)
            layers[name]["field"] = None if receptive is None else asdict(receptive)
        return {
            "version": FORMAT_VERSION,
            "k": self.k,
            "num_images": self.num_images,
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
            "layers": layers,
        }

    @classmethod
    def from_json(cls, obj: dict) -> TopK:
        if not isinstance(obj, dict) or obj.get("version") != FORMAT_VERSION:
            version = obj.get("version") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"topk version={version!r}: this deconvlab reads version {FORMAT_VERSION}")
        k = int(obj["k"])
        layers = {name: LayerTopK.from_json(layer, k) for name, layer in obj["layers"].items()}
        sources = {
            entry["image"]: (entry["path"], entry["class"])
            for layer in obj["layers"].values()
            for entries in layer["channels"]
            for entry in entries
        }
        fields = {
            name: None if layer["field"] is None else ReceptiveField(**{
                key: tuple(value) for key, value in layer["field"].items()})
            for name, layer in obj["layers"].items()
        }  # fmt: skip
        file_sizes = {
            entry["image"]: tuple(entry["file_size"])
            for layer in obj["layers"].values()
            for entries in layer["channels"]
            for entry in entries
            if "file_size" in entry
        }
        skipped = [(item["path"], item["reason"]) for item in obj["skipped"]]
        return cls(k=k, num_images=int(obj["num_images"]), layers=layers, sources=sources, skipped=skipped,
                   fields=fields, file_sizes=file_sizes)  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON atomically: a reader sees the old file or the complete new one."""
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TopK:
        import json

        return cls.from_json(json.loads(Path(path).read_text()))
