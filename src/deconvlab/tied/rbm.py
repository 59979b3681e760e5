"""A Bernoulli RBM on torch with scikit-learn's interface: up with W, down with W^T.

The energy of a visible vector ``v`` and a hidden vector ``h`` (both binary) is
``E(v, h) = -b.v - c.h - h.W v``, with ``W`` of shape ``(n_hidden, n_visible)``. Both conditionals
factorise and use the same matrix, once each way (Hinton, "A practical guide to training RBMs"):

* ``p(h = 1 | v) = sigmoid(W v + c)``   (up with W)
* ``p(v = 1 | h) = sigmoid(W^T h + b)`` (down with W^T)

Summing ``h`` out gives the free energy ``F(v) = -b.v - sum_j softplus((W v + c)_j)``, so that
``p(v) = exp(-F(v)) / Z``.

The class follows ``sklearn.neural_network.BernoulliRBM``: the same constructor, attributes
(``components_`` is ``W``, ``intercept_hidden_`` is ``c``, ``intercept_visible_`` is ``b``,
``h_samples_``), the same initialisation from the same ``random_state``, the same batches (in
order, the last one short), the same persistent-CD update and the same ``score_samples``
(flipping the same bits for the same ``random_state``). It adds CD-k (``persistent=False``),
``k`` Gibbs steps per update and ``n_chains``, and trains in float32 with the loop of
``_contrastive``.

>>> import numpy as np
>>> X = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=float)
>>> rbm = BernoulliRBM(n_components=2, n_iter=5, random_state=0).fit(X)
>>> rbm.components_.shape, rbm.transform(X).shape
((2, 3), (4, 2))
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable

import numpy as np
import torch

from deconvlab.tied._contrastive import BatchWorkspace, stack_batches
from deconvlab.tied._threads import single_thread

# draw(n_batches, n_model) -> logits of uniforms, (n_batches, k, n_model, n_visible) and
# (n_batches, k, n_model, n_hidden): the thresholds of every Bernoulli sample in those batches.
ThresholdDraw = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]

_BATCHES_PER_DRAW = 256


def check_random_state(seed) -> np.random.RandomState:
    """scikit-learn's rule: None -> NumPy's global RandomState, int -> a new one, instance -> itself.

    >>> check_random_state(0).randint(10) == np.random.RandomState(0).randint(10)
    True
    """
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state={seed!r}: expected None, an int or a numpy.random.RandomState")


def _check_positive_int(value, name: str, minimum: int = 1) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an int >= {minimum}")


class BernoulliRBM:
    """Bernoulli-Bernoulli RBM trained by persistent contrastive divergence (or CD-k).

    Drop-in for ``sklearn.neural_network.BernoulliRBM`` (``fit``, ``partial_fit``, ``transform``,
    ``fit_transform``, ``gibbs``, ``score_samples``, ``get_params``/``set_params``, so it works in
    a ``Pipeline``). Extra parameters: ``k`` Gibbs steps per update, ``persistent=False`` for CD-k
    (the chain restarts from the data), ``n_chains`` persistent chains (scikit-learn keeps
    ``batch_size``; more chains give a less noisy negative phase at little cost, each chain row
    then counting ``batch_size / n_chains`` data rows). Extra methods: ``free_energy``, ``pseudo_likelihood``,
    ``hidden_probabilities``, ``visible_probabilities``, ``reconstruct``, ``filters_picture``,
    ``to_sklearn``, ``from_sklearn``. ``centered=True`` trains the centered RBM (Montavon & Mueller
    2012; Melchior et al. 2016) with offsets ``mu`` = the training mean (``visible_offset_``) and
    ``lambda = 1/2``: same model, better-conditioned gradient; the attributes stay uncentered.
    """

    def __init__(
        self,
        n_components: int = 256,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 10,
        n_iter: int = 10,
        verbose: int = 0,
        random_state=None,
        k: int = 1,
        persistent: bool = True,
        n_chains: int | None = None,
        centered: bool = False,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.k = k
        self.persistent = persistent
        self.n_chains = n_chains
        self.centered = centered

    # ----------------------------------------------------------------- scikit-learn plumbing
    _PARAMS = (
        "n_components",
        "learning_rate",
        "batch_size",
        "n_iter",
        "verbose",
        "random_state",
        "k",
        "persistent",
        "n_chains",
        "centered",
    )
    _EXTRA_PARAMS = ("k", "persistent", "n_chains", "centered")  # not scikit-learn's
    _FITTED = ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments, as scikit-learn's ``clone`` and ``GridSearchCV`` expect."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> BernoulliRBM:
        """Set constructor arguments by name; unknown names raise ``ValueError``."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"{name}={value!r}: not a parameter of BernoulliRBM {self._PARAMS}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = BernoulliRBM().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"BernoulliRBM({', '.join(changed)})"

    def _check_params(self) -> None:
        _check_positive_int(self.n_components, "n_components")
        _check_positive_int(self.batch_size, "batch_size")
        _check_positive_int(self.n_iter, "n_iter", minimum=0)
        _check_positive_int(self.k, "k")
        if self.n_chains is not None:
            _check_positive_int(self.n_chains, "n_chains")
            if not self.persistent:
                raise ValueError(f"n_chains={self.n_chains!r}: only persistent CD keeps chains; use None")
        if not isinstance(self.learning_rate, numbers.Real) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r}: expected a number > 0")

    def _check_X(self, X, name: str = "X") -> np.ndarray:
        """A float64 2-D array of values in [0, 1] (Bernoulli means), with the fitted width."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"{name}: expected a non-empty 2-D array (n_samples, n_features), got {X.shape}")
        if not np.isfinite(X).all() or X.min() < 0 or X.max() > 1:
            raise ValueError(
                f"{name}: values must be finite and lie in [0, 1] (Bernoulli visible units); "
                f"got min {np.nanmin(X):g}, max {np.nanmax(X):g}"
            )
        expected = getattr(self, "n_features_in_", X.shape[1])
        if X.shape[1] != expected:
            raise ValueError(f"{name}: has {X.shape[1]} features, but this RBM was fitted with {expected}")
        return X

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise ValueError("This BernoulliRBM is not fitted yet: call fit(X) first")

    # ------------------------------------------------------------------- the model's formulas
    def _parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W, c, b) as float64 tensors sharing memory with the NumPy attributes."""
        self._check_fitted()
        return (
            torch.as_tensor(np.asarray(self.components_, dtype=np.float64)),
            torch.as_tensor(np.asarray(self.intercept_hidden_, dtype=np.float64)),
            torch.as_tensor(np.asarray(self.intercept_visible_, dtype=np.float64)),
        )

    def hidden_probabilities(self, v) -> np.ndarray:
        """``p(h = 1 | v) = sigmoid(v W^T + c)`` row-wise: up with W."""
        W, c, _ = self._parameters()
        return torch.sigmoid(torch.as_tensor(np.asarray(v, dtype=np.float64)) @ W.T + c).numpy()

    def visible_probabilities(self, h) -> np.ndarray:
        """``p(v = 1 | h) = sigmoid(h W + b)`` row-wise, i.e. ``sigmoid(W^T h + b)``: down with W^T."""
        W, _, b = self._parameters()
        return torch.sigmoid(torch.as_tensor(np.asarray(h, dtype=np.float64)) @ W + b).numpy()

    def transform(self, X) -> np.ndarray:
        """Hidden activation probabilities ``p(h = 1 | v = X)``, shape ``(n_samples, n_components)``."""
        return self.hidden_probabilities(self._check_X(X))

    def reconstruct(self, X) -> np.ndarray:
        """Mean-field reconstruction: up with W, then down with W^T."""
        return self.visible_probabilities(self.transform(X))

    def free_energy(self, X) -> np.ndarray:
        """``F(v) = -b.v - sum_j softplus((W v + c)_j)`` per row; ``p(v) = exp(-F(v)) / Z``."""
        W, c, b = self._parameters()
        v = torch.as_tensor(np.asarray(X, dtype=np.float64))
        return (-(v @ b) - torch.nn.functional.softplus(v @ W.T + c).sum(dim=1)).numpy()

    def _log_conditional_of_flip(self, X: np.ndarray, flipped: np.ndarray) -> np.ndarray:
        """``log p(v_i | v_-i) = log sigmoid(F(v with bit i flipped) - F(v))`` for rows X."""
        difference = self.free_energy(flipped) - self.free_energy(X)
        return -np.logaddexp(0, -difference)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's stochastic pseudo-log-likelihood, per sample.

        One feature ``i`` per sample is drawn with ``check_random_state(self.random_state)`` (a
        fresh generator for an int seed, so the same bits as scikit-learn's), flipped to
        ``1 - v_i``, and the score is ``n_features * log sigmoid(F(flipped) - F(v))``.
        """
        self._check_fitted()
        X = self._check_X(X)
        rng = check_random_state(self.random_state)
        rows = np.arange(X.shape[0])
        columns = rng.randint(0, X.shape[1], X.shape[0])
        flipped = X.copy()
        flipped[rows, columns] = 1 - flipped[rows, columns]
        return X.shape[1] * self._log_conditional_of_flip(X, flipped)

    def pseudo_likelihood(self, X) -> np.ndarray:
        """The exact pseudo-log-likelihood ``sum_i log p(v_i | v_-i)`` per sample (every bit, no
        sampling): the expectation of ``score_samples`` over the flipped bit."""
        self._check_fitted()
        X = self._check_X(X)
        total = np.zeros(X.shape[0])
        for i in range(X.shape[1]):
            flipped = X.copy()
            flipped[:, i] = 1 - flipped[:, i]
            total += self._log_conditional_of_flip(X, flipped)
        return total

    def gibbs(self, v) -> np.ndarray:
        """One Gibbs step ``v -> h ~ p(h|v) -> v' ~ p(v|h)``; boolean samples, like scikit-learn's
        (and the same ones, drawn from ``random_state_`` in the same order)."""
        self._check_fitted()
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        p_h = self.hidden_probabilities(v)
        h = self.random_state_.uniform(size=p_h.shape) < p_h
        p_v = self.visible_probabilities(h)
        return self.random_state_.uniform(size=p_v.shape) < p_v

    # ----------------------------------------------------------------------------- training
    def _initialise(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        """scikit-learn's start: W ~ N(0, 0.01^2) from ``rng``, zero biases, zero chain; with
        ``centered``, the visible offset is the mean of X."""
        n_features = X.shape[1]
        self.n_features_in_ = n_features
        if self.centered:
            self.visible_offset_ = X.mean(axis=0)
        self.components_ = np.asarray(rng.normal(0, 0.01, (self.n_components, n_features)), order="F")
        self.intercept_hidden_ = np.zeros(self.n_components)
        self.intercept_visible_ = np.zeros(n_features)
        self.h_samples_ = np.zeros((self._chain_rows, self.n_components))

    @property
    def _chain_rows(self) -> int:
        """Persistent chains: ``n_chains``, by default ``batch_size`` as in scikit-learn."""
        return self.n_chains or self.batch_size

    def _offsets(self) -> tuple[torch.Tensor, float]:
        """Centering offsets (mu, lambda): the training data's mean and 1/2, or zeros."""
        if not self.centered:
            return torch.zeros(self.n_features_in_, dtype=torch.float64), 0.0
        return torch.as_tensor(np.asarray(self.visible_offset_, dtype=np.float64)), 0.5

    def _stacked_weights(self, dtype: torch.dtype) -> torch.Tensor:
        """``[[W, c + W mu], [b + W^T lambda, 0]]`` as one tensor (see ``_contrastive``): the
        energy ``-(v - mu) W^T (h - lambda) - ...`` written with centered biases."""
        W, c, b = self._parameters()
        mu, lam = self._offsets()
        n_hidden, n_visible = W.shape
        weights = torch.zeros(n_hidden + 1, n_visible + 1, dtype=dtype)
        weights[:n_hidden, :n_visible] = W
        weights[:n_hidden, n_visible] = c + W @ mu
        weights[n_hidden, :n_visible] = b + lam * W.sum(dim=0)
        return weights

    def _logistic_draw(self, generator: np.random.Generator) -> ThresholdDraw:
        """Thresholds ``logit(u)``, u uniform float32 from NumPy's PCG64 (measured ~40% faster
        than ``torch.rand``'s Mersenne twister, and drawing them is a sixth of the training)."""
        n_visible, n_hidden, k = self.n_features_in_, self.n_components, self.k

        def draw(n_batches: int, n_model: int) -> tuple[torch.Tensor, torch.Tensor]:
            def logits(width):
                u = generator.random((n_batches, k, n_model, width), dtype=np.float32)
                return torch.from_numpy(u).logit_()

            return logits(n_visible), logits(n_hidden)

        return draw

    def _run_epochs(
        self,
        X: np.ndarray,
        n_epochs: int,
        draw: ThresholdDraw,
        dtype: torch.dtype,
        batch_size: int | None = None,
    ) -> None:
        """``n_epochs`` passes of CD-k / PCD-k over X in order, thresholds from ``draw``.

        Batches have ``batch_size`` rows (default ``self.batch_size``); the persistent chains are
        the rows of ``h_samples_``, each counting ``self.batch_size / n_chains`` data rows.
        """
        if n_epochs == 0:
            return
        weights = self._stacked_weights(dtype)
        mu, lam = self._offsets()
        n_hidden, n_visible = self.n_components, X.shape[1]
        n_chain = self._chain_rows if self.persistent else None
        model_weight = self.batch_size / self._chain_rows
        centered = torch.as_tensor(X) - mu
        batches = stack_batches(centered.to(dtype), batch_size or self.batch_size, n_chain)
        shared_state = torch.ones(self._chain_rows, n_hidden + 1, dtype=dtype)
        shared_state[:, :n_hidden] = torch.as_tensor(np.asarray(self.h_samples_)) - lam
        offsets = {"visible_offset": mu.to(dtype), "hidden_offset": lam} if self.centered else {}
        workspaces: dict[int, BatchWorkspace] = {}
        plan = []
        for stacked in batches:
            n_model = n_chain or len(stacked) // 2
            n_data = len(stacked) - n_model
            if n_data not in workspaces:
                state = shared_state if self.persistent else torch.ones(n_model, n_hidden + 1, dtype=dtype)
                workspaces[n_data] = BatchWorkspace(
                    weights,
                    n_data,
                    n_model,
                    k=self.k,
                    persistent=self.persistent,
                    learning_rate=float(self.learning_rate),
                    state=state,
                    model_weight=model_weight,
                    **offsets,
                )
            plan.append((workspaces[n_data], stacked, stacked[n_data:, :n_visible], n_model))
        for epoch in range(n_epochs):
            begin = time.perf_counter()
            self._one_epoch(plan, draw)
            if self.verbose:
                self._write_back(weights, shared_state)
                print(
                    f"[BernoulliRBM] Iteration {epoch + 1}, pseudo-likelihood = "
                    f"{self.score_samples(X).mean():.2f}, time = {time.perf_counter() - begin:.2f}s"
                )
        self._write_back(weights, shared_state)

    def _one_epoch(self, plan: list, draw: ThresholdDraw) -> None:
        k = self.k
        for start in range(0, len(plan), _BATCHES_PER_DRAW):
            chunk = plan[start : start + _BATCHES_PER_DRAW]
            widest = max(n_model for *_, n_model in chunk)
            thresholds_visible, thresholds_hidden = draw(len(chunk), widest)
            per_step_visible = thresholds_visible.flatten(0, 1).unbind(0)
            per_step_hidden = thresholds_hidden.flatten(0, 1).unbind(0)
            for i, (workspace, stacked, model_visible, n_model) in enumerate(chunk):
                tv, th = per_step_visible[i * k : (i + 1) * k], per_step_hidden[i * k : (i + 1) * k]
                if n_model < widest:  # a short last batch of CD-k
                    tv, th = [t[:n_model] for t in tv], [t[:n_model] for t in th]
                workspace.step(stacked, model_visible, tv, th)

    def _write_back(self, weights: torch.Tensor, state: torch.Tensor) -> None:
        """Back to scikit-learn's attributes: uncentered biases, binary chain states."""
        n_hidden, n_visible = self.n_components, self.n_features_in_
        mu, lam = self._offsets()
        stacked = weights.to(torch.float64)
        W = stacked[:n_hidden, :n_visible]
        self.components_ = np.asfortranarray(W.numpy())
        self.intercept_hidden_ = (stacked[:n_hidden, n_visible] - W @ mu).numpy()
        self.intercept_visible_ = (stacked[n_hidden, :n_visible] - lam * W.sum(dim=0)).numpy()
        if self.persistent:
            self.h_samples_ = (state[:, :n_hidden].to(torch.float64) + lam).numpy()

    def _generator(self, rng: np.random.RandomState) -> np.random.Generator:
        """The training's own generator, seeded once from ``rng`` (so from ``random_state``)."""
        if not hasattr(self, "_threshold_generator"):
            self._threshold_generator = np.random.default_rng(int(rng.randint(0, 2**31 - 1)))
        return self._threshold_generator

    def fit(self, X, y=None) -> BernoulliRBM:
        """Train on X (rows in [0, 1]) for ``n_iter`` epochs of ``batch_size`` batches, in order."""
        self._check_params()
        for attribute in ("n_features_in_", "_threshold_generator", "random_state_"):
            self.__dict__.pop(attribute, None)
        X = self._check_X(X)
        rng = check_random_state(self.random_state)
        self._initialise(X, rng)
        draw = self._logistic_draw(self._generator(rng))
        with single_thread():
            self._run_epochs(X, self.n_iter, draw, torch.float32)
        return self

    def partial_fit(self, X, y=None) -> BernoulliRBM:
        """One update on the batch X (initialising on the first call), as scikit-learn's; the
        persistent chains keep their ``n_chains`` (default ``batch_size``) rows."""
        self._check_params()
        X = self._check_X(X)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        if not hasattr(self, "components_"):
            self._initialise(X, self.random_state_)
        draw = self._logistic_draw(self._generator(self.random_state_))
        with single_thread():
            self._run_epochs(X, 1, draw, torch.float32, batch_size=len(X))
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    # ------------------------------------------------------------------------------ extras
    def filters_picture(self, image_shape: tuple[int, int], *, scale: int = 4):
        """The rows of W as a grid of ``image_shape`` pictures (each stretched to its own range)."""
        from deconvlab.tied.pictures import tile

        self._check_fitted()
        h, w = image_shape
        if h * w != self.n_features_in_:
            raise ValueError(f"image_shape={image_shape!r}: {h}x{w} != n_features_in_={self.n_features_in_}")
        return tile(np.asarray(self.components_).reshape(-1, h, w), scale=scale)

    @classmethod
    def from_sklearn(cls, fitted) -> BernoulliRBM:
        """This class holding a fitted scikit-learn ``BernoulliRBM``'s parameters and weights."""
        if not hasattr(fitted, "components_"):
            raise ValueError(f"fitted={fitted!r}: not a fitted BernoulliRBM (no components_)")
        params = {name: value for name, value in fitted.get_params().items() if name in cls._PARAMS}
        rbm = cls(**params)
        for name in cls._FITTED:
            setattr(rbm, name, np.array(getattr(fitted, name), dtype=np.float64))
        rbm.n_features_in_ = rbm.components_.shape[1]
        return rbm

    def to_sklearn(self):
        """A fitted ``sklearn.neural_network.BernoulliRBM`` with these weights (needs scikit-learn)."""
        from sklearn.neural_network import BernoulliRBM as SklearnRBM

        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k not in self._EXTRA_PARAMS}
        other = SklearnRBM(**params)
        for name in self._FITTED:
            setattr(other, name, np.copy(getattr(self, name)))
        other.n_features_in_ = self.n_features_in_
        other._n_features_out = self.n_components
        return other
