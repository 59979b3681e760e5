"""Floor 3: the networks. A registry (``create``, ``list_models``, ``register_model``) and safe loading.

Registered: ``zfnet`` (the paper's Fig. 3) and ``zfnet-mini`` (its pattern for 64x64 images); every
other architecture comes from torchvision, timm or the user's own code through ``load_model(spec)``
(``deconvlab.models.spec``). Every model has ``input_size`` = (channels, height, width).

>>> from deconvlab.models import create
>>> model = create("zfnet", num_classes=10)
>>> model.input_size, type(model.features[0]).__name__
((3, 224, 224), 'Conv2d')
"""

from deconvlab.models import zfnet  # noqa: F401  (registers the models)
from deconvlab.models._registry import create, list_models, register_model
from deconvlab.models.spec import MissingExtraError, load_model
from deconvlab.models.weights import WeightsMismatchError, load_weights, read_state_dict

__all__ = [
    "create",
    "list_models",
    "load_model",
    "MissingExtraError",
    "register_model",
    "load_weights",
    "read_state_dict",
    "WeightsMismatchError",
]
