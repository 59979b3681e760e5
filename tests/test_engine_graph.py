"""The model graph, the mirror over branching nets, and ``engine="auto"``.

The oracle is the autograd engine (a backward pass whose ReLU backward is the rule: an independent
implementation) and, under the gradient rule, ``torch.autograd.grad`` itself; Captum on ResNet-18 is in
tests/test_engine.py. Tolerance: float32 sums taken in another order, within 1e-5 of the largest value.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deconvlab.engine import mirror, project, receptive_field, strongest_units
from deconvlab.engine.graph import capture
from deconvlab.engine.rules import get_rule
from deconvlab.models import create

RULES = ("deconvnet", "guided", "gradient")


def assert_engines_agree(model, images, layer, units, rule):
    ours = {
        engine: project(model, images, layer, units, rule=rule, engine=engine)
        for engine in ("mirror", "autograd")
    }
    scale = float(ours["autograd"].abs().max())
    assert scale > 0
    torch.testing.assert_close(ours["mirror"], ours["autograd"], rtol=1e-4, atol=1e-5 * scale)
    return ours["mirror"]


def test_graph_reads_calls_in_place_updates_and_reuse():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.relu(self.conv(x))
            y += x  # in place: a new value of the same tensor
            return torch.cat([self.relu(y), x], 1)

    graph = capture(Net(), torch.zeros(1, 1, 2, 2), "")
    calls = [(node.function, node.inputs, node.outputs, node.module) for node in graph.nodes]
    assert calls == [
        ("conv2d", (0,), (1,), "conv"),
        ("relu", (1,), (2,), "relu"),
        ("add_", (2, 0), (3,), ""),
        ("relu", (3,), (4,), "relu"),
        ("cat", (4, 0), (5,), ""),
    ]
    assert graph.output == 5 and graph.shapes[5] == (1, 2, 2, 2)


TORCHVISION = [
    ("resnet18", "layer2"),  # basic blocks, a 1x1 strided downsample branch
    ("resnet50", "layer2.0"),  # bottlenecks
    ("vgg11_bn", "features.14"),  # BatchNorm in a chain
    ("densenet121", "features.transition1"),  # concatenations, functional ReLU, avg pool
    ("squeezenet1_0", "features.7"),  # fire modules: concatenations, ceil-mode pools
    ("googlenet", "inception3b"),  # four branches concatenated, a max-pool branch
    ("mobilenet_v2", "features.5"),  # depthwise convs, ReLU6 (rectifier-like), residual adds
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name, layer", TORCHVISION)
def test_torchvision_models_both_engines_agree_for_every_rule(name, layer):
    torch.manual_seed(0)
    extra = {"init_weights": False, "aux_logits": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(**extra).eval()
    for module in model.modules():  # BatchNorm with running statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    units = strongest_units(model, images, layer, channels=[0, 7])
    for rule in RULES:
        result = assert_engines_agree(model, images, layer, units, rule)
        assert result.projection_info.engine == "mirror"


class Odds(nn.Module):
    """ZeroPad2d and F.pad, a grouped and a depthwise conv, average pools (with and without counting the
    padding, ceil mode), a subtraction, a scaled branch, adaptive pools and a view."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.grouped = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)
        self.head = nn.Linear(6 * 2 * 2 + 6, 5)

    def forward(self, x):
        x = F.relu(self.conv(self.pad(x)))
        # padded by one row and column, then 2x2 windows: the same size again
        y = F.avg_pool2d(F.pad(self.grouped(x), (1, 0, 1, 0)), 2, stride=1)
        x = F.relu(y - 0.5 * self.depthwise(x))
        x = F.max_pool2d(x, 2) + F.avg_pool2d(self.pool(x), 1)[..., : x.shape[-2] // 2, : x.shape[-1] // 2]
        flat = torch.cat(
            [F.adaptive_avg_pool2d(x, 2).view(len(x), -1), F.adaptive_max_pool2d(x, 1).flatten(1)], 1
        )
        return self.head(flat)


@pytest.mark.parametrize("rule", RULES)
def test_functional_calls_paddings_grouped_convs_and_pools(rule):
    torch.manual_seed(2)
    model = Odds().eval()
    images = torch.randn(3, 3, 17, 17)
    units = torch.tensor([[0, 1], [1, 4], [2, 0]])
    result = assert_engines_agree(model, images, "head", units, rule)
    if rule == "gradient":  # the plain gradient: torch's own
        pixels = images.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(
            (model(pixels)[:, [1, 4, 0]].diag() * result.unit_activations).sum(), pixels
        )
        torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_auto_is_the_mirror_on_relu_chains_and_equals_both_engines():
    torch.manual_seed(3)
    model = create("zfnet", num_classes=10).eval()
    images = torch.randn(2, 3, 96, 96)
    units = strongest_units(model, images, "features.8", channels=[3, 100])
    auto = project(model, images, "features.8", units)
    assert (auto.projection_info.engine, auto.projection_info.mirror_refusal) == ("mirror", "")
    for engine in ("mirror", "autograd"):
        other = project(model, images, "features.8", units, engine=engine)
        torch.testing.assert_close(auto, other, rtol=1e-4, atol=1e-5 * float(other.abs().max()))


def test_auto_falls_back_to_autograd_and_says_why():
    # BatchNorm with batch statistics (no running estimates) mixes the images of a batch: no fixed scale,
    # so the mirror refuses it, and "auto" runs the autograd engine and says why
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.Conv2d(2, 1, 3)
    )
    images = torch.randn(1, 1, 9, 9)  # one image: batch statistics couple the images of a batch
    with pytest.raises(mirror.MirrorRefused, match=r"module '1' \(BatchNorm2d\) calls batch_norm with batch"):
        project(model.eval(), images, "2", [[0, 0, 1, 1]], engine="mirror")
    result = project(model.eval(), images, "2", [[0, 0, 1, 1]], seed="one")
    info = result.projection_info
    assert info.engine == "autograd"
    assert info.mirror_refusal.startswith("module '1' (BatchNorm2d) calls batch_norm with batch statistics")
    pixels = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model.eval()(pixels)[0, 0, 1, 1], pixels)  # no ReLU: the gradient
    torch.testing.assert_close(result[0], expected[0])


@pytest.mark.parametrize("rule", ["deconvnet", "gradient"])
def test_products_of_values_take_the_exact_product_rule(rule):
    # (x * g) * x: the first product is a sigmoid gate (constant under deconvnet); the second multiplies
    # two values that are no gate, and both engines take its exact product rule, d(ab) = b da + a db.
    # Under "gradient" everything is exact: torch.autograd.grad of the unit is the reference.
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), Product(), nn.Conv2d(2, 1, 3)).eval()
    images = torch.randn(2, 1, 9, 9)
    result = project(model, images, "2", [[1, 0, 1, 1]], rule=rule, seed="one")
    assert (result.projection_info.engine, result.projection_info.mirror_refusal) == ("mirror", "")
    by_autograd = project(model, images, "2", [[1, 0, 1, 1]], rule=rule, seed="one", engine="autograd")
    torch.testing.assert_close(result, by_autograd)
    if rule == "gradient":
        pixels = images.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(model(pixels)[1, 0, 1, 1], pixels)
        torch.testing.assert_close(result[0], expected[1])
    else:
        assert result.projection_info.activations == (("1", "sigmoid", "gate"),)


class Product(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)) * x


def test_each_unit_is_carried_only_inside_its_receptive_field_window():
    # ResNet-18 at 224x224: a unit of layer1's first block sees 27x27 pixels. Its signal, through both
    # branches of the residual addition, never holds more than about that window per channel: far less
    # than one whole 64x112x112 map of the stem
    torch.manual_seed(5)
    model = torchvision.models.resnet18().eval()
    images = torch.randn(1, 3, 224, 224)
    graph = mirror.record_forward(model, images, "layer1.0", get_rule("guided"), allow_vjp=False)
    with torch.no_grad():
        seed = mirror.seed_signal(graph.tensor, torch.tensor([[0, 3, 20, 20]]), "one")
        signal, peak = mirror.reverse(graph, seed)
    assert peak < 64 * 112 * 112 * 4 / 10
    support = torch.nonzero(mirror.to_full(signal, (224, 224))[0].abs().sum(0))
    y0, y1, x0, x1 = receptive_field(model, "layer1.0", (3, 224, 224)).box(20, 20)
    assert (y0, x0) <= tuple(support.min(0).values.tolist()) and tuple(support.max(0).values.tolist()) < (
        y1,
        x1,
    )
    assert len(support) > 0


class BatchLast(nn.Module):
    """Moves the batch axis away and back (as EdgeNeXt's cross-covariance attention does with q, k, v)."""

    def forward(self, x):
        return torch.relu(x.permute(1, 0, 2, 3) * 2.0).permute(1, 0, 2, 3)


def test_a_permutation_of_the_batch_axis_is_refused_and_auto_runs_autograd():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), BatchLast(), nn.Conv2d(2, 1, 3)).eval()
    images = torch.randn(2, 1, 9, 9)
    with pytest.raises(
        mirror.MirrorRefused, match=r"module '1' \(BatchLast\) calls permute, which moves the batch"
    ):
        project(model, images, "2", [[1, 0, 2, 2]], engine="mirror")
    result = project(model, images, "2", [[1, 0, 2, 2]], rule="gradient", seed="one")
    assert result.projection_info.engine == "autograd"
    pixels = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(pixels)[1, 0, 2, 2], pixels)
    torch.testing.assert_close(result[0], expected[1])
