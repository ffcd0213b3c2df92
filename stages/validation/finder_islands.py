"""Built-in source finder (the fallback when PyBDSF is absent): thresholded islands and
elliptical Gaussian fits, on numpy arrays only.

Islands are connected pixels above ``thresh_isl``·rms (over the mean map) that contain a
peak above ``thresh_pix``·rms; each local maximum above ``thresh_pix`` in an island seeds one
Gaussian (at most ``max_components``, the brightest) and all of an island's Gaussians are
fitted together. Each Gaussian becomes one source, as in PyBDSF's Gaussian list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .gaussfit import FWHM_PER_SIGMA, condon_errors, fit_gaussians


@dataclass(frozen=True)
class PixelSources:
    """Fitted components in pixel units: positions/widths in pixels, pa in rad (from +y
    toward -x), peak in image units, integrated flux in image units × beam areas."""

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


def find_pixel_sources(image: np.ndarray, mean: np.ndarray, rms: np.ndarray,
                       beam_px: tuple[float, float, float], thresh_pix: float = 5.0,
                       thresh_isl: float = 3.0, mask: np.ndarray | None = None,
                       max_components: int = 4) -> PixelSources:
    """Find and fit sources. ``beam_px`` = (FWHM major, FWHM minor in pixels, PA rad);
    ``mask`` (True = usable) limits where islands may be."""
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
    out: dict[str, list[float]] = {k: [] for k in PixelSources.__dataclass_fields__}
    # islands with a peak above thresh_pix
    keep = np.unique(labels[snr >= thresh_pix]) if n else np.zeros(0, labels.dtype)
    keep = keep[keep > 0]
    if keep.size == 0:
        return PixelSources(**{k: np.zeros(0) for k in out})
    slices = ndimage.find_objects(labels, max_label=int(keep.max()))
    pad = int(np.ceil(bmaj))
    foot = max(3, int(np.ceil(bmin)) | 1)
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
        is_max = (ndimage.maximum_filter(sub_snr, size=foot, mode="constant",
                                         cval=-np.inf) == sub_snr) & (sub_snr >= thresh_pix)
        py, px = np.nonzero(is_max)
        order = np.argsort(-sub_snr[py, px])[:max_components]
        py, px = py[order], px[order]
        fit = fit_gaussians(sub, isl, px + x_lo, py + y_lo, sub[py, px], bsig,
                            offset=(y_lo, x_lo))
        if not fit.ok or not np.all(np.isfinite(fit.amp)):
            # fall back to the peak pixels with the beam shape
            fit = type(fit)(amp=sub[py, px], x=(px + x_lo).astype(float),
                            y=(py + y_lo).astype(float), smaj=np.full(len(px), bsig[0]),
                            smin=np.full(len(px), bsig[1]), pa=np.full(len(px), bpa), ok=False)
        xi = np.clip(np.round(fit.x).astype(int), 0, nx - 1)
        yi = np.clip(np.round(fit.y).astype(int), 0, ny - 1)
        loc_rms = rms[yi, xi]
        err = condon_errors(fit.amp, fit.smaj, fit.smin, fit.pa, loc_rms,
                            float(np.sqrt(bmaj * bmin)))
        area_ratio = fit.smaj * fit.smin / (bsig[0] * bsig[1])
        total = fit.amp * area_ratio
        inside = (fit.x >= 0) & (fit.x <= nx - 1) & (fit.y >= 0) & (fit.y <= ny - 1)
        for k in np.flatnonzero(inside & (fit.amp > 0)):
            out["x"].append(fit.x[k])
            out["y"].append(fit.y[k])
            out["x_err"].append(err["x"][k])
            out["y_err"].append(err["y"][k])
            out["peak"].append(fit.amp[k])
            out["peak_err"].append(err["peak"][k])
            out["total"].append(total[k])
            out["total_err"].append(abs(total[k]) * err["int_frac"][k])
            out["fwhm_maj"].append(fit.smaj[k] * FWHM_PER_SIGMA)
            out["fwhm_min"].append(fit.smin[k] * FWHM_PER_SIGMA)
            out["pa"].append(fit.pa[k])
            out["rms"].append(loc_rms[k])
            out["island"].append(isl_no)
    return PixelSources(**{k: np.asarray(v, dtype=np.int64 if k == "island" else np.float64)
                           for k, v in out.items()})


__all__ = ["PixelSources", "find_pixel_sources"]
