"""New sources: mosaic detections with no survey counterpart and no earlier detection
(pure functions on arrays)."""

from __future__ import annotations

import numpy as np


def unmatched(det_ra: np.ndarray, det_dec: np.ndarray, known_ra: np.ndarray,
              known_dec: np.ndarray, radius_deg: float) -> np.ndarray:
    """Mask of the detections (deg) with no known position (deg) within ``radius_deg``."""
    det_ra, det_dec = np.atleast_1d(det_ra), np.atleast_1d(det_dec)
    if det_ra.size == 0 or np.size(known_ra) == 0:
        return np.ones(det_ra.size, bool)
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    _, sep, _ = SkyCoord(det_ra * u.deg, det_dec * u.deg).match_to_catalog_sky(
        SkyCoord(np.asarray(known_ra) * u.deg, np.asarray(known_dec) * u.deg))
    return sep.deg > radius_deg


def source_names(ra_deg: np.ndarray, dec_deg: np.ndarray, prefix: str = "DSA") -> list[str]:
    """IAU-style names, ``DSA Jhhmmss.s+ddmmss``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(np.atleast_1d(ra_deg) * u.deg, np.atleast_1d(dec_deg) * u.deg)
    ra = c.ra.to_string(unit=u.hourangle, sep="", precision=1, pad=True)
    dec = c.dec.to_string(sep="", precision=0, alwayssign=True, pad=True)
    return [f"{prefix} J{r}{d}" for r, d in zip(np.atleast_1d(ra), np.atleast_1d(dec),
                                               strict=True)]
