"""Both engines on float64, float32, float16 and bfloat16 models, channels_last or not: float32
projections equal to the float64 computation (Captum's, on a float64 copy of the same weights)."""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop
from torch import nn

from deconvlab.engine import project, strongest_units

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
ENGINES = ["autograd", "mirror"]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
CAPTUM = {"deconvnet": NeuronDeconvolution, "guided": NeuronGuidedBackprop, "gradient": NeuronGradient}


def in_dtype(model: nn.Module, inputs: torch.Tensor, dtype: torch.dtype, memory_format):
    """A copy of the model and the inputs in ``dtype`` and ``memory_format``, and the float64 copy of
    exactly those (rounded) weights and inputs: the reference computes on the same numbers."""
    low = copy.deepcopy(model).to(dtype).to(memory_format=memory_format)
    x = inputs.to(dtype).contiguous(memory_format=memory_format)
    return low, x, copy.deepcopy(low).double(), x.double()


def captum_reference(model64, x64, rule: str, layer: str, neuron) -> torch.Tensor:
    method = CAPTUM[rule](model64, dict(model64.named_modules())[layer])
    return method.attribute(x64.clone().requires_grad_(True), neuron_selector=neuron).detach()


def integer_net() -> tuple[nn.Sequential, torch.Tensor]:
    """Weights in {-1, 0, 1}, biases and pixels small integers: every value of the forward and backward
    pass is an integer below 256 in magnitude, exact in every dtype (bfloat16 has 8 significant bits).
    Generator seed 19 is one whose overlapping max-pool windows have no ties (checked below), so the
    switches do not depend on the kernel's tie-breaking."""
    generator = torch.Generator().manual_seed(19)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(3, 4, 2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16, 3),
    )  # fmt: skip
    with torch.no_grad():
        for module in (model[0], model[3], model[6]):
            module.weight.copy_(torch.randint(-1, 2, module.weight.shape, generator=generator))
            module.bias.copy_(torch.randint(-2, 3, module.bias.shape, generator=generator))
    return model.eval(), torch.randint(-4, 5, (2, 2, 7, 7), generator=generator).float()


def test_integer_net_is_exact_in_every_dtype():
    # the preconditions of the exact comparison below
    model, inputs = integer_net()
    model, inputs = model.double(), inputs.double()
    with torch.no_grad():
        below_pool = model[:2](inputs)
        windows = below_pool.unfold(2, 3, 2).unfold(3, 3, 2).flatten(-2).sort(-1, descending=True).values
        assert (windows[..., 0] > windows[..., 1]).all()  # no tie in any max-pool window
        values = [model[: k + 1](inputs).abs().max() for k in range(len(model))]
    assert max(values) < 256


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rule", list(CAPTUM))
@pytest.mark.parametrize("memory_format", list(FORMATS))
def test_every_dtype_equals_float64_exactly_on_integers(dtype, engine, rule, memory_format):
    # tolerance 0: every value is an integer that every dtype holds exactly, so rounding cannot enter
    model, inputs = integer_net()
    low, x, model64, x64 = in_dtype(model, inputs, dtype, FORMATS[memory_format])
    for layer, neuron, units in [("6", 1, [[0, 1], [1, 1]]), ("4", (2, 1, 0), [[0, 2, 1, 0], [1, 2, 1, 0]])]:
        ours = project(low, x, layer, units, rule=rule, engine=engine, seed="one")
        theirs = captum_reference(model64, x64, rule, layer, neuron)
        assert ours.dtype == torch.float32 and theirs.abs().max() > 0
        torch.testing.assert_close(ours.double(), theirs, rtol=0, atol=0)


def random_net() -> tuple[nn.Sequential, torch.Tensor]:
    """Random weights and a BatchNorm with non-trivial statistics; average pools only, so that under
    deconvnet with ``seed="one"`` the backward pass takes no decision from the forward pass (no switch,
    no ReLU mask) and two dtypes can only differ by rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 6, 3),
        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
    )  # fmt: skip
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 2.0)
    return model.eval(), torch.randn(2, 3, 12, 12)


# max |ours - float64| <= TOLERANCE * eps * max |float64|, eps the dtype's machine epsilon (float32's for a
# float64 model, whose float64 projections are rounded to float32 once). Each projection is a sum of
# products that passes about 8 stored roundings (BatchNorm scale, 2 transposed convolutions, 2 average
# pools, ReLU, Linear), each at most half an ulp of a value no larger than the largest: at most about
# 4 eps; measured on this machine: at most 1.8 eps (float32), 0.9 (float16), 0.8 (bfloat16). 8 leaves
# room for another BLAS's summation order.
TOLERANCE = 8


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("memory_format", list(FORMATS))
def test_every_dtype_equals_float64_within_its_precision(dtype, engine, memory_format):
    model, inputs = random_net()
    low, x, model64, x64 = in_dtype(model, inputs, dtype, FORMATS[memory_format])
    eps = torch.finfo(torch.float32 if dtype == torch.float64 else dtype).eps
    for layer, neuron, units in [("8", 3, [[0, 3], [1, 3]]), ("4", (2, 1, 2), [[0, 2, 1, 2], [1, 2, 1, 2]])]:
        ours = project(low, x, layer, units, engine=engine, seed="one")
        theirs = captum_reference(model64, x64, "deconvnet", layer, neuron)
        assert ours.dtype == torch.float32 and theirs.abs().max() > 0
        scale = float(theirs.abs().max())
        torch.testing.assert_close(ours.double(), theirs, rtol=0, atol=TOLERANCE * eps * scale)


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_inputs_follow_a_half_precision_model(engine):
    # the inputs are cast to the model's dtype; the activations come back in float32 too
    model, inputs = integer_net()
    half = copy.deepcopy(model).half()
    units = strongest_units(half, inputs, "4")
    result = project(half, inputs, "4", units, engine=engine)
    with torch.no_grad():
        expected = model[:5](inputs)[tuple(units.T)]
    assert result.unit_activations.dtype == torch.float32 == result.dtype
    torch.testing.assert_close(result.unit_activations, expected, rtol=0, atol=0)
