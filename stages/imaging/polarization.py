"""Stokes I from the correlations of a Measurement Set row block."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

#: CASA Stokes enum: I, RR, LL, XX, YY
_STOKES_I, _RR, _LL, _XX, _YY = 1, 5, 8, 9, 12


@numba.njit(cache=True, nogil=True, parallel=True)
def _pair_kernel(data, flag, weight, i, j, vis, wgt, mask, rows):  # pragma: no cover - numba
    """I = (a + b) / 2 with weight 4 w1 w2 / (w1 + w2); one unflagged side alone if not both.
    Input row q goes to output row ``rows[q]``."""
    for q in numba.prange(data.shape[0]):
        r = rows[q]
        for c in range(data.shape[1]):
            w1 = 0.0 if flag[q, c, i] else weight[q, c, i]
            w2 = 0.0 if flag[q, c, j] else weight[q, c, j]
            if w1 > 0 and w2 > 0:
                vis[r, c] = 0.5 * (data[q, c, i] + data[q, c, j])
                wgt[r, c] = 4.0 * w1 * w2 / (w1 + w2)
                mask[r, c] = 1
            elif w1 > 0:
                vis[r, c] = data[q, c, i]
                wgt[r, c] = w1
                mask[r, c] = 1
            else:  # the second alone, or neither (weight 0, masked)
                vis[r, c] = data[q, c, j]
                wgt[r, c] = w2 if w2 > 0 else 0.0
                mask[r, c] = 1 if w2 > 0 else 0


def stokes_i(data: np.ndarray, flag: np.ndarray, weight: np.ndarray,
             corr_types: Sequence[int],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stokes-I visibilities, weights and use-mask from (nrow, nchan, ncorr) arrays.

    I = (XX + YY) / 2 (or RR, LL) with weight ``4 w1 w2 / (w1 + w2)`` (inverse variance of
    the mean). Where one of the two is flagged, the other alone estimates I with its own
    weight. Returns complex64 (nrow, nchan), float32 weight and uint8 mask (1 = use),
    written into ``out`` (three arrays of those types and shape) when given; with ``rows``,
    input row r goes to row ``rows[r]`` of ``out`` (a scatter, e.g. into w order).
    """
    corr = list(corr_types)
    if data.shape != flag.shape or data.shape != weight.shape:
        raise ValueError(f"data {data.shape}, flag {flag.shape}, weight {weight.shape} differ")
    if data.shape[-1] != len(corr):
        raise ValueError(f"{data.shape[-1]} correlations but {len(corr)} CORR_TYPE entries")
    if rows is not None and out is None:
        raise ValueError("rows needs out")
    if out is None:
        out = (np.empty(data.shape[:2], np.complex64), np.empty(data.shape[:2], np.float32),
               np.empty(data.shape[:2], np.uint8))
    vis, wgt, mask = out
    if _STOKES_I in corr:
        k = corr.index(_STOKES_I)
        sel = slice(None) if rows is None else rows
        wgt[sel] = np.where(flag[..., k], 0.0, weight[..., k])
        vis[sel] = data[..., k]
        mask[sel] = wgt[sel] > 0
        return vis, wgt, mask
    pair = next(((a, b) for a, b in ((_XX, _YY), (_RR, _LL)) if a in corr and b in corr), None)
    if pair is None:
        raise ValueError(f"cannot form Stokes I from correlations {corr}")
    idx = np.arange(data.shape[0]) if rows is None else np.asarray(rows, np.int64)
    _pair_kernel(data, flag, weight, corr.index(pair[0]), corr.index(pair[1]), vis, wgt, mask,
                 idx)
    return vis, wgt, mask
