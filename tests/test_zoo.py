"""The compatibility table's fast subset (``benchmarks/zoo.py``, ``QUICK``): a model of each family at 64x64.

What is ✓ in the committed table (``benchmarks/zoo-results.json``, from the full run at 224x224) must
still be ✓ here, so a regression fails; gradient-rule projections must equal ``torch.autograd.grad``.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deconvlab.engine import ENGINES, project

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("zoo", ROOT / "benchmarks" / "zoo.py")
zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo)
COMMITTED = json.loads(zoo.CACHE.read_text())


@pytest.fixture(scope="module", params=zoo.QUICK, ids=[spec for spec, _, _ in zoo.QUICK])
def probed(request):
    """(spec, ModelCheck) for one model of the subset: built once, random weights, one 64x64 image."""
    spec, size, arguments = request.param
    torch.manual_seed(0)
    model, size = zoo.build_model(spec, size, **arguments)
    image = torch.randn(1, 3, size, size)
    layer, _ = zoo.probe_layer(model, image)
    return spec, zoo.ModelCheck(model, image, layer)


def test_what_the_committed_table_passes_still_passes(probed):
    spec, check = probed
    assert spec in COMMITTED, f"{spec} has no row in {zoo.CACHE.name}: run benchmarks/zoo.py --models {spec}"
    cells = check.run()
    passed = {name for name, cell in COMMITTED[spec]["cells"].items() if cell.startswith("✓")}
    regressions = {name: cells[name] for name in sorted(passed) if not cells[name].startswith("✓")}
    assert not regressions, f"{spec} at 64x64, layer {check.layer!r}: {regressions}"


def test_gradient_rule_equals_plain_autograd(probed):
    spec, check = probed
    # independent reference: torch.autograd.grad of each unit's activation w.r.t. the image
    reference = torch.stack(
        [
            torch.autograd.grad(
                zoo.layer_output(check.model, image := check.image.clone().requires_grad_(), check.layer)[
                    tuple(unit)
                ],
                image,
            )[0][0]
            for unit in check.units.tolist()
        ]
    ).numpy()
    scale = np.abs(reference).max()
    assert scale > 0
    cells = COMMITTED.get(spec, {}).get("cells", {})
    passed = [e for e in ENGINES if cells.get(f"{e} gradient", "").startswith("✓")]
    for engine in sorted({"autograd", *passed}):
        result = project(
            check.model, check.image, check.layer, check.units, rule="gradient", engine=engine, seed="one"
        )
        np.testing.assert_allclose(result.numpy(), reference, rtol=1e-4, atol=1e-4 * scale, err_msg=engine)


def test_probe_layer_takes_the_stage_at_one_eighth():
    # torchvision's resnet18 on 64x64: stem /4 (16x16), layer2 /8 (8x8, 128 channels), layer3 /16
    model, _ = zoo.build_model("torchvision:resnet18")
    assert zoo.probe_layer(model, torch.zeros(1, 3, 64, 64)) == ("layer2", (1, 128, 8, 8))


def test_zoo_doctests():
    assert doctest.testmod(zoo, optionflags=doctest.ELLIPSIS).failed == 0
