"""deconvlab.tied.BernoulliRBM against scikit-learn, enumeration, and an oracle written from the
definition (Hinton's practical guide; Tieleman 2008 for the persistent chain)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.special import expit, logit, logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from sklearn.pipeline import Pipeline

from deconvlab import arithmetic
from deconvlab.tied import BernoulliRBM


def _with_weights(n_visible, n_hidden, seed, **params) -> BernoulliRBM:
    """An RBM holding random weights (scale 1, so that every term matters)."""
    rng = np.random.default_rng(seed)
    rbm = BernoulliRBM(n_hidden, **params)
    rbm.n_features_in_ = n_visible
    rbm.components_ = rng.normal(size=(n_hidden, n_visible))
    rbm.intercept_hidden_ = rng.normal(size=n_hidden)
    rbm.intercept_visible_ = rng.normal(size=n_visible)
    rbm.h_samples_ = np.zeros((rbm.batch_size, n_hidden))
    return rbm


def _copy_weights(source, target):
    for name in ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_"):
        setattr(target, name, np.array(getattr(source, name), dtype=np.float64))
    target.n_features_in_ = np.asarray(source.components_).shape[1]
    return target


# ------------------------------------------------------------------------------ up W, down W^T
def test_conditionals_are_W_up_and_W_transpose_down():
    rbm = _with_weights(6, 4, seed=0)
    W, c, b = rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_
    v = np.random.default_rng(1).random((5, 6))
    h = np.random.default_rng(2).random((5, 4))
    # column-vector formulas, one sample at a time: sigmoid(W v + c), sigmoid(W^T h + b)
    up = np.stack([expit(W @ v_i + c) for v_i in v])
    down = np.stack([expit(W.T @ h_i + b) for h_i in h])
    np.testing.assert_allclose(rbm.hidden_probabilities(v), up, rtol=1e-12)
    np.testing.assert_allclose(rbm.visible_probabilities(h), down, rtol=1e-12)
    np.testing.assert_allclose(rbm.reconstruct(v), rbm.visible_probabilities(up), rtol=1e-12)


def test_rbm_is_a_conv_rbm_whose_filter_covers_the_image():
    """Down with W^T is deconvlab.arithmetic's conv_transpose with W as 2x3 filters over a 2x3 image,
    and its explicit matrix: W is the conv matrix, the reconstruction applies its transpose."""
    rbm = _with_weights(6, 4, seed=3)
    W = rbm.components_
    filters = W.reshape(4, 1, 2, 3)  # conv layout (out = hidden, in = 1 channel, 2, 3)
    h = np.random.default_rng(4).random((3, 4))
    through_transpose = arithmetic.conv_transpose(h[:, :, None, None], filters)  # (3, 1, 2, 3)
    expected = expit(through_transpose.reshape(3, 6) + rbm.intercept_visible_)
    np.testing.assert_allclose(rbm.visible_probabilities(h), expected, rtol=1e-10)
    C = arithmetic.conv_matrix((1, 2, 3), filters).toarray()  # (4 hidden, 6 visible)
    np.testing.assert_allclose(C, W, rtol=1e-12)
    np.testing.assert_allclose(
        rbm.visible_probabilities(h), expit(h @ C + rbm.intercept_visible_), rtol=1e-10
    )


# ------------------------------------------------------------------- enumeration of a tiny RBM
def _enumerate(rbm):
    """All states of a tiny RBM: visible (16, 4), hidden (8, 3), -E(v, h) as a (16, 8) table."""
    n_hidden, n_visible = rbm.components_.shape
    V = np.array(list(itertools.product([0, 1], repeat=n_visible)), dtype=float)
    H = np.array(list(itertools.product([0, 1], repeat=n_hidden)), dtype=float)
    W, c, b = rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_
    minus_energy = (V @ b)[:, None] + (H @ c)[None, :] + V @ W.T @ H.T
    return V, H, minus_energy


def test_free_energy_matches_enumeration_on_4_visible_3_hidden():
    rbm = _with_weights(4, 3, seed=5)
    V, _, minus_energy = _enumerate(rbm)
    F = rbm.free_energy(V)
    np.testing.assert_allclose(F, -logsumexp(minus_energy, axis=1), rtol=1e-12)
    log_p = logsumexp(minus_energy, axis=1) - logsumexp(minus_energy)  # log p(v), exact
    # free-energy differences are log-probability ratios: F(v') - F(v) = log p(v) - log p(v')
    np.testing.assert_allclose(F[None, :] - F[:, None], log_p[:, None] - log_p[None, :], atol=1e-12)


def test_conditionals_match_enumeration():
    rbm = _with_weights(4, 3, seed=6)
    V, H, minus_energy = _enumerate(rbm)
    p_h_given_v = np.exp(minus_energy - logsumexp(minus_energy, axis=1, keepdims=True))  # (16, 8)
    np.testing.assert_allclose(rbm.hidden_probabilities(V), p_h_given_v @ H, rtol=1e-12)
    p_v_given_h = np.exp(minus_energy - logsumexp(minus_energy, axis=0, keepdims=True))  # columns
    np.testing.assert_allclose(rbm.visible_probabilities(H), p_v_given_h.T @ V, rtol=1e-12)


def test_exact_pseudo_likelihood_matches_enumeration():
    rbm = _with_weights(4, 3, seed=7)
    V, _, minus_energy = _enumerate(rbm)
    log_p = dict(zip(map(tuple, V), logsumexp(minus_energy, axis=1), strict=True))  # unnormalised
    expected = []
    for v in V:
        total = 0.0
        for i in range(4):
            other = v.copy()
            other[i] = 1 - other[i]
            total += log_p[tuple(v)] - np.logaddexp(log_p[tuple(v)], log_p[tuple(other)])
        expected.append(total)
    np.testing.assert_allclose(rbm.pseudo_likelihood(V), expected, rtol=1e-12)


# -------------------------------------------------------------------- scikit-learn, like for like
def test_score_samples_is_sklearns_with_the_same_weights_and_bits():
    ours = _with_weights(12, 5, seed=8, random_state=3)
    sk = _copy_weights(ours, SklearnRBM(n_components=5, random_state=3))
    X = (np.random.default_rng(9).random((40, 12)) < 0.4).astype(float)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(ours.free_energy(X), sk._free_energy(X), rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X), sk.transform(X), rtol=1e-12)
    # the stochastic score is an unbiased estimate of the exact one (n * the mean over bits)
    scores = [ours.set_params(random_state=seed).score_samples(X) for seed in range(100)]
    np.testing.assert_allclose(np.mean(scores), ours.pseudo_likelihood(X).mean(), rtol=0.05)


def test_gibbs_draws_sklearns_samples():
    ours = _with_weights(12, 5, seed=10, random_state=4)
    sk = _copy_weights(ours, SklearnRBM(n_components=5, random_state=4))
    X = (np.random.default_rng(11).random((8, 12)) < 0.5).astype(float)
    for _ in range(3):  # both advance their random_state_ the same way
        np.testing.assert_array_equal(ours.gibbs(X), sk.gibbs(X))


def _reference_training(
    X, W, c, b, state, uniforms, *, learning_rate, batch_size, k, persistent, n_chains, mu=None, lam=0.0
):
    """Contrastive divergence from the definition, in NumPy, one batch at a time.

    ``uniforms(m)`` gives, per batch, visible uniforms (k, m, n_visible) then hidden ones
    (k, m, n_hidden). PCD (Tieleman 2008): the chain continues from ``state``; CD-k restarts it
    from a hidden sample of the data. Each model row counts w = batch_size / n_chains data rows (1
    in scikit-learn). Centered RBM (Melchior, Fischer & Wiskott 2016, offsets mu and lam): the
    energy is -(v - mu) W^T (h - lam) - b'.v - c'.h, so p(h|v) = sigmoid(W (v - mu) + c') and
    p(v|h) = sigmoid(W^T (h - lam) + b'), with c' = c + W mu and b' = b + W^T lam; the update is
    lr / n * (sum_data (h - lam)(v - mu)^T - w sum_model ...) for W, and the plain differences of
    sums of h and v for c' and b'. With mu = lam = 0 this is the ordinary RBM.
    """
    W, state = W.copy(), state.copy()
    mu = np.zeros(X.shape[1]) if mu is None else mu
    c, b = c + W @ mu, b + W.T @ (lam * np.ones(len(W)))  # to the centered biases
    weight = batch_size / n_chains
    for start in range(0, len(X), batch_size):
        v_data = X[start : start + batch_size]
        m = n_chains if persistent else len(v_data)
        u_v, u_h = (u[:, :m] for u in uniforms(n_chains))  # a short CD batch: the first rows
        h_data = expit((v_data - mu) @ W.T + c)
        h = state if persistent else (u_h[0] < h_data).astype(float)
        for j in range(k):
            v_model = (u_v[j] < expit((h - lam) @ W + b)).astype(float)
            if j < k - 1:
                h = (u_h[j + (0 if persistent else 1)] < expit((v_model - mu) @ W.T + c)).astype(float)
        h_model = expit((v_model - mu) @ W.T + c)
        if persistent:
            state = (u_h[k - 1] < h_model).astype(float)
        rate = learning_rate / len(v_data)
        W += rate * ((h_data - lam).T @ (v_data - mu) - weight * (h_model - lam).T @ (v_model - mu))
        c += rate * (h_data.sum(0) - weight * h_model.sum(0))
        b += rate * (v_data.sum(0) - weight * v_model.sum(0))
    return W, c - W @ mu, b - W.T @ (lam * np.ones(len(W))), state


def _uniform_stream(rng, n_visible, n_hidden, k):
    """One batch's uniforms for m chains: visible (k, m, n_visible), then hidden (k, m, n_hidden)."""
    return lambda m: (rng.uniform(size=(k, m, n_visible)), rng.uniform(size=(k, m, n_hidden)))


def _draw_from(stream):
    """Our training's threshold source fed by a NumPy stream: logits of the same uniforms."""

    def draw(n_batches, m):
        pairs = [stream(m) for _ in range(n_batches)]
        return tuple(torch.as_tensor(logit(np.stack(u))) for u in zip(*pairs, strict=True))

    return draw


def test_reference_training_is_sklearns_pcd():
    """The oracle, fed scikit-learn's random numbers in its order, reproduces sklearn's fit."""
    X = np.random.default_rng(12).random((25, 6))  # 3 batches, the last one short
    sk = SklearnRBM(n_components=4, learning_rate=0.1, batch_size=10, n_iter=1, random_state=0).fit(X)
    rng = np.random.RandomState(0)
    W0 = rng.normal(0, 0.01, (4, 6))
    W, c, b, state = _reference_training(
        X, W0, np.zeros(4), np.zeros(6), np.zeros((10, 4)), _uniform_stream(rng, 6, 4, k=1),
        learning_rate=0.1, batch_size=10, k=1, persistent=True, n_chains=10,
    )  # fmt: skip
    np.testing.assert_allclose(W, sk.components_, rtol=1e-10)
    np.testing.assert_allclose(c, sk.intercept_hidden_, rtol=1e-10)
    np.testing.assert_allclose(b, sk.intercept_visible_, rtol=1e-10)
    np.testing.assert_array_equal(state, sk.h_samples_)


@pytest.mark.parametrize(
    "k, persistent, n_chains, centered",
    [
        (1, True, None, False),
        (3, True, None, False),
        (2, True, 7, False),
        (1, False, None, False),
        (3, False, None, False),
        (1, True, None, True),
        (2, True, 7, True),
        (2, False, None, True),
    ],
)
def test_training_loop_equals_the_reference(k, persistent, n_chains, centered):
    X = np.random.default_rng(13).random((25, 6))
    rbm = _with_weights(6, 4, seed=14, batch_size=10, learning_rate=0.1, k=k, persistent=persistent,
                        n_chains=n_chains, centered=centered)  # fmt: skip
    rbm.visible_offset_ = X.mean(axis=0)
    offsets = {"mu": X.mean(axis=0), "lam": 0.5} if centered else {}
    rbm.components_ *= 0.1
    chains = n_chains or 10
    rbm.h_samples_ = (np.random.default_rng(15).random((chains, 4)) < 0.5).astype(float)
    expected = _reference_training(
        X, rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_, rbm.h_samples_,
        _uniform_stream(np.random.RandomState(16), 6, 4, k), learning_rate=0.1, batch_size=10, k=k,
        persistent=persistent, n_chains=chains, **offsets,
    )  # fmt: skip
    rbm._run_epochs(X, 1, _draw_from(_uniform_stream(np.random.RandomState(16), 6, 4, k)), torch.float64)
    np.testing.assert_allclose(rbm.components_, expected[0], rtol=1e-10)
    np.testing.assert_allclose(rbm.intercept_hidden_, expected[1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rbm.intercept_visible_, expected[2], rtol=1e-10, atol=1e-14)
    if persistent:
        np.testing.assert_array_equal(rbm.h_samples_, expected[3])


def test_fit_starts_from_sklearns_initial_weights():
    X = np.random.default_rng(17).random((30, 8))
    ours = BernoulliRBM(5, n_iter=0, random_state=2).fit(X)
    sk = SklearnRBM(5, n_iter=0, random_state=2).fit(X)
    np.testing.assert_array_equal(ours.components_, sk.components_)


# ----------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    return X[:400], X[400:600]


@pytest.mark.parametrize("params", [{}, {"persistent": False, "k": 2}, {"n_chains": 50}, {"centered": True}])
def test_training_lowers_reconstruction_error_and_raises_pseudo_likelihood(digits, params):
    train, held_out = digits
    untrained = BernoulliRBM(32, learning_rate=0.05, n_iter=0, random_state=0, **params).fit(train)
    trained = BernoulliRBM(32, learning_rate=0.05, n_iter=8, random_state=0, **params).fit(train)

    def error(rbm):
        return np.mean((rbm.reconstruct(held_out) - held_out) ** 2)

    assert error(trained) < 0.5 * error(untrained)
    assert trained.pseudo_likelihood(held_out).mean() > untrained.pseudo_likelihood(held_out).mean() + 10


def test_partial_fit_is_one_update_of_the_whole_batch():
    X = np.random.default_rng(18).random((7, 6))
    a = BernoulliRBM(4, batch_size=3, random_state=5).partial_fit(X)
    assert a.h_samples_.shape == (3, 4)  # the chain keeps batch_size rows, as scikit-learn's
    b = BernoulliRBM(4, batch_size=3, random_state=5).partial_fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert not np.allclose(a.components_, BernoulliRBM(4, n_iter=0, random_state=5).fit(X).components_)


def test_swaps_into_a_sklearn_pipeline(digits):
    from sklearn.base import clone

    train, _ = digits
    labels = np.arange(len(train)) % 10
    rbm = BernoulliRBM(16, n_iter=2, random_state=0)
    pipeline = Pipeline([("rbm", rbm), ("logistic", LogisticRegression(max_iter=200))]).fit(train, labels)
    features = BernoulliRBM(16, n_iter=2, random_state=0).fit_transform(train)
    direct = LogisticRegression(max_iter=200).fit(features, labels)
    np.testing.assert_array_equal(pipeline.predict(train), direct.predict(features))
    assert clone(rbm).get_params() == rbm.get_params()
    np.testing.assert_allclose(rbm.to_sklearn().transform(train), rbm.transform(train), rtol=1e-12)
    back = BernoulliRBM.from_sklearn(rbm.to_sklearn())
    assert back.get_params() == rbm.get_params()  # scikit-learn's parameters, ours at their defaults
    np.testing.assert_array_equal(back.components_, rbm.components_)


def test_filters_picture_tiles_every_hidden_unit():
    rbm = _with_weights(64, 10, seed=19)
    picture = rbm.filters_picture((8, 8), scale=2)
    assert picture.size == (2 * (4 * 9 - 1), 2 * (3 * 9 - 1))  # 10 filters: 4 columns, 3 rows
    first = np.asarray(picture)[: 2 * 8 : 2, : 2 * 8 : 2] / 255.0
    W0 = rbm.components_[0].reshape(8, 8)
    np.testing.assert_allclose(first, (W0 - W0.min()) / np.ptp(W0), atol=1 / 255)


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({"n_components": 0}, np.zeros((2, 3)), "n_components=0"),
        ({"learning_rate": -1.0}, np.zeros((2, 3)), "learning_rate=-1.0"),
        ({"persistent": False, "n_chains": 5}, np.zeros((2, 3)), "n_chains=5"),
        ({}, np.full((2, 3), 2.0), r"lie in \[0, 1\].*max 2"),
        ({}, np.zeros(3), r"2-D array.*\(3,\)"),
    ],
)
def test_bad_input_raises_a_value_error_that_says_why(params, X, message):
    with pytest.raises(ValueError, match=message):
        BernoulliRBM(**params).fit(X)


def test_width_mismatch_and_unfitted_use_raise():
    with pytest.raises(ValueError, match="not fitted"):
        BernoulliRBM().transform(np.zeros((1, 3)))
    rbm = BernoulliRBM(2, n_iter=1).fit(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="has 5 features.*fitted with 3"):
        rbm.transform(np.zeros((1, 5)))
