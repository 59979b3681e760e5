"""Linear probes per layer (the paper's Table 7): how linearly separable are the classes at each layer?

Zeiler & Fergus trained a linear classifier on the features of each layer of their ImageNet network and
reported its accuracy on Caltech-101/256. Here the classifier is multinomial logistic regression in torch
(so scikit-learn is not a runtime dependency), fitted by full-batch L-BFGS in float64 on standardised
features, minimising

    mean cross-entropy + l2 / 2 * ||W||^2

which is scikit-learn's ``LogisticRegression(C=1 / (l2 * n_samples))`` (the tests check the two agree).
The default ``l2 = 1e-2`` keeps the problem well conditioned, so L-BFGS converges in a few seconds.
Conv feature maps are average-pooled to a ``pool x pool`` grid first, so every layer gives a vector of a
modest size.

>>> import torch
>>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
>>> y = torch.tensor([0, 0, 1, 1])
>>> probe = fit_linear_probe(x, y)
>>> probe.predict(torch.tensor([[0.2], [2.8]])).tolist(), probe.accuracy(x, y)
([0, 1], 1.0)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LinearProbe:
    """A fitted multinomial logistic regression on standardised features."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor  # (classes,)
    mean: torch.Tensor  # (features,)
    scale: torch.Tensor  # (features,)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The class scores of ``features`` (N, features)."""
        z = (_as_matrix(features) - self.mean) / self.scale
        return z @ self.weight.T + self.bias

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes)."""
        return self.logits(features).softmax(dim=1)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The most probable class of each row."""
        return self.logits(features).argmax(dim=1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of rows whose predicted class is the label."""
        return float((self.predict(features) == torch.as_tensor(labels)).double().mean())


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    l2: float = 1e-2,
    max_iter: int = 500,
    num_classes: int | None = None,
) -> LinearProbe:
    """Fit a multinomial logistic regression to ``features`` (N, D) and integer ``labels`` (N,)."""
    x = _as_matrix(features)
    y = torch.as_tensor(labels, dtype=torch.long)
    if y.shape != (len(x),):
        raise ValueError(f"labels must be one integer per row: shape {tuple(y.shape)} for {len(x)} rows")
    if l2 <= 0:
        raise ValueError(f"l2 must be positive; got {l2!r}")
    classes = int(num_classes if num_classes is not None else y.max() + 1)
    mean = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # constant features stay zero
    z = (x - mean) / scale
    weight = torch.zeros(classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def loss():
        optimizer.zero_grad()
        value = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * (weight**2).sum()
        value.backward()
        return value

    with torch.enable_grad(), one_thread():
        optimizer.step(loss)
    return LinearProbe(weight.detach(), bias.detach(), mean, scale)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one intra-op thread, then restore torch's thread count.

    An L-BFGS fit is a long chain of small operations whose cost is synchronisation, not arithmetic:
    on a 2-core machine shared with other work, two OpenMP threads made the report's probes 5-20x
    slower than one (6 fits of 2,400 x 512 features: 130 s against 5 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pooled_features(features: torch.Tensor, pool: int = 2) -> torch.Tensor:
    """Conv maps (N, C, H, W) average-pooled to (N, C * pool * pool); vectors (N, D) unchanged."""
    if features.ndim == 4:
        return F.adaptive_avg_pool2d(features.float(), pool).flatten(1)
    return features.flatten(1)


def _as_matrix(features) -> torch.Tensor:
    x = torch.as_tensor(features).to(torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {tuple(x.shape)}")
    return x
