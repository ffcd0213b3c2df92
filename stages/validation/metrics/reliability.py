"""Reliability from the image itself: peaks of the negative image against those of the
positive image, and the artefacts around bright sources.

Thermal noise is symmetric, and so, to first order, are the sidelobes that calibration
errors and incomplete deconvolution leave around a source (a gain error's ghost has
positive and negative lobes of equal size). Real sources are positive only. So the number
of peaks of −image above a threshold estimates how many of the peaks of +image above it are
not sources: reliability ≈ 1 − N₋/N₊. This is the test radio surveys use when no input sky is
at hand (as for NVSS, FIRST, ASKAP/EMU); here it is a pure function on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dsa110_pipeline.robust import robust_rms

#: Signal-to-noise thresholds at which the reliability is reported.
SNR_LEVELS = (5.0, 7.0, 10.0)


@dataclass(frozen=True)
class Peaks:
    """Local maxima of a signal-to-noise map: pixel positions and their S/N."""

    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray

    def above(self, t: float) -> int:
        return int((self.snr >= t).sum())


def peak_window(separation_px: float) -> int:
    """Side (pixels, odd, at least 3) of the square window in which a peak is the largest."""
    return max(3, int(round(separation_px)) | 1)


def local_peaks(snr: np.ndarray, valid: np.ndarray, threshold: float,
                separation_px: float) -> Peaks:
    """Local maxima of ``snr`` at or above ``threshold`` inside ``valid``, at most one per
    ``separation_px``-wide window (about a beam: a source gives one peak, not one per
    pixel of its beam)."""
    s = np.where(valid & np.isfinite(snr), snr, -np.inf).astype(np.float32)
    size = peak_window(separation_px)
    top = ndimage.maximum_filter(s, size=size, mode="constant", cval=-np.inf)
    y, x = np.nonzero((s == top) & (s >= threshold))
    return Peaks(x.astype(float), y.astype(float), s[y, x].astype(float))


@dataclass(frozen=True)
class SignReliability:
    """Peak counts of +image and −image at each threshold, and 1 − N₋/N₊."""

    levels: tuple[float, ...]
    n_pos: tuple[int, ...]
    n_neg: tuple[int, ...]

    def estimate(self, level: float) -> float | None:
        """1 − N₋/N₊ at ``level`` (clipped at 0); None without positive peaks."""
        i = self.levels.index(level)
        if self.n_pos[i] == 0:
            return None
        return max(0.0, 1.0 - self.n_neg[i] / self.n_pos[i])

    def neg_over_pos(self, level: float) -> float | None:
        i = self.levels.index(level)
        return None if self.n_pos[i] == 0 else self.n_neg[i] / self.n_pos[i]


def sign_reliability(pos: Peaks, neg: Peaks,
                     levels: tuple[float, ...] = SNR_LEVELS) -> SignReliability:
    """Counts of positive and negative peaks above each of ``levels``."""
    return SignReliability(tuple(levels), tuple(pos.above(t) for t in levels),
                           tuple(neg.above(t) for t in levels))


@dataclass(frozen=True)
class Artefacts:
    """The image around its brightest sources against the image far from them."""

    #: rms in an annulus around each bright source / rms far from every bright source
    annulus_ratio: np.ndarray
    peak_jy: np.ndarray
    far_rms_jy: float
    #: the most negative pixel / the brightest pixel (a clean image: about −5σ/peak)
    neg_to_peak: float

    @property
    def worst_annulus_ratio(self) -> float | None:
        return float(np.max(self.annulus_ratio)) if self.annulus_ratio.size else None


def _clipped_rms(v: np.ndarray, clip: float) -> float:
    """rms about the median of the pixels within ``clip`` of it: artefacts (ridges, lobes of
    a few σ to tens of σ) count; the few bright pixels of a real source do not dominate."""
    v = v[np.isfinite(v)]
    if v.size < 10:
        return float("nan")
    d = v - np.median(v)
    d = d[np.abs(d) <= clip]
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def artefact_metrics(image: np.ndarray, valid: np.ndarray, peaks: Peaks, peak_jy: np.ndarray,
                     beam_px: float, n_bright: int = 5, inner_beams: float = 3.0,
                     outer_beams: float = 15.0) -> Artefacts:
    """rms in the annulus ``inner_beams``–``outer_beams`` (beam FWHMs) around each of the
    ``n_bright`` brightest ``peaks`` against the rms of the valid image outside every such
    disc (the far rms: robust; the annulus rms: of pixels within 20 far-σ of its median,
    so that sidelobe ridges count and a real source does not dominate); and the most
    negative pixel over the brightest."""
    data = np.where(valid, image, np.nan).astype(np.float32)
    ny, nx = data.shape
    order = np.argsort(-peak_jy, kind="stable")[:n_bright]
    r_in, r_out = inner_beams * beam_px, outer_beams * beam_px
    near = np.zeros(data.shape, bool)
    ratios, peaks_used, annuli = [], [], []
    for k in order:
        x0, y0 = peaks.x[k], peaks.y[k]
        ylo, yhi = int(max(0, y0 - r_out)), int(min(ny, y0 + r_out + 1))
        xlo, xhi = int(max(0, x0 - r_out)), int(min(nx, x0 + r_out + 1))
        yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
        r = np.hypot(xx - x0, yy - y0)
        near[ylo:yhi, xlo:xhi] |= r <= r_out
        annuli.append(data[ylo:yhi, xlo:xhi][(r >= r_in) & (r <= r_out)])
        peaks_used.append(float(peak_jy[k]))
    far = robust_rms(data[~near], min_count=10)
    for a in annuli:
        ratios.append(_clipped_rms(a, 20 * far) / far if far > 0 else float("nan"))
    finite = data[np.isfinite(data)]
    neg = float(finite.min() / finite.max()) if finite.size and finite.max() > 0 \
        else float("nan")
    return Artefacts(np.asarray(ratios, float), np.asarray(peaks_used, float), far, neg)


__all__ = ["SNR_LEVELS", "Peaks", "peak_window", "local_peaks", "SignReliability",
           "sign_reliability", "Artefacts", "artefact_metrics"]
