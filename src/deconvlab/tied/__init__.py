"""Floor 3: tied-weight models that go up with W and down with W^T (the same tensor, both ways).

* ``BernoulliRBM``: scikit-learn's RBM on torch; ``p(h|v) = sigmoid(W v + c)``,
  ``p(v|h) = sigmoid(W^T h + b)``.
* ``ConvRBM`` (Lee et al. 2009): hidden pre-activation ``conv2d(v, W)``, visible mean
  ``conv_transpose2d(h, W)``; binary or Gaussian visible units, optional probabilistic max-pooling.
* ``TiedConvAutoencoder``: ``conv -> ReLU -> max-pool (switches kept)``, decoded by unpooling and
  ``conv_transpose2d`` with the encoder's own weight Parameter.
"""

from deconvlab.tied.autoencoder import Code, TiedConvAutoencoder
from deconvlab.tied.conv_rbm import ConvRBM
from deconvlab.tied.rbm import BernoulliRBM

__all__ = ["BernoulliRBM", "Code", "ConvRBM", "TiedConvAutoencoder"]
