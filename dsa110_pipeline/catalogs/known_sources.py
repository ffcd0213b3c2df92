"""Survey entries that are known better elsewhere: VLA calibrators and flux standards.

A survey (NVSS) places a bright source to ~1" and a faint one to ~7", and gives its 1.4 GHz
flux to ~3 %. The VLA calibrator list places its calibrators (position codes A-C) to
2-150 mas, and Perley & Butler (2017) give the flux standards' spectra to ~1 %. A sky model's
errors are the image's: a position error is a phase error 2 pi b.dx / lambda that no antenna
gain absorbs once it changes with frequency and time (2" is up to 0.4 rad on DSA-110's
2.6 km baselines at 1.4 GHz), and a flux error is left whole in the visibilities. A bright
source predicted with them (a field model for self-calibration, a source outside the image
subtracted from the visibilities) leaves stripes of many sigma in the image.

So a survey source within ``radius`` of a listed calibrator takes the calibrator's position;
one that is a flux standard also takes its Perley-Butler flux and spectral index at the
catalog's reference frequency (the others keep the survey's fluxes: the list's L-band fluxes
are good to 10-20 % only, and calibrators vary).

Every position code counts, T (worse than 0.15") included: the calibration stage models its
calibrator at the list's position whatever its code, so the calibrated visibilities put it
there, and every later model must too. With the survey's position for 3C295 (code T; the
survey 2" off) the imager's outlier fit saw the calibrator's 2" phase error as noise, 3x
its thermal level, and refined none of the outliers (full-scale dec +52.2 group).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .flux_standards import flux_density, is_flux_standard, spectral_index
from .sources import SourceCatalog
from .vla import VLACalibrator, calibrators_in_strip

_BLOCK = 2048


def nearest_within(ra: np.ndarray, dec: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(index, matched): for each (ra, dec) the nearest of (ref_ra, ref_dec) on the sphere
    and whether it lies within ``radius``. All angles rad."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    ref_ra, ref_dec = np.asarray(ref_ra, np.float64), np.asarray(ref_dec, np.float64)
    j = np.zeros(ra.shape, np.int64)
    matched = np.zeros(ra.shape, bool)
    if ref_ra.size == 0:
        return j, matched
    for a in range(0, ra.size, _BLOCK):  # blocks: a survey holds ~10^6 sources
        r, d = ra[a:a + _BLOCK, None], dec[a:a + _BLOCK, None]
        cosd = (np.sin(d) * np.sin(ref_dec[None]) + np.cos(d) * np.cos(ref_dec[None])
                * np.cos(r - ref_ra[None]))
        near = np.argmax(cosd, axis=1)
        j[a:a + _BLOCK] = near
        matched[a:a + _BLOCK] = np.arccos(np.clip(cosd[np.arange(near.size), near],
                                                  -1.0, 1.0)) <= radius
    return j, matched


def _standard(c: VLACalibrator) -> str | None:
    for n in (c.name, c.alt_name, c.iau_name, c.b1950_name):
        if n and is_flux_standard(n):
            return n
    return None


def with_known_sources(cat: SourceCatalog, radius_arcsec: float = 10.0,
                       calibrators: list[VLACalibrator] | None = None,
                       path: str | Path | None = None) -> SourceCatalog:
    """``cat`` with its VLA calibrators at the list's positions and its flux
    standards at their Perley-Butler 2017 flux and spectral index (``calibrators``, else
    the list at ``path`` or the default)."""
    if len(cat) == 0:
        return cat
    radius = np.radians(radius_arcsec / 3600.0)
    if calibrators is None:
        lo, hi = float(cat.dec.min()) - radius, float(cat.dec.max()) + radius
        calibrators = calibrators_in_strip(max(lo, -np.pi / 2), min(hi, np.pi / 2), path=path)
    j, matched = nearest_within(cat.ra, cat.dec, np.array([c.ra for c in calibrators]),
                                np.array([c.dec for c in calibrators]), radius)
    if not matched.any():
        return cat
    ra, dec = cat.ra.copy(), cat.dec.copy()
    flux, alpha = cat.flux_jy.copy(), cat.spectral_index.copy()
    for i in np.flatnonzero(matched):
        c = calibrators[j[i]]
        ra[i], dec[i] = c.ra, c.dec
        std = _standard(c)
        if std is not None:
            f0 = float(cat.ref_freq_hz[i])
            flux[i], alpha[i] = float(flux_density(std, f0)), spectral_index(std, f0)
    return replace(cat, ra=ra, dec=dec, flux_jy=flux, spectral_index=alpha)


__all__ = ["nearest_within", "with_known_sources"]
