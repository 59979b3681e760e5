"""Floor 3: tied-weight models that go up with W and down with W^T.

* ``BernoulliRBM``: scikit-learn's RBM on torch; ``p(h|v) = sigmoid(W v + c)``,
  ``p(v|h) = sigmoid(W^T h + b)``.
"""

from deconvlab.tied.rbm import BernoulliRBM

__all__ = ["BernoulliRBM"]
