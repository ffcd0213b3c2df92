"""Stokes I from the correlations of a Measurement Set row block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: CASA Stokes enum: I, RR, LL, XX, YY
_STOKES_I, _RR, _LL, _XX, _YY = 1, 5, 8, 9, 12


def stokes_i(data: np.ndarray, flag: np.ndarray, weight: np.ndarray,
             corr_types: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stokes-I visibilities, weights and use-mask from (nrow, nchan, ncorr) arrays.

    I = (XX + YY) / 2 (or RR, LL) with weight ``4 w1 w2 / (w1 + w2)`` (inverse variance of
    the mean). Where one of the two is flagged, the other alone estimates I with its own
    weight. Returns complex64 (nrow, nchan), float32 weight and uint8 mask (1 = use).
    """
    corr = list(corr_types)
    if data.shape != flag.shape or data.shape != weight.shape:
        raise ValueError(f"data {data.shape}, flag {flag.shape}, weight {weight.shape} differ")
    if data.shape[-1] != len(corr):
        raise ValueError(f"{data.shape[-1]} correlations but {len(corr)} CORR_TYPE entries")
    if _STOKES_I in corr:
        k = corr.index(_STOKES_I)
        w = np.where(flag[..., k], 0.0, weight[..., k]).astype(np.float32)
        return data[..., k].astype(np.complex64), w, (w > 0).astype(np.uint8)
    pair = next(((a, b) for a, b in ((_XX, _YY), (_RR, _LL)) if a in corr and b in corr), None)
    if pair is None:
        raise ValueError(f"cannot form Stokes I from correlations {corr}")
    i, j = corr.index(pair[0]), corr.index(pair[1])
    w1 = np.where(flag[..., i], 0.0, weight[..., i]).astype(np.float32)
    w2 = np.where(flag[..., j], 0.0, weight[..., j]).astype(np.float32)
    v1, v2 = data[..., i], data[..., j]
    both = (w1 > 0) & (w2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_both = np.where(both, 4.0 * w1 * w2 / (w1 + w2), 0.0)
    vis = np.where(both, 0.5 * (v1 + v2), np.where(w1 > 0, v1, v2)).astype(np.complex64)
    wgt = np.where(both, w_both, np.maximum(w1, w2)).astype(np.float32)
    return vis, wgt, (wgt > 0).astype(np.uint8)
