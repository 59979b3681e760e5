"""Models: the registry, ZFNet's feature-map sizes, torchvision's names, safe weight loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconvlab.models import (
    WeightsMismatchError,
    create,
    list_models,
    load_model,
    load_weights,
    register_model,
)


def _output_widths(model: nn.Module, indices: list[int]) -> list[int]:
    """Run one image through ``model`` and record the width of ``features[i]``'s output for each i."""
    widths: dict[int, int] = {}

    def record(index: int):
        return lambda _module, _inputs, output: widths.__setitem__(index, output.shape[-1])

    handles = [model.features[i].register_forward_hook(record(i)) for i in indices]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.input_size))
    finally:
        for handle in handles:
            handle.remove()
    return [widths[i] for i in indices]


def test_zfnet_feature_maps_are_the_papers():
    model = create("zfnet", num_classes=10).eval()
    # conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5 (Fig. 3: 110, 55, 26, 13, 13, 13, 6)
    assert _output_widths(model, [0, 2, 4, 6, 8, 10, 12, 14]) == [110, 55, 26, 13, 13, 13, 13, 6]
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (96, (7, 7), (2, 2)),
        (256, (5, 5), (2, 2)),
        (384, (3, 3), (1, 1)),
        (384, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)),
    ]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(9216, 4096), (4096, 4096), (4096, 10)]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_zfnet_mini_feature_maps():
    model = create("zfnet-mini", num_classes=12).eval()
    assert _output_widths(model, [0, 2, 4, 6, 8, 10, 12, 14]) == [32, 16, 16, 8, 8, 8, 8, 4]


def _alexnet_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """torchvision.models.alexnet's state dict, written out from torchvision's source."""
    layers = {
        "features.0": (64, 3, 11, 11),
        "features.3": (192, 64, 5, 5),
        "features.6": (384, 192, 3, 3),
        "features.8": (256, 384, 3, 3),
        "features.10": (256, 256, 3, 3),
        "classifier.1": (4096, 9216),
        "classifier.4": (4096, 4096),
        "classifier.6": (num_classes, 4096),
    }
    return _weights_and_biases(layers)


def _vgg16_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """torchvision.models.vgg16's state dict: 13 convs at these feature indices, 3 linears."""
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    layers = {f"features.{i}": (channels[n + 1], channels[n], 3, 3) for n, i in enumerate(conv_indices)}
    layers["classifier.0"] = (4096, 25088)
    layers["classifier.3"] = (4096, 4096)
    layers["classifier.6"] = (num_classes, 4096)
    return _weights_and_biases(layers)


def _resnet18_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18's state dict: bias-free convs, each followed by a BatchNorm."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, out: int, into: int, kernel: int) -> None:
        shapes[f"{conv}.weight"] = (out, into, kernel, kernel)
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{buffer}"] = (out,)
        shapes[f"{bn}.num_batches_tracked"] = ()

    conv_bn("conv1", "bn1", 64, 3, 7)
    into = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            name = f"layer{stage}.{block}"
            conv_bn(f"{name}.conv1", f"{name}.bn1", planes, into, 3)
            conv_bn(f"{name}.conv2", f"{name}.bn2", planes, planes, 3)
            if block == 0 and stage > 1:
                conv_bn(f"{name}.downsample.0", f"{name}.downsample.1", planes, into, 1)
            into = planes
    shapes["fc.weight"], shapes["fc.bias"] = (num_classes, 512), (num_classes,)
    return shapes


def _weights_and_biases(layers: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, shape in layers.items():
        shapes[f"{name}.weight"] = shape
        shapes[f"{name}.bias"] = (shape[0],)
    return shapes


@pytest.mark.parametrize(
    "name, expected", [("alexnet", _alexnet_shapes), ("vgg16", _vgg16_shapes), ("resnet18", _resnet18_shapes)]
)
@pytest.mark.parametrize("prefix", ["torchvision:", ""])
def test_torchvision_specs_give_torchvision_names_and_shapes(name, expected, prefix):
    model = load_model(prefix + name, num_classes=7)
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert actual == expected(7)
    assert not model.training and model.input_size == (3, 224, 224)


def test_a_torchvision_style_file_loads_unchanged(tmp_path):
    torch.manual_seed(0)
    state = {key: torch.randn(shape) for key, shape in _alexnet_shapes(1000).items()}
    torch.save(state, tmp_path / "alexnet.pth")
    model = load_model("torchvision:alexnet", tmp_path / "alexnet.pth")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


class _CreatesAFile:
    """Unpickling this object opens (so creates) ``path``: the classic malicious weight file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_creates_nothing(tmp_path):
    proof, target = tmp_path / "proof.txt", tmp_path / "pwned.txt"
    model = create("zfnet-mini", num_classes=3)
    # The payload is real: an unsafe load creates its file.
    torch.save({"state_dict": model.state_dict(), "x": _CreatesAFile(str(proof))}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)
    assert proof.exists()
    torch.save({"state_dict": model.state_dict(), "x": _CreatesAFile(str(target))}, tmp_path / "evil.pt")
    before = model.features[0].weight.detach().clone()
    with pytest.raises(ValueError, match="refused"):
        load_weights(model, tmp_path / "evil.pt")
    assert not target.exists()
    torch.testing.assert_close(model.features[0].weight.detach(), before, rtol=0, atol=0)


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"model": sd}])
def test_wrapped_checkpoints_load(tmp_path, wrap):
    source, target = create("zfnet-mini", num_classes=4), create("zfnet-mini", num_classes=4)
    torch.save(wrap(source.state_dict()), tmp_path / "w.pt")
    load_weights(target, tmp_path / "w.pt")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0)


def test_safetensors_load(tmp_path):
    from safetensors.torch import save_file

    source, target = create("zfnet-mini", num_classes=4), create("zfnet-mini", num_classes=4)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    load_weights(target, tmp_path / "w.safetensors")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0)


def test_mismatch_lists_missing_unexpected_and_wrong_shapes(tmp_path):
    state = create("zfnet-mini", num_classes=4).state_dict()
    del state["features.0.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["classifier.6.weight"] = torch.zeros(5, 512)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(WeightsMismatchError) as caught:
        load_weights(create("zfnet-mini", num_classes=4), tmp_path / "w.pt")
    error = caught.value
    assert error.missing == ["features.0.bias"]
    assert error.unexpected == ["extra.weight"]
    assert error.wrong_shape == ["classifier.6.weight (file (5, 512), model (4, 512))"]
    assert "features.0.bias" in str(error) and "extra.weight" in str(error)


def test_bad_names_and_arguments_are_explained():
    with pytest.raises(ValueError, match="'resnet' is not registered"):
        create("resnet")
    with pytest.raises(ValueError, match="num_classes=0"):
        create("zfnet-mini", num_classes=0)
    with pytest.raises(ValueError, match="already registered"):
        register_model("zfnet")(lambda num_classes: nn.Linear(1, num_classes))
    with pytest.raises(FileNotFoundError, match="no-such.pt"):
        load_weights(create("zfnet-mini"), "no-such.pt")


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = create(name, num_classes=5).train()
    logits_layer = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    seen = {}
    handle = logits_layer.register_forward_hook(lambda _m, inputs, _out: seen.__setitem__("x", inputs[0]))
    try:
        logits = model(torch.randn(1, *model.input_size))
    finally:
        handle.remove()
    assert logits.shape == (1, 5)
    logits.sum().backward()
    # By definition, d(sum of logits)/d(bias) = 1 and d(sum of logits)/d(W) = the layer's input per row.
    torch.testing.assert_close(logits_layer.bias.grad, torch.ones(5))
    torch.testing.assert_close(logits_layer.weight.grad, seen["x"].detach().expand(5, -1))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
