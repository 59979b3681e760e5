"""First-layer filters (the paper's Fig. 6): size, dominant spatial frequency, dead filters, aliasing.

Zeiler & Fergus changed AlexNet's 11x11 stride-4 first layer to 7x7 stride 2 after seeing, in the
filters, a mix of very high and very low frequencies with few in between, dead filters, and aliasing.
These numbers make the same diagnosis for any model:

- ``rms``: the root mean square of each filter's weights, the quantity the paper's renormalisation clips;
- ``frequency``: the spatial frequency (cycles per pixel) of the strongest component of each filter's
  2-D spectrum, DC excluded; the filter is zero-padded to ``fft_size`` so the peak is located finely
  (a k-tap filter resolves frequencies only to about 1/k, so that is the accuracy to expect);
- ``dead``: filters whose RMS is below ``dead_fraction`` of the median filter's;
- ``aliased``: filters whose frequency exceeds the Nyquist frequency ``0.5 / stride`` of the layer's
  output grid; what they pass is sampled too sparsely by the stride and shows up as a lower frequency.

A 7x7 filter that is one cosine of 0.25 cycles/pixel along x, under stride 2 (Nyquist 0.25):

>>> import numpy as np
>>> x = np.arange(7)
>>> w = np.tile(np.cos(2 * np.pi * 0.25 * x), (7, 1))[None, None]
>>> stats = filter_stats(w, stride=2)
>>> float(stats.frequency[0]), stats.nyquist, bool(stats.aliased[0])
(0.25, 0.25, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FilterStats:
    """Per-filter numbers of a conv layer with weight (C_out, C_in, kh, kw)."""

    rms: np.ndarray
    frequency: np.ndarray
    dead: np.ndarray
    aliased: np.ndarray
    nyquist: float
    stride: int

    def as_dict(self) -> dict:
        """The numbers as plain JSON-ready values."""
        return {
            "rms": self.rms.tolist(),
            "frequency": self.frequency.tolist(),
            "dead": self.dead.tolist(),
            "aliased": self.aliased.tolist(),
            "nyquist": self.nyquist,
            "stride": self.stride,
            "dead_count": int(self.dead.sum()),
            "aliased_count": int(self.aliased.sum()),
        }

    def aliasing_note(self) -> str:
        """One sentence on aliasing for the report."""
        n, total = int(self.aliased.sum()), len(self.rms)
        return (
            f"Stride {self.stride} samples the first layer's output every {self.stride} pixels, so its "
            f"Nyquist frequency is {self.nyquist:.3g} cycles/pixel; {n} of {total} filters peak above it "
            "and alias (the paper's reason to go from AlexNet's stride 4 to stride 2)."
        )


def dominant_frequency(weight: np.ndarray, *, fft_size: int = 64) -> np.ndarray:
    """The radial frequency (cycles/pixel) of each filter's strongest non-DC spectral component.

    ``weight`` is (C_out, C_in, kh, kw); the power spectra of the input channels are summed.
    """
    weight = _as_filters(weight)
    kh, kw = weight.shape[-2:]
    if fft_size < max(kh, kw):
        raise ValueError(f"fft_size must be at least the filter size {max(kh, kw)}; got {fft_size}")
    centred = weight - weight.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fft2(centred, s=(fft_size, fft_size))) ** 2).sum(axis=1)
    power[:, 0, 0] = -1.0  # DC never counts as the dominant component
    flat = power.reshape(len(power), -1).argmax(axis=1)
    fy, fx = np.unravel_index(flat, (fft_size, fft_size))
    freqs = np.fft.fftfreq(fft_size)
    return np.hypot(freqs[fy], freqs[fx])


def filter_rms(weight: np.ndarray) -> np.ndarray:
    """Root mean square of each filter's weights."""
    weight = _as_filters(weight)
    return np.sqrt((weight.reshape(len(weight), -1) ** 2).mean(axis=1))


def filter_stats(weight, *, stride: int, dead_fraction: float = 0.05, fft_size: int = 64) -> FilterStats:
    """RMS, dominant frequency, dead and aliased flags of every filter of a conv layer."""
    if int(stride) < 1:
        raise ValueError(f"stride must be a positive integer; got {stride!r}")
    weight = _as_filters(weight)
    rms = filter_rms(weight)
    frequency = dominant_frequency(weight, fft_size=fft_size)
    nyquist = 0.5 / int(stride)
    dead = rms < dead_fraction * np.median(rms)
    # a dead filter has no meaningful frequency, and cannot alias
    aliased = (frequency > nyquist + 1e-12) & ~dead
    return FilterStats(rms, frequency, dead, aliased, nyquist, int(stride))


def _as_filters(weight) -> np.ndarray:
    if hasattr(weight, "detach"):
        weight = weight.detach().cpu().numpy()
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"weight must be (C_out, C_in, kh, kw); got shape {weight.shape}")
    return weight
