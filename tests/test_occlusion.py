"""Occlusion maps: incremental recomputation equals full recomputation; full equals the definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.analyses import OcclusionResult, occlusion_map
from deconvlab.analyses.occlusion_incremental import why_not_incremental


def zfnet_like(classes: int = 5) -> nn.Module:
    """A small ZFNet: 7x7/2 conv, ceil-mode 3x3/2 pools, local response norm, in-place ReLUs."""
    features = nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5),
        nn.Conv2d(8, 12, 5, stride=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5),
        nn.Conv2d(12, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
    )
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("pool", nn.AdaptiveMaxPool2d(2))
    model.add_module("flatten", nn.Flatten())
    model.add_module(
        "classifier",
        nn.Sequential(nn.Dropout(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, classes)),
    )
    return model


class Mixed(nn.Module):
    """Not a Sequential: functional ReLU, batch norm, dilation, groups, asymmetric stride and padding."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, (3, 5), stride=(1, 2), padding=(2, 1))
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, dilation=2, groups=3, padding=2)
        self.pool = nn.AvgPool2d(2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, dilation=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = torch.sigmoid(self.conv2(x))
        x = self.maxpool(self.pool(x))
        return self.head(x.mean(dim=(2, 3)))


class Branching(nn.Module):
    """Control flow on a tensor's shape (which torch.fx could not trace) and, if asked, on its values."""

    def __init__(self, on_values: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3, 2)
        self.on_values = on_values

    def forward(self, x):
        y = self.conv(x)
        if y.shape[-1] > 5:  # the same for every occluder position
            y = y * 2
        if self.on_values and y.sum() > 0:  # may differ between positions: no replay of the graph
            y = y - 1
        return self.fc(y.mean(dim=(2, 3)))


class Writing(nn.Module):
    """Writes into a map behind the graph's back: through a slice, or in place through a view (a method
    with a trailing ``_``, or a function given ``inplace`` positionally, as ``nn.Hardtanh`` gives it)."""

    def __init__(self, how: str):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)
        self.fc = nn.Linear(2, 2)
        self.how = how

    def forward(self, x):
        y = self.conv1(x)
        if self.how == "slice":
            y[:, :, :3] = 0.5
        elif self.how == "view":
            y[:, 1:].clamp_(max=0.1)
        else:
            F.hardtanh(y[:, 1:], -0.1, 0.1, True)
        return self.fc(self.conv2(y).mean(dim=(2, 3)))


class Dense(nn.Module):
    """A DenseNet-like block: each layer's maps are concatenated to its input's, then a transition."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.grow1 = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
        self.grow2 = nn.Sequential(nn.BatchNorm2d(7), nn.ReLU(), nn.Conv2d(7, 3, 3, padding=1))
        self.transition = nn.Sequential(nn.Conv2d(10, 6, 1), nn.AvgPool2d(2))
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.cat([self.stem(x)], 1)  # a list of one, as torchvision's first dense layers have
        x = torch.cat([x, self.grow1(x)], 1)
        x = torch.cat([x, self.grow2(x)], dim=1)
        return self.head(self.transition(x).amax(dim=(2, 3)))


class Flattening(nn.Module):
    """A classifier reading ``x.view(x.size(0), -1)``: the batch size is an argument of the call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2)
        self.fc = nn.Linear(3 * 7 * 7, 4)

    def forward(self, x):
        x = torch.relu_(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


class Padded(nn.Module):
    """Convolutions padded by reflection, replication, to 'same' and circularly (last: it wraps a box
    at the border round to the other side), and explicit F.pads; a sum of two maps whose boxes have
    the same size but not the same place."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.Conv2d(2, 3, 3, padding=2, dilation=2, padding_mode="reflect")
        self.replicate = nn.Conv2d(3, 3, (3, 5), padding=(1, 2), padding_mode="replicate")
        self.same = nn.Conv2d(3, 3, (3, 4), padding="same")
        self.shifted = nn.Conv2d(3, 3, (3, 4))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.circular = nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = F.silu(self.replicate(F.gelu(self.reflect(x))))
        x = self.same(x) + self.shifted(F.pad(x, (3, 0, 2, 0)))
        x = self.pool(F.pad(x, (1, 0, 2, 1), value=0.5).relu_())
        return self.fc(self.circular(x).mean(dim=(2, 3)))


def assert_same(actual, expected, rtol=1e-5):
    """Equal to ``rtol`` relative to the largest magnitude of the reference."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


def definition(model, image, window, stride, baseline, layer=None):
    """Occlusion from the definition: one forward pass per position, no batching, no cropping."""
    height, width = image.shape[1:]
    logits, sums = [], []
    for y in range(0, height - window[0] + 1, stride[0]):
        for x in range(0, width - window[1] + 1, stride[1]):
            occluded = image.clone()
            occluded[:, y : y + window[0], x : x + window[1]] = baseline
            acts = []
            handle = (
                layer.register_forward_hook(lambda m, i, o, acts=acts: acts.append(o.sum(dim=(2, 3))))
                if layer
                else None
            )
            logits.append(model(occluded[None])[0])
            if handle:
                handle.remove()
                sums.append(acts[0][0])
    return torch.stack(logits), torch.stack(sums) if sums else None


@pytest.mark.parametrize(
    ("window", "stride", "layer"),
    [(9, 6, "features.8"), ((6, 11), (5, 3), "features.3"), (20, 20, "classifier.2"), (4, 9, "features")],
)
def test_incremental_equals_full_on_zfnet_like(window, stride, layer):
    model = zfnet_like().eval()
    images = torch.randn(2, 3, 90, 83)
    fast = occlusion_map(model, images, window=window, stride=stride, baseline=0.5, layer=layer, batch_size=7)
    full = occlusion_map(
        model, images, window=window, stride=stride, baseline=0.5, layer=layer, incremental=False
    )
    assert fast.incremental_layers[:3] == ("features.0", "features.1", "features.2")
    assert full.incremental_layers == ()
    assert fast.logits.shape == full.logits.shape and fast.activations.shape == full.activations.shape
    assert_same(fast.logits, full.logits)
    assert_same(fast.activations, full.activations)


def test_full_equals_definition():
    model = zfnet_like().eval()
    image = torch.randn(3, 60, 64)
    result = occlusion_map(
        model,
        image[None],
        window=(8, 6),
        stride=(7, 9),
        baseline=-1.0,
        layer=model.features[4],
        incremental=False,
        batch_size=5,
    )
    logits, sums = definition(model, image, (8, 6), (7, 9), -1.0, model.features[4])
    assert result.positions_y.tolist() == list(range(0, 53, 7)) and result.positions_x.tolist() == list(
        range(0, 59, 9)
    )
    assert_same(result.logits[0].reshape(-1, 5), logits, rtol=1e-6)
    assert_same(result.activations[0].reshape(len(sums), -1), sums, rtol=1e-6)


def test_incremental_on_functional_model_with_batch_norm_and_groups():
    model = Mixed()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    model.train()  # occlusion_map must evaluate in eval mode and restore the mode
    images = torch.randn(1, 2, 30, 37)
    fast = occlusion_map(model, images, window=(5, 3), stride=(4, 6), layer="conv2")
    full = occlusion_map(model, images, window=(5, 3), stride=(4, 6), layer="conv2", incremental=False)
    assert model.training and model.bn.training
    assert {"conv1", "bn", "relu", "conv2", "sigmoid", "pool", "maxpool"} <= set(fast.incremental_layers)
    assert_same(fast.logits, full.logits)
    assert_same(fast.activations, full.activations)
    logits, _ = definition(model.eval(), images[0], (5, 3), (4, 6), 0.0)
    assert_same(full.logits[0].reshape(-1, 4), logits, rtol=1e-6)


def test_control_flow_on_shapes_is_replayed_and_on_values_falls_back_to_full_recomputation():
    torch.manual_seed(1)
    images = torch.randn(2, 1, 9, 9)
    for on_values in (False, True):
        model = Branching(on_values)
        result = occlusion_map(model, images, window=3, stride=2, layer="conv")
        assert result.incremental_layers == (() if on_values else ("conv", "mul"))
        reason = why_not_incremental(model, images[:1], "conv")
        assert reason is None if not on_values else "(__bool__)" in reason
        for n in range(2):
            logits, sums = definition(model, images[n], (3, 3), (2, 2), 0.0, model.conv)
            assert_same(result.logits[n].reshape(-1, 2), logits, rtol=1e-6)
            assert_same(result.activations[n].reshape(-1, 3), sums, rtol=1e-6)


@pytest.mark.parametrize(
    ("how", "named"), [("slice", "__setitem__"), ("view", "clamp_"), ("positional", "hardtanh")]
)
def test_writes_behind_the_graphs_back_fall_back_to_full_recomputation(how, named):
    torch.manual_seed(4)
    model = Writing(how)
    images = torch.randn(1, 1, 12, 12)
    result = occlusion_map(model, images, window=3, stride=3)
    assert result.incremental_layers == ()
    assert f"({named})" in why_not_incremental(model, images)
    logits, _ = definition(model, images[0], (3, 3), (3, 3), 0.0)
    assert_same(result.logits[0].reshape(-1, 2), logits, rtol=1e-6)


def incremental_and_full(model, images, **kwargs):
    """Both occlusion maps of ``model``, checked equal; the incremental one is returned."""
    fast = occlusion_map(model, images, **kwargs)
    full = occlusion_map(model, images, incremental=False, **kwargs)
    assert full.incremental_layers == ()
    assert_same(fast.logits, full.logits)
    if fast.activations is not None:
        assert_same(fast.activations, full.activations)
    return fast


def test_incremental_goes_past_resnet18s_residual_additions():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # batch norms that are not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
    images = torch.randn(1, 3, 64, 64)
    fast = incremental_and_full(model, images, window=9, stride=(7, 11), layer="layer1", batch_size=13)
    names = fast.incremental_layers
    assert names[:4] == ("conv1", "bn1", "relu", "maxpool")
    assert {"layer1.0.conv2", "layer1.0.add_", "layer1.1.add_", "layer2.0.downsample.0"} <= set(names)
    logits, sums = definition(model, images[0], (9, 9), (7, 11), 0.0, model.layer1)
    assert_same(fast.logits[0].reshape(-1, 10), logits)
    assert_same(fast.activations[0].reshape(len(sums), -1), sums)


def test_incremental_through_concatenations():
    model = Dense()
    with torch.no_grad():
        for bn in (model.grow1[0], model.grow2[0]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    fast = incremental_and_full(model.eval(), torch.randn(2, 3, 24, 20), window=4, stride=3, layer="grow2")
    assert fast.incremental_layers == (
        ("stem", "cat", "grow1.0", "grow1.1", "grow1.2", "cat", "grow2.0", "grow2.1", "grow2.2", "cat")
        + ("transition.0", "transition.1")
    )


@pytest.mark.parametrize("batch_size", [4, 64])
def test_batch_size_in_the_forward_pass_and_a_last_smaller_batch(batch_size):
    torch.manual_seed(2)
    model = Flattening().eval()
    images = torch.randn(2, 2, 16, 16)  # 5 x 5 = 25 positions: batches of 4, 4, ..., 1 (or one of 25)
    fast = incremental_and_full(model, images, window=4, stride=3, layer="conv", batch_size=batch_size)
    assert fast.incremental_layers == ("conv", "relu_")
    logits, sums = definition(model, images[1], (4, 4), (3, 3), 0.0, model.conv)
    assert_same(fast.logits[1].reshape(-1, 4), logits)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_incremental_through_padding_modes_and_in_place_functions():
    torch.manual_seed(3)
    model = Padded().eval()
    images = torch.randn(1, 2, 41, 46)
    fast = incremental_and_full(model, images, window=(3, 5), stride=(4, 3), baseline=2.0, layer="same")
    assert fast.incremental_layers == (
        ("reflect", "reflect", "gelu", "replicate", "replicate", "silu", "same", "pad", "shifted", "add")
        + ("pad", "relu_", "pool", "circular", "circular")
    )
    logits, _ = definition(model, images[0], (3, 5), (4, 3), 2.0)
    assert_same(fast.logits[0].reshape(-1, 2), logits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0, "stride": 1}, "window=0"),
        ({"window": 3, "stride": (1, -2)}, "stride=(1, -2)"),
        ({"window": 70, "stride": 1}, "window=(70, 70)"),
        ({"window": 3, "stride": 1, "baseline": float("nan")}, "baseline=nan"),
        ({"window": 3, "stride": 1, "layer": "nope"}, "layer='nope'"),
        ({"window": 3, "stride": 1, "batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        occlusion_map(zfnet_like(), torch.zeros(1, 3, 64, 64), **kwargs)


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match=r"images=\(3, 20, 20\)"):
        occlusion_map(zfnet_like(), torch.zeros(3, 20, 20), window=3, stride=1)


def test_result_type():
    result = occlusion_map(zfnet_like(), torch.zeros(1, 3, 64, 64), window=10, stride=10)
    assert isinstance(result, OcclusionResult) and result.activations is None
    assert result.window == (10, 10) and result.stride == (10, 10)
