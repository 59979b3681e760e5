"""The mirror engine: hand-computed cases, agreement with the autograd engine, receptive fields, errors,
and that nothing is left behind."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import NeuronDeconvolution, NeuronGuidedBackprop
from torch import nn

from deconvlab.engine import project, receptive_field, strongest_units
from test_engine import EXPECTED, EXPECTED_PLUS_ONE, REFERENCE_INPUT, OneConv

RULES = ("deconvnet", "guided", "gradient")


@pytest.mark.parametrize("relu", ["modules", "reused-inplace"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("plus_one", [False, True])
def test_mirror_reproduces_captum_reference(relu, rule, plus_one):
    inputs = REFERENCE_INPUT + (1.0 if plus_one else 0.0)
    result = project(OneConv(relu), inputs, "out", [[0, 0]], rule=rule, engine="mirror", seed="one")
    expected = (EXPECTED_PLUS_ONE if plus_one else EXPECTED)[rule]
    torch.testing.assert_close(result, torch.tensor([[expected]], dtype=torch.float32))


def overlapping_pool_model() -> nn.Sequential:
    """3x3 stride-2 max-pool, then a 1x2 conv with weights [2, 3] and a large bias."""
    model = nn.Sequential(nn.MaxPool2d(3, stride=2), nn.Conv2d(1, 1, (1, 2)))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[[[2.0, 3.0]]]]))
        model[1].bias.fill_(100.0)
    return model


@pytest.mark.parametrize("engine", ["mirror", "autograd"])
def test_overlapping_switches_sum_both_contributions(engine):
    # On a 3x5 image whose only non-zero pixel (7 at row 1, column 2) lies in both pooling windows
    # (columns 0-2 and 2-4), both pool outputs switch to it. The conv unit sees 2 * p0 + 3 * p1, so
    # going down, 2 and 3 both land on that pixel: 2 + 3 = 5 (MaxUnpool2d would keep 2 or 3).
    image = torch.zeros(1, 1, 3, 5)
    image[0, 0, 1, 2] = 7.0
    expected = torch.zeros(1, 1, 3, 5)
    expected[0, 0, 1, 2] = 5.0
    model = overlapping_pool_model()
    one = project(model, image, "1", [[0, 0, 0, 0]], engine=engine, seed="one")
    torch.testing.assert_close(one, expected)
    # seed="activation": the unit's value 2 * 7 + 3 * 7 + 100 = 135 scales the same map
    activation = project(model, image, "1", [[0, 0, 0, 0]], engine=engine)
    torch.testing.assert_close(activation, 135.0 * expected)


@pytest.mark.parametrize("engine", ["mirror", "autograd"])
def test_no_bias_in_the_reverse_pass(engine):
    # A unit of a lone conv projects to its own filter, placed at its window, whatever the bias.
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    with torch.no_grad():
        model.bias.fill_(1e3)
    image = torch.randn(1, 2, 9, 9)
    result = project(model, image, "", [[0, 1, 2, 3]], rule="deconvnet", engine=engine, seed="one")
    expected = torch.zeros(1, 2, 9, 9)
    expected[0, :, 3:6, 5:8] = model.weight[1].detach()  # rows 2*2-1 .. +3, columns 2*3-1 .. +3
    torch.testing.assert_close(result, expected)


class FullChain(nn.Module):
    """Every module type the mirror knows, in a chain; ``torch.flatten`` in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=1, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            nn.LocalResponseNorm(3),
            nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Dropout2d(0.3),
            nn.Conv2d(8, 8, 3, padding="same"),
            nn.ReLU(),
            nn.AvgPool2d(2, stride=1),
            nn.AdaptiveMaxPool2d(3),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def full_chain() -> FullChain:
    torch.manual_seed(3)
    model = FullChain()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
        model.features[1].weight.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", ["features.2", "features.6", "features.10", "features.13", "classifier.2"])
def test_engines_agree(rule, layer):
    model = full_chain()
    images = torch.randn(3, 3, 21, 21, generator=torch.Generator().manual_seed(4))
    if layer.startswith("classifier"):  # each image's most active feature
        with torch.no_grad():
            hidden = model.eval().classifier[:3](torch.flatten(model.features(images), 1))
        units = torch.stack([torch.arange(3), hidden.argmax(dim=1)], dim=1)
    else:
        units = strongest_units(model, images, layer)
    mirror = project(model, images, layer, units, rule=rule, engine="mirror", chunk_size=5)
    autograd = project(model, images, layer, units, rule=rule, engine="autograd")
    assert mirror.abs().max() > 0
    assert not mirror.requires_grad and not autograd.requires_grad  # no graph kept through the weights
    torch.testing.assert_close(mirror, autograd, rtol=1e-4, atol=1e-5 * float(autograd.abs().max()))


def test_chunk_size_changes_nothing_but_is_reported():
    model = full_chain()
    images = torch.randn(2, 3, 21, 21, generator=torch.Generator().manual_seed(5))
    units = strongest_units(model, images, "features.6")
    whole = project(model, images, "features.6", units, engine="mirror")
    by_three = project(model, images, "features.6", units, engine="mirror", chunk_size=3)
    torch.testing.assert_close(by_three, whole)
    assert by_three.projection_info.chunk_size == 3
    assert by_three.projection_info.backward_passes == -(-len(units) // 3)
    assert whole.projection_info.chunk_size == len(units)  # all of them fit in the default budget
    # autograd: a backward pass carries one unit of each image of a group of chunk_size images
    autograd = project(model, images, "features.6", units, engine="autograd")
    info = autograd.projection_info
    assert (info.chunk_size, info.forward_passes, info.backward_passes) == (2, 2, len(units) // 2)
    image_by_image = project(model, images, "features.6", units, engine="autograd", chunk_size=1)
    torch.testing.assert_close(image_by_image, autograd)
    assert image_by_image.projection_info.backward_passes == len(units)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_overlapping_pools_in_a_cnn_agree_with_captum():
    # ZFNet's pattern: 3x3 stride-2 pools whose switches repeat, module ReLUs (Captum's case)
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(8, 4, 3, padding=1),
    )  # fmt: skip
    images = torch.randn(2, 3, 40, 40)
    for rule, captum in (("deconvnet", NeuronDeconvolution), ("guided", NeuronGuidedBackprop)):
        theirs = captum(model, model[6]).attribute(images.clone().requires_grad_(True), (2, 1, 2)).detach()
        units = torch.tensor([[0, 2, 1, 2], [1, 2, 1, 2]])
        ours = project(model, images, "6", units, rule=rule, engine="mirror", seed="one")
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def positive_chain() -> nn.Sequential:
    """Convolutions (stride, padding, dilation) and pools with positive weights: no cancellation."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(2, 2, 3, dilation=2), nn.AvgPool2d(2), nn.Conv2d(2, 1, 2, stride=1, padding=1),
    )  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    return model


@pytest.mark.parametrize("layer", ["0", "2", "3", "4", "5"])
def test_receptive_field_boxes_are_the_support_of_the_gradient(layer):
    model = positive_chain()
    images = torch.rand(16, 1, 45, 45, generator=torch.Generator().manual_seed(8))
    field = receptive_field(model, layer, (1, 45, 45))
    with torch.no_grad():
        height, width = model[: int(layer) + 1](images).shape[-2:]
    positions = [(0, 0), (height // 2, width // 3), (height - 1, width - 1)]
    units = torch.tensor([[i, 0, y, x] for y, x in positions for i in range(len(images))])
    grads = project(model, images, layer, units, rule="gradient", seed="one").view(len(positions), -1, 45, 45)
    for (y, x), grad in zip(positions, grads, strict=True):
        support = torch.nonzero(grad.abs().sum(dim=0))  # union over the images
        y0, y1, x0, x1 = field.box(y, x)
        rows, columns = support[:, 0], support[:, 1]
        assert (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1) == (y0, y1, x0, x1)


def test_receptive_field_of_zfnet_matches_the_arithmetic():
    from deconvlab.models import create

    model = create("zfnet", num_classes=10)
    # conv1 7/2 pad 1 -> pool 3/2 -> conv2 5/2 -> pool 3/2 -> conv3-5 3/1 pad 1 (REFERENCES.md)
    expected = {"features.0": (7, 2, -1), "features.2": (11, 4, -1), "features.4": (27, 8, -1),
                "features.6": (43, 16, -1), "features.12": (139, 16, -49)}  # fmt: skip
    for layer, (size, jump, offset) in expected.items():
        field = receptive_field(model, layer, (3, 224, 224))
        assert (field.size, field.jump, field.offset) == ((size,) * 2, (jump,) * 2, (offset,) * 2)
    assert receptive_field(model, "classifier.1", (3, 224, 224)).box(0, 0) == (0, 224, 0, 224)


# ---- residual nets and other activations (autograd engine), with Captum as the oracle ---------------


class Residual(nn.Module):
    """A torchvision-style basic block; ``functional`` calls F.relu and an in-place relu_ instead."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu0, self.relu1, self.relu2 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.head = nn.Conv2d(4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.functional:
            x = F.relu(self.stem(x))
            return self.head((self.conv2(self.conv1(x).relu_()) + x).relu())
        x = self.relu0(self.stem(x))
        return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x))) + x))


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize(
    "rule, captum", [("deconvnet", NeuronDeconvolution), ("guided", NeuronGuidedBackprop)]
)
def test_residual_block_with_functional_relus_equals_captum_on_modules(rule, captum):
    torch.manual_seed(9)
    reference = Residual(functional=False)
    functional = Residual(functional=True)
    functional.load_state_dict(reference.state_dict())
    images = torch.randn(2, 3, 10, 10)
    attribution = captum(reference, reference.head).attribute(images.clone().requires_grad_(True), (1, 3, 4))
    theirs = attribution.detach()
    units = torch.tensor([[0, 1, 3, 4], [1, 1, 3, 4]])
    for model in (reference, functional):
        ours = project(model, images, "head", units, rule=rule, seed="one")
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def gelu_net() -> nn.Sequential:
    torch.manual_seed(10)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.GELU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3), nn.ReLU())


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_strict_other_activation_needs_allow_vjp_then_uses_its_plain_gradient():
    # strict=True: the original definitions, for ReLUs only (a GELU is otherwise a rectifier: see
    # tests/test_engine_activations.py)
    model = gelu_net()
    images = torch.randn(2, 1, 12, 12)
    units = torch.tensor([[0, 1, 1, 2], [1, 1, 1, 2]])
    for engine, name in (("autograd", "gelu"), ("mirror", "'1' \\(GELU\\)")):
        with pytest.raises(ValueError, match=f"{name}.*allow_vjp=True"):
            project(model, images, "4", units, engine=engine, strict=True)
    theirs = NeuronDeconvolution(model, model[4]).attribute(images.clone().requires_grad_(True), (1, 1, 2))
    for engine in ("autograd", "mirror"):
        ours = project(model, images, "4", units, engine=engine, seed="one", allow_vjp=True, strict=True)
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-6)
    # the gradient rule needs no opt-in: the plain gradient is the gradient
    gradient = project(model, images, "4", units, rule="gradient", seed="one")
    x = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(x)[:, 1, 1, 2].sum(), x)
    torch.testing.assert_close(gradient, expected)


# ---- errors, and nothing left behind ------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    model = overlapping_pool_model()
    image = torch.zeros(1, 1, 3, 5)
    with pytest.raises(ValueError, match=r"layer='conv'.*valid names.*'0', '1'"):
        project(model, image, "conv", [[0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"units row 1 = \[0, 0, 0, 2\]: x=2 out of range \[0, 2\)"):
        project(model, image, "0", [[0, 0, 0, 0], [0, 0, 0, 2]])
    with pytest.raises(ValueError, match=r"image_index=1 out of range \[0, 1\)"):
        project(model, image, "1", [[1, 0, 0, 0]], engine="mirror")
    with pytest.raises(ValueError, match=r"inputs of shape \(1, 3, 5\): expected 4 dim.*inputs\[None\]"):
        project(model, image[0], "1", [[0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"units of shape \(1, 3\)"):
        project(model, image, "1", [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"rule='backprop'.*'deconvnet'"):
        project(model, image, "1", [[0, 0, 0, 0]], rule="backprop")
    with pytest.raises(ValueError, match=r"engine='fast'"):
        project(model, image, "1", [[0, 0, 0, 0]], engine="fast")
    with pytest.raises(ValueError, match=r"module '1' \(Softplus\): an activation"):
        project(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Softplus()), image, "1", [[0, 0, 0, 0]], engine="mirror")
    # a product of two values that is no gate: its exact product rule, as in the autograd engine
    squared = Squared()
    by_mirror = project(squared, image, "layers.1", [[0, 0, 0, 0]], engine="mirror", seed="one")
    by_autograd = project(squared, image, "layers.1", [[0, 0, 0, 0]], engine="autograd", seed="one")
    torch.testing.assert_close(by_mirror, by_autograd)


class Squared(nn.Module):
    """A product of two tensors computed from the image that is no gate: the exact product rule."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[0](x)
        return self.layers[1](x * x)


def assert_nothing_left(model: nn.Module, training: bool, flags: list[bool]) -> None:
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks
        assert module.training == training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("engine", ["mirror", "autograd"])
def test_nothing_is_left_behind_even_after_an_error(engine):
    model = gelu_net().train()
    model[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    images = torch.randn(1, 1, 12, 12)
    with pytest.raises(ValueError, match="allow_vjp"):  # raised in the middle of the forward pass
        project(model, images, "4", [[0, 0, 0, 0]], engine=engine, strict=True)
    assert_nothing_left(model, True, flags)
    project(model, images, "4", [[0, 0, 0, 0]], engine=engine, allow_vjp=True)
    assert_nothing_left(model, True, flags)
    with pytest.raises(ValueError, match="out of range"):  # raised after the forward pass
        project(model, images, "4", [[0, 5, 0, 0]], engine=engine, allow_vjp=True)
    assert_nothing_left(model, True, flags)


def test_projections_run_in_eval_mode():
    # with dropout active a projection would be random; in eval it equals the eval-mode gradient
    torch.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(0.9), nn.ReLU(), nn.Conv2d(4, 1, 3)).train()
    images = torch.randn(1, 1, 9, 9)
    result = project(model, images, "3", [[0, 0, 2, 2]], rule="gradient", seed="one")
    x = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model.eval()(x)[0, 0, 2, 2], x)
    torch.testing.assert_close(result, expected)


def test_hooks_act_only_in_the_calling_thread():
    # while a projection's stop hook is registered, the same model runs normally in another thread
    import threading

    from deconvlab.engine._model import stop_at

    model = gelu_net()
    image = torch.randn(1, 1, 12, 12)
    expected = model(image)
    store, results = [], []
    with stop_at(model[2], store):
        worker = threading.Thread(target=lambda: results.append(model(image)))
        worker.start()
        worker.join()
    assert store == []
    torch.testing.assert_close(results[0], expected)


@pytest.mark.parametrize("seed", range(6))
def test_signals_of_two_branches_add_up_in_place_of_the_dense_sum(seed):
    # a residual block's two paths reach one value in windows of their own; their sum, placed on the
    # map, is the sum of each placed on the map, whether one window holds the other (the fast path) or not
    from deconvlab.engine.mirror import Signal, add_signals, fit_to_map, to_full

    generator = torch.Generator().manual_seed(seed)
    shape = (3, 2, 9, 9)

    def window(size):
        origin = torch.randint(-2, 8, (3, 2), generator=generator)
        values = torch.randn(3, 2, size, size, generator=generator)
        return fit_to_map(Signal(values, origin, torch.arange(3)), shape[2:])

    outer = window(5)
    inner_origin = outer.origin + torch.randint(0, 3, (3, 2), generator=generator)
    inner = fit_to_map(
        Signal(torch.randn(3, 2, 3, 3, generator=generator), inner_origin, torch.arange(3)), (9, 9)
    )
    for a, b in [(outer, inner), (inner, outer), (outer, window(4))]:
        total = add_signals(a, b, shape)
        torch.testing.assert_close(to_full(total, (9, 9)), to_full(a, (9, 9)) + to_full(b, (9, 9)))


@pytest.mark.parametrize(
    "kernel, stride, dilation",
    [((7, 7), (2, 2), (1, 1)), ((11, 11), (4, 4), (1, 1)), ((5, 3), (3, 2), (1, 1)), ((2, 2), (3, 3), (1, 1)),
     ((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (2, 2))],
)  # fmt: skip
def test_pixel_layer_transposed_convolution_equals_pytorchs(kernel, stride, dilation):
    # down to few channels the mirror computes conv_transpose2d its own way (sub-pixel phases with a
    # stride, a matrix product and col2im without): the same sums as PyTorch's kernel, in float64,
    # on channels-last values as unpooling leaves them; a stride larger than the kernel leaves gaps
    from deconvlab.engine.mirror import conv_transpose

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 6, 16, generator=generator, dtype=torch.float64).permute(0, 3, 1, 2)
    weight = torch.randn(16, 3, *kernel, generator=generator, dtype=torch.float64)
    expected = F.conv_transpose2d(values, weight, stride=stride, dilation=dilation)
    torch.testing.assert_close(conv_transpose(values, weight, stride, dilation, 1), expected)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_pointwise_transposed_convolution_equals_pytorchs(stride, layout):
    # a 1x1 kernel (ResNet's bottlenecks and downsampling) is one matrix product, spread by the stride,
    # on either layout of the values (windows cut out by gather_windows are channels last)
    from deconvlab.engine.mirror import conv_transpose

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(2, 24, 5, 7, generator=generator, dtype=torch.float64)
    if layout == "channels_last":
        values = values.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(24, 40, 1, 1, generator=generator, dtype=torch.float64)
    expected = F.conv_transpose2d(values, weight, stride=stride)
    torch.testing.assert_close(conv_transpose(values, weight, stride, (1, 1), 1), expected)


class Decoder(nn.Module):
    """Transposed convolutions with a stride, padding, output padding, dilation and groups, between ReLUs
    and a pool."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(6, 4, (3, 2), stride=(1, 2), padding=(2, 0), dilation=2, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.ConvTranspose2d(4, 5, 4, stride=3),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", ["layers.3", "layers.5", "layers.8"])
def test_transposed_convolutions_are_mirrored_in_windows_as_autograd_computes_them(rule, layer):
    # a ConvTranspose2d's mirror is the convolution with its weight, carried in windows: every rule as the
    # autograd engine computes it, units near the borders and inside
    torch.manual_seed(11)
    model = Decoder()
    images = torch.randn(2, 3, 17, 15, generator=torch.Generator().manual_seed(12))
    units = strongest_units(model, images, layer)
    mirror = project(model, images, layer, units, rule=rule, engine="mirror", chunk_size=7)
    autograd = project(model, images, layer, units, rule=rule, engine="autograd")
    assert mirror.abs().max() > 0
    torch.testing.assert_close(mirror, autograd, rtol=1e-4, atol=1e-5 * float(autograd.abs().max()))
