"""A tied-weight convolutional autoencoder: the decoder is conv_transpose with the encoder's own weight.

Encoder: ``z = relu(conv2d(x, W) + b)``, then optionally max-pooling that keeps its switches (the
argmax positions, as Zeiler & Fergus's deconvnet does). Decoder: unpool through the switches,
then ``conv_transpose2d(., W) + c`` with the very same ``nn.Parameter`` ``W``, not a copy: one
tensor, so every gradient step moves the encoder and the decoder together.

Unlike the deconvnet, the decoder does not rectify: here the code is already non-negative.

>>> model = TiedConvAutoencoder(in_channels=1, n_filters=4, kernel_size=3, stride=2, pool_size=2)
>>> x = torch.rand(2, 1, 11, 11)
>>> code = model.encode(x)
>>> tuple(code.features.shape), tuple(model.decode(code).shape)     # back to the input's size
((2, 4, 2, 2), (2, 1, 11, 11))
>>> [name for name, _ in model.named_parameters()]                   # one weight, two biases
['weight', 'encoder_bias', 'decoder_bias']
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deconvlab.arithmetic.shapes import conv_transpose_output_shape


@dataclass(frozen=True)
class Code:
    """What the encoder hands the decoder: features, the pooling switches, and the sizes to undo."""

    features: torch.Tensor
    switches: torch.Tensor | None  # flat argmax indices of F.max_pool2d(..., return_indices=True)
    unpooled_size: tuple[int, int]  # the rectified conv output's H, W
    input_size: tuple[int, int]


class TiedConvAutoencoder(nn.Module):
    """Encoder ``conv -> ReLU -> [max-pool]``; decoder ``[unpool] -> conv_transpose`` with the same W."""

    def __init__(
        self,
        in_channels: int = 1,
        n_filters: int = 16,
        kernel_size: int = 5,
        *,
        stride: int = 1,
        padding: int = 0,
        pool_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("n_filters", n_filters, 1),
                                 ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("padding", padding, 0)):  # fmt: skip
            if not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name}={value!r}: expected an int >= {low}")
        if pool_size is not None and (not isinstance(pool_size, numbers.Integral) or pool_size < 1):
            raise ValueError(f"pool_size={pool_size!r}: expected None or an int >= 1")
        self.stride, self.padding, self.pool_size = stride, padding, pool_size
        generator = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)  # nn.Conv2d's default scale
        shape = (n_filters, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)
        self.encoder_bias = nn.Parameter(torch.zeros(n_filters))
        self.decoder_bias = nn.Parameter(torch.zeros(in_channels))

    def encode(self, x: torch.Tensor) -> Code:
        """``relu(conv2d(x, W) + b)``, then max-pooling with its switches kept."""
        if x.ndim != 4 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"x: expected (N, {self.weight.shape[1]}, H, W) for in_channels={self.weight.shape[1]}, "
                f"got {tuple(x.shape)}"
            )
        z = F.relu(F.conv2d(x, self.weight, self.encoder_bias, stride=self.stride, padding=self.padding))
        unpooled_size = tuple(z.shape[2:])
        if not self.pool_size:
            return Code(z, None, unpooled_size, tuple(x.shape[2:]))
        if min(unpooled_size) < self.pool_size:
            raise ValueError(f"pool_size={self.pool_size}: larger than the feature maps {unpooled_size}")
        pooled, switches = F.max_pool2d(z, self.pool_size, return_indices=True)
        return Code(pooled, switches, unpooled_size, tuple(x.shape[2:]))

    def unpool(self, code: Code) -> torch.Tensor:
        """Put each pooled value back where its switch says it came from (zeros elsewhere)."""
        if code.switches is None:
            return code.features
        return F.max_unpool2d(code.features, code.switches, self.pool_size, output_size=code.unpooled_size)

    def output_padding(self, code: Code) -> tuple[int, int]:
        """The extra rows/columns that bring conv_transpose back to the input's exact size."""
        size = conv_transpose_output_shape(
            code.unpooled_size, self.weight.shape[2:], stride=self.stride, padding=self.padding
        )
        return tuple(want - got for want, got in zip(code.input_size, size, strict=True))

    def decode(self, code: Code) -> torch.Tensor:
        """``conv_transpose2d(unpool(code), W) + c``: down with the encoder's own weight."""
        return F.conv_transpose2d(
            self.unpool(code), self.weight, self.decoder_bias, stride=self.stride, padding=self.padding,
            output_padding=self.output_padding(code),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def fit(
        self,
        X: torch.Tensor,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        learning_rate: float = 1e-2,
        seed: int = 0,
    ) -> list[float]:
        """Minimise the reconstruction MSE with Adam; returns the whole-set MSE after each epoch."""
        X = torch.as_tensor(X, dtype=self.weight.dtype)
        self.encode(X[:1])  # shape checks before any work
        generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(self.parameters(), lr=learning_rate)
        history = []
        for _ in range(epochs):
            order = torch.randperm(len(X), generator=generator)
            for start in range(0, len(X), batch_size):
                batch = X[order[start : start + batch_size]]
                optimiser.zero_grad()
                F.mse_loss(self(batch), batch).backward()
                optimiser.step()
            with torch.no_grad():
                history.append(float(F.mse_loss(self(X), X)))
        return history
