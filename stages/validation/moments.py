"""Flux-weighted moments of a set of pixels: the measurement of island parts that a
Gaussian does not describe (extended emission, sidelobe ridges).

Same conventions as :mod:`.gaussfit`: x = column, y = row, position angle (rad) from +y
toward -x, widths as Gaussian sigmas in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Sum, brightest value, centroid, second-moment widths and orientation of pixels."""

    total: float  # sum of the pixel values (image units × pixels)
    peak: float
    x: float
    y: float
    smaj: float
    smin: float
    pa: float
    npix: int


def pixel_moments(vals: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> Moments:
    """Moments of the pixels (``xx``, ``yy``) with values ``vals``; negative values get no
    weight in the centroid and widths. Widths are at least 1/√12 px (one pixel's own)."""
    v = np.asarray(vals, np.float64)
    x = np.asarray(xx, np.float64)
    y = np.asarray(yy, np.float64)
    if v.size == 0:
        raise ValueError("moments of no pixels")
    w = np.clip(v, 0.0, None)
    sw = w.sum()
    if not sw > 0:
        w, sw = np.ones_like(v), float(v.size)
    xc, yc = float((w * x).sum() / sw), float((w * y).sum() / sw)
    dx, dy = x - xc, y - yc
    cxx, cyy, cxy = (w * dx * dx).sum() / sw, (w * dy * dy).sum() / sw, (w * dx * dy).sum() / sw
    half_tr, det_part = 0.5 * (cxx + cyy), np.hypot(0.5 * (cxx - cyy), cxy)
    floor = 1.0 / 12.0
    lam1, lam2 = max(half_tr + det_part, floor), max(half_tr - det_part, floor)
    # major axis direction (vx, vy) = (-sin pa, cos pa)
    theta = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)  # angle of the major axis from +x
    vx, vy = np.cos(theta), np.sin(theta)
    pa = float(np.arctan2(-vx, vy))
    pa = float(np.mod(pa + np.pi / 2, np.pi) - np.pi / 2)
    return Moments(total=float(v.sum()), peak=float(v.max()), x=xc, y=yc,
                   smaj=float(np.sqrt(lam1)), smin=float(np.sqrt(lam2)), pa=pa, npix=int(v.size))


__all__ = ["Moments", "pixel_moments"]
