"""Elliptical 2-D Gaussian fits of image islands, and their Condon (1997) errors.

Pixel coordinates: x = column, y = row. The position angle ``pa`` (rad) is measured
from +y toward -x, which is north through east on a standard (RA decreasing with x) image.
Widths are Gaussian sigmas in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian2d(x: np.ndarray, y: np.ndarray, amp: float, x0: float, y0: float, smaj: float,
               smin: float, pa: float) -> np.ndarray:
    """Elliptical Gaussian of peak ``amp`` at (x0, y0)."""
    dx, dy = x - x0, y - y0
    s, c = np.sin(pa), np.cos(pa)
    a = -dx * s + dy * c
    b = dx * c + dy * s
    return amp * np.exp(-0.5 * (a * a / (smaj * smaj) + b * b / (smin * smin)))


@dataclass(frozen=True)
class GaussFit:
    """Fitted components: arrays of amp, x, y, smaj, smin, pa (one entry per component)."""

    amp: np.ndarray
    x: np.ndarray
    y: np.ndarray
    smaj: np.ndarray
    smin: np.ndarray
    pa: np.ndarray
    ok: bool


def fit_gaussians(data: np.ndarray, mask: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                  amp0: np.ndarray, beam_sigma: tuple[float, float, float],
                  offset: tuple[int, int] = (0, 0)) -> GaussFit:
    """Least-squares fit of ``len(x0)`` elliptical Gaussians to the pixels of ``data``
    where ``mask`` is true. Initial guesses: peaks (x0, y0, amp0) in the coordinates of
    the full image (``offset`` = (row, col) of ``data[0, 0]``) and the beam shape.
    Widths are kept between 0.5× the beam minor sigma and 20× the beam major sigma."""
    bsmaj, bsmin, bpa = beam_sigma
    yy, xx = np.nonzero(mask)
    vals = data[yy, xx].astype(np.float64)
    xx = xx + offset[1]
    yy = yy + offset[0]
    n = len(x0)
    p0, lo, hi = [], [], []
    span = 3.0 * bsmaj + 2.0
    for i in range(n):
        a0 = max(float(amp0[i]), 1e-30)
        p0 += [a0, x0[i], y0[i], bsmaj, bsmin, bpa]
        lo += [0.0, x0[i] - span, y0[i] - span, 0.5 * bsmin, 0.5 * bsmin, bpa - 2 * np.pi]
        hi += [10.0 * a0, x0[i] + span, y0[i] + span, 20.0 * bsmaj, 20.0 * bsmaj,
               bpa + 2 * np.pi]
    p0 = np.clip(np.asarray(p0), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)

    def resid(p: np.ndarray) -> np.ndarray:
        model = np.zeros_like(vals)
        for k in range(n):
            model += gaussian2d(xx, yy, *p[6 * k:6 * k + 6])
        return model - vals

    ok = vals.size > 6 * n
    if ok:
        try:
            res = least_squares(resid, p0, bounds=(lo, hi), method="trf", x_scale="jac",
                                max_nfev=200 * n)
            p, ok = res.x, bool(res.success)
        except (ValueError, np.linalg.LinAlgError):
            p, ok = p0, False
    else:
        p = p0
    p = p.reshape(n, 6)
    amp, x, y, sa, sb, pa = p.T.copy()
    swap = sb > sa
    sa[swap], sb[swap] = sb[swap], sa[swap]
    pa = np.where(swap, pa + np.pi / 2, pa)
    pa = np.mod(pa + np.pi / 2, np.pi) - np.pi / 2
    return GaussFit(amp=amp, x=x, y=y, smaj=sa, smin=sb, pa=pa, ok=ok)


def condon_errors(amp: np.ndarray, smaj: np.ndarray, smin: np.ndarray, pa: np.ndarray,
                  rms: np.ndarray, beam_fwhm: float) -> dict[str, np.ndarray]:
    """1σ errors of a Gaussian fit in correlated noise (Condon 1997, eq. 41 & 21).

    ``beam_fwhm`` (pixels) is the noise correlation length θN. Returns errors of the
    peak, the integrated flux (relative to the peak's units × area ratio applied by the
    caller) as a fraction ``int_frac``, and of x and y (pixels).
    """
    tM, tm = FWHM_PER_SIGMA * smaj, FWHM_PER_SIGMA * smin
    tN = beam_fwhm
    snr2 = (amp / np.maximum(rms, 1e-300)) ** 2

    def rho2(am: float, an: float) -> np.ndarray:
        return (tM * tm / (4.0 * tN * tN) * (1 + (tN / tM) ** 2) ** am
                * (1 + (tN / tm) ** 2) ** an * snr2)

    r_a = np.sqrt(rho2(1.5, 1.5))
    r_M = np.sqrt(rho2(2.5, 0.5))
    r_m = np.sqrt(rho2(0.5, 2.5))
    amp_frac = np.sqrt(2.0) / r_a
    maj_frac = np.sqrt(2.0) / r_M
    min_frac = np.sqrt(2.0) / r_m
    e_maj = smaj * np.sqrt(2.0) / r_M  # position error along the major axis (sigma_M)
    e_min = smin * np.sqrt(2.0) / r_m
    s, c = np.sin(pa), np.cos(pa)
    ex = np.sqrt((e_maj * s) ** 2 + (e_min * c) ** 2)
    ey = np.sqrt((e_maj * c) ** 2 + (e_min * s) ** 2)
    int_frac = np.sqrt(amp_frac**2 + (tN * tN / (tM * tm)) * (maj_frac**2 + min_frac**2))
    return {"peak": amp * amp_frac, "int_frac": int_frac, "x": ex, "y": ey}


__all__ = ["gaussian2d", "GaussFit", "fit_gaussians", "condon_errors", "FWHM_PER_SIGMA"]
