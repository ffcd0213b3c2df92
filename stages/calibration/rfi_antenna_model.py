"""The antenna-based amplitude model of :func:`.rfi.flag_rfi` for data where the source
dominates: the source's S/N (:func:`source_snr`) and 1/|g_p| per (time, antenna, channel,
polarisation) fitted over the baselines (:func:`antenna_amplitude_factors`), by which the
per-baseline passes divide the amplitudes. Pure numpy/scipy, no I/O."""

from __future__ import annotations

import numpy as np

from .rfi_kernels import MAD_TO_SIGMA


def source_snr(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray
               ) -> float:
    """Median amplitude over thermal σ of the unflagged cross-correlations; σ from the
    differences of adjacent channels (MAD of their real and imaginary parts / √2), at most
    64 baselines (evenly spread)."""
    cross = np.flatnonzero(np.asarray(ant1) != np.asarray(ant2))
    if cross.size == 0 or vis.shape[2] < 2:
        return 0.0
    sel = cross[np.unique(np.linspace(0, cross.size - 1, min(cross.size, 64)).astype(int))]
    v, f = vis[:, sel], flags[:, sel]
    d = v[:, :, 1:] - v[:, :, :-1]
    ok = ~(f[:, :, 1:] | f[:, :, :-1]) & np.isfinite(d)
    amp = np.abs(v[~f & np.isfinite(v)])
    if not ok.any() or amp.size == 0:
        return 0.0
    parts = np.concatenate([d.real[ok], d.imag[ok]])
    sig = MAD_TO_SIGMA * np.median(np.abs(parts - np.median(parts))) / np.sqrt(2.0)
    return float(np.median(amp) / sig) if sig > 0 else float("inf")


def antenna_amplitude_factors(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                              ant2: np.ndarray, n_ant: int, iterations: int = 6
                              ) -> np.ndarray:
    """1 / (antenna amplitude) per (time, antenna, channel, polarisation), float32: the
    least-squares fit log|V_pq| = α_p + α_q over the unflagged cross-correlations of each
    (time, channel, polarisation) (damped Jacobi iterations from α = half the mean); 1
    where an antenna has no data."""
    from scipy import sparse

    nt, nb, nc, npol = vis.shape
    a1, a2 = np.asarray(ant1, np.int64), np.asarray(ant2, np.int64)
    cross = (a1 != a2).astype(np.float32)
    cols = np.arange(nb)
    m1 = sparse.csr_matrix((cross, (a1, cols)), shape=(n_ant, nb))
    m2 = sparse.csr_matrix((cross, (a2, cols)), shape=(n_ant, nb))
    out = np.ones((nt, n_ant, nc, npol), np.float32)
    m = nc * npol
    for t in range(nt):
        a = np.abs(vis[t]).reshape(nb, m).astype(np.float32)
        w = (~flags[t].reshape(nb, m) & np.isfinite(a) & (a > 0)).astype(np.float32)
        lg = np.log(np.where(w > 0, a, 1.0)) * w
        den = m1 @ w + m2 @ w
        num = m1 @ lg + m2 @ lg
        has = den > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = np.where(has, 0.5 * num / np.where(has, den, 1.0), 0.0)
            for _ in range(iterations):
                other = m1 @ (w * alpha[a2]) + m2 @ (w * alpha[a1])
                new = np.where(has, (num - other) / np.where(has, den, 1.0), 0.0)
                alpha = 0.5 * (alpha + new)
        out[t] = np.where(has, np.exp(-alpha), 1.0).reshape(n_ant, nc, npol)
    return out


__all__ = ["source_snr", "antenna_amplitude_factors"]
