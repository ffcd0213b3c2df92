"""Completeness (fraction of reference sources found) and reliability (fraction of
detections that are real), overall above a threshold and in bins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinnedFraction:
    """Per bin [edges[i], edges[i+1]): how many items, how many flagged, and the fraction
    (NaN for an empty bin)."""

    edges: np.ndarray
    total: np.ndarray
    flagged: np.ndarray
    fraction: np.ndarray


def binned_fraction(values: np.ndarray, flag: np.ndarray, edges: np.ndarray) -> BinnedFraction:
    """Fraction of items with ``flag`` true in each bin of ``values``."""
    v = np.asarray(values, float)
    f = np.asarray(flag, bool)
    e = np.asarray(edges, float)
    if v.shape != f.shape:
        raise ValueError("values and flag differ in shape")
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError("edges must be increasing with at least two entries")
    total = np.histogram(v, e)[0]
    flagged = np.histogram(v[f], e)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, flagged / np.maximum(total, 1), np.nan)
    return BinnedFraction(e, total, flagged, frac)


def fraction_above(values: np.ndarray, flag: np.ndarray, threshold: float) -> tuple[float, int]:
    """Fraction flagged among items with ``values >= threshold`` and their count
    (NaN, 0 when there are none)."""
    v = np.asarray(values, float)
    f = np.asarray(flag, bool)
    sel = v >= threshold
    n = int(sel.sum())
    if n == 0:
        return float("nan"), 0
    return float(f[sel].mean()), n


def log_edges(values: np.ndarray, per_decade: int = 4, floor: float | None = None) -> np.ndarray:
    """Logarithmic bin edges covering the positive ``values`` (at least two edges)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if floor is not None:
        v = v[v >= floor]
    if v.size == 0:
        return np.array([1.0, 10.0])
    lo = np.floor(np.log10(v.min() if floor is None else floor) * per_decade) / per_decade
    hi = np.ceil(np.log10(v.max()) * per_decade + 1e-9) / per_decade
    if hi <= lo:
        hi = lo + 1.0 / per_decade
    return 10.0 ** np.arange(lo, hi + 0.5 / per_decade, 1.0 / per_decade)


__all__ = ["BinnedFraction", "binned_fraction", "fraction_above", "log_edges"]
