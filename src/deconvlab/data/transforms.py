"""Image transforms: torchvision's ``transforms.v2`` for resizing, crops and normalisation; Pillow for modes.

Pixel values are normalised per channel, by default with ImageNet's statistics (what torchvision's
and most timm weights expect): ``x = (pixel / 255 - mean) / std``. Pass ``mean``/``std`` for weights
trained with others. Arrays are (H, W, 3) as NumPy and Pillow hold them; tensors are (3, H, W) as
torch holds them.

>>> import numpy as np
>>> image = np.full((2, 2, 3), 255, dtype=np.uint8)
>>> tensor = normalize(image)
>>> tuple(tensor.shape), round(float(tensor[0, 0, 0]), 4)  # (1 - 0.485) / 0.229
((3, 2, 2), 2.2489)
>>> bool((denormalize(tensor) == image).all())
True
>>> round(float(normalize(image, mean=(0.5,) * 3, std=(0.5,) * 3)[0, 0, 0]), 4)  # (1 - 0.5) / 0.5
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

Picture = Image.Image | torch.Tensor  # a Pillow image, or a (3, H, W) tensor


def _statistics(mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != 3:
        raise ValueError(f"mean={mean}: expected 3 values, one per RGB channel")
    if len(std) != 3 or min(std) <= 0:
        raise ValueError(f"std={std}: expected 3 positive values, one per RGB channel")
    return mean, std


def input_half_range(mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> float:
    """The largest absolute value a normalised pixel can take: max over channels of max(1 - m, m) / s.

    >>> round(input_half_range(), 3)  # the blue channel: (1 - 0.406) / 0.225
    2.64
    >>> input_half_range(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    1.0
    """
    mean, std = _statistics(mean, std)
    return max(max(1 - m, m) / s for m, s in zip(mean, std, strict=True))


def normalize(
    image: np.ndarray | Picture, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """uint8 pixels -> normalised float tensor: (H, W, 3) array or Pillow image -> (3, H, W);
    (N, H, W, 3) array -> (N, 3, H, W); a uint8 tensor (3, H, W) or (N, 3, H, W) keeps its layout."""
    if isinstance(image, torch.Tensor):
        tensor = image
        if tensor.dtype != torch.uint8 or tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
            raise ValueError(
                f"image tensor of dtype {tensor.dtype} and shape {tuple(tensor.shape)}: "
                "expected uint8 (3, H, W) or (N, 3, H, W)"
            )
    else:
        array = np.asarray(to_rgb(image) if isinstance(image, Image.Image) else image)
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise ValueError(
                f"image of dtype {array.dtype} and shape {array.shape}: "
                "expected uint8 (H, W, 3) or (N, H, W, 3)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3)
    mean, std = _statistics(mean, std)
    return F.normalize(F.to_dtype(tensor, torch.float32, scale=True), mean, std)


def statistics(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` a model's inputs are normalised with: its ``mean``/``std`` attributes (set by
    ``deconvlab.models.load_model`` from its weights' metadata), else ImageNet's.

    >>> statistics(object()) == (MEAN, STD)
    True
    """
    return tuple(getattr(model, "mean", MEAN)), tuple(getattr(model, "std", STD))


def denormalize(tensor: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> np.ndarray:
    """Inverse of ``normalize``: (3, H, W) -> uint8 (H, W, 3) (or batched), rounded and clipped."""
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"tensor of shape {tuple(tensor.shape)}: expected (3, H, W) or (N, 3, H, W)")
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in _statistics(mean, std))
    pixels = (tensor.detach().cpu().float() * std + mean).mul(255).round().clamp(0, 255)
    return pixels.to(torch.uint8).movedim(-3, -1).numpy()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: grayscale and palette expanded, 16-bit scaled (v / 257),
    alpha composited over white. (torchvision's decoders drop alpha and keep 16 bits: Pillow's job.)

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


def resize_shorter(image: Picture, size: int) -> Picture:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio (bilinear,
    antialiased; the longer side is truncated, as torchvision does). Pillow image or (..., H, W) tensor.

    >>> resize_shorter(Image.new("RGB", (300, 200)), 100).size  # 300 * 100 / 200
    (150, 100)
    >>> tuple(resize_shorter(torch.zeros(3, 200, 301, dtype=torch.uint8), 100).shape)  # int(150.5)
    (3, 100, 150)
    """
    return F.resize(image, [size], antialias=True)


def center_crop(image: Picture, size: int) -> Picture:
    """The central ``size`` x ``size`` square (the image must be at least that large).

    >>> center_crop(Image.new("RGB", (150, 100)), 100).size
    (100, 100)
    """
    _check_crop(image, size)
    return F.center_crop(image, [size, size])


def ten_crop(image: Picture, size: int) -> list[Picture]:
    """The paper's 10 crops: 4 corners and the centre, then the same 5 of the mirrored image.

    Order (torchvision's): top-left, top-right, bottom-left, bottom-right, centre of the image, then of
    its mirror image (whose top-left crop is the mirrored top-right crop of the image).

    >>> crops = ten_crop(Image.new("RGB", (256, 256)), 224)
    >>> len(crops), crops[0].size
    (10, (224, 224))
    """
    _check_crop(image, size)
    return list(F.ten_crop(image, [size, size]))


def _check_crop(image: Picture, size: int) -> None:
    height, width = F.get_size(image)
    if size > min(width, height):
        raise ValueError(f"crop size={size}: larger than the image ({width}x{height})")


def resize_and_crop(image: Picture, size: int) -> np.ndarray:
    """The evaluation transform: RGB, shorter side to ``size``, centre crop -> uint8 (size, size, 3).

    A Pillow image is converted with ``to_rgb`` and then resized as a tensor, so that it gives the same
    pixels as a decoded file (``deconvlab.data.decode.read_image``).

    >>> resize_and_crop(Image.new("RGB", (90, 60), (1, 2, 3)), 30)[0, 0].tolist()
    [1, 2, 3]
    """
    if isinstance(image, Image.Image):
        image = F.pil_to_tensor(to_rgb(image))
    return center_crop(resize_shorter(image, size), size).movedim(-3, -1).numpy()


def box_in_file(box: Sequence[int], file_size: tuple[int, int], image_size: int) -> tuple[int, int, int, int]:
    """A half-open box ``(y0, y1, x0, x1)`` in the pixels of ``resize_and_crop(file, image_size)``, mapped
    back into the file's own pixels; ``file_size`` is the file's (height, width).

    The inverse of the transform's arithmetic: the resize sends the shorter side to ``image_size`` and the
    longer to ``int(image_size * long / short)`` (torchvision's rule); the centre crop starts at
    ``round((resized - image_size) / 2)`` on each axis (Python's round, as torchvision's). A box edge ``e``
    in the crop is edge ``e + start`` of the resized image, and edge ``(e + start) * file / resized`` of
    the file. Starts are floored and ends ceiled, so the file box holds every file pixel the box covers;
    it lies inside the file, as the crop lies inside the resized image.

    A 97 x 150 file (height x width) at 64 is resized to 64 x 98 (int(64 * 150 / 97) = 98), its columns
    cropped from round(34 / 2) = 17. Rows [10, 30): [10 * 97 / 64, 30 * 97 / 64) = [15.2, 45.5) -> [15, 46);
    columns [5, 40) are resized columns [22, 57), file columns [22 * 150 / 98, 57 * 150 / 98) =
    [33.7, 87.2) -> [33, 88):

    >>> box_in_file((10, 30, 5, 40), file_size=(97, 150), image_size=64)
    (15, 46, 33, 88)
    """
    height, width = (int(side) for side in file_size)
    short, long = min(height, width), max(height, width)
    resized_long = int(image_size * long / short)
    resized = (image_size, resized_long) if height <= width else (resized_long, image_size)
    y0, y1, x0, x1 = (int(edge) for edge in box)
    mapped = []
    for (start, end), side, resized_side in zip(((y0, y1), (x0, x1)), (height, width), resized, strict=True):
        crop_start = int(round((resized_side - image_size) / 2.0))
        # exact integer arithmetic: floor((e + crop_start) * side / resized_side), and its ceiling
        mapped += [(start + crop_start) * side // resized_side, -(-(end + crop_start) * side // resized_side)]
    return tuple(mapped)
