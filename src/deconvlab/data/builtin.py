"""The built-in dataset: objects drawn from named parts over real photographs, with ground truth.

Generated offline and deterministically: image ``i`` of a split depends only on ``(seed, split, i,
image_size)``, through its own NumPy random generator. Each image holds one object of one of
``CLASSES`` (12), drawn from named parts (signed distance functions, see ``deconvlab.data.shapes``)
in a frame where the object fits in the unit disc. The object gets a random scale (radius 25-42% of
the image), position (fully inside), rotation (-30..30 degrees) and colours; the background is a
random crop of a photograph bundled with scikit-image (no download), dimmed to 15-70% brightness
so that the object stays the salient thing. Labels cycle through the classes (``i % 12``), so every
prefix of a split is balanced.

Ground truth per image: the label, the object mask (pixels at least half covered by the object),
and each part's box ``(y0, y1, x0, x1)`` in slice convention (``image[y0:y1, x0:x1]``), from the
part's own shape even where another part is drawn over it.

The ``face`` class has parts in a fixed arrangement (head, left_eye, right_eye, nose, mouth), like
the dog faces of the paper's correspondence analysis (Sec. 4.3). Left and right are as seen in the
image: ``left_eye`` is on the viewer's left.

Generated splits are cached in ``deconvlab._io.cache_dir() / "builtin"`` (an .npz per split).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from deconvlab._io import cache_dir, cache_lock, write_atomic
from deconvlab.data import shapes
from deconvlab.data.transforms import MEAN, STD, normalize

GENERATOR_VERSION = 1  # bump when the drawing changes, so that stale caches are not reused
SPLITS = {"train": 6000, "val": 1200, "test": 1200}  # default sizes: 500 / 100 / 100 per class
MAIN, SECOND, DARK = "main", "second", "dark"  # colour roles of parts


@dataclass(frozen=True)
class Part:
    """A named part: its shape in the object's frame and which of the object's colours it takes."""

    name: str
    sdf: shapes.SDF
    colour: str = MAIN


@dataclass(frozen=True)
class ObjectClass:
    """A class of objects: parts drawn in order (later parts over earlier ones)."""

    name: str
    parts: tuple[Part, ...]


def _object_classes() -> tuple[ObjectClass, ...]:
    s = shapes
    return (
        ObjectClass("face", (
            Part("head", s.circle(0, 0, 0.95)),
            Part("left_eye", s.circle(-0.36, -0.22, 0.17), DARK),
            Part("right_eye", s.circle(0.36, -0.22, 0.17), DARK),
            Part("nose", s.polygon([(0, -0.05), (-0.16, 0.28), (0.16, 0.28)]), SECOND),
            Part("mouth", s.box(0, 0.55, 0.36, 0.08, 0.08), DARK),
        )),
        ObjectClass("house", (
            Part("walls", s.box(0, 0.3, 0.62, 0.45)),
            Part("roof", s.polygon([(-0.85, -0.15), (0.85, -0.15), (0, -0.9)]), SECOND),
            Part("door", s.box(0, 0.5, 0.15, 0.25), DARK),
        )),
        ObjectClass("tree", (
            Part("trunk", s.box(0, 0.6, 0.15, 0.35), SECOND),
            Part("crown", s.circle(0, -0.25, 0.7)),
        )),
        ObjectClass("car", (
            Part("body", s.box(0, 0.1, 0.88, 0.25, 0.08)),
            Part("cabin", s.box(-0.05, -0.3, 0.5, 0.2, 0.06), SECOND),
            Part("back_wheel", s.circle(-0.5, 0.4, 0.22), DARK),
            Part("front_wheel", s.circle(0.5, 0.4, 0.22), DARK),
        )),
        ObjectClass("flower", (
            Part("petals", s.union(*(s.circle(0.55 * np.cos(a), 0.55 * np.sin(a), 0.33)
                                     for a in np.arange(6) * np.pi / 3))),
            Part("centre", s.circle(0, 0, 0.3), SECOND),
        )),
        ObjectClass("star", (Part("star", s.star(5, 0.95, 0.4)),)),
        ObjectClass("cross", (
            Part("vertical_bar", s.box(0, 0, 0.2, 0.9)),
            Part("horizontal_bar", s.box(0, 0, 0.9, 0.2)),
        )),
        ObjectClass("arrow", (
            Part("shaft", s.box(-0.3, 0, 0.55, 0.13)),
            Part("head", s.polygon([(0.15, -0.5), (0.95, 0), (0.15, 0.5)])),
        )),
        ObjectClass("ring", (Part("ring", lambda u, v: np.abs(np.hypot(u, v) - 0.72) - 0.2),)),
        ObjectClass("mushroom", (
            Part("stem", s.box(0, 0.45, 0.22, 0.45), SECOND),
            Part("cap", s.intersect(s.circle(0, 0.05, 0.9), s.half_plane_above(0.05))),
        )),
        ObjectClass("heart", (
            Part("left_lobe", s.circle(-0.42, -0.3, 0.48)),
            Part("right_lobe", s.circle(0.42, -0.3, 0.48)),
            Part("point", s.polygon([(-0.86, -0.18), (0.86, -0.18), (0, 0.9)])),
        )),
        ObjectClass("dumbbell", (
            Part("bar", s.box(0, 0, 0.55, 0.1), SECOND),
            Part("left_weight", s.box(-0.65, 0, 0.16, 0.45)),
            Part("right_weight", s.box(0.65, 0, 0.16, 0.45)),
        )),
    )  # fmt: skip


OBJECT_CLASSES = _object_classes()
CLASSES = tuple(c.name for c in OBJECT_CLASSES)
MAX_PARTS = max(len(c.parts) for c in OBJECT_CLASSES)
# scikit-image's bundled photographs and textures (all ship inside the package: no download).
BACKGROUNDS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "brick", "grass", "gravel", "camera", "moon", "clock",
)  # fmt: skip


def _load_backgrounds(size: int) -> list[Image.Image]:
    """The photographs, shrunk so that the shorter side is ``5 * size`` (the smallest crop, 20% of
    it, is then exactly ``size`` pixels: never upsampled)."""
    from skimage import data as skdata

    return [_shrink(Image.fromarray(getattr(skdata, name)()), 5 * size) for name in BACKGROUNDS]


def _shrink(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` with Pillow's bilinear filter, the longer side rounded: the generator's own
    arithmetic, fixed so that the images never change with a library's rounding (GENERATOR_VERSION)."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image if new_size == image.size else image.resize(new_size, Image.Resampling.BILINEAR)


def _random_colour(rng: np.random.Generator, role: str, main_hue: float) -> np.ndarray:
    """An RGB colour in [0, 1]: vivid for main (random hue) and second (hue away from main), dark for
    details."""
    if role == DARK:
        hue, saturation, value = rng.random(), rng.random(), rng.uniform(0.05, 0.3)
    else:
        hue = main_hue if role == MAIN else (main_hue + rng.uniform(0.25, 0.75)) % 1
        saturation, value = rng.uniform(0.55, 1), rng.uniform(0.7, 1)
    return _hsv_to_rgb(hue, saturation, value).astype(np.float32)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1)


def _background(rng: np.random.Generator, photos: list[Image.Image], size: int) -> np.ndarray:
    """A random square crop (20-60% of the photo's shorter side) of a random photo, dimmed, in [0, 1]."""
    photo = photos[rng.integers(len(photos))]
    width, height = photo.size
    side = rng.uniform(0.2, 0.6) * min(width, height)
    left, top = rng.uniform(0, width - side), rng.uniform(0, height - side)
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    pixels = np.asarray(crop, dtype=np.float32) / 255
    if pixels.ndim == 2:  # grayscale textures get a random tint
        pixels = pixels[..., None] * rng.uniform(0.5, 1, size=3).astype(np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    low, high = rng.uniform(0.1, 0.2), rng.uniform(0.5, 0.7)
    return np.float32(low) + pixels * np.float32(high - low)


def render(
    rng: np.random.Generator, label: int, size: int, photos: list[Image.Image]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image of class ``label``: (uint8 image (size, size, 3), bool mask, part boxes (P, 4))."""
    image = _background(rng, photos, size)
    radius = rng.uniform(0.25, 0.42) * size
    centre_y, centre_x = rng.uniform(radius, size - radius, size=2)
    angle = np.deg2rad(rng.uniform(-30, 30))
    main_hue = rng.random()
    object_class = OBJECT_CLASSES[label]
    colours = {role: _random_colour(rng, role, main_hue) for role in (MAIN, SECOND, DARK)}
    # Only the object's bounding square is drawn: pixel centres there -> object frame (rotate by
    # -angle about the centre, divide by the radius).
    y0, x0 = max(int(centre_y - radius) - 1, 0), max(int(centre_x - radius) - 1, 0)
    y1, x1 = min(int(centre_y + radius) + 2, size), min(int(centre_x + radius) + 2, size)
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - centre_y)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - centre_x)[None, :]
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / radius
    window = image[y0:y1, x0:x1]
    mask = np.zeros((size, size), dtype=bool)
    boxes = np.full((MAX_PARTS, 4), -1, dtype=np.int16)
    for index, part in enumerate(object_class.parts):
        alpha = np.clip(0.5 - part.sdf(u, v) * radius, 0, 1)[..., None]
        window = window * (1 - alpha) + colours[part.colour] * alpha
        covered = alpha[..., 0] >= 0.5
        mask[y0:y1, x0:x1] |= covered
        rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
        boxes[index] = (y0 + rows[0], y0 + rows[-1] + 1, x0 + cols[0], x0 + cols[-1] + 1)
    image[y0:y1, x0:x1] = window
    return np.round(image * 255).astype(np.uint8), mask, boxes


def generate(split: str, size: int, seed: int, count: int) -> dict[str, np.ndarray]:
    """Render images ``0 .. count - 1`` of ``split``: arrays images, masks, boxes, labels."""
    photos = _load_backgrounds(size)
    split_id = zlib.crc32(split.encode())
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    masks = np.empty((count, size, size), dtype=bool)
    boxes = np.empty((count, MAX_PARTS, 4), dtype=np.int16)
    labels = np.arange(count) % len(OBJECT_CLASSES)
    for i in range(count):
        rng = np.random.default_rng([seed, split_id, i, size])
        images[i], masks[i], boxes[i] = render(rng, int(labels[i]), size, photos)
    return {"images": images, "masks": masks, "boxes": boxes, "labels": labels}


def _cached_generate(split: str, size: int, seed: int, count: int, cache: bool) -> dict[str, np.ndarray]:
    if not cache:
        return generate(split, size, seed, count)
    path = cache_dir() / "builtin" / f"v{GENERATOR_VERSION}-{split}-seed{seed}-{size}px-{count}.npz"
    with cache_lock(path.with_suffix(".lock")):  # another process generating it: wait, then read it
        if path.is_file():
            with np.load(path) as stored:
                return {key: stored[key] for key in stored.files}
        arrays = generate(split, size, seed, count)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(path, lambda f: f.write(buffer.getvalue()))
    return arrays


class BuiltinDataset(torch.utils.data.Dataset):
    """The built-in dataset (see the module docstring): ``dataset[i] -> (normalised tensor, label)``.

    >>> data = BuiltinDataset("val", size=24, cache=False)
    >>> len(data), data.classes[data.labels[0]], data.image(0).shape, data.mask(0).dtype
    (24, 'face', (64, 64, 3), dtype('bool'))
    >>> sorted(data.parts(0))
    ['head', 'left_eye', 'mouth', 'nose', 'right_eye']
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 64,
        seed: int = 0,
        size: int | None = None,
        cache: bool = True,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: choose one of {sorted(SPLITS)}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size={image_size!r}: must be an int of at least 16 pixels")
        count = SPLITS[split] if size is None else size
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"size={size!r}: must be a positive int (or None for the default)")
        arrays = _cached_generate(split, image_size, seed, count, cache)
        self.split, self.seed, self.image_size = split, seed, image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.classes = list(CLASSES)
        self.images: np.ndarray = arrays["images"]
        self.masks: np.ndarray = arrays["masks"]
        self.boxes: np.ndarray = arrays["boxes"]
        self.labels: list[int] = arrays["labels"].tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(self.images[index], self.mean, self.std), self.labels[index]

    def source(self, index: int) -> str:
        """The key of image ``index``: ``builtin:<split>/<index>`` (with the seed when it is not 0)."""
        return f"builtin:{self.split}/{index}" + (f"?seed={self.seed}" if self.seed else "")

    def class_name(self, index: int) -> str:
        return self.classes[self.labels[index]]

    def image(self, index: int) -> np.ndarray:
        """uint8 (H, W, 3) pixels of image ``index``."""
        return self.images[index]

    def mask(self, index: int) -> np.ndarray:
        """bool (H, W): the pixels covered by the object."""
        return self.masks[index]

    def parts(self, index: int) -> dict[str, tuple[int, int, int, int]]:
        """Each part's box ``(y0, y1, x0, x1)``: the part is inside ``image[y0:y1, x0:x1]``."""
        object_class = OBJECT_CLASSES[self.labels[index]]
        boxes = self.boxes[index]
        return {part.name: tuple(int(c) for c in boxes[k]) for k, part in enumerate(object_class.parts)}

    def __repr__(self) -> str:
        return (
            f"BuiltinDataset(split={self.split!r}, image_size={self.image_size}, seed={self.seed}, "
            f"size={len(self)})"
        )


def contact_sheet(dataset: BuiltinDataset, per_class: int = 4, scale: int = 2) -> Image.Image:
    """A picture of the ground truth: one column per class, ``per_class`` images each, enlarged
    ``scale`` times, every part box outlined (a colour per part, in drawing order) and the object
    mask's outline in white.

    >>> contact_sheet(BuiltinDataset("val", size=24, cache=False), per_class=2).size
    (1536, 256)
    """
    from PIL import ImageDraw

    size = dataset.image_size * scale
    sheet = Image.new("RGB", (size * len(dataset.classes), size * per_class))
    draw = ImageDraw.Draw(sheet)
    box_colours = ((255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 128, 0))
    for label in range(len(dataset.classes)):
        indices = [i for i, y in enumerate(dataset.labels) if y == label][:per_class]
        for row, index in enumerate(indices):
            left, top = label * size, row * size
            pixels = dataset.image(index).repeat(scale, 0).repeat(scale, 1).copy()
            mask = dataset.mask(index).repeat(scale, 0).repeat(scale, 1)
            interior = np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
            edge = mask & ~interior
            pixels[edge] = 255
            sheet.paste(Image.fromarray(pixels), (left, top))
            for k, (y0, y1, x0, x1) in enumerate(dataset.parts(index).values()):
                outline = (left + x0 * scale, top + y0 * scale, left + x1 * scale - 1, top + y1 * scale - 1)
                draw.rectangle(outline, outline=box_colours[k % len(box_colours)])
    return sheet
