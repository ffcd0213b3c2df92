"""The strong-RFI prefilter of :func:`.rfi.flag_rfi`: cells (time, channel) hit by RFI
strong enough to stand out in the baseline-median amplitude, flagged before the
per-baseline passes so that they cannot bias the smooth backgrounds. Pure numpy/numba."""

from __future__ import annotations

import warnings

import numba
import numpy as np

from .rfi_kernels import MAD_TO_SIGMA

#: Most baselines (evenly spread) in the baseline median of the strong-RFI prefilter.
PREFILTER_MAX_BASELINES = 1024


def _running_median(x: np.ndarray, size: int) -> np.ndarray:
    """Running median of a 1-d series (NaN ignored, edges use the samples available)."""
    n = x.size
    half = size // 2
    out = np.empty(n)
    for i in range(n):
        w = x[max(0, i - half):i + half + 1]
        w = w[np.isfinite(w)]
        out[i] = np.median(w) if w.size else np.nan
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _median_plane(vis, flags, bsel, plane):  # pragma: no cover
    """Median amplitude over the baselines ``bsel`` and polarisations per (time, chan)."""
    nt, _, nc, npol = vis.shape
    for t in numba.prange(nt):
        buf = np.empty((nc, bsel.size * npol))
        cnt = np.zeros(nc, np.int64)
        for bi in range(bsel.size):
            b = bsel[bi]
            for c in range(nc):
                for p in range(npol):
                    if not flags[t, b, c, p]:
                        a = abs(vis[t, b, c, p])
                        if np.isfinite(a):
                            buf[c, cnt[c]] = a
                            cnt[c] += 1
        for c in range(nc):
            plane[t, c] = np.median(buf[c, :cnt[c]]) if cnt[c] > 0 else np.nan


def strong_rfi_cells(vis: np.ndarray, flags: np.ndarray, threshold: float = 8.0,
                     tolerance: float = 0.0) -> np.ndarray:
    """Cells (time, channel) hit by RFI strong enough to stand out in the baseline median.

    The median amplitude over baselines (at most :data:`PREFILTER_MAX_BASELINES`, evenly
    spread) and polarisations per (time, channel) is modelled as a channel shape times a
    time shape (medians), and cells deviating by more than ``threshold`` robust σ (MAD)
    upwards are returned (n_time, n_chan); ``tolerance`` × the model is added to σ in
    quadrature (see ``.rfi.RFIParams.model_tolerance``). This keeps very strong bursts and lines
    from biasing the smooth backgrounds of :func:`.rfi.flag_rfi`.
    """
    nb = vis.shape[1]
    bsel = np.unique(np.linspace(0, nb - 1, min(nb, PREFILTER_MAX_BASELINES)).astype(np.int64))
    plane = np.empty((vis.shape[0], vis.shape[2]))
    _median_plane(vis, flags, bsel, plane)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # robust, smooth shapes: running medians reject lines and bursts a few samples wide
        shape_c = _running_median(np.nanmedian(plane, axis=0), 9)[None, :]
        shape_t = _running_median(np.nanmedian(plane / shape_c, axis=1), 5)[:, None]
        model = shape_c * shape_t
        resid = plane - model
        med = np.nanmedian(resid)
        sig = MAD_TO_SIGMA * np.nanmedian(np.abs(resid - med))
    if not np.isfinite(sig) or sig <= 0:
        return np.zeros(plane.shape, bool)
    # RFI adds power: only cells above the model count
    sig_eff = np.sqrt(sig * sig + (tolerance * model) ** 2) if tolerance > 0 else sig
    return np.nan_to_num((resid - med) / sig_eff, nan=0.0) > threshold


__all__ = ["strong_rfi_cells", "PREFILTER_MAX_BASELINES"]
