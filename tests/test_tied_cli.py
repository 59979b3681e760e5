"""``deconvlab tied``: the page answers "does it use the transpose?" with numbers this run measured,
and those numbers agree with recomputation from the weights the run saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit
from typer.testing import CliRunner

from deconvlab import arithmetic
from deconvlab.cli import app
from deconvlab.tied import BernoulliRBM, TiedConvAutoencoder
from deconvlab.tied.showcase import digits_split, run_showcase


@pytest.fixture(scope="module")
def rbm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tied-rbm")
    result = CliRunner().invoke(
        app, ["tied", "--model", "rbm", "--data", "digits", "--out", str(out), "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_rbm_page_answers_with_the_runs_numbers(rbm_run):
    out, output = rbm_run
    for name in (
        "filters.png",
        "reconstructions.png",
        "samples.png",
        "index.html",
        "index.md",
        "summary.json",
    ):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    page = (out / "index.md").read_text()
    assert "## Does an RBM use the transpose?" in page and "Yes." in page
    assert f"{summary['numbers']['max_gap_transpose']:.1e}" in page
    assert summary["answer"] in output and summary["answer"] in (out / "index.html").read_text()

    # recompute the page's claim from the saved weights, independently of the run
    state = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
    W, c, b = (state[name].numpy() for name in ("components_", "intercept_hidden_", "intercept_visible_"))
    shown = digits_split(0)[1][:16]
    h = expit(shown @ W.T + c)
    down = expit(arithmetic.conv_transpose(h[:, :, None, None], W.reshape(-1, 1, 8, 8)).reshape(16, 64) + b)
    rbm = BernoulliRBM(100)
    for name, value in state.items():
        setattr(rbm, name, value.numpy())
    rbm.n_features_in_ = 64
    np.testing.assert_allclose(rbm.reconstruct(shown), down, rtol=1e-12)
    assert summary["numbers"]["max_gap_conv_transpose"] < 1e-12
    mse_after = float(np.mean((rbm.reconstruct(digits_split(0)[1]) - digits_split(0)[1]) ** 2))
    np.testing.assert_allclose(summary["numbers"]["mse"]["after"], mse_after, rtol=1e-12)
    assert summary["numbers"]["mse"]["after"] < summary["numbers"]["mse"]["before"]


def test_same_command_resumes_from_the_checkpoint(rbm_run):
    out, _ = rbm_run
    first = json.loads((out / "summary.json").read_text())
    second = run_showcase("rbm", "digits", out, epochs=2)
    assert "resumed" in second["facts"]["training"]
    assert second["numbers"]["mse"] == first["numbers"]["mse"]


def test_autoencoder_page_numbers_match_the_saved_weight(tmp_path):
    summary = run_showcase("autoencoder", "digits", tmp_path, epochs=1)
    assert "Does a tied autoencoder use the transpose?" in (tmp_path / "index.md").read_text()
    model = TiedConvAutoencoder(1, 16, 3, padding=1, pool_size=2).double()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"]
    model.load_state_dict({name: value.double() for name, value in state.items()})
    shown = torch.tensor(digits_split(0)[1][:16].reshape(-1, 1, 8, 8))
    with torch.no_grad():
        code = model.encode(shown)
        expected = arithmetic.conv_transpose(model.unpool(code).numpy(), model.weight.numpy(),
                                             model.decoder_bias.numpy(), padding=1)  # fmt: skip
        np.testing.assert_allclose(model.decode(code).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert summary["numbers"]["max_gap_conv_transpose"] < 1e-12
    assert summary["numbers"]["gradient_split"]["gap"] < 1e-12
    assert summary["numbers"]["mse"]["after"] < summary["numbers"]["mse"]["before"]


def test_crbm_page_on_builtin_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))
    summary = run_showcase("crbm", "builtin", tmp_path / "out", epochs=1, n_builtin=40)
    gaps = summary["numbers"]["gaps"]
    assert max(gaps["conv_transpose"], gaps["flipped_full_conv"], gaps["matrix_transpose"]) < 1e-10
    assert gaps["matrix_shape"] == [16 * 26 * 26, 32 * 32]
    assert summary["numbers"]["one_unit_per_block"] is True
    assert "Gaussian" in summary["title"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "dbn"], "model='dbn'"),
        (["--data", "mnist"], "data='mnist'"),
        (["--epochs", "0"], "epochs=0"),
    ],
)
def test_bad_options_exit_2_and_say_why(tmp_path, args, message):
    result = CliRunner().invoke(app, ["tied", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
