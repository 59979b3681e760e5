"""The corpus of bad inputs: ``python tests/data/bad/make_corpus.py`` rewrites ``images/`` here.

The images are small (a decompression bomb is a header that declares 30000 x 30000 pixels) and kept
in git; this script says how each one was made and remakes them byte for byte. The weight files are
megabytes each, so the tests write them with :func:`weights` into a temporary folder instead.

- ``images/``: one truncated and one corrupt file of each format Pillow and torchvision read, a
  decompression bomb, an empty file, text named ``.png``, a directory named ``folder.png``; and two
  unusual but valid images (16-bit grayscale PNG, CMYK JPEG) that must be read, not refused.
- ``weights/`` (for zfnet-mini with 12 classes): wrong shapes, wrong keys, NaNs, a pickle that would
  run code, a ``.safetensors`` with a wrong header, a truncated ``.pt``, an empty file, a directory.
- model specs (``--model package.module:callable``) that do not import or do not return a module:
  :data:`SPECS`, with the modules of :func:`spec_modules` (written at test time too: pytest would
  import them).
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP", "tiff": "TIFF"}
VALID = ("16bit.png", "cmyk.jpg")  # unusual, not bad: every reader must decode them


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def picture() -> np.ndarray:
    """A 24 x 32 RGB gradient (seedless: the same bytes every time)."""
    y, x = np.mgrid[0:24, 0:32]
    return np.stack([8 * y, 6 * x, 255 - 4 * (x + y)], axis=-1).astype(np.uint8)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1-bit) and holds a tiny compressed stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def images() -> dict[str, bytes | None]:
    """File name -> bytes (None: a directory of that name)."""
    out: dict[str, bytes | None] = {}
    for suffix, fmt in FORMATS.items():
        data = encoded(picture(), fmt)
        out[f"truncated.{suffix}"] = data[: len(data) // 3]
        middle = len(data) // 2
        out[f"corrupt.{suffix}"] = data[:4] + bytes(b ^ 0x5A for b in data[4:middle]) + data[middle:]
    out["bomb.png"] = png_bomb(30000, 30000)
    out["empty.png"] = b""
    out["text.png"] = b"this is a text file, not a picture\n"
    out["folder.png"] = None
    gray16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).astype(np.uint16)
    out["16bit.png"] = encoded(gray16, "PNG")
    cmyk = Image.fromarray(picture()).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    out["cmyk.jpg"] = buffer.getvalue()
    return out


PWNED = "pwned.txt"  # what the pickle in runs-code.pt would write beside itself


class RunsCode:
    """Unpickling this calls os.system: a weight file must never be unpickled with full pickle."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > '{self.target}'",))


def weights(folder: Path) -> dict[str, bytes | None]:
    """The weight files for zfnet-mini (12 classes) that ``write(folder, ...)`` puts in ``folder``."""
    import torch

    from deconvlab.models import create

    torch.manual_seed(0)
    state = create("zfnet-mini", num_classes=12).state_dict()

    def saved(obj) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    first = next(iter(state))
    wrong_shape = {**state, first: torch.zeros(3, 3)}
    wrong_keys = {f"renamed.{key}": value for key, value in state.items()}
    nans = {key: value.clone() for key, value in state.items()}
    nans[first].view(-1)[0] = float("nan")
    good = saved(state)
    header = b'{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 999]}}'
    return {
        "wrong-shape.pt": saved(wrong_shape),
        "wrong-keys.pt": saved(wrong_keys),
        "nan.pt": saved(nans),
        "runs-code.pt": pickle.dumps({"state_dict": RunsCode(folder / PWNED)}),
        "bad-header.safetensors": struct.pack("<Q", len(header)) + header + b"\0" * 16,
        "truncated.pt": good[: len(good) // 2],
        "empty.pt": b"",
        "folder.pt": None,
    }


SPECS = (
    "no_such_module_xyz:build",  # does not import
    "broken_on_import:build",  # raises while importing
    "syntax_error:build",  # is not Python
    "bad_specs:missing",  # no such callable
    "bad_specs:NOT_CALLABLE",  # not callable
    "bad_specs:returns_int",  # returns no module
    "bad_specs:returns_class",  # returns the class, not an instance
    "bad_specs:raises",  # the factory fails
    "bad_specs:needs_argument",  # the factory wants an argument
)


def spec_modules() -> dict[str, bytes]:
    """The modules the specs of :data:`SPECS` name, to write into a folder on ``sys.path``."""
    bad_specs = """from torch import nn

NOT_CALLABLE = 3


def returns_int():
    return 42


def returns_class():
    return nn.Identity


def raises():
    raise RuntimeError("the factory failed")


def needs_argument(depth):
    return nn.Identity()
"""
    return {
        "bad_specs.py": bad_specs.encode(),
        "broken_on_import.py": b'raise RuntimeError("this module fails on import")\n',
        "syntax_error.py": b"def build(:\n",
    }


def write(folder: Path, files: dict[str, bytes | None]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        if data is None:
            (folder / name).mkdir()
            (folder / name / "inside.txt").write_text("a directory named like a file\n")
        else:
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    write(HERE / "images", images())
    print(f"wrote {HERE / 'images'}")
