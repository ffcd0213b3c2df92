"""Stokes I from the correlations of a Measurement Set row block."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

#: CASA Stokes enum: I, RR, LL, XX, YY
_STOKES_I, _RR, _LL, _XX, _YY = 1, 5, 8, 9, 12


@numba.njit(cache=True, nogil=True, parallel=True)
def _pair_kernel(data, flag, weight, i, j, vis, wgt, mask):  # pragma: no cover - numba
    """I = (a + b) / 2 with weight 4 w1 w2 / (w1 + w2); one unflagged side alone if not both."""
    for r in numba.prange(data.shape[0]):
        for c in range(data.shape[1]):
            w1 = 0.0 if flag[r, c, i] else weight[r, c, i]
            w2 = 0.0 if flag[r, c, j] else weight[r, c, j]
            if w1 > 0 and w2 > 0:
                vis[r, c] = 0.5 * (data[r, c, i] + data[r, c, j])
                wgt[r, c] = 4.0 * w1 * w2 / (w1 + w2)
                mask[r, c] = 1
            elif w1 > 0:
                vis[r, c] = data[r, c, i]
                wgt[r, c] = w1
                mask[r, c] = 1
            else:  # the second alone, or neither (weight 0, masked)
                vis[r, c] = data[r, c, j]
                wgt[r, c] = w2 if w2 > 0 else 0.0
                mask[r, c] = 1 if w2 > 0 else 0


def stokes_i(data: np.ndarray, flag: np.ndarray, weight: np.ndarray,
             corr_types: Sequence[int],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stokes-I visibilities, weights and use-mask from (nrow, nchan, ncorr) arrays.

    I = (XX + YY) / 2 (or RR, LL) with weight ``4 w1 w2 / (w1 + w2)`` (inverse variance of
    the mean). Where one of the two is flagged, the other alone estimates I with its own
    weight. Returns complex64 (nrow, nchan), float32 weight and uint8 mask (1 = use),
    written into ``out`` (three arrays of those types and shape) when given.
    """
    corr = list(corr_types)
    if data.shape != flag.shape or data.shape != weight.shape:
        raise ValueError(f"data {data.shape}, flag {flag.shape}, weight {weight.shape} differ")
    if data.shape[-1] != len(corr):
        raise ValueError(f"{data.shape[-1]} correlations but {len(corr)} CORR_TYPE entries")
    if out is None:
        out = (np.empty(data.shape[:2], np.complex64), np.empty(data.shape[:2], np.float32),
               np.empty(data.shape[:2], np.uint8))
    vis, wgt, mask = out
    if _STOKES_I in corr:
        k = corr.index(_STOKES_I)
        wgt[:] = np.where(flag[..., k], 0.0, weight[..., k])
        vis[:] = data[..., k]
        np.greater(wgt, 0, out=mask, casting="unsafe")
        return vis, wgt, mask
    pair = next(((a, b) for a, b in ((_XX, _YY), (_RR, _LL)) if a in corr and b in corr), None)
    if pair is None:
        raise ValueError(f"cannot form Stokes I from correlations {corr}")
    _pair_kernel(data, flag, weight, corr.index(pair[0]), corr.index(pair[1]), vis, wgt, mask)
    return vis, wgt, mask
