"""Signed distance functions (SDFs) of 2-D shapes, evaluated on arrays of points, in NumPy.

A shape is a function ``sdf(u, v) -> distance``: negative inside, positive outside, in the object's
own units. Drawing with ``alpha = clip(0.5 - distance * pixels_per_unit, 0, 1)`` gives anti-aliased
edges for free (Inigo Quilez, "2D distance functions"). The axes are image axes: u to the right,
v downwards.

>>> import numpy as np
>>> float(circle(0, 0, 1)(np.array(2.0), np.array(0.0)))  # 1 unit outside a unit circle
1.0
>>> float(box(0, 0, 1, 1)(np.array(0.0), np.array(0.5)))  # 0.5 inside a 2x2 square
-0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SDF = Callable[[np.ndarray, np.ndarray], np.ndarray]


def circle(cu: float, cv: float, radius: float) -> SDF:
    """Disc centred at (cu, cv)."""
    return lambda u, v: np.hypot(u - cu, v - cv) - radius


def box(cu: float, cv: float, half_width: float, half_height: float, rounding: float = 0.0) -> SDF:
    """Axis-aligned rectangle centred at (cu, cv), with corners rounded by ``rounding``."""

    def sdf(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        qu = np.abs(u - cu) - (half_width - rounding)
        qv = np.abs(v - cv) - (half_height - rounding)
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        return outside + np.minimum(np.maximum(qu, qv), 0) - rounding

    return sdf


def polygon(points: Sequence[tuple[float, float]]) -> SDF:
    """Simple polygon through ``points`` (any orientation): distance to the nearest edge, signed by
    the even-odd rule."""
    vertices = np.asarray(points, dtype=np.float64)

    def sdf(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        distance_sq = np.full(np.broadcast(u, v).shape, np.inf)
        inside = np.zeros(distance_sq.shape, dtype=bool)
        for (au, av), (bu, bv) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
            eu, ev = bu - au, bv - av
            wu, wv = u - au, v - av
            t = np.clip((wu * eu + wv * ev) / (eu * eu + ev * ev), 0, 1)
            distance_sq = np.minimum(distance_sq, (wu - t * eu) ** 2 + (wv - t * ev) ** 2)
            crosses = (v >= av) != (v >= bv)  # edge straddles the horizontal line through the point
            with np.errstate(divide="ignore", invalid="ignore"):
                at = au + (v - av) * eu / np.where(ev == 0, 1, ev)
            inside ^= crosses & (u < at)
        return np.where(inside, -1, 1) * np.sqrt(distance_sq)

    return sdf


def star(points: int, outer: float, inner: float) -> SDF:
    """Regular star centred at the origin with one point straight up."""
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return polygon(list(zip(radii * np.cos(angles), radii * np.sin(angles), strict=True)))


def union(*shapes: SDF) -> SDF:
    """Every point inside any of ``shapes``."""
    return lambda u, v: np.minimum.reduce([shape(u, v) for shape in shapes])


def subtract(shape: SDF, hole: SDF) -> SDF:
    """``shape`` with ``hole`` cut out."""
    return lambda u, v: np.maximum(shape(u, v), -hole(u, v))


def intersect(*shapes: SDF) -> SDF:
    """Every point inside all of ``shapes``."""
    return lambda u, v: np.maximum.reduce([shape(u, v) for shape in shapes])


def half_plane_above(v0: float) -> SDF:
    """Points with v <= v0 (above the line, since v points down)."""
    return lambda u, v: v - v0 + 0 * u
