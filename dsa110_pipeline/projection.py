"""The SIN projection: direction cosines (l east, m north, n) about a phase centre, and back.

One definition for the calibration model, the imager's beam and pointing, and the
simulator's checks: a sign or axis error here would otherwise cancel between two copies.
"""

from __future__ import annotations

import numpy as np


def radec_to_lmn(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Direction cosines (..., 3) of (ra, dec) about the phase centre (ra0, dec0), rad."""
    ra = np.asarray(ra, float)
    dec = np.asarray(dec, float)
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)  # noqa: E741
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n = np.sqrt(np.clip(1.0 - l**2 - m**2, 0.0, None))
    return np.stack([l, m, n], axis=-1)


def lm_to_radec(l: np.ndarray, m: np.ndarray, ra0: float, dec0: float  # noqa: E741
                ) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) of direction cosines (l, m) about (ra0, dec0): the inverse of
    :func:`radec_to_lmn` (front hemisphere)."""
    l, m = np.asarray(l, float), np.asarray(m, float)  # noqa: E741
    n = np.sqrt(np.clip(1.0 - l**2 - m**2, 0.0, None))
    dec = np.arcsin(np.clip(m * np.cos(dec0) + n * np.sin(dec0), -1.0, 1.0))
    ra = ra0 + np.arctan2(l, n * np.cos(dec0) - m * np.sin(dec0))
    return np.mod(ra, 2 * np.pi), dec


__all__ = ["lm_to_radec", "radec_to_lmn"]
