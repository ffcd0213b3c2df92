"""Score an image against the simulator's truth (the judges' side: perf and tests only).

Positive peaks are the validation stage's own (``sign_reliability.peaks`` of its metrics
JSON: local maxima of the S/N map at or above 5σ, one per beam), so the truth-based
reliability and the stage's estimate from the negative image count the same peaks. A peak
is real when a true source lies within one restoring-beam major axis of it.

Fluxes: for the true sources whose expected apparent S/N is at least 50, the peak (a 2-D
Gaussian through the 3x3 pixels at the brightest pixel within a beam of the true position)
of the restored image against the truth's apparent flux, the mean over the group's
integrations and channels of flux x primary beam (what an MFS image of a drifting source
shows); positions against the true positions, in beams.

Thermal noise alone gives peaks above 5σ: how many depends on the number of independent
beams in the image, not on the imaging. :func:`gaussian_peaks` counts them in images of pure
Gaussian noise whose correlation is the image's PSF, through the validation stage's own peak
finder, so that a group's false peaks can be set against what noise alone would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.validation.verdict import poisson_tail

LEVELS = (5.0, 7.0, 10.0)


def _image(path: str | Path) -> tuple[np.ndarray, Any, float, float]:
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as h:
        hdr = h[0].header
        data = np.asarray(h[0].data, dtype=np.float64).reshape(hdr["NAXIS2"], hdr["NAXIS1"])
    cell = abs(hdr["CDELT1"]) * 3600.0
    return data, WCS(hdr).celestial, hdr["BMAJ"] * 3600.0 / cell, cell


def apparent_flux(truth: dict[str, np.ndarray]) -> np.ndarray:
    """Each true source's flux x primary beam, averaged over integrations and channels."""
    return np.mean(truth["source_flux"][:, None, :] * truth["source_beam"], axis=(1, 2))


def gaussian_peaks(psf: np.ndarray, valid: np.ndarray, bmaj_px: float, level: float = 5.0,
                   n_real: int = 8, seed: int = 0) -> float:
    """Mean number of peaks at or above ``level`` σ, per sign, in ``n_real`` images of
    Gaussian noise correlated like ``psf`` (the noise's autocorrelation is the PSF for
    natural weighting; close to it for robust 0), inside ``valid``, found as the
    validation stage finds them (one local maximum per ``bmaj_px`` window, S/N against the
    robust rms)."""
    from stages.validation.metrics.reliability import local_peaks

    ny, nx = psf.shape
    amp = np.sqrt(np.clip(np.fft.rfft2(np.fft.ifftshift(np.nan_to_num(psf))).real, 0, None))
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(n_real):
        f = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((ny, nx))) * amp, s=(ny, nx))
        v = f[valid]
        med = np.median(v)
        z = ((f - med) / (1.4826 * np.median(np.abs(v - med)))).astype(np.float32)
        counts.append(local_peaks(z, valid, level, bmaj_px).above(level)
                      + local_peaks(-z, valid, level, bmaj_px).above(level))
    return float(np.mean(counts)) / 2.0


def score(image_fits: str | Path, metrics: dict[str, Any], truth: dict[str, np.ndarray],
          pb: np.ndarray | None = None, pb_cut: float = 0.2, snr_bright: float = 50.0,
          psf_fits: str | Path | None = None) -> dict[str, Any]:
    """Truth-based figures of one restored image (see the module docstring); with
    ``psf_fits``, also the false and negative 5σ peaks against pure noise's."""
    from stages.imaging.peaks import gaussian_peak

    img, wcs, bmaj_px, _ = _image(image_fits)
    ny, nx = img.shape
    m = metrics.get("metrics", metrics)
    peaks = m["sign_reliability"]["peaks"]
    px, py, psnr = (np.asarray(peaks[k], float) for k in ("x", "y", "snr"))
    tx, ty = wcs.all_world2pix(np.degrees(truth["source_ra"]), np.degrees(truth["source_dec"]),
                               0)
    app = apparent_flux(truth)
    if px.size and tx.size:
        d = np.hypot(px[:, None] - tx[None], py[:, None] - ty[None])
        real = d.min(axis=1) <= bmaj_px
    else:
        real = np.zeros(px.size, bool)
    out: dict[str, Any] = {}
    for t in LEVELS:
        sel = psnr >= t
        out[f"n_peaks_{t:g}sigma"] = int(sel.sum())
        out[f"reliability_{t:g}sigma"] = float(real[sel].mean()) if sel.any() else None
    sign = m["sign_reliability"]
    out["neg_over_pos_5sigma"] = sign["neg_over_pos"]["5sigma"]
    out["estimate_5sigma"] = m.get("reliability_estimate", sign["estimate"]["5sigma"])
    out["sign_estimate_5sigma"] = sign["estimate"]["5sigma"]
    noise = m["noise"]
    out["rms_over_thermal"] = noise.get("ratio")
    rms = float(noise["image_rms_jy"])
    # completeness at 10 sigma: true sources inside the validated area, expected >= 10 sigma
    xi, yi = np.round(tx).astype(int), np.round(ty).astype(int)
    inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
    if pb is not None:
        inside[inside] &= pb[yi[inside], xi[inside]] >= pb_cut
    exp_snr = app / rms
    want = inside & (exp_snr >= 10.0)
    det5 = psnr >= 5.0
    if want.any() and det5.any():
        dd = np.hypot(tx[want][:, None] - px[det5][None], ty[want][:, None] - py[det5][None])
        found = dd.min(axis=1) <= bmaj_px
        out["completeness_10sigma"] = float(found.mean())
    else:
        out["completeness_10sigma"] = None
    out["n_true_10sigma"] = int(want.sum())
    # flux and position of the bright sources
    h = int(np.ceil(bmaj_px)) + 2
    ratios, offs = [], []
    for k in np.flatnonzero(inside & (exp_snr >= snr_bright)):
        x, y = float(tx[k]), float(ty[k])
        xi_, yi_ = int(round(x)), int(round(y))
        if not (h <= xi_ < nx - h and h <= yi_ < ny - h):
            continue
        cut = img[yi_ - h:yi_ + h + 1, xi_ - h:xi_ + h + 1]
        pk = gaussian_peak(cut, h, h)
        if pk is None:
            ratios.append(0.0)
            continue
        ratios.append(pk[0] / app[k])
        offs.append(float(np.hypot(xi_ - h + pk[2] - x, yi_ - h + pk[1] - y) / bmaj_px))
    out["n_bright"] = len(ratios)
    out["flux_ratio_median"] = float(np.median(ratios)) if ratios else None
    out["astrometry_beam_median"] = float(np.median(offs)) if offs else None
    if psf_fits is not None:
        psf, _, _, _ = _image(psf_fits)
        valid = np.isfinite(img) & (pb >= pb_cut if pb is not None else True)
        g = gaussian_peaks(psf, valid, bmaj_px)
        sel = psnr >= 5.0
        n_false = int((~real[sel]).sum())
        n_neg = int(sign["n_neg"]["5sigma"]) if "n_neg" in sign else None
        out["noise_peaks_5sigma"] = g
        out["false_5sigma"] = n_false
        out["neg_5sigma"] = n_neg
        out["p_false_5sigma"] = poisson_tail(n_false, g)
        out["p_neg_5sigma"] = poisson_tail(n_neg, g) if n_neg is not None else None
        # what an image with these true peaks and noise alone would score, on average
        n_true = int(real[sel].sum())
        out["noise_limited_reliability_5sigma"] = n_true / (n_true + g) if n_true else None
    return out


def acceptance(s: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's acceptance points on one group's figures (None: not measurable)."""
    def ok(v: Any, f) -> bool | None:
        return None if v is None else bool(f(v))

    return {
        "reliability_5sigma>=0.90": ok(s["reliability_5sigma"], lambda v: v >= 0.90),
        "reliability_10sigma>=0.98": ok(s["reliability_10sigma"], lambda v: v >= 0.98),
        "neg/pos_5sigma<=0.05": ok(s["neg_over_pos_5sigma"], lambda v: v <= 0.05),
        "rms/thermal<=1.2": ok(s["rms_over_thermal"], lambda v: v <= 1.2),
        "flux_ratio_1.00+-0.02": ok(s["flux_ratio_median"], lambda v: abs(v - 1) <= 0.02),
        "astrometry<=0.1beam": ok(s["astrometry_beam_median"], lambda v: v <= 0.1),
        "completeness_10sigma>=0.95": ok(s["completeness_10sigma"], lambda v: v >= 0.95),
        "estimate_within_0.05": ok(s["estimate_5sigma"], lambda v: s["reliability_5sigma"]
                                   is not None and abs(v - s["reliability_5sigma"]) <= 0.05),
    }


__all__ = ["LEVELS", "acceptance", "apparent_flux", "gaussian_peaks", "poisson_tail", "score"]
