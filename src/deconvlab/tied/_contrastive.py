"""The RBM's contrastive-divergence loop, written so that one mini-batch costs seven torch calls.

Three tricks keep the per-batch Python overhead small (scikit-learn's ``_fit`` makes about twenty
NumPy calls per batch):

* **Biases folded into one matrix.** ``weights`` is ``(n_hidden + 1, n_visible + 1)``::

      [[W, c],      W: (n_hidden, n_visible), c: hidden biases
       [b, .]]      b: visible biases, the corner is never read

  Every visible row carries a trailing 1 and every hidden row a trailing sign, so that
  ``[v, 1] @ [W, c]^T = v W^T + c`` (up with W), ``[h, 1] @ [W; b] = h W + b`` (down with W^T,
  written row-wise), and the whole update (weights and both biases) is one ``addmm``:
  ``weights += lr / n * [h, s]^T [v, 1]`` with ``s = +1`` on data rows and ``-m`` on model rows
  (``m = 1`` as in scikit-learn, or ``batch_size / n_chains`` with more persistent chains).
* **Data and model rows stacked**, so one matrix product gives the hidden probabilities of both.
  The data rows of every batch are laid out once per ``fit``; only the model rows change.
* **Sampling by comparing logits.** ``u < sigmoid(x)`` is ``logit(u) < x``: thresholds are drawn
  for many batches at once, and a Bernoulli sample is one ``torch.gt`` written in place.

Centering (Montavon & Mueller 2012; Melchior, Fischer & Wiskott 2016) costs three more in-place
subtractions per batch: every visible row holds ``v - mu`` and every hidden row ``h - lambda``, the
weights are the centered ones (``c + W mu``, ``b + W^T lambda`` in the bias slots), and the same
``addmm`` then gives the centered gradient ``sum s (h - lambda)(v - mu)^T``.
"""

from __future__ import annotations

import torch


class BatchWorkspace:
    """Buffers for one batch shape: ``n_data`` data rows stacked over ``n_model`` model rows.

    ``step`` runs k Gibbs steps of the negative chain, then one parameter update, in place.
    ``state`` holds the chain's hidden sample (with its column of ones); with ``persistent`` it is
    carried from batch to batch (PCD, Tieleman 2008), otherwise it restarts from the data (CD-k).
    Each model row's statistics count ``model_weight`` times a data row's. With offsets, the rows
    are centered: ``stacked`` holds ``v - visible_offset`` and ``state`` ``h - hidden_offset``.
    """

    def __init__(
        self,
        weights: torch.Tensor,
        n_data: int,
        n_model: int,
        *,
        k: int,
        persistent: bool,
        learning_rate: float,
        state: torch.Tensor,
        model_weight: float = 1.0,
        visible_offset: torch.Tensor | None = None,
        hidden_offset: float | None = None,
    ):
        n_hidden, n_visible = weights.shape[0] - 1, weights.shape[1] - 1
        if not persistent and n_model != n_data:
            raise ValueError(f"n_model={n_model}: CD-k restarts the chain from the data, needs {n_data}")
        options = {"dtype": weights.dtype}
        self.weights, self.k, self.persistent = weights, k, persistent
        self.n_data, self.alpha = n_data, learning_rate / n_data
        self.down = weights[:, :n_visible]  # [W; b]: visible pre-activation = [h, 1] @ down
        self.up = weights[:n_hidden].T  # [W, c]^T: hidden pre-activation = [v, 1] @ up
        self.hidden = torch.ones(n_data + n_model, n_hidden + 1, **options)
        self.hidden[n_data:, n_hidden] = -model_weight
        self.hidden_probs = self.hidden[:, :n_hidden]
        self.hidden_t = self.hidden.T
        self.pre_hidden = torch.empty(n_data + n_model, n_hidden, **options)
        self.pre_visible = torch.empty(n_model, n_visible, **options)
        self.state = state
        self.state_hidden = state[:, :n_hidden]
        # Measured: in-place arithmetic with a Python scalar on these strided views takes ~2x the
        # time of neg_ or of a tensor operand, so constants are tensors.
        model_hidden = self.hidden[n_data:, :n_hidden]
        factor = torch.tensor(-model_weight, **options)
        self._negate_model_rows = (
            model_hidden.neg_ if model_weight == 1 else lambda: model_hidden.mul_(factor)
        )
        self.visible_offset = visible_offset
        self.hidden_offset = (
            None if hidden_offset is None else torch.full((n_hidden,), hidden_offset, **options)
        )
        # The update's bias slots get sum s (h - lambda) and sum s (v - mu); the gradient wants
        # sum s h and sum s v. They differ by lambda sum s, which is 0 unless the batch is short.
        imbalance = n_data - model_weight * n_model
        self.corrections = []
        if imbalance and self.hidden_offset is not None:
            self.corrections.append(
                (weights[:n_hidden, n_visible], self.alpha * imbalance * self.hidden_offset)
            )
        if imbalance and visible_offset is not None:
            self.corrections.append((weights[n_hidden, :n_visible], self.alpha * imbalance * visible_offset))

    def _sample_hidden_state(self, pre_hidden: torch.Tensor, thresholds: torch.Tensor) -> None:
        torch.gt(pre_hidden, thresholds, out=self.state_hidden)
        if self.hidden_offset is not None:
            self.state_hidden.sub_(self.hidden_offset)

    def step(
        self,
        stacked: torch.Tensor,
        model_visible: torch.Tensor,
        thresholds_visible: torch.Tensor,
        thresholds_hidden: torch.Tensor,
    ) -> None:
        """One CD-k / PCD-k update from ``stacked`` = ``[[v_data, 1], [v_model, 1]]``.

        ``model_visible`` is the view ``stacked[n_data:, :-1]``; the thresholds are logits of
        uniforms, ``(k, n_model, n_visible)`` and ``(k, n_model, n_hidden)``.
        """
        n = self.n_data
        shift = 0 if self.persistent else 1
        if not self.persistent:  # CD-k: the chain starts from a hidden sample of the data
            torch.mm(stacked[:n], self.up, out=self.pre_hidden[:n])
            self._sample_hidden_state(self.pre_hidden[:n], thresholds_hidden[0])
        for j in range(self.k):
            torch.mm(self.state, self.down, out=self.pre_visible)
            torch.gt(self.pre_visible, thresholds_visible[j], out=model_visible)
            if self.visible_offset is not None:
                model_visible.sub_(self.visible_offset)
            if j < self.k - 1:
                torch.mm(stacked[n:], self.up, out=self.pre_hidden[n:])
                self._sample_hidden_state(self.pre_hidden[n:], thresholds_hidden[j + shift])
        torch.mm(stacked, self.up, out=self.pre_hidden)
        torch.sigmoid(self.pre_hidden, out=self.hidden_probs)
        if self.persistent:
            self._sample_hidden_state(self.pre_hidden[n:], thresholds_hidden[self.k - 1])
        if self.hidden_offset is not None:
            self.hidden_probs.sub_(self.hidden_offset)
        self._negate_model_rows()
        self.weights.addmm_(self.hidden_t, stacked, alpha=self.alpha)
        for bias, correction in self.corrections:
            bias.add_(correction)


def stack_batches(X: torch.Tensor, batch_size: int, n_model: int | None) -> list[torch.Tensor]:
    """Consecutive batches of ``X`` (the last one may be short), each laid out as
    ``[[x, 1], [scratch, 1]]`` with ``n_model`` scratch rows (``None``: as many as data rows).

    >>> [tuple(b.shape) for b in stack_batches(torch.zeros(5, 3), 2, 2)]
    [(4, 4), (4, 4), (3, 4)]
    """
    n_samples, n_visible = X.shape
    n_full = n_samples // batch_size
    model_rows = batch_size if n_model is None else n_model
    full = torch.ones(n_full, batch_size + model_rows, n_visible + 1, dtype=X.dtype)
    full[:, :batch_size, :n_visible] = X[: n_full * batch_size].reshape(n_full, batch_size, n_visible)
    batches = list(full.unbind(0))
    rest = n_samples - n_full * batch_size
    if rest:
        last_model_rows = rest if n_model is None else n_model
        last = torch.ones(rest + last_model_rows, n_visible + 1, dtype=X.dtype)
        last[:rest, :n_visible] = X[n_full * batch_size :]
        batches.append(last)
    return batches
