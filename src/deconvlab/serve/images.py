"""Pictures in and out of the explorer: checked uploads, bundled sample photos, PNG encoding.

An upload is refused, with a 4xx :class:`ApiError` saying why, when it is too large, is not an image
Pillow can read, or declares more pixels than allowed (checked from the header, before decoding:
Pillow's decompression-bomb guard, with the explorer's own limit on top).

>>> import numpy as np
>>> rgb = model_view(np.zeros((30, 60, 3), np.uint8), 16)
>>> rgb.shape
(16, 16, 3)
>>> decode_upload(png_bytes(rgb), max_bytes=10_000, max_pixels=1_000).shape
(16, 16, 3)
>>> decode_upload(b"GIF89a not really", max_bytes=10_000, max_pixels=1_000)
Traceback (most recent call last):
...
deconvlab.serve.params.ApiError: the upload is not an image Pillow can read (cannot identify image file)
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageOps

from deconvlab.data.transforms import to_rgb
from deconvlab.serve.params import ApiError

# Photographs bundled with scikit-image (no download): the Live image and Occlusion pages offer them.
SAMPLES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "camera",
    "coins",
)
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) from a grayscale, RGB or RGBA uint8 array."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def sample_image(name: str) -> np.ndarray:
    """One of :data:`SAMPLES` as uint8 RGB (H, W, 3)."""
    if name not in SAMPLES:
        raise ApiError(f"sample={name!r}: unknown; the samples are {list(SAMPLES)}", status=404)
    import skimage.data

    return as_rgb(getattr(skimage.data, name)())


def model_view(image: np.ndarray, size: int) -> np.ndarray:
    """The image as the model sees it: shorter side to ``size``, centre crop (the data module's transform)."""
    from deconvlab.data.transforms import resize_and_crop

    return np.array(resize_and_crop(Image.fromarray(as_rgb(image)), size))  # writable


def decode_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Check and decode an uploaded image to uint8 RGB (H, W, 3); first frame of an animation."""
    if len(data) > max_bytes:
        raise ApiError(f"the upload is {len(data)} bytes; the limit is {max_bytes} bytes", status=413)
    if not data:
        raise ApiError("the upload is empty; send the image file's bytes", status=400)
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as probe:
            _check_pixels(probe.size, max_pixels)
            probe.verify()
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
            image.load()
            return as_rgb(np.asarray(to_rgb(ImageOps.exif_transpose(image))))  # as the data module reads it
    except ApiError:
        raise
    except Image.DecompressionBombError as error:
        raise ApiError(f"the upload is refused as a decompression bomb ({error})", status=413) from None
    except Exception as error:  # whatever a malformed file makes Pillow raise, it is the file's fault
        reason = _first_line(error)
        raise ApiError(f"the upload is not an image Pillow can read ({reason})", status=415) from None


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ApiError(
            f"the upload declares {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(decompression-bomb guard)",
            status=413,
        )


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.split(" <_io.BytesIO")[0]


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
