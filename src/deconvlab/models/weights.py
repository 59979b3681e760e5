"""Loading weight files safely: PyTorch files through ``weights_only=True``, and safetensors.

A ``.pt``/``.pth`` file is a pickle, and unpickling can run any code the file names. ``torch.load``
with ``weights_only=True`` only rebuilds tensors and plain containers and refuses everything else,
so a weight file can never run code here. ``.safetensors`` files hold tensors only.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

WRAPPER_KEYS = ("state_dict", "model")


class WeightsMismatchError(ValueError):
    """The weight file's keys or shapes do not match the model's; lists every difference."""

    def __init__(self, path: Path, missing: list[str], unexpected: list[str], wrong_shape: list[str]):
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        lines = [f"weights in {str(path)!r} do not match the model:"]
        groups = (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong_shape))
        for title, keys in groups:
            if keys:
                lines.append(f"  {len(keys)} {title} key(s): " + ", ".join(keys))
        super().__init__("\n".join(lines))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the tensors of a .pt/.pth (possibly wrapped in "state_dict" or "model") or .safetensors file.

    A ``module.`` prefix on every key (``nn.DataParallel``) is removed.
    """
    path = Path(path)
    if not path.is_file():
        problem = "a directory, not a weight file" if path.is_dir() else "no such weight file"
        raise FileNotFoundError(f"path={str(path)!r}: {problem}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _strip_data_parallel(load_file(str(path), device="cpu"))
        except Exception as error:  # noqa: BLE001 - SafetensorError and friends: the file's fault
            raise ValueError(
                f"path={str(path)!r}: not a readable .safetensors file ({_first_line(error)})"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"path={str(path)!r}: refused, the file holds more than tensors and plain containers "
            f"(torch.load with weights_only=True said: {_first_line(error)})"
        ) from None
    except (EOFError, RuntimeError) as error:  # empty, truncated or not a torch.save file
        raise ValueError(
            f"path={str(path)!r}: not a readable PyTorch weight file, empty or truncated "
            f"({type(error).__name__}: {_first_line(error) or 'ran out of input'})"
        ) from None
    return _strip_data_parallel(_unwrap(obj, path))


def _first_line(error: BaseException) -> str:
    return str(error).strip().split("\n")[0]


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"path={str(path)!r}: expected a state dict of tensors, bare or under one of {WRAPPER_KEYS}"
        )
    return dict(obj)


def _strip_data_parallel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a weight file into ``model`` (in place) and return it; every key and shape must match.

    >>> import tempfile, torch
    >>> from deconvlab.models import create, load_weights
    >>> source, target = create("zfnet-mini", num_classes=3), create("zfnet-mini", num_classes=3)
    >>> path = tempfile.mkdtemp() + "/w.pt"
    >>> torch.save({"state_dict": source.state_dict()}, path)
    >>> bool(torch.equal(load_weights(target, path).features[0].weight, source.features[0].weight))
    True
    """
    path = Path(path)
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{key} (file {tuple(state[key].shape)}, model {tuple(expected[key].shape)})"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if missing or unexpected or wrong_shape:
        raise WeightsMismatchError(path, missing, unexpected, wrong_shape)
    not_finite = [
        key for key, value in state.items() if value.is_floating_point() and not value.isfinite().all()
    ]
    if not_finite:
        raise ValueError(f"path={str(path)!r}: weights must be finite; NaN or inf in {', '.join(not_finite)}")
    model.load_state_dict(state)
    return model
