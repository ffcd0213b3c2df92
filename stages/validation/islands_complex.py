"""Measurement of complex islands (many peaks or many beam areas: CLEAN artefacts,
sidelobe ridges, extended emission), bounded in cost whatever the island's size.

The island's pixels are shared among its seed peaks, each pixel going to the nearest
seed in beam units. If a seed is bright enough for a Gaussian (``fit_snr``), Gaussians at
all seeds are fitted together on the pixels within ``window`` beam sigmas of a seed only
(not the whole island: the neighbours' Gaussians take up the artefact next to a real
source, the far reaches of a ridge cost nothing). A bright seed whose Gaussian converged
no wider than ``max_width`` beams in any direction is a compact source and reported as
that Gaussian; the other seeds are measured by the moments of their pixels (sum,
centroid, second moments), which neither drops their flux nor spends a many-parameter
fit on a ridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussfit import Components, beam_distance2, fit_gaussians
from .moments import pixel_moments


@dataclass(frozen=True)
class Parts(Components):
    """Measured components of one island in full-image pixels (peak ``amp``, position,
    sigmas and pa (rad) as in :class:`.gaussfit.Components`); ``total`` in image units ×
    beam areas; ``total_err_rms`` its error in units of the local rms where known from the
    pixel count (moments), NaN where a Gaussian's (Condon) error applies; ``kind`` the
    method."""

    total: np.ndarray
    total_err_rms: np.ndarray
    kind: np.ndarray


def _cov(smaj: float, smin: float, pa: float) -> np.ndarray:
    u = np.array([-np.sin(pa), np.cos(pa)])  # major axis
    v = np.array([np.cos(pa), np.sin(pa)])
    return smaj * smaj * np.outer(u, u) + smin * smin * np.outer(v, v)


def beam_widths(smaj: float, smin: float, pa: float,
                beam_sigma: tuple[float, float, float]) -> float:
    """How many beams wide a Gaussian is in its widest direction relative to the beam
    (the square root of the largest eigenvalue of C_beam⁻¹·C): 1 for the beam itself."""
    c = np.linalg.solve(_cov(*beam_sigma), _cov(smaj, smin, pa))
    return float(np.sqrt(np.max(np.real(np.linalg.eigvals(c)))))


def measure_complex(sub: np.ndarray, isl: np.ndarray, px: np.ndarray, py: np.ndarray,
                    seed_snr: np.ndarray, offset: tuple[int, int],
                    beam_sigma: tuple[float, float, float], fit_snr: float = 10.0,
                    window: float = 2.0, max_width: float = 1.5, max_nfev: int = 100) -> Parts:
    """Measure the island ``isl`` (mask on ``sub``, whose [0, 0] is image pixel
    ``offset`` = (row, col)) around its seeds (``px``, ``py``: ``sub`` indices, S/N
    ``seed_snr``)."""
    y_lo, x_lo = offset
    bsmaj, bsmin, _ = beam_sigma
    beam_area = 2.0 * np.pi * bsmaj * bsmin
    yy, xx = np.nonzero(isl)
    vals = sub[yy, xx].astype(np.float64)
    d2 = beam_distance2(xx[:, None] - px[None, :], yy[:, None] - py[None, :], beam_sigma)
    near = d2 <= window * window
    owner = np.argmin(d2, axis=1)
    peaks = sub[py, px]
    bright = np.asarray(seed_snr) >= fit_snr
    good = np.zeros(len(px), bool)
    fit = None
    if bright.any():
        m = np.zeros(isl.shape, bool)
        win = near.any(axis=1)
        m[yy[win], xx[win]] = True
        fit = fit_gaussians(sub, m, px + x_lo, py + y_lo, peaks, beam_sigma, offset=offset,
                            max_nfev=max_nfev)
        if fit.ok:
            moved = beam_distance2(fit.x - px - x_lo, fit.y - py - y_lo, beam_sigma)
            wide = np.array([beam_widths(a, b, t, beam_sigma)
                             for a, b, t in zip(fit.smaj, fit.smin, fit.pa)])
            good = (bright & np.isfinite(fit.amp) & (fit.amp > 0) & (wide <= max_width)
                    & (moved <= window * window))
    rows: list[tuple] = []
    for k in range(len(px)):
        if good[k]:
            assert fit is not None
            rows.append((fit.amp[k], fit.x[k], fit.y[k], fit.smaj[k], fit.smin[k], fit.pa[k],
                         fit.amp[k] * fit.smaj[k] * fit.smin[k] / (bsmaj * bsmin), np.nan,
                         "gaussian"))
            continue
        cell = owner == k
        mo = pixel_moments(vals[cell], xx[cell] + x_lo, yy[cell] + y_lo)
        rows.append((mo.peak, mo.x, mo.y, mo.smaj, mo.smin, mo.pa, mo.total / beam_area,
                     np.sqrt(mo.npix / beam_area), "moments"))
    cols = list(zip(*rows))
    return Parts(*(np.asarray(c, float) for c in cols[:8]), kind=np.asarray(cols[8], str))


__all__ = ["Parts", "measure_complex"]
