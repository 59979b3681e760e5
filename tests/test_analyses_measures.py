"""The report's measures against references written from their definitions, scikit-learn and torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from deconvlab.analyses.correspondence import (
    correspondence_table,
    occlude,
    pairwise_sign_changes,
    random_boxes,
    sign_change,
)
from deconvlab.analyses.features import conv_layers, forward_with_features, penultimate_tap, recording
from deconvlab.analyses.filters import dominant_frequency, filter_rms, filter_stats
from deconvlab.analyses.invariance import invariance_sweep, rotate, scale, translate
from deconvlab.analyses.probes import fit_linear_probe, pooled_features


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )


# --- features ---------------------------------------------------------------------------------------


def test_taps_record_outputs_and_inputs_and_leave_no_hook():
    net = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    assert conv_layers(net) == ["0", "3"] and penultimate_tap(net) == "8:input"
    logits, feats = forward_with_features(net, x, ["0", "3", "8:input"])
    with torch.no_grad():
        conv0 = net[0](x)  # the copy is taken before the in-place ReLU rewrites the output
        hidden = net[7](net[6](net[5](net[4](net[3](net[2](net[1](conv0.clone()))))))).clone()
        torch.testing.assert_close(feats["0"], conv0)
        torch.testing.assert_close(feats["8:input"], hidden)
        torch.testing.assert_close(logits, net(x))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_unknown_tap_lists_valid_names_and_removes_hooks():
    net = small_cnn()
    with pytest.raises(ValueError, match=r"'nope'.*valid names: 0, 1"):
        with recording(net, ["0", "nope"]):
            pass
    assert all(not m._forward_hooks for m in net.modules())


# --- filters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cy", "cx"), [(0, 2), (3, 0), (2, 5), (4, 4)])
def test_dominant_frequency_of_a_plane_wave(cy, cx):
    # a 16x16 filter holding a whole number of cycles has its spectral peak exactly on the DFT grid
    k = 16
    yy, xx = np.mgrid[0:k, 0:k]
    wave = np.cos(2 * np.pi * (cy * yy + cx * xx) / k + 0.4)
    weight = np.stack([wave, 0.5 * wave])[None]  # two input channels, same wave
    np.testing.assert_allclose(dominant_frequency(weight, fft_size=64), [np.hypot(cy, cx) / k])


def test_dominant_frequency_of_short_filters_within_the_resolution_of_k_samples():
    k, x = 7, np.arange(7)
    for f, phase in itertools.product(np.linspace(0.08, 0.42, 12), [0.0, 1.0, 2.0]):
        weight = np.tile(np.cos(2 * np.pi * f * x + phase), (k, 1))[None, None]
        assert abs(dominant_frequency(weight)[0] - f) < 1 / k


def test_filter_stats_flags_dead_and_aliased_filters():
    yy, xx = np.mgrid[0:8, 0:8]
    low = np.cos(2 * np.pi * xx / 8)  # 0.125 cycles/pixel
    high = np.cos(2 * np.pi * 3 * xx / 8)  # 0.375 cycles/pixel
    weight = np.stack([low, high, 1e-4 * low])[:, None]
    stats = filter_stats(weight, stride=2, fft_size=8)  # no padding: whole cycles fall on DFT bins
    np.testing.assert_allclose(stats.rms, np.sqrt((weight.reshape(3, -1) ** 2).mean(1)))
    np.testing.assert_allclose(stats.frequency[:2], [0.125, 0.375])
    assert stats.nyquist == 0.25
    assert stats.dead.tolist() == [False, False, True]
    assert stats.aliased.tolist() == [False, True, False]
    assert "1 of 3 filters" in stats.aliasing_note()
    np.testing.assert_allclose(filter_rms(torch.ones(2, 3, 2, 2)), [1.0, 1.0])
    with pytest.raises(ValueError, match="stride"):
        filter_stats(weight, stride=0)


# --- correspondence ---------------------------------------------------------------------------------


def test_sign_change_matches_a_loop_over_pairs():
    rng = np.random.default_rng(0)
    eps = rng.integers(-1, 2, size=(5, 3, 2, 2)).astype(float) * rng.random((5, 3, 2, 2))
    flat = np.sign(eps.reshape(5, -1))
    expected = [
        sum(a != b for a, b in zip(flat[i], flat[j], strict=True)) / flat.shape[1]
        for i, j in itertools.combinations(range(5), 2)
    ]
    np.testing.assert_allclose(pairwise_sign_changes(eps), expected)
    mean, std = sign_change(eps)
    np.testing.assert_allclose([mean, std], [np.mean(expected), np.std(expected)])
    with pytest.raises(ValueError, match="at least 2 samples"):
        sign_change(eps[:1])


def test_correspondence_table_equals_direct_computation():
    net = small_cnn(1)
    images = torch.randn(4, 3, 8, 8)
    parts = {"eye": [(1, 3, 1, 3), (2, 4, 2, 4), (0, 2, 5, 7), (4, 6, 4, 6)]}
    draws = [random_boxes([(2, 2)] * 4, [(0, 8, 0, 8)] * 4, seed=seed) for seed in (3, 4)]
    rows = correspondence_table(net, images, parts, ["3", "8:input"], random_draws=draws)
    assert [(r["layer"], r["part"]) for r in rows] == [
        ("3", "eye"),
        ("8:input", "eye"),
        ("3", "random"),
        ("8:input", "random"),
    ]
    stages = {"3": net[:4], "8:input": net[:8]}

    def pair_changes(boxes, stage):
        occluded = images.clone()
        for i, (y0, y1, x0, x1) in enumerate(boxes):
            occluded[i, :, y0:y1, x0:x1] = 0.0
        with torch.no_grad():
            signs = torch.sign((stage(images).clamp_min(0) - stage(occluded).clamp_min(0)).flatten(1))
        return [float((signs[i] != signs[j]).double().mean()) for i, j in itertools.combinations(range(4), 2)]

    for row in rows:
        stage = stages[row["layer"]]
        if row["part"] == "eye":
            pairs = pair_changes(parts["eye"], stage)
        else:  # the control pools the 6 pairs of each of the 2 draws
            pairs = pair_changes(draws[0], stage) + pair_changes(draws[1], stage)
        np.testing.assert_allclose([row["mean"], row["std"]], [np.mean(pairs), np.std(pairs)], rtol=1e-6)


def test_random_boxes_stay_inside_their_regions_and_repeat_with_the_seed():
    regions = [(10, 30, 5, 25), (0, 64, 0, 64), (4, 6, 4, 6)]
    boxes = random_boxes([(6, 8), (6, 8), (6, 8)], regions, seed=1)
    assert boxes == random_boxes([(6, 8), (6, 8), (6, 8)], regions, seed=1)
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in zip(boxes[:2], regions[:2], strict=True):
        assert (y1 - y0, x1 - x0) == (6, 8) and ry0 <= y0 and y1 <= ry1 and rx0 <= x0 and x1 <= rx1
    assert boxes[2] == (2, 8, 1, 9)  # region smaller than the box: centred on it
    with pytest.raises(ValueError, match="one box per image"):
        occlude(torch.zeros(2, 3, 4, 4), boxes[:1])


# --- invariance -------------------------------------------------------------------------------------


def test_transforms_match_exact_pixel_moves():
    x = torch.randn(2, 3, 6, 6)
    shifted = torch.zeros_like(x)
    shifted[:, :, 2:] = x[:, :, :-2]
    torch.testing.assert_close(translate(x, 2), shifted)
    shifted = torch.zeros_like(x)
    shifted[:, :, :, :-1] = x[:, :, :, 1:]
    torch.testing.assert_close(translate(x, 0, -1), shifted)
    torch.testing.assert_close(rotate(x, 180), torch.flip(x, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, 270), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(scale(x, 1.0), x)
    # magnifying 6 pixels by 2 about the centre: output pixel 2 samples input position 2.25 on each axis
    zoom = scale(x, 2.0)
    centre = (x[..., 2, 2] * 9 + x[..., 2, 3] * 3 + x[..., 3, 2] * 3 + x[..., 3, 3]) / 16
    torch.testing.assert_close(zoom[..., 2, 2], centre)


def test_invariance_distances_equal_direct_computation():
    net = small_cnn(2)
    images, labels = torch.randn(3, 3, 8, 8), [0, 2, 1]
    values = [-2.0, 0.0, 1.0]
    curves = invariance_sweep(net, images, labels, "translation", values, ["0", "8:input"])
    assert curves.distances["0"].shape == (3, 3) and curves.true_probability.shape == (3, 3)
    np.testing.assert_allclose(curves.distances["0"][:, 1], 0.0, atol=1e-6)  # translation by 0
    with torch.no_grad():
        for j, dy in enumerate(values):
            moved = torch.zeros_like(images)
            if dy < 0:
                moved[:, :, : int(dy)] = images[:, :, -int(dy) :]
            else:
                moved[:, :, int(dy) :] = images[:, :, : 8 - int(dy)]
            for tap, stage in [("0", net[:1]), ("8:input", net[:8])]:
                # fresh copies of the layers' outputs, rectified: the in-place ReLU does that for stage 0
                expected = (stage(moved.clone()).clamp_min(0) - stage(images.clone()).clamp_min(0)).flatten(1)
                np.testing.assert_allclose(curves.distances[tap][:, j], expected.norm(dim=1), rtol=1e-5)
            probability = net(moved).softmax(1)[torch.arange(3), torch.tensor(labels)]
            np.testing.assert_allclose(curves.true_probability[:, j], probability, rtol=1e-5)
    with pytest.raises(ValueError, match="kind must be one of"):
        invariance_sweep(net, images, labels, "shear", values, ["0"])


# --- probes -----------------------------------------------------------------------------------------


def test_probe_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    assert sklearn
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (240,), generator=g)
    x[:, 0] += y
    x[:, 3] -= 0.7 * y
    l2 = 1e-2
    probe = fit_linear_probe(x, y, l2=l2)
    z = StandardScaler().fit_transform(x.numpy())
    reference = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(z, y.numpy())
    np.testing.assert_allclose(probe.probabilities(x).numpy(), reference.predict_proba(z), atol=1e-5)
    np.testing.assert_allclose(probe.weight.numpy(), reference.coef_, atol=1e-4)
    held_out = torch.randn(60, 12, generator=g, dtype=torch.float64)
    held_y = torch.randint(0, 4, (60,), generator=g)
    held_out[:, 0] += held_y
    scaled = StandardScaler().fit(x.numpy()).transform(held_out.numpy())
    assert probe.accuracy(held_out, held_y) == reference.score(scaled, held_y.numpy())


def test_pooled_features_average_quadrants():
    maps = torch.arange(32.0).view(1, 2, 4, 4)
    pooled = pooled_features(maps, pool=2)
    expected = maps.view(1, 2, 2, 2, 2, 2).mean(dim=(3, 5)).flatten(1)
    torch.testing.assert_close(pooled, expected)
    with pytest.raises(ValueError, match="one integer per row"):
        fit_linear_probe(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
