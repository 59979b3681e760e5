"""The model registry: ``@register_model`` adds a builder, ``create(name)`` calls it (timm's pattern).

A builder is a function ``builder(num_classes=..., **kw) -> nn.Module``. Registering is done once, at
import time of the module that defines the builder; tests and the CLI are driven by ``list_models()``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ModelBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator that registers ``builder`` under ``name``; a name can be registered only once."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is already registered (by {_BUILDERS[name].__qualname__})")
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of every registered model, sorted.

    >>> from deconvlab.models import list_models
    >>> list_models()
    ['zfnet', 'zfnet-mini']
    """
    return sorted(_BUILDERS)


def create(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with freshly initialised weights.

    Every model has an ``input_size`` attribute, ``(channels, height, width)``.

    >>> from deconvlab.models import create
    >>> create("zfnet-mini", num_classes=12).input_size
    (3, 64, 64)
    """
    if name not in _BUILDERS:
        raise ValueError(f"model name {name!r} is not registered; choose one of {list_models()}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: must be a positive int")
    return _BUILDERS[name](num_classes=num_classes, **kwargs)
