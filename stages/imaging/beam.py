"""PSF main-lobe fit (restoring beam) and restoration of a CLEAN model.

Images are in FITS orientation: rows run north (+m), columns run west (-l). Beam sizes are
FWHM in radians; the position angle is in degrees, east of north (FITS/AIPS BPA).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from dsa110_pipeline.beam import Beam

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


class BeamFitError(ValueError):
    """The PSF main lobe cannot be described by a Gaussian (a ridge, a spike, no curvature)."""


def normalise_psf(psf: np.ndarray) -> np.ndarray:
    """The PSF divided by its value at the image centre (ny//2, nx//2)."""
    ny, nx = psf.shape
    peak = psf[ny // 2, nx // 2]
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError(f"PSF centre value {peak} is not positive: no usable weight")
    return psf / peak


def _offsets(shape: tuple[int, int], cell: float) -> tuple[np.ndarray, np.ndarray]:
    """East (x = l) and north (y = m) offsets (rad) of each pixel from the centre."""
    ny, nx = shape
    x = -(np.arange(nx) - nx // 2) * cell
    y = (np.arange(ny) - ny // 2) * cell
    return x[None, :], y[:, None]


def main_lobe(psf: np.ndarray, level: float) -> np.ndarray:
    """Mask of the PSF main lobe: pixels above ``level`` (of the centre value) reachable from
    the centre by a path that never rises (8-connected).

    A PSF with a high plateau or ridge of near sidelobes (a T-shaped array such as DSA-110
    at Briggs 0 has one at ~0.4 of the peak) is connected to the centre at low levels;
    requiring a non-rising path stops at the first minimum, so only the central lobe is kept.
    """
    ny, nx = psf.shape
    cy, cx = ny // 2, nx // 2
    lobe = np.zeros(psf.shape, bool)
    lobe[cy, cx] = True
    above = psf > level * psf[cy, cx]
    order = np.argsort(-psf, axis=None, kind="stable")
    order = order[above.ravel()[order]]
    for k in order:  # descending: every neighbour already in the lobe is at least as high
        r, c = divmod(int(k), nx)
        if lobe[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any():
            lobe[r, c] = True
    return lobe


def fit_beam(psf: np.ndarray, cell: float, *, level: float = 0.5,
             max_halfwidth: int = 64) -> Beam:
    """Fit a 2-D Gaussian to the PSF main lobe (:func:`main_lobe` above ``level``, plus the
    centre's 8 neighbours, so that a lobe only ~2 pixels wide still has a curvature on
    every axis).

    The fit is linear least squares of ``ln psf = -(a x^2 + b x y + c y^2)`` weighted by the
    PSF value, which is exact for a Gaussian and robust for a sampled main lobe. The default
    level is half the peak, so the fit describes the lobe's FWHM.

    Raises :class:`BeamFitError` when the lobe has no Gaussian shape: fewer than 5 pixels,
    no curvature on some axis, or a lobe that reaches the edge of the ``2 max_halfwidth + 1``
    pixel window or whose fitted FWHM exceeds it (a ridge, as a single snapshot of a
    one-dimensional array gives).
    """
    ny, nx = psf.shape
    cy, cx = ny // 2, nx // 2
    h = min(max_halfwidth, cy, cx)
    cut = np.asarray(psf[cy - h:cy + h + 1, cx - h:cx + h + 1], dtype=np.float64)
    cut = cut / cut[h, h]
    lobe = main_lobe(cut, level)
    if h >= 2 and (lobe[0].any() or lobe[-1].any() or lobe[:, 0].any() or lobe[:, -1].any()):
        raise BeamFitError(f"the PSF main lobe above {level:g} of the peak reaches {h} pixels "
                           "from the centre: a ridge (e.g. one snapshot of a one-dimensional "
                           "array) or a beam far larger than the cell")
    near = np.zeros_like(lobe)
    near[h - 1:h + 2, h - 1:h + 2] = True
    lobe |= near & (cut > 0.05)
    if lobe.sum() < 5:
        raise BeamFitError("PSF main lobe has fewer than 5 usable pixels: the cell is too "
                           "large for the synthesized beam")
    x, y = _offsets(cut.shape, cell)
    x, y = np.broadcast_arrays(x, y)
    xs, ys, ps = x[lobe], y[lobe], cut[lobe]
    a_mat = np.stack([xs * xs, xs * ys, ys * ys], axis=1) * ps[:, None]
    coef, *_ = np.linalg.lstsq(a_mat, -np.log(ps) * ps, rcond=None)
    a, b, c = coef
    q = np.array([[a, b / 2.0], [b / 2.0, c]])
    evals, evecs = np.linalg.eigh(q)  # ascending: smallest curvature = major axis first
    if np.any(evals <= 0):
        raise BeamFitError("PSF main lobe is not bell-shaped; cannot fit a restoring beam")
    sig = np.sqrt(1.0 / (2.0 * evals))
    bmaj, bmin = _FWHM_PER_SIGMA * sig[0], _FWHM_PER_SIGMA * sig[1]
    if bmaj > 2 * h * cell:
        raise BeamFitError(f"the Gaussian fitted to the PSF main lobe is {bmaj / cell:.3g} "
                           f"pixels long, more than the {2 * h + 1}-pixel fit window: a ridge "
                           "(e.g. one snapshot of a one-dimensional array) or a beam far "
                           "larger than the cell")
    ex, ey = evecs[:, 0]
    pa = np.degrees(np.arctan2(ex, ey))
    pa = (pa + 90.0) % 180.0 - 90.0
    return Beam(float(bmaj), float(bmin), float(pa))


def gaussian_image(shape: tuple[int, int], cell: float, beam: Beam) -> np.ndarray:
    """The beam as an image of peak 1 at the centre (ny//2, nx//2)."""
    x, y = _offsets(shape, cell)
    pa = np.radians(beam.bpa)
    # coordinates along the major (PA direction) and minor axes
    maj = x * np.sin(pa) + y * np.cos(pa)
    mnr = x * np.cos(pa) - y * np.sin(pa)
    smaj, smin = beam.bmaj / _FWHM_PER_SIGMA, beam.bmin / _FWHM_PER_SIGMA
    return np.exp(-0.5 * ((maj / smaj) ** 2 + (mnr / smin) ** 2))


def restore(model: np.ndarray, residual: np.ndarray, cell: float, beam: Beam, *,
            nthreads: int = 1) -> np.ndarray:
    """Restored image (Jy/beam): model (Jy/pixel) convolved with the beam plus the residual."""
    if model.shape != residual.shape:
        raise ValueError(f"model {model.shape} and residual {residual.shape} differ in shape")
    if not np.any(model):
        return residual.astype(np.float32, copy=True)
    ny, nx = model.shape
    kern = np.fft.ifftshift(gaussian_image((ny, nx), cell, beam))
    # zero-pad to avoid wrap-around of sources near the edge
    shape = (2 * ny, 2 * nx)
    kpad = np.zeros(shape)
    kpad[:ny // 2, :nx // 2] = kern[:ny // 2, :nx // 2]
    kpad[-(ny - ny // 2):, :nx // 2] = kern[ny // 2:, :nx // 2]
    kpad[:ny // 2, -(nx - nx // 2):] = kern[:ny // 2, nx // 2:]
    kpad[-(ny - ny // 2):, -(nx - nx // 2):] = kern[ny // 2:, nx // 2:]
    ft = scipy.fft.rfft2(model, s=shape, workers=nthreads)
    ft *= scipy.fft.rfft2(kpad, workers=nthreads)
    conv = scipy.fft.irfft2(ft, s=shape, workers=nthreads)[:ny, :nx]
    return (conv + residual).astype(np.float32)
