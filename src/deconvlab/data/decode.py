"""Reading image files: torchvision's decoders, Pillow where they cannot do what we need.

``read_image`` reads the file once; Pillow parses only the header (size and mode, no pixels), which
gives the decompression-bomb guard before anything is decoded. Then 8-bit RGB and grayscale JPEG, PNG
and WebP go to ``torchvision.io.decode_image``; everything else (palette, 16-bit, alpha, CMYK, BMP,
TIFF, ...) is decoded by Pillow and converted by ``to_rgb`` (16-bit scaled by 1/257, alpha composited
over white). Any failure is an ``UnreadableImage`` naming the file and the reason.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("RGBA", (4, 2), (255, 0, 0, 0)).save(buffer, format="PNG")
>>> image = read_image(buffer.getvalue())
>>> tuple(image.shape), image[:, 0, 0].tolist()  # transparent red is white
((3, 2, 4), [255, 255, 255])
>>> read_image(b"not an image", name="notes.txt")  # doctest: +ELLIPSIS
Traceback (most recent call last):
deconvlab.data.decode.UnreadableImage: notes.txt: UnidentifiedImageError: ... image file 'notes.txt'
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from deconvlab.data.transforms import to_rgb

# what torchvision decodes to the same 8-bit RGB as Pillow's to_rgb: (format, mode) from Pillow's header
TORCHVISION_DECODES = {(f, m) for f in ("JPEG", "PNG", "WEBP") for m in ("RGB", "L")}
# torchvision 0.29 announces its move to TorchCodec on every decode; the decoders still work
_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


class UnreadableImage(ValueError):
    """A file that is not an image, is corrupt or truncated, or is too large: ``path`` and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_image(
    source: str | os.PathLike | bytes, max_pixels: int | None = None, name: str | None = None
) -> torch.Tensor:
    """The image in a file (or its bytes) as a uint8 RGB tensor (3, H, W).

    ``max_pixels`` refuses larger images before decoding (default: Pillow's decompression-bomb limit).
    ``name`` is the file's name in errors (default: the path).
    """
    name = name if name is not None else str(source)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    buffer = None
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        buffer = io.BytesIO(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(buffer) as image:  # the header only
                width, height = image.size
                if limit is not None and width * height > limit:
                    raise ValueError(
                        f"decompression bomb refused: {width}x{height} pixels exceeds max_pixels={limit}"
                    )
                if (image.format, image.mode) not in TORCHVISION_DECODES:
                    image.load()
                    return F.pil_to_tensor(to_rgb(image))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATION)
            pixels = decode_image(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
            )
    except Exception as error:  # noqa: BLE001 - every failure of a file is reported as the same kind
        reason = str(error).replace(repr(buffer), repr(name))  # the same words in every run
        raise UnreadableImage(name, f"{type(error).__name__}: {reason}") from error
    return pixels
