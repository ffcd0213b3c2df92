"""Astrometric offsets of matched sources (detected − reference)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Astrometry:
    """Median and rms (about zero, so a common shift counts) of ΔRA·cosδ and ΔDec, and the
    radial rms sqrt(mean(ΔRA²cos²δ + ΔDec²)); all in rad."""

    median_dra: float
    median_ddec: float
    rms_dra: float
    rms_ddec: float
    rms: float
    n: int


def astrometric_offsets(dra: np.ndarray, ddec: np.ndarray) -> Astrometry:
    """Summarise offsets ``dra`` (= ΔRA·cos δ) and ``ddec`` (rad); NaNs when empty."""
    a = np.asarray(dra, float)
    d = np.asarray(ddec, float)
    if a.shape != d.shape:
        raise ValueError("dra and ddec differ in shape")
    ok = np.isfinite(a) & np.isfinite(d)
    a, d = a[ok], d[ok]
    if a.size == 0:
        nan = float("nan")
        return Astrometry(nan, nan, nan, nan, nan, 0)
    return Astrometry(float(np.median(a)), float(np.median(d)), float(np.sqrt(np.mean(a * a))),
                      float(np.sqrt(np.mean(d * d))), float(np.sqrt(np.mean(a * a + d * d))),
                      int(a.size))


__all__ = ["Astrometry", "astrometric_offsets"]
