"""Sanity checks (deconvlab.analyses.sanity) against their definitions and hand-computed projections."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn

from deconvlab.analyses import sanity
from deconvlab.engine import project


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 5),
    )  # fmt: skip


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 2, 12, 12, generator=torch.Generator().manual_seed(1))


def reference_gray(magnitude: np.ndarray) -> np.ndarray:
    low, high = magnitude.min(), np.percentile(magnitude, 99)
    return np.clip((magnitude - low) / (high - low), 0, 1)


# --- the measures against their definitions -----------------------------------------------------------


def test_similarity_matches_scipy_and_scikit_image():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 16, 16))
    q = p + rng.normal(size=p.shape)
    q[:, :4] = np.round(q[:, :4])  # ties, averaged by both
    scores = sanity.similarity(p, q)
    np.testing.assert_allclose(scores["spearman"], spearmanr(p.sum(0).ravel(), q.sum(0).ravel()).statistic)
    magnitude_p, magnitude_q = np.abs(p).sum(0), np.abs(q).sum(0)
    np.testing.assert_allclose(
        scores["spearman_abs"], spearmanr(magnitude_p.ravel(), magnitude_q.ravel()).statistic
    )
    gray_p, gray_q = reference_gray(magnitude_p), reference_gray(magnitude_q)
    np.testing.assert_allclose(
        scores["ssim"], structural_similarity(gray_p, gray_q, data_range=1.0, win_size=7)
    )
    hogs = [hog(g, orientations=9, pixels_per_cell=(2, 2), cells_per_block=(2, 2)) for g in (gray_p, gray_q)]
    np.testing.assert_allclose(scores["hog"], np.corrcoef(*hogs)[0, 1])


def test_identical_maps_give_one_and_negated_maps_minus_one_in_sign_only():
    p = np.random.default_rng(1).normal(size=(3, 9, 9))
    for value in sanity.similarity(p, p).values():
        np.testing.assert_allclose(value, 1.0)
    flipped = sanity.similarity(p, -p)
    np.testing.assert_allclose(flipped["spearman"], -1.0)
    for name in ("spearman_abs", "ssim", "hog"):
        np.testing.assert_allclose(flipped[name], 1.0)


def test_a_constant_map_has_no_rank_correlation():
    scores = sanity.similarity(np.ones((8, 8)), np.random.default_rng(2).normal(size=(8, 8)))
    assert np.isnan(scores["spearman"]) and np.isnan(scores["spearman_abs"])


def test_similarity_rejects_maps_of_different_shapes():
    with pytest.raises(ValueError, match=r"p of shape \(2, 3\), q of shape \(3, 2\)"):
        sanity.similarity(np.zeros((2, 3)), np.zeros((3, 2)))


# --- randomising layers --------------------------------------------------------------------------------


def test_randomising_from_the_top_changes_exactly_those_layers_and_is_reproducible():
    model = small_net()
    steps = sanity.parametrised_layers(model, images(1), "6")[::-1]
    assert steps == ["6", "3", "0"]
    trained = copy.deepcopy(model.state_dict())
    for k in range(1, len(steps) + 1):
        work = sanity.randomise_layers(copy.deepcopy(model), steps[:k], seed=3)
        after = work.state_dict()
        changed = {name.rsplit(".", 1)[0] for name in trained if not torch.equal(trained[name], after[name])}
        assert changed == set(steps[:k])
        again = sanity.randomise_layers(copy.deepcopy(model), steps[:k], seed=3).state_dict()
        other = sanity.randomise_layers(copy.deepcopy(model), steps[:k], seed=4).state_dict()
        for name in trained:
            torch.testing.assert_close(again[name], after[name], rtol=0, atol=0)
        assert not torch.equal(other[f"{steps[0]}.weight"], after[f"{steps[0]}.weight"])


def test_a_redrawn_tensor_keeps_the_trained_mean_and_spread():
    model = nn.Linear(100, 50)
    with torch.no_grad():
        model.weight.mul_(3.0).add_(0.5)
    mean, std = model.weight.mean().item(), model.weight.std().item()
    drawn = sanity.randomise_layers(copy.deepcopy(model), [""], seed=0).weight
    assert abs(drawn.mean().item() - mean) < 4 * std / np.sqrt(drawn.numel())  # 4 standard errors
    np.testing.assert_allclose(drawn.std().item(), std, rtol=0.05)


def test_layers_above_the_unit_are_not_steps():
    assert sanity.parametrised_layers(small_net(), images(1), "4") == ["0", "3"]
    with pytest.raises(ValueError, match=r"layer='0': no module with parameters feeds it"):
        sanity.cascading_randomisation(
            nn.Sequential(nn.ReLU(), nn.Conv2d(2, 1, 1)), images(1), "0", [[0, 0, 0, 0]]
        )


def test_checks_run_on_copies_and_leave_the_model_as_it_was():
    model = small_net().train()
    model[0].weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    sanity.sanity_checks(model, images(2), "6", rules=["guided"])
    after = model.state_dict()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert all(module.training for module in model.modules())
    assert not model[0].weight.requires_grad and model[3].weight.requires_grad
    assert not any(module._forward_hooks or module._backward_hooks for module in model.modules())


# --- the checks' maps are projections of the randomised copies ----------------------------------------


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # a unit silenced: NaN in both
@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_each_step_projects_the_randomised_copy(mode):
    model, inputs = small_net(), images(2)
    units = sanity.default_units(model, inputs, "4")
    check = sanity.cascading_randomisation if mode == "cascading" else sanity.independent_randomisation
    result = check(model, inputs, "4", units, rules=["deconvnet", "gradient"], seed=5)
    assert result.steps == ("3", "0")
    for rule in ("deconvnet", "gradient"):
        trained = project(model, inputs, "4", units, rule=rule, seed="one").numpy()
        np.testing.assert_allclose(result.maps[rule][0], trained, rtol=1e-5, atol=1e-7)
        for k, step in enumerate(result.steps):
            redrawn = list(result.steps[: k + 1]) if mode == "cascading" else [step]
            work = sanity.randomise_layers(copy.deepcopy(model), redrawn, seed=5)
            expected = project(work, inputs, "4", units, rule=rule, seed="one").numpy()
            np.testing.assert_allclose(result.maps[rule][k + 1], expected, rtol=1e-5, atol=1e-7)
            for unit, (y0, y1, x0, x1) in enumerate(result.boxes):
                a, b = trained[unit, :, y0:y1, x0:x1], expected[unit, :, y0:y1, x0:x1]
                np.testing.assert_allclose(
                    result.scores[rule]["spearman"][k, unit],
                    spearmanr(a.sum(0).ravel(), b.sum(0).ravel()).statistic,
                    rtol=1e-6,
                )


def test_guided_backprop_after_randomising_the_top_layer_by_hand():
    """conv(1 -> 3, 3x3) -> ReLU -> conv(3 -> 1, 1x1), the unit at (y, x) of the top conv, seeded with 1.

    With trained kernels k_c, pre-activations f_c and a re-drawn top weight w'_c, the map in the unit's
    3x3 window is sum_c g_c k_c, where g_c = w'_c 1(f_c > 0) (gradient), max(w'_c, 0) 1(f_c > 0)
    (guided), max(w'_c, 0) (deconvnet): guided backprop keeps only the positive top weights of active
    channels, whatever their size. Here channel 0 is inactive with w' > 0, channel 1 active with w' > 0,
    channel 2 active with w' < 0, so the three rules give three different maps.
    """
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.Conv2d(3, 1, 1, bias=False))
    x = torch.randn(1, 1, 6, 6)
    y, xx = 2, 1
    result = sanity.cascading_randomisation(model, x, "2", [[0, 0, y, xx]], seed=4)
    assert result.steps == ("2", "0")
    assert result.boxes.tolist() == [[y, y + 3, xx, xx + 3]]
    w = sanity.randomise_layers(copy.deepcopy(model), ["2"], seed=4)[2].weight.detach().flatten().numpy()
    kernels = model[0].weight.detach()[:, 0].numpy()
    active = model[0](x).detach()[0, :, y, xx].numpy() > 0
    assert active.tolist() == [False, True, True] and (np.sign(w) == [1, 1, -1]).all()
    gates = {"gradient": w * active, "guided": np.maximum(w, 0) * active, "deconvnet": np.maximum(w, 0)}
    for rule, gate in gates.items():
        window = np.tensordot(gate, kernels, axes=1)
        expected = np.zeros((6, 6))
        expected[y : y + 3, xx : xx + 3] = window
        np.testing.assert_allclose(result.maps[rule][1, 0, 0], expected, rtol=1e-5, atol=1e-7)
        trained = result.maps[rule][0, 0, 0, y : y + 3, xx : xx + 3].ravel()
        reference = spearmanr(trained, window.ravel()).statistic
        np.testing.assert_allclose(result.scores[rule]["spearman"][0, 0], reference, rtol=1e-6)


def test_randomising_the_logits_changes_the_gradient():
    """Adebayo et al.: the gradient of a logit depends on that logit's weights (zfnet-mini, random)."""
    from deconvlab.models import create

    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=4)
    inputs = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = sanity.cascading_randomisation(model, inputs, "classifier.6", [[0, 1]], rules=["gradient"])
    assert result.steps[0] == "classifier.6" and result.steps[-1] == "features.0" and len(result.steps) == 8
    assert result.scores["gradient"]["spearman"][0, 0] < 0.5


# --- sensitivity ---------------------------------------------------------------------------------------


def test_sensitivity_pairs_are_the_similarities_of_the_projections():
    model, inputs = small_net(), images(3)
    result = sanity.sensitivity(model, inputs, "3", [0, 2], rules=["guided"])
    assert result.position == (1, 1)  # the centre of the 3x3 map
    units = [[n, c, 1, 1] for n in range(3) for c in (0, 2)]
    maps = project(model, inputs, "3", units, rule="guided", seed="one").numpy().reshape(3, 2, 2, 12, 12)
    np.testing.assert_allclose(result.maps["guided"], maps, rtol=1e-5, atol=1e-7)
    y0, y1, x0, x1 = result.box
    crop = maps[..., y0:y1, x0:x1]
    same_image = [sanity.similarity(crop[n, 0], crop[n, 1]) for n in range(3)]
    same_unit = [
        sanity.similarity(crop[i, c], crop[j, c]) for c in range(2) for i, j in [(0, 1), (0, 2), (1, 2)]
    ]
    for measure in sanity.MEASURES:
        np.testing.assert_allclose(result.same_image["guided"][measure], [s[measure] for s in same_image])
        np.testing.assert_allclose(result.same_unit["guided"][measure], [s[measure] for s in same_unit])


def test_sensitivity_needs_two_channels_and_two_images():
    with pytest.raises(ValueError, match=r"channels=\[1\]"):
        sanity.sensitivity(small_net(), images(2), "6", [1])


def test_bad_rules_are_named():
    with pytest.raises(ValueError, match=r"rules=\['guided', 'lrp'\]"):
        sanity.cascading_randomisation(small_net(), images(1), "6", [[0, 1]], rules=["guided", "lrp"])


# --- results as data and as figures --------------------------------------------------------------------


def test_json_holds_the_mean_of_each_step_and_the_figures_draw_them():
    result = sanity.sanity_checks(small_net(), images(2), "6", rules=["deconvnet", "gradient"])
    data = json.loads(json.dumps(result.to_json()))
    assert data["steps"] == ["6", "3", "0"] and data["units"] == result.cascading.units.tolist()
    assert [step["layer"] for step in data["cascading"]["gradient"]] == ["6", "3", "0"]
    for mode in ("cascading", "independent"):
        scores = getattr(result, mode).scores["deconvnet"]
        for k, step in enumerate(data[mode]["deconvnet"]):
            for measure in sanity.MEASURES:
                np.testing.assert_allclose(step[measure], np.nanmean(scores[measure][k]))
    assert data["sensitivity"]["channels"] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(
        data["sensitivity"]["gradient"]["same_unit"]["ssim"],
        result.sensitivity.same_unit["gradient"]["ssim"].mean(),
    )
    maps = sanity.maps_figure(result.cascading, unit=1)
    assert len(maps.axes) == 2 * 4
    curves = sanity.curves_figure(result.cascading)
    line = curves.axes[0].lines[1]  # spearman: deconvnet's curve, then gradient's
    np.testing.assert_allclose(line.get_ydata(), [s["spearman"] for s in data["cascading"]["gradient"]])
    assert len(sanity.sensitivity_figure(result.sensitivity).axes) == len(sanity.MEASURES)


# --- the command ---------------------------------------------------------------------------------------


def test_cli_writes_the_report_json_and_figures(tmp_path):
    from typer.testing import CliRunner

    from deconvlab.cli import app
    from deconvlab.cli.sanity import _images
    from deconvlab.models import create

    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    args = ["sanity", "--weights", str(tmp_path / "w.pt"), "--images", "2", "--rules", "gradient"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "sanity.json").read_text())
    assert data["layer"] == "classifier.6" and data["steps"][-1] == "features.0" and len(data["steps"]) == 8
    inputs = _images("builtin", model, 2)
    direct = sanity.cascading_randomisation(
        model.eval(), inputs, "classifier.6", data["units"], rules=["gradient"]
    )
    for step, expected in zip(data["cascading"]["gradient"], direct.to_json()["gradient"], strict=True):
        assert step["layer"] == expected["layer"]
        for measure in sanity.MEASURES:
            np.testing.assert_allclose(step[measure], expected[measure], rtol=1e-6)
    assert sorted(data["sensitivity"]) == ["channels", "gradient", "position"]
    for name in (
        "cascading-maps",
        "cascading-curves",
        "independent-maps",
        "independent-curves",
        "sensitivity",
    ):
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "out" / "index.html").read_text()
    assert "cascading-curves.png" in page and "classifier.6" in page
    bad = CliRunner().invoke(app, [*args[:3], "--rules", "guided,lrp", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "rules=['guided', 'lrp']" in bad.output
    few = CliRunner().invoke(app, [*args[:3], "--images", "1", "--out", str(tmp_path / "bad")])
    assert few.exit_code == 2 and "--images=1" in few.output
