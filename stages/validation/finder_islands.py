"""Built-in source finder (the fallback when PyBDSF is absent): thresholded islands and
elliptical Gaussian fits, on numpy arrays only.

Islands are connected pixels above ``thresh_isl``·rms (over the mean map) that contain a
peak above ``thresh_pix``·rms; each local maximum above ``thresh_pix`` in an island seeds one
component. A *simple* island (at most ``max_components`` peaks and ``max_fit_beams`` beam
areas) has all its Gaussians fitted together; each becomes one source, as in PyBDSF's
Gaussian list. A *complex* island (more peaks, or larger: typically CLEAN artefacts,
sidelobe ridges or extended emission) is measured by :func:`.islands_complex.measure_complex`:
each of its brightest ``max_components`` peaks gets the island pixels nearest to it; a
peak that a beam-sized Gaussian describes is fitted on a window around it, the others are
measured by the moments of their pixels. The ``fit`` column says which: "gaussian",
"moments", or "peak" (a Gaussian fit that failed, reported at the peak pixel with the
beam shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .gaussfit import FWHM_PER_SIGMA, beam_distance2, condon_errors, fit_gaussians
from .islands_complex import Parts, measure_complex


@dataclass(frozen=True)
class PixelSources:
    """Fitted components in pixel units: positions/widths in pixels, pa in rad (from +y
    toward -x), peak in image units, integrated flux in image units × beam areas; ``fit``
    how each was measured ("gaussian", "moments" or "peak")."""

    x: np.ndarray
    y: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    peak: np.ndarray
    peak_err: np.ndarray
    total: np.ndarray
    total_err: np.ndarray
    fwhm_maj: np.ndarray
    fwhm_min: np.ndarray
    pa: np.ndarray
    rms: np.ndarray
    island: np.ndarray
    fit: np.ndarray


_DTYPES = {"island": np.int64, "fit": np.str_}


#: A point (beam-shaped) fit whose peak exceeds its island's peak pixel by more than this
#: many times the local rms describes no point source: a beam fitted to a plateau broader
#: than the beam takes up to twice the plateau's level (least squares: sum g / sum g^2).
#: On an hour's mosaic two 5-sigma plateaus were fitted as 7-8 sigma points and listed as
#: new sources; a point source's fit and peak pixel differ by about one rms.
POINT_PEAK_EXCESS_RMS = 2.0


def _fit_simple(sub: np.ndarray, isl: np.ndarray, px: np.ndarray, py: np.ndarray,
                off: tuple[int, int], bsig: tuple[float, float, float],
                fixed_shape: bool = False, seed_rms: np.ndarray | None = None) -> Parts:
    """All of a simple island's Gaussians fitted together, of the beam's shape if
    ``fixed_shape`` (flagged "point"); the peak pixels with the beam shape, flagged
    "peak", where the fit fails, or where a point's fitted peak exceeds its peak pixel by
    over ``POINT_PEAK_EXCESS_RMS`` x ``seed_rms`` (the island is broader than a point)."""
    y_lo, x_lo = off
    fit = fit_gaussians(sub, isl, px + x_lo, py + y_lo, sub[py, px], bsig, offset=off,
                        fixed_shape=fixed_shape)
    n = len(px)
    broad = fixed_shape and seed_rms is not None and fit.ok and bool(np.any(
        fit.amp > sub[py, px] + POINT_PEAK_EXCESS_RMS * seed_rms))
    if fit.ok and np.all(np.isfinite(fit.amp)) and not broad:
        return Parts(fit.amp, fit.x, fit.y, fit.smaj, fit.smin, fit.pa,
                     total=fit.amp * fit.smaj * fit.smin / (bsig[0] * bsig[1]),
                     total_err_rms=np.full(n, np.nan),
                     kind=np.full(n, "point" if fixed_shape else "gaussian"))
    amp = sub[py, px].astype(float)
    return Parts(amp, (px + x_lo).astype(float), (py + y_lo).astype(float),
                 np.full(n, bsig[0]), np.full(n, bsig[1]), np.full(n, bsig[2]), total=amp,
                 total_err_rms=np.full(n, np.nan), kind=np.full(n, "peak"))


def beam_footprint(beam_sigma: tuple[float, float, float]) -> np.ndarray:
    """Pixels within half the beam FWHM of the centre, in beam units: a peak is a pixel
    brighter than every island pixel in this beam-shaped neighbourhood (at least 3×3)."""
    r = int(np.ceil(0.5 * FWHM_PER_SIGMA * beam_sigma[0]))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    foot = beam_distance2(xx, yy, beam_sigma) <= (0.5 * FWHM_PER_SIGMA) ** 2
    foot[r - 1:r + 2, r - 1:r + 2] = True
    return foot


def local_maxima(snr: np.ndarray, foot: np.ndarray, thresh: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels at least ``thresh`` that are the maximum of their
    ``foot`` neighbourhood (odd-sized, containing the 3×3 one). Only the 3×3 maxima are
    tested against the whole footprint, which is much cheaper than a full filter."""
    cand = (ndimage.maximum_filter(snr, size=3, mode="constant", cval=-np.inf) == snr) & (
        snr >= thresh)
    py, px = np.nonzero(cand)
    if py.size <= 1:
        return py, px
    r = foot.shape[0] // 2
    padded = np.pad(snr, r, constant_values=-np.inf)
    keep = np.array([padded[y:y + 2 * r + 1, x:x + 2 * r + 1][foot].max() <= snr[y, x]
                     for y, x in zip(py, px)])
    return py[keep], px[keep]


def find_pixel_sources(image: np.ndarray, mean: np.ndarray, rms: np.ndarray,
                       beam_px: tuple[float, float, float], thresh_pix: float = 5.0,
                       thresh_isl: float = 3.0, mask: np.ndarray | None = None,
                       max_components: int = 4, max_fit_beams: float = 16.0,
                       shape_snr: float = 10.0) -> PixelSources:
    """Find and fit sources. ``beam_px`` = (FWHM major, FWHM minor in pixels, PA rad);
    ``mask`` (True = usable) limits where islands may be. Islands with more than
    ``max_components`` peaks or ``max_fit_beams`` beam areas are complex (module doc).
    A simple island whose brightest peak is below ``shape_snr`` is fitted with Gaussians
    of the beam's shape (point sources: its size cannot be measured at that S/N, and a
    free size biases the integrated flux up); in a complex island such a peak is
    measured by moments."""
    if thresh_isl > thresh_pix:
        raise ValueError("thresh_isl must not exceed thresh_pix")
    img = np.asarray(image, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        snr = (img - mean) / rms
    bad = ~np.isfinite(snr) | ~(rms > 0)
    if mask is not None:
        bad |= ~mask
    snr[bad] = 0.0
    labels, n = ndimage.label(snr > thresh_isl)
    bmaj, bmin, bpa = beam_px
    bsig = (bmaj / FWHM_PER_SIGMA, bmin / FWHM_PER_SIGMA, bpa)
    beam_area = 2.0 * np.pi * bsig[0] * bsig[1]  # pixels
    out: dict[str, list] = {k: [] for k in PixelSources.__dataclass_fields__}
    # islands with a peak above thresh_pix
    keep = np.unique(labels[snr >= thresh_pix]) if n else np.zeros(0, labels.dtype)
    keep = keep[keep > 0]
    if keep.size == 0:
        return PixelSources(**{k: np.zeros(0, _DTYPES.get(k, np.float64)) for k in out})
    slices = ndimage.find_objects(labels, max_label=int(keep.max()))
    pad = int(np.ceil(bmaj))
    foot = beam_footprint(bsig)
    ny, nx = img.shape
    for isl_no, lab in enumerate(keep):
        sl = slices[lab - 1]
        y_lo, y_hi = max(sl[0].start - pad, 0), min(sl[0].stop + pad, ny)
        x_lo, x_hi = max(sl[1].start - pad, 0), min(sl[1].stop + pad, nx)
        sub_lab = labels[y_lo:y_hi, x_lo:x_hi]
        isl = sub_lab == lab
        sub = (img[y_lo:y_hi, x_lo:x_hi].astype(np.float64)
               - mean[y_lo:y_hi, x_lo:x_hi])
        sub_snr = np.where(isl, snr[y_lo:y_hi, x_lo:x_hi], -np.inf)
        py, px = local_maxima(sub_snr, foot, thresh_pix)
        order = np.argsort(-sub_snr[py, px])
        complex_ = order.size > max_components or isl.sum() > max_fit_beams * beam_area
        py, px = py[order[:max_components]], px[order[:max_components]]
        seed_snr = sub_snr[py, px]
        if complex_:
            parts = measure_complex(sub, isl, px, py, seed_snr, (y_lo, x_lo), bsig,
                                    fit_snr=shape_snr)
        else:
            parts = _fit_simple(sub, isl, px, py, (y_lo, x_lo), bsig,
                                fixed_shape=bool(seed_snr[0] < shape_snr),
                                seed_rms=rms[y_lo + py, x_lo + px])
        xi = np.clip(np.round(parts.x).astype(int), 0, nx - 1)
        yi = np.clip(np.round(parts.y).astype(int), 0, ny - 1)
        loc_rms = rms[yi, xi]
        err = condon_errors(parts.amp, parts.smaj, parts.smin, parts.pa, loc_rms,
                            float(np.sqrt(bmaj * bmin)))
        # moments: a sum over N pixels of noise correlated over a beam area
        moments = parts.kind == "moments"
        total_err = np.where(moments, parts.total_err_rms * loc_rms,
                             np.abs(parts.total) * err["int_frac"])
        peak_err = np.where(moments, loc_rms, err["peak"])
        inside = (parts.x >= 0) & (parts.x <= nx - 1) & (parts.y >= 0) & (parts.y <= ny - 1)
        for k in np.flatnonzero(inside & (parts.amp > 0)):
            out["x"].append(parts.x[k])
            out["y"].append(parts.y[k])
            out["x_err"].append(err["x"][k])
            out["y_err"].append(err["y"][k])
            out["peak"].append(parts.amp[k])
            out["peak_err"].append(peak_err[k])
            out["total"].append(parts.total[k])
            out["total_err"].append(total_err[k])
            out["fwhm_maj"].append(parts.smaj[k] * FWHM_PER_SIGMA)
            out["fwhm_min"].append(parts.smin[k] * FWHM_PER_SIGMA)
            out["pa"].append(parts.pa[k])
            out["rms"].append(loc_rms[k])
            out["island"].append(isl_no)
            out["fit"].append(parts.kind[k])
    return PixelSources(**{k: np.asarray(v, dtype=_DTYPES.get(k, np.float64))
                           for k, v in out.items()})


__all__ = ["PixelSources", "find_pixel_sources"]
