"""Positions of a survey's sources from the VLA calibrator list where it has them.

A survey (NVSS) places a bright source to ~1" and a faint one to ~7"; the VLA calibrator
list places its calibrators (position codes A-C) to 2-150 mas. A sky model's position
error is a phase error 2 pi b.dx / lambda that no antenna gain absorbs once it changes
with frequency and time: 2" is up to 0.4 rad on DSA-110's 2.6 km baselines at 1.4 GHz,
and a 1 Jy source predicted there (a field model for self-calibration, a source outside
the image subtracted from the visibilities) leaves stripes of many sigma in the image.
So a survey source within ``radius`` of a listed calibrator takes the calibrator's
position (the survey's flux stays: the list gives band fluxes to 10-20 %).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .sources import SourceCatalog
from .vla import VLACalibrator, calibrators_in_strip

#: Position codes of the VLA list good to 0.15" or better (T: worse than 0.15")
ACCURATE_CODES = ("A", "B", "C")
_BLOCK = 2048


def calibrator_positions(ra: np.ndarray, dec: np.ndarray, cal_ra: np.ndarray,
                         cal_dec: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """(ra, dec, matched): each source within ``radius`` (rad) of a calibrator (the
    nearest) at that calibrator's position; the others unchanged. All angles rad."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    cal_ra, cal_dec = np.asarray(cal_ra, np.float64), np.asarray(cal_dec, np.float64)
    j = np.zeros(ra.shape, np.int64)
    matched = np.zeros(ra.shape, bool)
    if cal_ra.size:
        for a in range(0, ra.size, _BLOCK):  # blocks: a survey holds ~10^6 sources
            r, d = ra[a:a + _BLOCK, None], dec[a:a + _BLOCK, None]
            cosd = (np.sin(d) * np.sin(cal_dec[None]) + np.cos(d) * np.cos(cal_dec[None])
                    * np.cos(r - cal_ra[None]))
            near = np.argmax(cosd, axis=1)
            j[a:a + _BLOCK] = near
            matched[a:a + _BLOCK] = np.arccos(np.clip(cosd[np.arange(near.size), near],
                                                      -1.0, 1.0)) <= radius
    return (np.where(matched, cal_ra[j] if cal_ra.size else ra, ra),
            np.where(matched, cal_dec[j] if cal_ra.size else dec, dec), matched)


def with_calibrator_positions(cat: SourceCatalog, radius_arcsec: float = 10.0,
                              calibrators: list[VLACalibrator] | None = None,
                              path: str | Path | None = None) -> SourceCatalog:
    """``cat`` with the positions of its sources that are VLA calibrators (codes A-C)
    taken from the list (``calibrators``, else the list at ``path`` or the default)."""
    if len(cat) == 0:
        return cat
    radius = np.radians(radius_arcsec / 3600.0)
    if calibrators is None:
        lo, hi = float(cat.dec.min()) - radius, float(cat.dec.max()) + radius
        calibrators = calibrators_in_strip(max(lo, -np.pi / 2), min(hi, np.pi / 2), path=path)
    good = [c for c in calibrators if c.position_code in ACCURATE_CODES]
    ra, dec, matched = calibrator_positions(cat.ra, cat.dec, np.array([c.ra for c in good]),
                                            np.array([c.dec for c in good]), radius)
    if not matched.any():
        return cat
    return replace(cat, ra=ra, dec=dec)


__all__ = ["ACCURATE_CODES", "calibrator_positions", "with_calibrator_positions"]
