"""Floor 3: training as in the paper, evaluation, and the cached demo network.

>>> from deconvlab.training import scaled_checkpoint_epochs
>>> scaled_checkpoint_epochs(64)  # the epochs of the paper's Fig. 4
[1, 2, 5, 10, 20, 30, 40, 64]
"""

from deconvlab.training.demo import DEMO_CONFIG, demo_model
from deconvlab.training.evaluate import evaluate
from deconvlab.training.loop import default_lr_steps, scaled_checkpoint_epochs, train
from deconvlab.training.renorm import renormalize_filter_rms, renormalize_model, rms_thresholds

__all__ = [
    "DEMO_CONFIG",
    "default_lr_steps",
    "demo_model",
    "evaluate",
    "renormalize_filter_rms",
    "renormalize_model",
    "rms_thresholds",
    "scaled_checkpoint_epochs",
    "train",
]
