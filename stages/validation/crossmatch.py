"""Unique nearest-neighbour cross-match of detected sources with a reference catalog."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Match:
    """Matched pairs: ``det`` and ``ref`` indices, separation (rad) and offsets
    detected − reference: ``dra`` = ΔRA·cos δ and ``ddec`` (rad)."""

    det: np.ndarray
    ref: np.ndarray
    sep: np.ndarray
    dra: np.ndarray
    ddec: np.ndarray

    def __len__(self) -> int:
        return int(self.det.shape[0])


def crossmatch(ra_det: np.ndarray, dec_det: np.ndarray, ra_ref: np.ndarray,
               dec_ref: np.ndarray, radius: float) -> Match:
    """Pair each reference source with at most one detection and vice versa.

    All pairs closer than ``radius`` (rad) are taken nearest first, each source being
    used once, so every match is the nearest still-free partner of both sides.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if radius <= 0:
        raise ValueError("match radius must be positive")
    ra_det, dec_det = np.atleast_1d(ra_det).astype(float), np.atleast_1d(dec_det).astype(float)
    ra_ref, dec_ref = np.atleast_1d(ra_ref).astype(float), np.atleast_1d(dec_ref).astype(float)
    empty = np.zeros(0, np.int64)
    if ra_det.size == 0 or ra_ref.size == 0:
        z = np.zeros(0)
        return Match(empty, empty, z, z, z)
    c_det = SkyCoord(ra_det * u.rad, dec_det * u.rad)
    c_ref = SkyCoord(ra_ref * u.rad, dec_ref * u.rad)
    i_ref, i_det, sep, _ = c_det.search_around_sky(c_ref, radius * u.rad)
    sep = sep.to_value(u.rad)
    order = np.argsort(sep, kind="stable")
    used_det: set[int] = set()
    used_ref: set[int] = set()
    det, ref = [], []
    for k in order:
        a, b = int(i_det[k]), int(i_ref[k])
        if a in used_det or b in used_ref:
            continue
        used_det.add(a)
        used_ref.add(b)
        det.append(a)
        ref.append(b)
    det_a, ref_a = np.asarray(det, np.int64), np.asarray(ref, np.int64)
    dra = np.angle(np.exp(1j * (ra_det[det_a] - ra_ref[ref_a]))) * np.cos(dec_ref[ref_a])
    ddec = dec_det[det_a] - dec_ref[ref_a]
    s = c_det[det_a].separation(c_ref[ref_a]).to_value(u.rad) if len(det_a) else np.zeros(0)
    return Match(det_a, ref_a, np.asarray(s, float), dra, ddec)


__all__ = ["Match", "crossmatch"]
