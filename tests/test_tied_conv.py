"""ConvRBM and TiedConvAutoencoder: down with the same W, checked against deconvlab.arithmetic's
conv_transpose, its explicit matrix transpose and the flipped-kernel full convolution, and the
ConvRBM's probabilities against enumeration of every state of tiny models."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import logsumexp

from deconvlab import arithmetic
from deconvlab.tied import ConvRBM, TiedConvAutoencoder


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    """Random inputs, the same on every run (sums of O(1) terms: float64 absolute tolerance 1e-12);
    one torch thread, as these tensors are tiny and a shared machine's threads only contend."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_conv_rbm(visible="binary", pool_size=None, n_filters=3, in_channels=2, kernel_size=3, seed=0):
    rbm = ConvRBM(in_channels, n_filters, kernel_size, visible=visible, pool_size=pool_size).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rbm.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return rbm


# --------------------------------------------------------------------- up with W, down with W
@pytest.mark.parametrize("visible", ["binary", "gaussian"])
def test_conv_rbm_goes_up_with_conv_and_down_with_its_transpose(visible):
    rbm = _random_conv_rbm(visible)
    W = rbm.weight.detach().numpy()
    v = torch.rand(2, 2, 7, 6, dtype=torch.float64)
    logits = arithmetic.conv(v.numpy(), W, rbm.hidden_bias.detach().numpy())
    np.testing.assert_allclose(rbm.hidden_logits(v).detach().numpy(), logits, rtol=1e-12, atol=1e-12)

    h = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    c = rbm.visible_bias.detach().numpy()[:, None, None]
    down = rbm.visible_logits(h).detach().numpy()
    # 1. conv_transpose with the same W (read as ConvTranspose2d's (in, out, k, k) layout)
    np.testing.assert_allclose(down, arithmetic.conv_transpose(h.numpy(), W) + c, rtol=1e-12, atol=1e-12)
    # 2. the full convolution with the flipped filters (Lee et al.'s formula)
    full = arithmetic.conv(h.numpy(), arithmetic.flipped_weight(W, 1), padding="full")
    np.testing.assert_allclose(down, full + c, rtol=1e-12, atol=1e-12)
    # 3. the explicit transpose of the conv's matrix: C^T h
    C = arithmetic.conv_matrix((2, 7, 6), W)
    np.testing.assert_allclose(
        down[0].ravel(), C.T @ h[0].numpy().ravel() + np.repeat(c.ravel(), 42), rtol=1e-12
    )
    expected_mean = 1 / (1 + np.exp(-down)) if visible == "binary" else down
    np.testing.assert_allclose(rbm.visible_mean(h).detach().numpy(), expected_mean, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- enumeration of tiny models
def _hidden_states(n_filters, size, pool_size):
    """Every hidden configuration of n_filters maps of size x size (at most one unit on per block)."""
    if not pool_size:
        bits = itertools.product([0.0, 1.0], repeat=n_filters * size * size)
        return torch.tensor(list(bits), dtype=torch.float64).reshape(-1, n_filters, size, size)
    n_blocks = n_filters * (size // pool_size) ** 2
    per_block = pool_size * pool_size + 1  # one unit on, or none
    states = []
    for choice in itertools.product(range(per_block), repeat=n_blocks):
        h = torch.zeros(
            n_filters, size // pool_size, size // pool_size, pool_size, pool_size, dtype=torch.float64
        )
        flat = h.view(n_blocks, pool_size * pool_size)
        for block, unit in enumerate(choice):
            if unit < pool_size * pool_size:
                flat[block, unit] = 1
        states.append(h.permute(0, 1, 3, 2, 4).reshape(n_filters, size, size))
    return torch.stack(states)


def _minus_energy_table(rbm, V, H):
    """-E(v, h) for every pair, straight from the definition."""
    c = rbm.visible_bias.detach()[:, None, None]
    logits = F.conv2d(V, rbm.weight.detach(), rbm.hidden_bias.detach())  # (nv, K, h, w)
    interaction = torch.einsum("akij,bkij->ab", logits, H)
    if rbm.visible == "binary":
        visible_term = (V * c).sum(dim=(1, 2, 3))
    else:
        visible_term = -0.5 * ((V - c) ** 2).sum(dim=(1, 2, 3))
    return (visible_term[:, None] + interaction).numpy()


@pytest.mark.parametrize(
    "visible, pool_size, n_filters",
    [("binary", None, 1), ("binary", 2, 2), ("gaussian", None, 1), ("gaussian", 2, 2)],
)
def test_conv_rbm_free_energy_and_conditionals_match_enumeration(visible, pool_size, n_filters):
    """Visible 1x3x3 (512 binary states), filter 2x2 -> hidden maps 2x2, pooled in one 2x2 block."""
    rbm = _random_conv_rbm(visible, pool_size, n_filters=n_filters, in_channels=1, kernel_size=2, seed=1)
    if visible == "binary":
        V = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64).view(-1, 1, 3, 3)
    else:
        V = torch.randn(20, 1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    H = _hidden_states(n_filters, 2, pool_size)
    table = _minus_energy_table(rbm, V, H)
    np.testing.assert_allclose(
        rbm.energy(V[:3], H[:3]).detach().numpy(), -np.diag(table[:3, :3]), rtol=1e-12, atol=1e-12
    )
    with torch.no_grad():
        F_v = rbm.free_energy(V).numpy()
        np.testing.assert_allclose(F_v, -logsumexp(table, axis=1), rtol=1e-12, atol=1e-12)
        p_h_given_v = np.exp(table - logsumexp(table, axis=1, keepdims=True))
        expected_h = np.einsum("ab,bkij->akij", p_h_given_v, H.numpy())
        np.testing.assert_allclose(rbm.hidden_probabilities(V).numpy(), expected_h, rtol=1e-10, atol=1e-14)
        if pool_size:
            any_on = H.amax(dim=(2, 3)).numpy()  # (states, K): the single block of each map
            expected_pool = (p_h_given_v @ any_on)[:, :, None, None]
            np.testing.assert_allclose(rbm.pool_probabilities(V).numpy(), expected_pool, rtol=1e-10)
        if visible == "binary":  # p(v|h) over the 512 visible states, each pixel's marginal
            p_v_given_h = np.exp(table - logsumexp(table, axis=0, keepdims=True))
            expected_v = np.einsum("ab,aij->bij", p_v_given_h, V[:, 0].numpy())
            np.testing.assert_allclose(rbm.visible_mean(H)[:, 0].numpy(), expected_v, rtol=1e-10)


def test_pooled_samples_have_one_unit_per_block_at_the_softmax_frequencies():
    rbm = _random_conv_rbm("binary", pool_size=2, n_filters=1, in_channels=1, kernel_size=2, seed=3)
    v = torch.rand(1, 1, 3, 3, dtype=torch.float64).expand(20000, 1, 3, 3)
    with torch.no_grad():
        h = rbm.sample_hidden(v, torch.Generator().manual_seed(4))
        p = rbm.hidden_probabilities(v[:1])
    assert h.sum(dim=(2, 3)).max() <= 1
    np.testing.assert_allclose(h.mean(dim=0).numpy(), p[0].numpy(), atol=0.015)


@pytest.mark.parametrize("visible, pool_size", [("binary", None), ("binary", 2), ("gaussian", None)])
def test_conv_rbm_training_lowers_reconstruction_error(visible, pool_size):
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().data[:200] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    if visible == "gaussian":
        images = (images - images.mean()) / images.std()
    rbm = ConvRBM(1, 8, 3, visible=visible, pool_size=pool_size)
    with torch.no_grad():
        before = float(((rbm.reconstruct(images) - images) ** 2).mean())
    rate = 2.0 if visible == "binary" else 0.2  # per hidden position (6x6 maps)
    history = rbm.fit(images, epochs=4, batch_size=20, learning_rate=rate, sparsity_target=0.1)
    assert history[-1] < 0.7 * before


def test_conv_rbm_gibbs_and_bad_input():
    rbm = ConvRBM(1, 2, 3, pool_size=2)
    v = torch.rand(2, 1, 6, 6)
    out = rbm.gibbs(v, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == v.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(ValueError, match=r"pool_size=2: the hidden maps are 5x5"):
        rbm.hidden_probabilities(torch.rand(1, 1, 7, 7))
    with pytest.raises(ValueError, match=r"v: expected \(N, 1, H, W\).*\(1, 3, 6, 6\)"):
        rbm.free_energy(torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="visible='poisson'"):
        ConvRBM(visible="poisson")
    with pytest.raises(ValueError, match="pool_size=None: this ConvRBM has no pooling units"):
        ConvRBM().pool_probabilities(torch.rand(1, 1, 6, 6))


# ------------------------------------------------------------------------------ the autoencoder
def _unpool_by_hand(pooled, switches, size):
    """Scatter each pooled value to its recorded flat position (the deconvnet's switches)."""
    n, k, h, w = size
    out = np.zeros((n, k, h * w))
    flat_values, flat_index = pooled.reshape(n, k, -1), switches.reshape(n, k, -1)
    for a, b in itertools.product(range(n), range(k)):
        out[a, b, flat_index[a, b]] = flat_values[a, b]
    return out.reshape(n, k, h, w)


@pytest.mark.parametrize("stride, padding, pool_size", [(1, 0, None), (2, 1, 2), (1, 1, 3)])
def test_autoencoder_decodes_with_the_transpose_of_its_encoder(stride, padding, pool_size):
    model = TiedConvAutoencoder(2, 3, 3, stride=stride, padding=padding, pool_size=pool_size).double()
    x = torch.rand(2, 2, 10, 9, dtype=torch.float64)
    W = model.weight.detach().numpy()
    with torch.no_grad():
        code = model.encode(x)
        y = model.decode(code).numpy()
    z = np.maximum(
        arithmetic.conv(x.numpy(), W, model.encoder_bias.detach().numpy(), stride=stride, padding=padding), 0
    )
    if pool_size:
        unpooled = _unpool_by_hand(code.features.numpy(), code.switches.numpy(), z.shape)
        kept = unpooled != 0  # every kept value is the maximum of its window
        np.testing.assert_allclose(unpooled[kept], z[kept], rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(code.features.numpy(), z, rtol=1e-12, atol=1e-12)
        unpooled = z
    padding_out = model.output_padding(code)
    expected = arithmetic.conv_transpose(
        unpooled, W, model.decoder_bias.detach().numpy(), stride=stride, padding=padding,
        output_padding=padding_out,
    )  # fmt: skip
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert y.shape == x.shape
    if stride == 1:  # the flipped-kernel full convolution, cropped by the padding
        full = arithmetic.conv(unpooled, arithmetic.flipped_weight(W, 1), padding="full")
        cropped = full[:, :, padding : full.shape[2] - padding, padding : full.shape[3] - padding]
        np.testing.assert_allclose(
            y, cropped + model.decoder_bias.detach().numpy()[:, None, None], rtol=1e-12
        )


def test_autoencoder_shares_one_tensor_so_one_step_moves_both_directions():
    model = TiedConvAutoencoder(1, 4, 3, pool_size=2).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    weights = [p for name, p in model.named_parameters() if p.ndim == 4]
    assert len(weights) == 1 and weights[0] is model.weight
    # the gradient of the tied weight is the sum of an encoder-only and a decoder-only gradient
    W_enc = model.weight.detach().clone().requires_grad_()
    W_dec = model.weight.detach().clone().requires_grad_()
    z = F.relu(F.conv2d(x, W_enc, model.encoder_bias))
    pooled, switches = F.max_pool2d(z, 2, return_indices=True)
    unpooled = F.max_unpool2d(pooled, switches, 2, output_size=z.shape[2:])
    untied = F.conv_transpose2d(unpooled, W_dec, model.decoder_bias)
    F.mse_loss(untied, x).backward()
    F.mse_loss(model(x), x).backward()
    torch.testing.assert_close(model.weight.grad, W_enc.grad + W_dec.grad)
    assert W_enc.grad.abs().sum() > 0 and W_dec.grad.abs().sum() > 0

    before = model.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    new_weight = before - 0.5 * (W_enc.grad + W_dec.grad)
    torch.testing.assert_close(model.weight.detach(), new_weight)
    with torch.no_grad():
        code = model.encode(x)
        z_new = F.relu(F.conv2d(x, new_weight, model.encoder_bias))
        torch.testing.assert_close(code.features, F.max_pool2d(z_new, 2))  # the encoder moved
        decoded = F.conv_transpose2d(model.unpool(code), new_weight, model.decoder_bias)
        torch.testing.assert_close(model.decode(code), decoded)  # and the decoder, the same way
        old = F.conv_transpose2d(model.unpool(code), before, model.decoder_bias)
        assert (model.decode(code) - old).abs().max() > 1e-3


def test_conv_rbm_shares_one_tensor_too():
    rbm = _random_conv_rbm()
    h = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    v = torch.rand(1, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.mul_(2)
        rbm.hidden_bias.zero_()
        rbm.visible_bias.zero_()
        torch.testing.assert_close(rbm.hidden_logits(v), F.conv2d(v, rbm.weight))
        torch.testing.assert_close(rbm.visible_logits(h), F.conv_transpose2d(h, rbm.weight))


def test_autoencoder_training_lowers_reconstruction_error():
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().data[:200] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    model = TiedConvAutoencoder(1, 8, 3, padding=1, pool_size=2)
    with torch.no_grad():
        before = float(F.mse_loss(model(images), images))
    history = model.fit(images, epochs=5, batch_size=20, learning_rate=0.01)
    assert history[-1] < 0.3 * before


def test_autoencoder_bad_input():
    with pytest.raises(ValueError, match="stride=0"):
        TiedConvAutoencoder(stride=0)
    with pytest.raises(ValueError, match=r"x: expected \(N, 1, H, W\)"):
        TiedConvAutoencoder()(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="pool_size=4: larger than the feature maps"):
        TiedConvAutoencoder(1, 2, 5, pool_size=4)(torch.rand(1, 1, 7, 7))
