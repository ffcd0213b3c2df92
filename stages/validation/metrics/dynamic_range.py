"""Dynamic range of an image."""

from __future__ import annotations

import numpy as np


def dynamic_range(image: np.ndarray, rms: float) -> float:
    """Brightest finite pixel divided by the image rms (NaN when rms is not positive)."""
    v = np.asarray(image, float)
    if not np.isfinite(v).any() or not (rms > 0):
        return float("nan")
    return float(np.nanmax(v) / rms)


__all__ = ["dynamic_range"]
