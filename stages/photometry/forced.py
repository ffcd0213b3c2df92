"""Forced photometry: the flux of a point source at a known position, by a fit of the
restoring beam (fixed position and shape, free amplitude) to the pixels around it.

For an image whose noise is stationary over the fit box, the least-squares amplitude is
``A = sum(K d) / sum(K^2)`` with ``K`` the beam centred on the position, and its error is
``sigma sqrt(K^T R K) / sum(K^2)``, where ``R`` is the noise's normalised autocorrelation
(the pixels are correlated over a beam: Condon 1997, PASP 109, 166). ``R`` is measured
from the image itself (:func:`noise_acf`), so the error holds whatever the PSF. Pure
functions on arrays; vectorised over sources (no loop in Python).
"""

from __future__ import annotations

import numpy as np

FOUR_LN2 = 4.0 * np.log(2.0)


def beam_kernel(dx: np.ndarray, dy: np.ndarray, bmaj_px: float, bmin_px: float,
                bpa_deg: float) -> np.ndarray:
    """The restoring beam (peak 1) at pixel offsets ``dx`` (along the image's x axis, RA
    decreasing) and ``dy`` (Dec increasing); ``bpa`` in degrees east of north."""
    pa = np.radians(bpa_deg)
    s, c = np.sin(pa), np.cos(pa)
    major = -dx * s + dy * c  # north towards east (east is -x)
    minor = dx * c + dy * s
    return np.exp(-FOUR_LN2 * ((major / bmaj_px) ** 2 + (minor / bmin_px) ** 2))


def noise_acf(residual: np.ndarray, half: int) -> np.ndarray:
    """The noise's autocorrelation from a residual image, normalised to 1 at zero lag,
    cropped to lags within ``half`` pixels: shape ``(2 half + 1, 2 half + 1)``."""
    from scipy.fft import irfft2, next_fast_len, rfft2

    r = np.nan_to_num(np.asarray(residual, dtype=np.float64))
    r = r - np.median(r)
    ny, nx = r.shape
    # zero-padded by more than the largest lag: no wrap-around within it
    s = (next_fast_len(ny + half + 1, real=True), next_fast_len(nx + half + 1, real=True))
    f = rfft2(r, s=s)
    acf = irfft2(f.real ** 2 + f.imag ** 2, s=s)
    lags = np.r_[0:half + 1, -half:0]
    crop = np.fft.fftshift(acf[np.ix_(lags, lags)])
    return crop / crop[half, half]


def noise_factor(bmaj_px: float, bmin_px: float, bpa_deg: float, acf: np.ndarray) -> float:
    """The amplitude's error in units of the pixel noise sigma, ``sqrt(K^T R K) /
    sum(K^2)``, for the beam centred on a pixel and the noise autocorrelation ``acf``
    (:func:`noise_acf`)."""
    half = acf.shape[0] // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    k = beam_kernel(xx, yy, bmaj_px, bmin_px, bpa_deg)
    kk = float(np.sum(k * k))
    # K^T R K = sum over pixel pairs of K_i K_j R(i - j): the kernel's autocorrelation
    # against R, through FFTs
    n = 2 * k.shape[0] - 1
    fk = np.fft.rfft2(k, s=(n, n))
    kacf = np.fft.fftshift(np.fft.irfft2(np.abs(fk) ** 2, s=(n, n)))
    c = n // 2
    kacf = kacf[c - half:c + half + 1, c - half:c + half + 1]
    return float(np.sqrt(max(np.sum(kacf * acf), 0.0)) / kk)


def position_loss(pos_err_px: np.ndarray, bmaj_px: float, bmin_px: float) -> np.ndarray:
    """The mean fraction of a point source's flux that the beam fit recovers when the
    position it is fitted at is off by a Gaussian error of ``pos_err_px`` (1 sigma per
    axis, pixels). The fit at offset ``d`` from the source gives ``exp(-d^T C^-1 d / 4)``
    of its flux (``C`` the beam's covariance: the product of two Gaussians of the beam's
    shape, over the kernel's own norm); averaged over ``d ~ N(0, e^2 I)`` that is
    ``prod_i (1 + e^2 / (2 s_i^2))^(-1/2)`` over the beam's axes (``s_i`` its sigmas).
    Dividing by it makes the fluxes of a catalog with position errors unbiased."""
    e2 = np.asarray(pos_err_px, dtype=np.float64) ** 2
    out = np.ones_like(e2)
    for fwhm in (bmaj_px, bmin_px):
        s2 = fwhm ** 2 / (8.0 * np.log(2.0))
        out = out / np.sqrt(1.0 + e2 / (2.0 * s2))
    return out


def forced_fluxes(image: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: np.ndarray,
                  bmaj_px: float, bmin_px: float, bpa_deg: float, *, factor: float,
                  half: int | None = None) -> dict[str, np.ndarray]:
    """Beam-fit amplitudes at pixel positions ``(x, y)`` (0-based, x along NAXIS1).

    ``sigma``: each source's local pixel noise; ``factor``: :func:`noise_factor`.
    Returns ``flux`` (image units, Jy/beam), ``err``, ``chi2`` (reduced, of the fit over
    the box: large where the source is extended, blended or sits on an artefact),
    ``edge`` (the box leaves the image or holds blanked pixels).
    """
    img = np.asarray(image, dtype=np.float64)
    ny, nx = img.shape
    if half is None:
        half = int(np.ceil(bmaj_px))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    off = np.arange(-half, half + 1)
    px = ix[:, None, None] + off[None, None, :]  # (n, 1, w)
    py = iy[:, None, None] + off[None, :, None]  # (n, w, 1)
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    vals = img[np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)]  # (n, w, w)
    bad = ~inside | ~np.isfinite(vals)
    vals = np.where(bad, 0.0, vals)
    k = beam_kernel(px - x[:, None, None], py - y[:, None, None], bmaj_px, bmin_px, bpa_deg)
    k = np.where(bad, 0.0, k)
    kk = np.sum(k * k, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.sum(k * vals, axis=(1, 2)) / kk
        sig = np.asarray(sigma, dtype=np.float64) * np.ones_like(amp)
        resid = vals - amp[:, None, None] * k
        npix = np.sum(~bad, axis=(1, 2))
        chi2 = np.sum(np.where(bad, 0.0, resid ** 2), axis=(1, 2)) / sig ** 2 / np.maximum(
            npix - 1, 1)
    edge = bad.any(axis=(1, 2))
    return {"flux": amp, "err": factor * sig, "chi2": chi2, "edge": edge}
