"""Convolutional RBM (Lee, Grosse, Ranganath & Ng, ICML 2009): up with conv, down with conv_transpose.

One weight tensor ``W`` of shape ``(n_filters, in_channels, kh, kw)`` serves both directions:

* hidden pre-activation ``I = conv2d(v, W) + b`` (Lee's "valid convolution with the flipped
  filter" is PyTorch's cross-correlation with ``W``);
* visible mean ``conv_transpose2d(h, W) + c`` (Lee's "full convolution with the filter"), the same
  tensor read in ``ConvTranspose2d``'s layout ``(in = n_filters, out = in_channels, kh, kw)``.

The energy, with binary visible units, is ``E(v, h) = -sum h * I(v) - c . v``; with Gaussian
(unit-variance) visible units ``E(v, h) = 1/2 |v - c|^2 - sum h * I(v)``. Because
``sum h * conv2d(v, W) = v . conv_transpose2d(h, W)`` (the transpose is the adjoint), the
visible conditional is ``sigmoid(conv_transpose2d(h, W) + c)`` or ``N(conv_transpose2d(h, W) + c, 1)``.

Probabilistic max-pooling (Lee et al. 2009, sec. 3.3): the hidden units of each ``C x C`` block
of a map are allowed at most one unit on; the block is a softmax over its ``C^2`` units and
"all off" (logit 0), and the pooling unit is on when any unit of its block is.

>>> rbm = ConvRBM(in_channels=1, n_filters=2, kernel_size=3, pool_size=2)
>>> v = torch.zeros(1, 1, 6, 6)
>>> tuple(rbm.hidden_probabilities(v).shape), tuple(rbm.pool_probabilities(v).shape)
((1, 2, 4, 4), (1, 2, 2, 2))
>>> tuple(rbm.visible_mean(rbm.hidden_probabilities(v)).shape)   # down with the same W
(1, 1, 6, 6)
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

VISIBLE_KINDS = ("binary", "gaussian")


def _blocks(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, K, H, W)`` -> ``(N, K, H/size, W/size, size*size)``: the units of each pooling block."""
    n, k, h, w = x.shape
    x = x.reshape(n, k, h // size, size, w // size, size).permute(0, 1, 2, 4, 3, 5)
    return x.reshape(n, k, h // size, w // size, size * size)


def _unblocks(x: torch.Tensor, size: int) -> torch.Tensor:
    """The inverse of ``_blocks``."""
    n, k, bh, bw, _ = x.shape
    x = x.reshape(n, k, bh, bw, size, size).permute(0, 1, 2, 4, 3, 5)
    return x.reshape(n, k, bh * size, bw * size)


def _with_off_state(block_logits: torch.Tensor) -> torch.Tensor:
    """Append the "all units off" choice, whose logit is 0, to every block."""
    return torch.cat([block_logits, torch.zeros_like(block_logits[..., :1])], dim=-1)


class ConvRBM(nn.Module):
    """A convolutional RBM with binary hidden units and binary or Gaussian visible units.

    ``pool_size`` turns on probabilistic max-pooling over ``pool_size x pool_size`` blocks (the
    hidden maps must divide evenly). ``fit`` trains by CD-k on the free energy with SGD and
    momentum, with Lee et al.'s sparsity target on the hidden biases if ``sparsity_target`` is set.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_filters: int = 16,
        kernel_size: int = 5,
        *,
        visible: str = "binary",
        pool_size: int | None = None,
        init_scale: float = 0.01,
        seed: int = 0,
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("n_filters", n_filters),
            ("kernel_size", kernel_size),
        ):
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name}={value!r}: expected an int >= 1")
        if visible not in VISIBLE_KINDS:
            raise ValueError(f"visible={visible!r}: expected one of {VISIBLE_KINDS}")
        if pool_size is not None and (not isinstance(pool_size, numbers.Integral) or pool_size < 1):
            raise ValueError(f"pool_size={pool_size!r}: expected None or an int >= 1")
        self.visible, self.pool_size = visible, pool_size
        generator = torch.Generator().manual_seed(seed)
        shape = (n_filters, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.randn(shape, generator=generator) * init_scale)
        self.hidden_bias = nn.Parameter(torch.zeros(n_filters))
        self.visible_bias = nn.Parameter(torch.zeros(in_channels))

    # ------------------------------------------------------------------------ the two directions
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``I(h) = conv2d(v, W) + b``: up with W. Checks the shapes pooling needs."""
        if v.ndim != 4 or v.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"v: expected (N, {self.weight.shape[1]}, H, W) for in_channels={self.weight.shape[1]}, "
                f"got {tuple(v.shape)}"
            )
        logits = F.conv2d(v, self.weight, self.hidden_bias)
        size = self.pool_size
        if size and (logits.shape[2] % size or logits.shape[3] % size):
            raise ValueError(
                f"pool_size={size}: the hidden maps are {logits.shape[2]}x{logits.shape[3]} (input "
                f"{v.shape[2]}x{v.shape[3]}, kernel {self.weight.shape[2]}), not divisible by {size}"
            )
        return logits

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``conv_transpose2d(h, W) + c``: down with the same W (the visible mean before the
        sigmoid for binary units; the mean itself for Gaussian units)."""
        return F.conv_transpose2d(h, self.weight) + self.visible_bias[:, None, None]

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """``E[v | h]``: ``sigmoid(conv_transpose2d(h, W) + c)`` (binary) or without the sigmoid."""
        logits = self.visible_logits(h)
        return torch.sigmoid(logits) if self.visible == "binary" else logits

    def hidden_probabilities(self, v: torch.Tensor) -> torch.Tensor:
        """``P(h = 1 | v)``: ``sigmoid(I)``, or with pooling ``exp(I) / (1 + sum_block exp(I))``."""
        logits = self.hidden_logits(v)
        if not self.pool_size:
            return torch.sigmoid(logits)
        choices = torch.softmax(_with_off_state(_blocks(logits, self.pool_size)), dim=-1)
        return _unblocks(choices[..., :-1], self.pool_size)

    def pool_probabilities(self, v: torch.Tensor) -> torch.Tensor:
        """``P(p = 1 | v) = 1 - 1 / (1 + sum_block exp(I))``: some unit of the block is on."""
        if not self.pool_size:
            raise ValueError("pool_size=None: this ConvRBM has no pooling units")
        choices = torch.softmax(_with_off_state(_blocks(self.hidden_logits(v), self.pool_size)), dim=-1)
        return 1 - choices[..., -1]

    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """Mean-field reconstruction: up with ``conv2d(., W)``, down with ``conv_transpose2d(., W)``."""
        return self.visible_mean(self.hidden_probabilities(v))

    # ---------------------------------------------------------------------------------- energies
    def _visible_energy(self, v: torch.Tensor) -> torch.Tensor:
        c = self.visible_bias[:, None, None]
        if self.visible == "binary":
            return -(v * c).sum(dim=(1, 2, 3))
        return 0.5 * ((v - c) ** 2).sum(dim=(1, 2, 3))

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h)`` per sample (``h`` is assumed to respect the pooling constraint)."""
        return self._visible_energy(v) - (h * self.hidden_logits(v)).sum(dim=(1, 2, 3))

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -log sum_h exp(-E(v, h))`` per sample: ``-sum softplus(I)`` over hidden units,
        or ``-sum log(1 + sum_block exp(I))`` over pooling blocks, plus the visible term."""
        logits = self.hidden_logits(v)
        if self.pool_size:
            hidden = torch.logsumexp(_with_off_state(_blocks(logits, self.pool_size)), dim=-1)
        else:
            hidden = F.softplus(logits)
        return self._visible_energy(v) - hidden.sum(dim=tuple(range(1, hidden.ndim)))

    # ---------------------------------------------------------------------------------- sampling
    def sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A binary sample of ``h ~ p(h | v)``; with pooling, at most one unit on per block."""
        probabilities = self.hidden_probabilities(v)
        if not self.pool_size:
            return (torch.rand(probabilities.shape, generator=generator) < probabilities).to(v.dtype)
        blocks = _blocks(probabilities, self.pool_size)
        u = torch.rand(blocks.shape[:-1] + (1,), generator=generator, dtype=v.dtype)
        choice = (blocks.cumsum(dim=-1) < u).sum(dim=-1)  # == block size: the "off" choice
        one_hot = F.one_hot(choice, blocks.shape[-1] + 1)[..., :-1].to(v.dtype)
        return _unblocks(one_hot, self.pool_size)

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample of ``v ~ p(v | h)``: Bernoulli, or Gaussian with unit variance."""
        mean = self.visible_mean(h)
        if self.visible == "binary":
            return (torch.rand(mean.shape, generator=generator, dtype=mean.dtype) < mean).to(mean.dtype)
        return mean + torch.randn(mean.shape, generator=generator, dtype=mean.dtype)

    @torch.no_grad()
    def gibbs(
        self, v: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``steps`` Gibbs steps ``v -> h -> v``; the last visible step returns the mean."""
        for step in range(steps):
            h = self.sample_hidden(v, generator)
            v = self.visible_mean(h) if step == steps - 1 else self.sample_visible(h, generator)
        return v

    # ---------------------------------------------------------------------------------- training
    def contrastive_loss(self, v: torch.Tensor, k: int = 1, generator: torch.Generator | None = None):
        """``mean F(v_data) - mean F(v_model)``, ``v_model`` after k Gibbs steps from the data: its
        gradient is the CD-k estimate of the negative log-likelihood's."""
        with torch.no_grad():
            model = v
            for _ in range(k):
                model = self.sample_visible(self.sample_hidden(model, generator), generator)
        return self.free_energy(v).mean() - self.free_energy(model).mean()

    def fit(
        self,
        X: torch.Tensor,
        *,
        epochs: int = 10,
        batch_size: int = 20,
        learning_rate: float = 0.01,
        momentum: float = 0.5,
        weight_decay: float = 0.0,
        k: int = 1,
        sparsity_target: float | None = None,
        sparsity_cost: float = 1.0,
        seed: int = 0,
    ) -> list[float]:
        """Train by CD-k; returns the mean-field reconstruction error (MSE) after each epoch.

        The loss is divided by the number of positions of a hidden map, so that the learning rate
        does not depend on the image size (each weight's gradient sums over every position).

        ``sparsity_target`` (Lee et al. 2008/2009): each step also moves every hidden bias by
        ``learning_rate * sparsity_cost * (target - mean P(h = 1 | v))`` over the batch.
        """
        X = torch.as_tensor(X, dtype=self.weight.dtype)
        hidden_area = self.hidden_logits(X[:1])[0, 0].numel()  # also checks the shapes before any work
        generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.SGD(self.parameters(), lr=learning_rate, momentum=momentum,
                                    weight_decay=weight_decay)  # fmt: skip
        history = []
        for _ in range(epochs):
            order = torch.randperm(len(X), generator=generator)
            for start in range(0, len(X), batch_size):
                batch = X[order[start : start + batch_size]]
                optimiser.zero_grad()
                (self.contrastive_loss(batch, k, generator) / hidden_area).backward()
                if sparsity_target is not None:
                    with torch.no_grad():
                        mean = self.hidden_probabilities(batch).mean(dim=(0, 2, 3))
                    self.hidden_bias.grad += sparsity_cost * (mean - sparsity_target)
                optimiser.step()
            with torch.no_grad():
                history.append(float(((self.reconstruct(X) - X) ** 2).mean()))
        return history
