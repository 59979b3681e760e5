"""``deconvlab explain`` and ``deconvlab demo``: their numbers against torch and hand computation."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from deconvlab.cli import app

runner = CliRunner()
TRANSPOSES = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def explain_json(*args: str) -> dict:
    result = runner.invoke(app, ["explain", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_default_case_by_hand():
    """x = 1..5, w = 1,2,3, stride 2: x[i]*w[k] lands at 2i+k; padding 1 crops one cell each side.

    Uncropped: [1, 2, 3+2, 4, 6+3, 6, 9+4, 8, 12+5, 10, 15, 0]; cropped: [2, 5, 4, 9, 6, 13, 8, 17, 10, 15].
    """
    facts = explain_json()
    np.testing.assert_array_equal(facts["y"], [[[2, 5, 4, 9, 6, 13, 8, 17, 10, 15]]])
    assert facts["y_shape"] == [1, 1, 10]
    C_T = np.array(facts["matrix"])
    assert C_T.shape == (10, 5)
    np.testing.assert_array_equal(
        C_T[:4], [[2, 0, 0, 0, 0], [3, 1, 0, 0, 0], [0, 2, 0, 0, 0], [0, 3, 1, 0, 0]]
    )
    np.testing.assert_array_equal(C_T @ np.arange(1, 6), facts["y"][0][0])


def torch_gradient(u_shape, w, seed, conv_params):
    u = torch.zeros(u_shape, dtype=torch.float64, requires_grad=True)
    out = CONVS[len(u_shape) - 2](u, torch.from_numpy(w), **conv_params)
    padded = torch.zeros(out.shape, dtype=torch.float64)
    padded[tuple(slice(0, n) for n in seed.shape)] = torch.from_numpy(seed)
    (grad,) = torch.autograd.grad(out, u, padded)
    return grad.numpy()


def test_2d_edge_case_against_torch():
    """stride <= output_padding < dilation on axis 0, groups 2: y and the check equal torch."""
    args = ["--input", "3,4", "--kernel", "2,3", "--stride", "1,2", "--padding", "0,1"]
    args += ["--output-padding", "2,1", "--dilation", "3,2", "--in-channels", "2", "--out-channels", "4"]
    facts = explain_json(*args, "--groups", "2")
    x, w = np.array(facts["x"]), np.array(facts["w"])
    params = dict(stride=(1, 2), padding=(0, 1), output_padding=(2, 1), dilation=(3, 2), groups=2)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), **params).numpy()
    np.testing.assert_allclose(facts["y"], expected, rtol=1e-12)
    conv_params = {k: v for k, v in params.items() if k != "output_padding"}
    gradient = torch_gradient(expected.shape, w, x, conv_params)
    np.testing.assert_allclose(facts["check"]["gradient"], gradient, rtol=1e-12)
    np.testing.assert_allclose(gradient, expected, rtol=1e-12)
    assert facts["check"]["equal"] and max(facts["check"]["max_abs_difference"].values()) < 1e-9
    assert facts["matrix"] is None and facts["matrix_shape"] == [320, 24]


def test_3d_against_torch():
    facts = explain_json(
        "--input",
        "2,3,2",
        "--kernel",
        "2",
        "--stride",
        "2,1,2",
        "--padding",
        "0",
        "--output-padding",
        "1,0,0",
    )
    x, w = np.array(facts["x"]), np.array(facts["w"])
    params = dict(stride=(2, 1, 2), padding=0, output_padding=(1, 0, 0))
    expected = F.conv_transpose3d(torch.from_numpy(x), torch.from_numpy(w), **params).numpy()
    np.testing.assert_allclose(facts["y"], expected, rtol=1e-12)
    assert facts["check"]["equal"]


def test_direct_convolution_and_its_transpose():
    """conv of 1..6 with [1,2,3], stride 2, padding 1: windows (0,1,2), (2,3,4), (4,5,6) of [0,1..6,0]."""
    facts = explain_json("--direct", "--input", "6")
    np.testing.assert_array_equal(facts["y"], [[[0 + 2 + 6, 2 + 6 + 12, 4 + 10 + 18]]])
    np.testing.assert_array_equal(
        facts["matrix"], [[2, 3, 0, 0, 0, 0], [0, 1, 2, 3, 0, 0], [0, 0, 0, 1, 2, 3]]
    )
    # the transpose needs output_padding 1 to give back 6 = (3-1)*2 - 2 + 2 + 1 + 1
    assert facts["transpose_params"]["output_padding"] == 1
    w, seed = np.array(facts["w"]), np.array(facts["check"]["seed"])
    gradient = torch_gradient((1, 1, 6), w, seed, dict(stride=2, padding=1))
    np.testing.assert_allclose(facts["check"]["gradient"], gradient, rtol=1e-12)
    assert facts["check"]["equal"]


def test_text_output_has_every_part():
    result = runner.invoke(
        app,
        [
            "explain",
            "--input",
            "4",
            "--kernel",
            "2",
            "--stride",
            "2",
            "--padding",
            "0",
            "--output-padding",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "(4-1)*2 - 2*0 + 1*(2-1) + 0 + 1 = 8" in text
    assert "insert 1 zero(s) between the 4 inputs -> 7; pad 1 before, pad 1 after" in text
    call = "conv_transpose1d(x, w, stride=2, padding=0, output_padding=0, dilation=1, groups=1)"
    assert f"torch.nn.functional.{call}" in text
    assert "[[1 2 2 4 3 6 4 8]]" in text  # x[i] * [1, 2] placed at 2i, no overlap
    assert "EQUAL," in text and "NOT EQUAL" not in text


def test_bad_parameters_exit_with_the_rule():
    cases = [
        (["--input", "5,x"], "--input='5,x': expected an int or comma-separated ints"),
        (["--input", "5,6", "--kernel", "1,2,3"], "give 1 or 3 values"),
        (["--groups", "2", "--in-channels", "2", "--out-channels", "3"], "groups=2: must divide"),
        (["--input", "1", "--padding", "3"], "the output would be empty"),
        (["--output-padding", "2"], "output_padding=2: must be smaller than stride"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["explain", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.replace("│", " ").split()), (args, result.output)
