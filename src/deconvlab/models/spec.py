"""Any model from one string: ``load_model(spec, weights)``, what every command's ``--model`` takes.

A spec is one of

- a registered name: ``"zfnet"``, ``"zfnet-mini"`` (``deconvlab.models.list_models()``);
- ``"torchvision:NAME"``: any name of ``torchvision.models.list_models()``; a bare torchvision name
  (``"resnet18"``) means the same;
- ``"timm:NAME"``: any ``timm.list_models()`` name (the ``timm`` extra);
- ``"package.module:callable"``: a factory returning an ``nn.Module``, imported from the working
  directory or ``PYTHONPATH``, as uvicorn takes ``module:app``.

``weights`` is a file (``.pt``, ``.pth``, ``.safetensors``; read by ``read_state_dict``, so with
``weights_only=True``), ``"DEFAULT"`` (torchvision's default weights or timm's pretrained weights, from
the local caches only: nothing is ever downloaded) or None (random weights). The number of classes
follows the file's last layer.

The model comes back in eval mode with what preprocessing needs, from the weights' metadata where there
is one (torchvision's ``weights.meta`` and ``transforms()``, timm's ``pretrained_cfg``), else from the
arguments, else ImageNet's defaults:

- ``model.input_size``: ``(channels, height, width)``;
- ``model.mean`` and ``model.std``: the per-channel normalisation;
- ``model.class_names``: a tuple of names, or None when unknown.

>>> model = load_model("torchvision:alexnet")
>>> model.input_size, model.mean, model.class_names
((3, 224, 224), (0.485, 0.456, 0.406), None)
>>> load_model("torchvision:inception_v3").input_size      # from the weights' transforms()
(3, 299, 299)
>>> load_model("no.such.module:build")
Traceback (most recent call last):
ValueError: --model='no.such.module:build': cannot import module 'no.such.module' (No module named 'no')
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from deconvlab.models._registry import create, list_models
from deconvlab.models.weights import load_weights, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224
DEFAULT_WEIGHTS = "DEFAULT"


class MissingExtraError(ImportError):
    """A feature needs an optional dependency: the message names the extra to install."""

    def __init__(self, what: str, extra: str):
        super().__init__(f"{what} needs the '{extra}' extra: pip install \"deconvlab[{extra}]\"")


def require(module: str, extra: str, what: str):
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra``.

    >>> require("no_such_package", "web", "serve")
    Traceback (most recent call last):
    deconvlab.models.spec.MissingExtraError: serve needs the 'web' extra: pip install "deconvlab[web]"
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise
        raise MissingExtraError(what, extra) from None


def load_model(
    spec: str,
    weights: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> nn.Module:
    """Build the model ``spec`` names, with ``weights``, in eval mode (see the module docstring).

    ``num_classes`` sizes the classifier of a model built without a weight file (default 1000; a file
    sets it). ``input_size``, ``mean`` and ``std`` override what the weights' metadata says.
    """
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise ValueError(f"num_classes={num_classes!r}: must be a positive int")
    classes = num_classes or 1000
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"--model={spec!r}: expected a model spec such as zfnet-mini or torchvision:resnet18"
        )
    source, _, name = spec.partition(":") if ":" in spec else ("", "", spec)
    if source == "" and name in list_models():
        model, meta = _registered(name, weights, classes)
    elif source == "torchvision" or (source == "" and name in _torchvision_names()):
        model, meta = _torchvision(spec, name, weights, classes)
    elif source == "timm":
        model, meta = _timm(spec, name, weights, classes)
    elif source == "":
        raise ValueError(
            f"--model={spec!r}: not a registered model ({', '.join(list_models())}) nor a torchvision "
            "model; use torchvision:NAME, timm:NAME or package.module:callable"
        )
    else:
        model, meta = _factory(spec, source, name, weights)
    overrides = {"input_size": input_size, "mean": mean, "std": std}
    return describe(model.eval(), spec, **{**meta, **{k: v for k, v in overrides.items() if v is not None}})


def describe(model: nn.Module, spec: str, **meta) -> nn.Module:
    """Attach ``input_size``, ``mean``, ``std``, ``class_names`` and ``spec`` to ``model`` (see above).

    ``meta`` may give ``input_size`` (one side), ``channels``, ``mean``, ``std`` and ``class_names``.
    """
    size = DEFAULT_INPUT_SIZE if meta.get("input_size") is None else meta["input_size"]
    channels = meta.get("channels", 3)
    mean, std = tuple(meta.get("mean") or IMAGENET_MEAN), tuple(meta.get("std") or IMAGENET_STD)
    for label, value in (("mean", mean), ("std", std)):
        if len(value) != channels:
            raise ValueError(f"--{label}={value}: needs one value per input channel ({channels})")
    if any(s <= 0 for s in std):
        raise ValueError(f"--std={std}: every value must be positive")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"--input-size={size!r}: must be a positive int")
    model.input_size = (channels, size, size)
    model.mean, model.std = mean, std
    model.class_names = tuple(meta["class_names"]) if meta.get("class_names") else None
    model.spec = spec
    return model


def _registered(name: str, weights, classes: int) -> tuple[nn.Module, dict]:
    if weights == DEFAULT_WEIGHTS:
        raise ValueError(f"--weights=DEFAULT: {name} has no published weights; pass a weight file")
    model = create(name, num_classes=_classes_in_file(weights, lambda: create(name, num_classes=2), classes))
    if weights is not None:
        load_weights(model, weights)
    return model, {"input_size": model.input_size[-1], "channels": model.input_size[0]}


def _torchvision_names() -> set[str]:
    import torchvision

    return set(torchvision.models.list_models(module=torchvision.models))


def _torchvision(spec: str, name: str, weights, classes: int) -> tuple[nn.Module, dict]:
    import torchvision

    if name not in torchvision.models.list_models():
        raise ValueError(f"--model={spec!r}: not a torchvision model (torchvision.models.list_models())")
    default = _torchvision_default_weights(name)
    meta = {}
    if default is not None:
        transform = default.transforms()
        meta = {"input_size": transform.crop_size[0], "mean": transform.mean, "std": transform.std}
    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    if weights == DEFAULT_WEIGHTS:
        if default is None:
            raise ValueError(f"--weights=DEFAULT: torchvision has no weights for {name}")
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
        if not path.is_file():
            raise FileNotFoundError(
                f"--weights=DEFAULT: {name}'s weights are not in torch hub's cache; nothing is downloaded. "
                f"Put {default.url} at {path}"
            )
        model = torchvision.models.get_model(name, weights=None, num_classes=len(default.meta["categories"]))
        _load_state(model, _renamed_torchvision_keys(name, read_state_dict(path)), path, extra)
        return model, {**meta, "class_names": default.meta["categories"]}
    probe = partial(torchvision.models.get_model, name, weights=None, num_classes=2, **extra)
    model = torchvision.models.get_model(
        name, weights=None, num_classes=_classes_in_file(weights, probe, classes), **extra
    )
    if weights is not None:
        load_weights(model, weights)
    return model, meta


def _torchvision_default_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        return None


def _renamed_torchvision_keys(name: str, state: dict) -> dict:
    """DenseNet's published file uses old key names ("norm.1"), renamed as torchvision does on load."""
    if not name.startswith("densenet"):
        return state
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    return {(f"{m[1]}{m[2]}" if (m := pattern.match(key)) else key): value for key, value in state.items()}


def _load_state(model: nn.Module, state: dict, path: Path, extra: dict) -> None:
    """Load a published state dict; auxiliary classifiers the file has but the model drops are ignored."""
    if extra.get("aux_logits") is False:
        state = {
            key: value for key, value in state.items() if not key.startswith(("aux1.", "aux2.", "AuxLogits."))
        }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not match the model ({len(missing)} missing, {len(unexpected)} unexpected keys)"
        )


def _timm(spec: str, name: str, weights, classes: int) -> tuple[nn.Module, dict]:
    timm = require("timm", "timm", f"--model={spec!r}")
    if name not in timm.list_models(name):
        raise ValueError(f"--model={spec!r}: not a timm model (timm.list_models())")
    if weights == DEFAULT_WEIGHTS:
        model = timm.create_model(name, pretrained=False)
        path = _timm_cached_file(spec, model.pretrained_cfg)
        model.load_state_dict(read_state_dict(path))
    else:
        probe = partial(timm.create_model, name, pretrained=False, num_classes=2)
        model = timm.create_model(
            name, pretrained=False, num_classes=_classes_in_file(weights, probe, classes)
        )
        if weights is not None:
            load_weights(model, weights)
    config = model.pretrained_cfg
    meta = {"input_size": config["input_size"][-1], "channels": config["input_size"][0]}
    meta.update(mean=config.get("mean"), std=config.get("std"))
    if weights == DEFAULT_WEIGHTS and config.get("num_classes") == 1000 and "in1k" in config.get("tag", ""):
        meta["class_names"] = imagenet_class_names()
    return model, meta


def _timm_cached_file(spec: str, config: dict) -> Path:
    """timm's pretrained file from the Hugging Face cache (offline), or a FileNotFoundError saying where."""
    from huggingface_hub import constants, try_to_load_from_cache

    repo = config.get("hf_hub_id")
    if not repo:
        raise ValueError(f"--weights=DEFAULT: timm publishes no Hugging Face weights for {spec}")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    raise FileNotFoundError(
        f"--weights=DEFAULT: {spec}'s weights are not in the Hugging Face cache; nothing is downloaded. "
        f"Put them at {folder}/snapshots/<revision>/model.safetensors "
        f"(`huggingface-cli download {repo}` on a machine with internet), or pass --weights FILE"
    )


def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k's class names, in index order (the list torchvision's weights carry)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _factory(spec: str, module_name: str, attribute: str, weights) -> tuple[nn.Module, dict]:
    if weights == DEFAULT_WEIGHTS:
        raise ValueError(
            f"--weights=DEFAULT: only torchvision and timm models have default weights, not {spec}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn: module:app is imported from the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"--model={spec!r}: cannot import module {module_name!r} ({error})") from None
    except Exception as error:  # the module itself fails (raises, a syntax error): chained, for its author
        raise ValueError(
            f"--model={spec!r}: importing module {module_name!r} failed ({type(error).__name__}: {error})"
        ) from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"--model={spec!r}: module {module_name!r} has no callable {attribute!r}")
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001 - the factory's own failure, chained, for its author
        failure = f"{type(error).__name__}: {error}"
        raise ValueError(f"--model={spec!r}: {attribute}() failed ({failure})") from error
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"--model={spec!r}: {attribute}() returned a {type(model).__name__}, not an nn.Module"
        )
    if weights is not None:
        load_weights(model, weights)
    size = getattr(model, "input_size", None)
    meta = {"input_size": size[-1], "channels": size[0]} if isinstance(size, tuple) and len(size) == 3 else {}
    return model, meta


def _classes_in_file(weights, probe: Callable[[], nn.Module], default: int) -> int:
    """Rows of the last ``nn.Linear`` (or final conv) in the weight file: its number of classes.

    ``probe()`` builds a small-headed copy of the architecture, only when there is a file to read.
    """
    if weights is None:
        return default
    state = read_state_dict(weights)
    heads = [name for name, m in probe().named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    key = f"{heads[-1]}.weight" if heads else None
    return int(state[key].shape[0]) if key in state else default
