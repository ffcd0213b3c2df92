"""Flux-scale ratio: median of measured / reference flux, with a bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FluxScale:
    """Median ratio, its bootstrap interval (``ci_low``, ``ci_high``) and the count."""

    median: float
    ci_low: float
    ci_high: float
    n: int


def flux_scale(measured: np.ndarray, reference: np.ndarray, *, n_boot: int = 2000,
               level: float = 0.95, seed: int = 0) -> FluxScale:
    """Median of ``measured / reference`` (both Jy, PB-corrected) and the percentile
    bootstrap interval of the median at confidence ``level``. Pairs with a non-positive
    reference or a non-finite ratio are ignored; no pair gives NaNs and n = 0."""
    m = np.asarray(measured, float)
    r = np.asarray(reference, float)
    if m.shape != r.shape:
        raise ValueError(f"measured {m.shape} and reference {r.shape} differ in shape")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = m / r
    ratio = ratio[(r > 0) & np.isfinite(ratio)]
    n = int(ratio.size)
    if n == 0:
        return FluxScale(float("nan"), float("nan"), float("nan"), 0)
    med = float(np.median(ratio))
    if n == 1:
        return FluxScale(med, med, med, 1)
    rng = np.random.default_rng(seed)
    boots = np.median(ratio[rng.integers(0, n, size=(n_boot, n))], axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return FluxScale(med, float(lo), float(hi), n)


__all__ = ["FluxScale", "flux_scale"]
