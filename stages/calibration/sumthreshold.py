"""SumThreshold (Offringa et al. 2010) on a normalised residual, and the robust (MAD)
noise it is measured in. Pure numpy/numba (kernels in :mod:`.rfi_kernels`), no I/O."""

from __future__ import annotations

import numba
import numpy as np

from .rfi_kernels import MAD_TO_SIGMA, mad_of, st_lines, st_work


def robust_sigma(values: np.ndarray, flags: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """MAD-based standard deviation over ``axis`` of the unflagged values (NaN when none),
    with the reduced axes kept (size 1)."""
    axis = tuple(a % values.ndim for a in axis)
    keep = [a for a in range(values.ndim) if a not in axis]
    order = keep + list(axis)
    v = np.ascontiguousarray(np.transpose(values, order), dtype=np.float64)
    f = np.ascontiguousarray(np.transpose(flags, order))
    n_keep = int(np.prod([values.shape[a] for a in keep])) if keep else 1
    sig = _mad_lines(v.reshape(n_keep, -1), f.reshape(n_keep, -1)) * MAD_TO_SIGMA
    shape = [1 if a in axis else values.shape[a] for a in range(values.ndim)]
    return sig.reshape(shape)


@numba.njit(cache=True, nogil=True)
def _mad_lines(v: np.ndarray, f: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.full(v.shape[0], np.nan)
    buf = np.empty(v.shape[1])
    for i in range(v.shape[0]):
        k = 0
        for j in range(v.shape[1]):
            if not f[i, j] and np.isfinite(v[i, j]):
                buf[k] = v[i, j]
                k += 1
        out[i] = mad_of(buf, k)
    return out


def sumthreshold_windows(threshold: float, rho: float, max_window: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The windows M = 1, 2, 4, … ``max_window`` and their thresholds
    ``threshold / rho**log2(M)`` (float32)."""
    windows = (2 ** np.arange(int(np.log2(max(max_window, 1))) + 1)).astype(np.int64)
    chis = (threshold / rho ** np.log2(windows)).astype(np.float32)
    return windows, chis


def sumthreshold(x: np.ndarray, flags: np.ndarray, *, threshold: float = 6.0,
                 rho: float = 1.5, max_window: int = 32, axes: tuple[int, ...] = (0, 2),
                 positive_only: bool = False) -> np.ndarray:
    """SumThreshold on a normalised residual ``x`` (noise σ = 1) along ``axes``: excursions of
    both signs, or only positive ones with ``positive_only``.

    A window of M samples is flagged when the mean of its unflagged samples exceeds
    ``threshold / rho**log2(M)``, for M = 1, 2, 4, … ``max_window``. Returns the updated
    flags (a new array).
    """
    windows, chis = sumthreshold_windows(threshold, rho, max_window)
    out = np.array(flags, dtype=bool, copy=True, order="C")
    for axis in axes:
        xs = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), axis, 0))
        fs = np.ascontiguousarray(np.moveaxis(out, axis, 0))
        n = xs.shape[0]
        x2, f2 = xs.reshape(n, -1), fs.reshape(n, -1)
        st_lines(x2, f2, windows, chis, positive_only, *st_work(n, x2.shape[1]))
        out = np.ascontiguousarray(np.moveaxis(fs, 0, axis))
    return out


__all__ = ["sumthreshold", "sumthreshold_windows", "robust_sigma"]
