"""Floor 3: the networks. A registry (``create``, ``list_models``, ``register_model``) and safe loading.

Registered: ``zfnet`` (the paper's Fig. 3), ``zfnet-mini`` (its pattern for 64x64 images),
``alexnet``, ``vgg16`` and ``resnet18`` (torchvision's names, so torchvision weight files load unchanged).
Every model has ``input_size`` = (channels, height, width).

>>> from deconvlab.models import create
>>> model = create("zfnet", num_classes=10)
>>> model.input_size, type(model.features[0]).__name__
((3, 224, 224), 'Conv2d')
"""

from deconvlab.models import torchvision_peers, zfnet  # noqa: F401  (registers the models)
from deconvlab.models._registry import create, list_models, register_model
from deconvlab.models.weights import WeightsMismatchError, load_weights, read_state_dict

__all__ = [
    "create",
    "list_models",
    "register_model",
    "load_weights",
    "read_state_dict",
    "WeightsMismatchError",
]
