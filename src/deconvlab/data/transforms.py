"""Image transforms written in the project (no torchvision): RGB conversion, resize, crops, normalisation.

Pixel values are normalised per channel with ImageNet's statistics, so that torchvision-trained
weights (``alexnet``, ``vgg16``) see the input they expect: ``x = (pixel / 255 - MEAN) / STD``.

>>> import numpy as np
>>> image = np.full((2, 2, 3), 255, dtype=np.uint8)
>>> tensor = normalize(image)
>>> tuple(tensor.shape), round(float(tensor[0, 0, 0]), 4)  # (1 - 0.485) / 0.229
((3, 2, 2), 2.2489)
>>> bool((denormalize(tensor) == image).all())
True
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def input_half_range() -> float:
    """The largest absolute value a normalised pixel can take: max over channels of (1 - mean) / std.

    >>> round(input_half_range(), 3)
    2.64
    """
    return max(max(1 - m, m) / s for m, s in zip(MEAN, STD, strict=True))


def normalize(image: np.ndarray | Image.Image) -> torch.Tensor:
    """uint8 (H, W, 3) array or PIL image -> float tensor (3, H, W); (N, H, W, 3) -> (N, 3, H, W)."""
    array = np.asarray(to_rgb(image) if isinstance(image, Image.Image) else image)
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(
            f"image of dtype {array.dtype} and shape {array.shape}: expected uint8 (H, W, 3) or (N, H, W, 3)"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3).float().div_(255)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of ``normalize``: (3, H, W) -> uint8 (H, W, 3) (or batched), rounded and clipped."""
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"tensor of shape {tuple(tensor.shape)}: expected (3, H, W) or (N, 3, H, W)")
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    pixels = (tensor.detach().cpu().float() * std + mean).mul(255).round().clamp(0, 255)
    return pixels.to(torch.uint8).movedim(-3, -1).numpy()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: grayscale and palette expanded, 16-bit scaled (v / 257),
    alpha composited over white.

    >>> to_rgb(Image.new("I;16", (1, 1), 257 * 100)).getpixel((0, 0))
    (100, 100, 100)
    >>> to_rgb(Image.new("RGBA", (1, 1), (255, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 or image.mode.startswith("I;16") else 1.0
        image = Image.fromarray(np.clip(np.round(values / scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio (bilinear).

    >>> resize_shorter(Image.new("RGB", (300, 200)), 100).size
    (150, 100)
    """
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image if new_size == image.size else image.resize(new_size, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (the image must be at least that large).

    >>> center_crop(Image.new("RGB", (150, 100)), 100).size
    (100, 100)
    """
    return _crop(image, size, (image.size[0] - size) // 2, (image.size[1] - size) // 2)


def ten_crop(image: Image.Image, size: int) -> list[Image.Image]:
    """The paper's 10 crops: 4 corners and the centre, then the same 5 of the mirrored image.

    Order: top-left, top-right, bottom-left, bottom-right, centre, then each flipped left-right.

    >>> crops = ten_crop(Image.new("RGB", (256, 256)), 224)
    >>> len(crops), crops[0].size
    (10, (224, 224))
    """
    width, height = image.size
    corners = [(0, 0), (width - size, 0), (0, height - size), (width - size, height - size)]
    crops = [_crop(image, size, left, top) for left, top in corners] + [center_crop(image, size)]
    return crops + [crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for crop in crops]


def _crop(image: Image.Image, size: int, left: int, top: int) -> Image.Image:
    width, height = image.size
    if size > min(width, height):
        raise ValueError(f"crop size={size}: larger than the image ({width}x{height})")
    return image.crop((left, top, left + size, top + size))


def resize_and_crop(image: Image.Image, size: int) -> np.ndarray:
    """The evaluation transform: RGB, shorter side to ``size``, centre crop -> uint8 (size, size, 3)."""
    return np.asarray(center_crop(resize_shorter(to_rgb(image), size), size))
