"""deconvlab.engine: the rules against Captum's hand-computed numbers and against Captum itself.

Reference numbers: /work/shared/REFERENCES.md ("Reference numbers for tests", Captum's
BasicModel_ConvNet_One_Conv, recomputed independently).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop
from torch import nn

from deconvlab.engine import project, strongest_units

EXPECTED = {
    "deconvnet": [[2, 3, 3, 1], [3, 5, 5, 2], [3, 5, 5, 2], [1, 2, 2, 1]],
    "guided": [[0, 1, 1, 1], [1, 3, 3, 2], [1, 3, 3, 2], [1, 2, 2, 1]],
    "gradient": [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]],
}
EXPECTED_PLUS_ONE = {
    "deconvnet": EXPECTED["deconvnet"],
    "guided": [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]],
    "gradient": [[1, 2, 2, 1], [1, 2, 2, 1], [1, 2, 2, 1], [0, 0, 0, 0]],
}


class OneConv(nn.Module):
    """Captum's BasicModel_ConvNet_One_Conv; ``relu`` chooses how its two ReLUs are called."""

    def __init__(self, relu: str = "modules") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.fc1 = nn.Linear(8, 4, bias=False)
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
            self.fc1.weight.copy_(torch.tensor([[1.0] * 5 + [-1.0] * 3] * 4))
        self.relu = relu
        if relu == "modules":
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        elif relu == "reused-inplace":
            self.relu1 = nn.ReLU(inplace=True)
        self.out = nn.Identity()  # the unit's layer: the output after the last ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.relu == "modules":
            x = self.fc1(self.relu1(x).view(-1, 8))
            return self.out(self.relu2(x))
        if self.relu == "reused-inplace":
            x = self.fc1(self.relu1(x).view(-1, 8))
            return self.out(self.relu1(x))
        if self.relu == "functional":
            return self.out(F.relu(self.fc1(F.relu(x).view(-1, 8))))
        if self.relu == "tensor-methods":
            return self.out(torch.relu(self.fc1(x.relu_().view(-1, 8))))
        raise AssertionError(self.relu)


REFERENCE_INPUT = torch.arange(16.0).view(1, 1, 4, 4)


@pytest.mark.parametrize("relu", ["modules", "reused-inplace", "functional", "tensor-methods"])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
@pytest.mark.parametrize("plus_one", [False, True])
def test_captum_hand_computed_reference(relu, rule, plus_one):
    model = OneConv(relu)
    inputs = REFERENCE_INPUT + (1.0 if plus_one else 0.0)
    result = project(model, inputs, "out", torch.tensor([[0, 0]]), rule=rule, seed="one")
    expected = (EXPECTED_PLUS_ONE if plus_one else EXPECTED)[rule]
    torch.testing.assert_close(result, torch.tensor([[expected]], dtype=torch.float32))


def test_activation_seed_scales_by_the_units_value():
    # the unit's value: fc row 0 applied to the rectified conv maps; linear in the seed for all three rules
    model = OneConv()
    value = model(REFERENCE_INPUT)[0, 0].item()
    assert value > 0
    for rule in EXPECTED:
        result = project(model, REFERENCE_INPUT, "out", [[0, 0]], rule=rule)
        torch.testing.assert_close(result[0, 0], value * torch.tensor(EXPECTED[rule], dtype=torch.float32))


class SmallCNN(nn.Module):
    """conv -> ReLU -> overlapping 3x3/2 max-pool -> conv -> ReLU -> conv, module ReLUs (Captum's case)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x))))))


CAPTUM = {"deconvnet": NeuronDeconvolution, "guided": NeuronGuidedBackprop, "gradient": NeuronGradient}


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("rule", list(CAPTUM))
@pytest.mark.parametrize("layer", ["relu2", "conv3"])
def test_equals_captum_neuron_methods(rule, layer):
    torch.manual_seed(0)
    model = SmallCNN()
    inputs = torch.randn(3, 3, 15, 15)
    neuron = (1, 2, 3)
    units = torch.tensor([[i, *neuron] for i in range(len(inputs))])
    ours = project(model, inputs, layer, units, rule=rule, seed="one")
    captum = CAPTUM[rule](model, getattr(model, layer))
    theirs = captum.attribute(inputs.clone().requires_grad_(True), neuron_selector=neuron).detach()
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("rule", list(CAPTUM))
def test_resnet18_equals_captum(rule):
    # torchvision's ResNet-18: residual additions (``out += identity``), BatchNorm, one in-place ReLU module
    # called twice per block; the mirror sends the signal down both branches of each addition
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    inputs = torch.randn(2, 3, 96, 96)
    units = torch.tensor([[0, 5, 2, 3], [1, 5, 2, 3]])
    theirs = CAPTUM[rule](model, model.layer3).attribute(inputs.clone().requires_grad_(True), (5, 2, 3))
    assert theirs.abs().max() > 0
    for engine in ("auto", "mirror", "autograd"):  # auto: the mirror runs (nothing refused)
        ours = project(model, inputs, "layer3", units, rule=rule, seed="one", engine=engine)
        assert (ours.projection_info.engine, ours.projection_info.mirror_refusal) == (
            "autograd" if engine == "autograd" else "mirror",
            "",
        )
        # float32 sums in another order: within 1e-6 of the largest value (measured: below 1e-6)
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-6 * float(theirs.abs().max()))


@pytest.mark.parametrize("engine", ["autograd", "mirror"])
def test_unit_activations_are_the_layers_values_at_the_units(engine):
    torch.manual_seed(2)
    model = SmallCNN()
    inputs = torch.randn(3, 3, 15, 15)
    units = torch.tensor([[2, 1, 0, 4], [0, 7, 3, 3], [2, 0, 6, 6], [1, 7, 5, 0]])
    result = project(model, inputs, "conv2", units, engine=engine, chunk_size=2)
    with torch.no_grad():
        maps = model.conv2(model.pool(model.relu1(model.conv1(inputs))))
    # float32 tolerance: the autograd engine forwards the images in groups, a different batch size
    torch.testing.assert_close(result.unit_activations, maps[tuple(units.T)], rtol=1e-6, atol=1e-6)


def test_strongest_units_are_the_argmax_per_image_and_channel():
    torch.manual_seed(1)
    model = SmallCNN()
    inputs = torch.randn(2, 3, 15, 15)
    units = strongest_units(model, inputs, "conv2", channels=[5, 0])
    with torch.no_grad():
        maps = model.conv2(model.pool(model.relu1(model.conv1(inputs))))
    assert units[:, :2].tolist() == [[0, 5], [0, 0], [1, 5], [1, 0]]
    for image, channel, y, x in units.tolist():
        assert maps[image, channel, y, x] == maps[image, channel].max()
