"""How an optimised image is made: its parameterisation and the random transforms it must survive.

Two parameterisations, each a small object with ``init`` (the starting parameters) and ``pixels`` (the
parameters as pixels, ``(N, C, H, W)``, 0 = black and 1 = white):

- ``PixelImage``: the pixels themselves (Yosinski et al. 2015, "Understanding Neural Networks Through
  Deep Visualization"; Erhan et al. 2009).
- ``FourierImage``: Olah et al. 2017 (Distill, "Feature Visualization", section "Preconditioning and
  parameterization"), as in Lucid's ``fft_image`` and ``to_valid_rgb``: the parameters are a spectrum,
  scaled by ``1 / f`` (every spatial frequency band gets equal energy, as in natural images), turned
  into an image by an orthonormal inverse real FFT and divided by 4, then mapped from a decorrelated
  colour space to RGB by Lucid's colour matrix and squashed into (0, 1) by a sigmoid::

      pixels = sigmoid(M @ irfft2(spectrum * scale, norm="ortho") / 4)     per pixel, M (3, 3)

  ``spectrum_of`` is the inverse: an image's spectrum, from which ``pixels`` gives the image back.

``Robustness`` is the transformation robustness of Olah et al. 2017 (Lucid's ``standard_transforms``):
every step the image is shifted, scaled and rotated at random before the model sees it, in one
``torchvision.transforms.v2.functional.affine`` call (bilinear, filled with 0 = the mean colour).

>>> import torch
>>> fourier = FourierImage()
>>> spectrum = fourier.init((2, 3, 8, 8), torch.Generator().manual_seed(0), torch.float64, "cpu")
>>> tuple(spectrum.shape)  # (N, C, H, W // 2 + 1) complex numbers, as (real, imaginary) pairs
(2, 3, 8, 5, 2)
>>> image = fourier.pixels(spectrum, (8, 8))
>>> torch.allclose(fourier.pixels(fourier.spectrum_of(image), (8, 8)), image)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

__all__ = ["COLOUR_CORRELATION", "FourierImage", "PixelImage", "Robustness", "fourier_scale"]

# Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's colour covariance (its SVD factors
# times the roots of the singular values); each column is divided by the largest column norm.
_LUCID_COLOURS = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
COLOUR_CORRELATION = _LUCID_COLOURS / _LUCID_COLOURS.norm(dim=0).max()


def fourier_scale(height: int, width: int, decay_power: float = 1.0) -> Tensor:
    """``1 / max(f, 1 / max(h, w)) ** decay_power`` for ``torch.fft.rfft2``'s frequencies, (h, w // 2 + 1).

    ``f`` is the frequency's length in cycles per pixel; the floor ``1 / max(h, w)`` keeps the constant
    term finite (its scale is that of the lowest frequency).

    >>> fourier_scale(4, 4)  # f = 0, 1/4, 1/2 along a row; the corner (1/2, 1/2) has f = 0.707
    tensor([[4.0000, 4.0000, 2.0000],
            [4.0000, 2.8284, 1.7889],
            [2.0000, 1.7889, 1.4142],
            [4.0000, 2.8284, 1.7889]], dtype=torch.float64)
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    frequency = torch.sqrt(fy**2 + fx**2).clamp(min=1.0 / max(height, width))
    return frequency ** (-decay_power)


@dataclass(frozen=True)
class PixelImage:
    """The pixels are the parameters; they start as ``0.5 + sd * noise`` (grey with a little noise)."""

    sd: float = 0.01

    def init(self, shape, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        return (0.5 + self.sd * noise).to(dtype=dtype, device=device)

    def pixels(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        return params


@dataclass(frozen=True)
class FourierImage:
    """Olah et al. 2017's parameterisation (see the module docstring); ``sd``: the spectrum's initial noise.

    ``decorrelate``: map from Lucid's decorrelated colour space (3-channel images only; ``None``: when the
    image has 3 channels).
    """

    decay_power: float = 1.0
    decorrelate: bool | None = None
    sd: float = 0.01

    def init(self, shape, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
        n, c, h, w = shape
        self._check_channels(c)
        spectrum = torch.randn((n, c, h, w // 2 + 1, 2), generator=generator, dtype=torch.float64)
        return (self.sd * spectrum).to(dtype=dtype, device=device)

    def pixels(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        """``size``: (height, width) of the image (the spectrum alone cannot tell an odd width)."""
        h, w = size
        scale = fourier_scale(h, w, self.decay_power).to(params.device, params.dtype)
        spectrum = torch.view_as_complex(params) * scale
        image = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4
        if self._decorrelates(image.shape[1]):
            image = torch.einsum("ij,njhw->nihw", COLOUR_CORRELATION.to(image.device, image.dtype), image)
        return torch.sigmoid(image)

    def spectrum_of(self, pixels: Tensor) -> Tensor:
        """The parameters whose ``pixels`` are ``pixels`` (values strictly between 0 and 1)."""
        if not bool(((pixels > 0) & (pixels < 1)).all()):
            raise ValueError("pixels: must lie strictly between 0 and 1 (the sigmoid's range)")
        h, w = pixels.shape[-2:]
        image = torch.logit(pixels)
        if self._decorrelates(image.shape[1]):
            inverse = torch.linalg.inv(COLOUR_CORRELATION).to(image.device, image.dtype)
            image = torch.einsum("ij,njhw->nihw", inverse, image)
        scale = fourier_scale(h, w, self.decay_power).to(image.device, image.dtype)
        return torch.view_as_real(torch.fft.rfft2(image * 4, norm="ortho") / scale).contiguous()

    def _decorrelates(self, channels: int) -> bool:
        return channels == 3 if self.decorrelate is None else self.decorrelate

    def _check_channels(self, channels: int) -> None:
        if self.decorrelate and channels != 3:
            raise ValueError(
                f"FourierImage(decorrelate=True): the colour decorrelation needs 3 channels, the image has "
                f"{channels}; use decorrelate=None or False"
            )


@dataclass(frozen=True)
class Robustness:
    """Random shift, scale and rotation applied to the image every step (Olah et al. 2017).

    ``shift``: the largest shift, a fraction of the image side (Lucid: 8 + 4 pixels at 224, about 0.05);
    ``scales`` and ``degrees``: the values drawn from, uniformly (Lucid's: scales 0.9 to 1.1 in steps of
    0.02; rotations -10 to 10 degrees, with 0 drawn six times more often than the others).

    >>> import torch
    >>> image = torch.arange(16.0).view(1, 1, 4, 4)
    >>> still = Robustness(shift=0.0, scales=(1.0,), degrees=(0,))
    >>> torch.equal(still(image, torch.Generator().manual_seed(0)), image)
    True
    """

    shift: float = 0.05
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    degrees: tuple[int, ...] = (*range(-10, 11), 0, 0, 0, 0, 0)

    def __post_init__(self) -> None:
        if not 0 <= self.shift < 0.5:
            raise ValueError(f"Robustness(shift={self.shift!r}): must be in [0, 0.5), a fraction of the side")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"Robustness(scales={self.scales!r}): must be positive numbers, at least one")
        if not self.degrees:
            raise ValueError("Robustness(degrees=()): give at least one angle (0 for no rotation)")

    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """The same random transform for every image of the batch, drawn from ``generator``."""
        most = math.floor(self.shift * max(image.shape[-2:]))
        dy, dx = (int(v) for v in torch.randint(-most, most + 1, (2,), generator=generator))
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=generator))]
        angle = self.degrees[int(torch.randint(len(self.degrees), (1,), generator=generator))]
        if (dy, dx, scale, angle) == (0, 0, 1.0, 0):
            return image
        return tvf.affine(
            image,
            angle=float(angle),
            translate=[dx, dy],
            scale=float(scale),
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
