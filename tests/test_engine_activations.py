"""Activations beyond ReLU under deconvnet and guided: the policy of ``deconvlab.engine.rules``.

Rectifier-like activations take the rule with ``f`` their input; sigmoid gates are constants of the
forward pass; anything else is refused by name; ``strict=True`` refuses all but ReLU. Checked on
hand-computed cases, between the two engines, and on torchvision's mobilenet_v3_small and efficientnet_b0
against an oracle written the slow way (module hooks on a copy of the model).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deconvlab.engine import project

RECTIFIERS = {
    "ReLU6": lambda: nn.ReLU6(),
    "ReLU6-inplace": lambda: nn.ReLU6(inplace=True),
    "Hardtanh(0, 6)": lambda: nn.Hardtanh(0.0, 6.0),
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
    "LeakyReLU-negative-slope-inplace": lambda: nn.LeakyReLU(-0.5, inplace=True),
    "PReLU": lambda: nn.PReLU(),
    "RReLU": lambda: nn.RReLU(),
    "ELU-inplace": lambda: nn.ELU(inplace=True),
    "CELU": lambda: nn.CELU(),
    "SELU": lambda: nn.SELU(),
    "GELU": lambda: nn.GELU(),
    "GELU-tanh": lambda: nn.GELU(approximate="tanh"),
    "SiLU-inplace": lambda: nn.SiLU(inplace=True),
    "Hardswish-inplace": lambda: nn.Hardswish(inplace=True),
    "Mish": lambda: nn.Mish(),
}


class Call(nn.Module):
    """A functional activation, called in ``forward`` (the mirror engine cannot follow it)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


FUNCTIONAL_RECTIFIERS = {
    "F.relu6": lambda x: F.relu6(x),
    "F.hardtanh(0, 6)": lambda x: F.hardtanh(x, min_val=0.0, max_val=6.0),
    "F.leaky_relu_": lambda x: F.leaky_relu_(x, -0.5),
    "F.elu": lambda x: F.elu(x),
    "torch.selu": lambda x: torch.selu(x),
    "F.gelu": lambda x: F.gelu(x),
    "F.silu-inplace": lambda x: F.silu(x, inplace=True),
    "F.hardswish": lambda x: F.hardswish(x),
    "F.mish": lambda x: F.mish(x),
}


def probe(activation: nn.Module) -> nn.Sequential:
    """1x2 image -> identity conv (f = the pixels) -> activation -> 1x1 conv to channels (+1, -1):
    a unit of channel 0 sends R = +1 down to the activation at its position, channel 1 R = -1."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), activation, nn.Conv2d(1, 2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[2].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    return model.eval()


PIXELS = torch.tensor([[[[-1.0, 2.0]]]])  # f = (-1, 2)
PROBE_UNITS = [[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 1, 0, 1]]
# by hand, each unit's projection (the two pixels), from R = +1 (channel 0) or -1 (channel 1) at the unit:
# deconvnet max(R, 0); guided 1(f > 0) max(R, 0), with f = (-1, 2): whatever the activation's own slope
HAND = {
    "deconvnet": [[1, 0], [0, 1], [0, 0], [0, 0]],
    "guided": [[0, 0], [0, 1], [0, 0], [0, 0]],
}


@pytest.mark.parametrize("name", list(RECTIFIERS))
@pytest.mark.parametrize("rule", list(HAND))
@pytest.mark.parametrize("engine", ["autograd", "mirror"])
def test_rectifier_modules_take_the_rule_with_f_their_input(name, rule, engine):
    model = probe(RECTIFIERS[name]())
    result = project(model, PIXELS, "2", PROBE_UNITS, rule=rule, engine=engine, seed="one")
    torch.testing.assert_close(result[:, 0, 0], torch.tensor(HAND[rule], dtype=torch.float32), rtol=0, atol=0)
    function = result.projection_info.activations[0][1]
    assert result.projection_info.activations == (("1", function, "rectifier"),)


@pytest.mark.parametrize("name", list(FUNCTIONAL_RECTIFIERS))
@pytest.mark.parametrize("rule", list(HAND))
def test_functional_rectifiers_take_the_rule_with_f_their_input(name, rule):
    model = probe(Call(FUNCTIONAL_RECTIFIERS[name]))
    result = project(model, PIXELS, "2", PROBE_UNITS, rule=rule, seed="one")
    torch.testing.assert_close(result[:, 0, 0], torch.tensor(HAND[rule], dtype=torch.float32), rtol=0, atol=0)
    assert [policy for *_, policy in result.projection_info.activations] == ["rectifier"]


@pytest.mark.parametrize("name", ["GELU", "SiLU-inplace", "ELU-inplace"])
@pytest.mark.parametrize("engine", ["autograd", "mirror"])
def test_gradient_rule_takes_the_plain_gradient_of_every_activation(name, engine):
    model = probe(RECTIFIERS[name]())
    result = project(model, PIXELS, "2", PROBE_UNITS, rule="gradient", engine=engine, seed="one")
    clean = probe(RECTIFIERS[name]())
    clean[1].inplace = False  # the reference: torch's own gradient, out of place
    for row, (_, channel, _, x) in zip(result, PROBE_UNITS, strict=True):
        pixels = PIXELS.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(clean(pixels)[0, channel, 0, x], pixels)
        torch.testing.assert_close(row, expected[0])
    assert result.projection_info.activations[0][2] == "gradient"


@pytest.mark.parametrize("engine", ["autograd", "mirror"])
def test_strict_refuses_every_activation_but_relu_by_name(engine):
    model = probe(nn.SiLU())
    with pytest.raises(
        ValueError, match=r"silu \(in module '1'\).*strict=True" if engine == "autograd" else "'1'"
    ):
        project(model, PIXELS, "2", PROBE_UNITS, engine=engine, strict=True)


class Gated(nn.Module):
    """conv -> squeeze-excitation (torchvision's: pool, fc, ReLU, fc, sigmoid or hardsigmoid, scale * x)."""

    def __init__(self, scale_activation=nn.Sigmoid) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.se = torchvision.ops.SqueezeExcitation(4, 2, scale_activation=scale_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


@pytest.mark.parametrize("gate", [nn.Sigmoid, nn.Hardsigmoid])
@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
@pytest.mark.parametrize("engine", ["mirror", "autograd"])
def test_gates_are_constants_of_the_forward_pass(gate, rule, engine):
    # the unit's signal passes the multiplication scaled by its channel's gate g, and none enters the
    # gate's branch: the projection is g times the conv's transpose at the unit (no ReLU on the path)
    torch.manual_seed(0)
    model = Gated(gate).eval()
    images = torch.randn(2, 2, 7, 7)
    units = torch.tensor([[0, 1, 2, 3], [1, 3, 0, 4]])
    result = project(model, images, "se", units, rule=rule, seed="one", engine=engine)
    with torch.no_grad():
        g = model.se._scale(model.conv(images))  # (N, C, 1, 1)
    for row, (image, channel, y, x) in zip(result, units.tolist(), strict=True):
        pixels = images[image : image + 1].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(
            model.conv(pixels)[0, channel, y, x] * g[image, channel, 0, 0], pixels
        )
        torch.testing.assert_close(row, expected[0])
    name = "sigmoid" if gate is nn.Sigmoid else "hardsigmoid"
    assert result.projection_info.activations == (("se.scale_activation", name, "gate"),)


def test_a_sigmoid_that_is_no_gate_is_refused_by_name_unless_allow_vjp():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), Call(torch.sigmoid), nn.Conv2d(2, 1, 3)).eval()
    images = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"sigmoid \(in module '1'\).*not only used as a gate.*allow_vjp"):
        project(model, images, "2", [[0, 0, 1, 1]])
    result = project(model, images, "2", [[0, 0, 1, 1]], allow_vjp=True, seed="one")
    pixels = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(pixels)[0, 0, 1, 1], pixels)  # no ReLU: the gradient
    torch.testing.assert_close(result, expected)
    assert result.projection_info.activations == (("1", "sigmoid", "gradient"),)
    with pytest.raises(ValueError, match=r"module '1' \(Tanh\).*engine='autograd'"):
        project(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Tanh()), images, "1", [[0, 0, 0, 0]], engine="mirror")


def rectifier_chain() -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.SiLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(6, 8, 3), nn.Hardswish(), nn.Conv2d(8, 4, 3), nn.ReLU6(), nn.Flatten(), nn.Linear(4, 3),
    )  # fmt: skip
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_both_engines_implement_the_policy_identically(rule):
    model = rectifier_chain()
    images = torch.randn(2, 3, 11, 11)
    units = torch.tensor([[0, 1], [1, 2], [1, 0]])
    ours = {
        engine: project(model, images, "9", units, rule=rule, engine=engine)
        for engine in ("autograd", "mirror")
    }
    scale = float(ours["autograd"].abs().max())
    assert scale > 0
    torch.testing.assert_close(ours["mirror"], ours["autograd"], rtol=1e-5, atol=1e-6 * scale)
    info = [ours[engine].projection_info.activations for engine in ("autograd", "mirror")]
    policy = "gradient" if rule == "gradient" else "rectifier"
    assert (
        info[0] == info[1] == (("2", "silu", policy), ("5", "hardswish", policy), ("7", "hardtanh", policy))
    )


@pytest.mark.parametrize("engine", ["autograd", "mirror"])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_relu_networks_are_unchanged(engine, rule):
    # on a ReLU network the policy has nothing to do: identical to strict=True, the original definitions
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(5, 4, 3), nn.ReLU()
    )
    images = torch.randn(2, 3, 12, 12)
    units = torch.tensor([[0, 1, 1, 2], [1, 3, 0, 0]])
    default = project(model, images, "4", units, rule=rule, engine=engine)
    strict = project(model, images, "4", units, rule=rule, engine=engine, strict=True)
    assert torch.equal(default, strict) and default.abs().max() > 0
    assert default.projection_info.activations == ()


# ---- torchvision: the oracle, written the slow way ----------------------------------------------------

RECTIFIER_TYPES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.ELU, nn.Mish)


def oracle(model: nn.Module, images: torch.Tensor, layer: str, unit: tuple, rule: str) -> torch.Tensor:
    """The policy by module hooks on a copy without in-place operations: each rectifier module's input
    gradient replaced by the rule from its recorded input, each sigmoid gate's output detached."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    inputs_seen = {}

    def keep_input(module, args):
        inputs_seen[module] = args[0].detach()

    def by_rule(module, grad_input, grad_output):
        signal = grad_output[0].clamp(min=0)
        return (signal * (inputs_seen[module] > 0) if rule == "guided" else signal,)

    for module in model.modules():
        if isinstance(module, RECTIFIER_TYPES):
            module.register_forward_pre_hook(keep_input)
            module.register_full_backward_hook(by_rule)
        if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
            module.register_forward_hook(lambda module, args, output: output.detach())
    found = []
    dict(model.named_modules())[layer].register_forward_hook(
        lambda module, args, output: found.append(output)
    )
    pixels = images.clone().requires_grad_(True)
    model(pixels)
    (grad,) = torch.autograd.grad(found[0][(0, *unit)], pixels)
    return grad


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "name, layer", [("mobilenet_v3_small", "features.4"), ("efficientnet_b0", "features.3")]
)
@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_torchvision_mobile_networks_run_and_equal_the_oracle(name, layer, rule):
    torch.manual_seed(5)
    model = getattr(torchvision.models, name)().eval()
    images = torch.randn(1, 3, 64, 64)
    unit = (3, 1, 2)
    result = project(model, images, layer, [[0, *unit]], rule=rule, seed="one")
    expected = oracle(model, images, layer, unit, rule)
    assert expected.abs().max() > 0
    torch.testing.assert_close(result[0], expected[0], rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    policies = {policy for *_, policy in result.projection_info.activations}
    assert policies == {"rectifier", "gate"}
    mirrored = project(model, images, layer, [[0, *unit]], rule=rule, seed="one", engine="mirror")
    torch.testing.assert_close(mirrored[0], expected[0], rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert mirrored.projection_info.activations == result.projection_info.activations
