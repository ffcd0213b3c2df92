"""The robust noise estimate every stage uses: 1.4826 x the median absolute deviation from
the median (the standard deviation of Gaussian noise, unmoved by sources and outliers)."""

from __future__ import annotations

import numpy as np

#: Standard deviation / median absolute deviation of a Gaussian
MAD_TO_SIGMA = 1.4826


def robust_rms(x: np.ndarray, mask: np.ndarray | None = None, *, min_count: int = 1,
               empty: float = float("nan")) -> float:
    """1.4826 MAD of the finite values of ``x`` (where ``mask`` is true); ``empty`` when fewer
    than ``min_count`` are left."""
    v = np.asarray(x)
    v = v[mask] if mask is not None else v.ravel()
    v = v[np.isfinite(v)]
    if v.size < max(1, min_count):
        return empty
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


__all__ = ["MAD_TO_SIGMA", "robust_rms"]
