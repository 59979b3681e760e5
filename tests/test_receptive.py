"""``receptive_field`` on models that are not chains: residual blocks, concatenated branches, F.relu.

Each field is checked against the support of the gradient (positive weights and images, so that
nothing cancels; the union over 16 images covers every max-pool switch) and against hand arithmetic.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.engine import project, receptive_field


class Block(nn.Module):
    """A torchvision-style basic block: two 3x3 convs, the identity (or a strided 1x1 conv) added."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1)
        self.downsample = nn.Conv2d(channels_in, channels_out, 1, stride) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        out += x if self.downsample is None else self.downsample(x)
        return out.relu_()


class Branches(nn.Module):
    """Inception-style: a 1x1 and a 5x5 branch, concatenated along the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow, self.wide = nn.Conv2d(8, 2, 1), nn.Conv2d(8, 2, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.narrow(x), self.wide(x)], dim=1)


def positive_residual_net() -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        Block(4, 4, 1), Block(4, 8, 2), Branches(),
    )  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    return model.eval()


def test_residual_block_field_by_hand():
    # stem conv k3 s2 p1: size 3, jump 2, offset -1; pool k3 s2 p1: 7, 4, -3; block 3's two 3x3 convs:
    # 15 then 23, offset -7 then -11; the identity keeps (7, -3): the union is (23, 4, -11)
    field = receptive_field(positive_residual_net(), "3", (1, 64, 64))
    assert (field.size, field.jump, field.offset) == ((23, 23), (4, 4), (-11, -11))
    # block 4: conv1 k3 s2 p1 -> 31, 8, -15; conv2 -> 47, 8, -23; the 1x1/2 shortcut -> 23, 8, -11
    field = receptive_field(positive_residual_net(), "4", (1, 64, 64))
    assert (field.size, field.jump, field.offset) == ((47, 47), (8, 8), (-23, -23))


@pytest.mark.parametrize("layer", ["3", "4", "4.conv1", "5"])
def test_fields_of_a_residual_net_are_the_support_of_the_gradient(layer):
    model = positive_residual_net()
    images = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    field = receptive_field(model, layer, (1, 64, 64))
    with torch.no_grad():
        store = []
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.append(o))
        model(images[:1])
        handle.remove()
    channels, height, width = store[0].shape[1:]
    positions = [(0, 0), (height // 2, width // 3), (height - 1, width - 1)]
    # the field is the layer's, its widest channel's: after the concatenation, the 5x5 branch (last)
    units = torch.tensor([[i, channels - 1, y, x] for y, x in positions for i in range(len(images))])
    grads = project(model, images, layer, units, rule="gradient", seed="one").view(len(positions), -1, 64, 64)
    for (y, x), grad in zip(positions, grads, strict=True):
        support = torch.nonzero(grad.abs().sum(dim=0))  # union over the images
        rows, columns = support[:, 0], support[:, 1]
        assert (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1) == field.box(y, x)


def test_global_gating_sees_the_whole_image():
    class Gated(nn.Module):  # squeeze-and-excitation: every unit is scaled by a global average
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return y * torch.sigmoid(y.mean(dim=(2, 3), keepdim=True))

    assert receptive_field(Gated(), "conv", (1, 20, 20)).box(0, 0) == (0, 3, 0, 3)
    assert receptive_field(Gated(), "", (1, 20, 20)).box(0, 0) == (0, 20, 0, 20)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_padding_modes_give_the_same_field(mode):
    # a non-zero padding mode pads with F.pad, then convolves without padding
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=(2, 1), padding_mode=mode), nn.Conv2d(2, 1, 3))
    field = receptive_field(model, "1", (1, 20, 20))
    # conv 3/2 pad (2, 1): 3, 2, (-2, -1); conv 3: 3 + 2*2 = 7, offsets unchanged
    assert (field.size, field.jump, field.offset) == ((7, 7), (2, 2), (-2, -1))


def test_unknown_resampling_is_refused_by_name():
    class Upsampled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.out = nn.Conv2d(1, 2, 3), nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(F.interpolate(self.conv(x), scale_factor=2))

    assert receptive_field(Upsampled(), "conv", (1, 12, 12)).size == (3, 3)
    with pytest.raises(ValueError, match=r"'interpolate' turns a \(10, 10\) map into a \(20, 20\) one"):
        receptive_field(Upsampled(), "out", (1, 12, 12))


def test_layer_errors():
    model = positive_residual_net()
    with pytest.raises(ValueError, match="nope"):
        receptive_field(model, "nope", (1, 64, 64))
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(model, "3", (64, 64))


def test_resnet18_fields_by_hand():
    from torchvision.models import resnet18

    # conv1 7/2 pad 3: 7, 2, -3; maxpool 3/2 pad 1: 11, 4, -5; layer1, four 3x3 convs: 43, 4, -21;
    # each later stage: a 3x3/2 conv then three 3x3 convs (the 1x1/2 shortcut lies inside the union)
    expected = {"layer1": (43, 4, -21), "layer2": (99, 8, -49), "layer3": (211, 16, -105),
                "layer4": (435, 32, -217)}  # fmt: skip
    model = resnet18(num_classes=10)
    for layer, (size, jump, offset) in expected.items():
        field = receptive_field(model, layer, (3, 224, 224))
        assert (field.size, field.jump, field.offset) == ((size,) * 2, (jump,) * 2, (offset,) * 2)


def test_channels_last_blocks_keep_the_field_convnext():
    # ConvNeXt's blocks permute to channels-last, layer_norm and linear over the channels, permute back:
    # the field follows the map's axes through the permutations. By hand: stem 4/4: 4, 4, 0; stage 1's
    # three 7x7 depthwise convs (pad 3) at jump 4: 4 + 3 * 6 * 4 = 76, offset -3 * 3 * 4 = -36; the 2/2
    # downsample: 80, 8, -36. Checked against the gradient's support, as above.
    from torchvision.models import convnext_tiny

    model = convnext_tiny().eval()
    expected = {"features.1": (76, 4, -36), "features.2": (80, 8, -36)}
    for layer, (size, jump, offset) in expected.items():
        field = receptive_field(model, layer, (3, 96, 96))
        assert (field.size, field.jump, field.offset) == ((size,) * 2, (jump,) * 2, (offset,) * 2)
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    field = receptive_field(model, "features.1", (3, 96, 96))
    for y, x in [(0, 0), (12, 7)]:
        grad = project(model, images, "features.1", [[i, 5, y, x] for i in range(2)], rule="gradient")
        support = torch.nonzero(grad.abs().sum(dim=(0, 1)))
        rows, columns = support[:, 0], support[:, 1]
        assert (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1) == field.box(y, x)


@pytest.mark.parametrize("norm", [lambda: nn.GroupNorm(2, 4), lambda: nn.InstanceNorm2d(4)])
def test_statistics_over_the_map_see_the_whole_image(norm):
    # a GroupNorm or InstanceNorm divides every unit by a deviation taken over all positions: the
    # gradient of one unit reaches every pixel, and the field says so
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), norm()).eval()
    assert receptive_field(model, "0", (1, 16, 16)).box(0, 0) == (0, 2, 0, 2)
    assert receptive_field(model, "1", (1, 16, 16)).box(0, 0) == (0, 16, 0, 16)
    image = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    grad = project(model, image, "1", [[0, 0, 0, 0]], rule="gradient", seed="one")
    assert bool((grad[0, 0, -3:, -3:] != 0).all())


def test_token_sequences_see_the_whole_image_vit():
    # ViT: the 16x16/16 patch convolution has a 16-pixel field; its flattened, permuted (N, tokens, C)
    # sequence is no map any more, and every later unit sees the whole image
    from torchvision.models import vit_b_16

    model = vit_b_16(image_size=64).eval()
    field = receptive_field(model, "conv_proj", (3, 64, 64))
    assert (field.size, field.jump, field.offset) == ((16, 16), (16, 16), (0, 0))
    assert receptive_field(model, "encoder.layers.encoder_layer_0", (3, 64, 64)).box(0, 0) == (0, 64, 0, 64)


def test_fields_after_an_unknown_function_only_where_it_reaches():
    # HRNet-style: an upsampled branch beside one that is not. The graph knows which values depend on
    # the interpolation, so only those lose their field; the other branch keeps its own (by hand: conv 3,
    # stride 1: 3, 1, 0; then conv 3 with padding 1: 5, 1, -1)
    from deconvlab.engine import receptive_fields

    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.up, self.side = (
                nn.Conv2d(1, 2, 3),
                nn.Conv2d(2, 2, 1),
                nn.Conv2d(2, 2, 3, padding=1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            upsampled = self.up(F.interpolate(x, scale_factor=2))
            return upsampled.mean() + self.side(x).mean()

    fields = receptive_fields(TwoBranches(), (1, 12, 12))
    assert fields["up"].startswith("receptive_field: the torch function 'interpolate'")
    side = fields["side"]
    assert (side.size, side.jump, side.offset) == ((5, 5), (1, 1), (-1, -1))
    assert list(fields) == ["stem", "up", "side"]  # in the order the modules return
