"""Applying solutions: time interpolation of gains and correction of visibilities (pure numpy).

Corrected visibilities are V_pq / (g_p conj(g_q)), the inverse of the measurement equation
V_pq = g_p M_pq conj(g_q) used by the solvers (CASA's "divide" convention).
"""

from __future__ import annotations

import numba
import numpy as np


def interpolate_gains(sol_times: np.ndarray, gains: np.ndarray, flags: np.ndarray,
                      times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gains at ``times`` from solutions at ``sol_times`` (axis 0 of ``gains``/``flags``).

    Linear in amplitude and in phase (along the shorter arc) between the two nearest
    unflagged solutions of each series; the nearest one outside their span. A series
    with no unflagged solution gives flagged zeros. Returns (gains, flags) of shape
    ``(len(times),) + gains.shape[1:]``.
    """
    sol_times = np.asarray(sol_times, dtype=float)
    times = np.asarray(times, dtype=float)
    gains = np.asarray(gains)
    flags = np.asarray(flags, dtype=bool) | (gains == 0) | ~np.isfinite(gains)
    n_sol = len(sol_times)
    if gains.shape[0] != n_sol or flags.shape != gains.shape:
        raise ValueError(f"gains {gains.shape} / flags {flags.shape} do not match "
                         f"{n_sol} solution times")
    if n_sol > 1 and np.any(np.diff(sol_times) <= 0):
        raise ValueError("solution times must increase")
    rest = gains.shape[1:]
    g = gains.reshape(n_sol, -1)
    valid = ~flags.reshape(n_sol, -1)
    idx = np.arange(n_sol)[:, None]
    last = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)           # last valid ≤ s
    nxt = np.minimum.accumulate(np.where(valid, idx, n_sol)[::-1], axis=0)[::-1]  # first ≥ s
    j = np.searchsorted(sol_times, times, side="right") - 1                 # last sol ≤ t
    prev = np.where(j[:, None] >= 0, last[np.clip(j, 0, n_sol - 1)], -1)
    following = np.where((j + 1)[:, None] < n_sol, nxt[np.clip(j + 1, 0, n_sol - 1)], n_sol)
    has_p = prev >= 0
    has_n = following < n_sol
    k = g.shape[1]
    cols = np.arange(k)[None, :]
    gp = np.where(has_p, g[np.clip(prev, 0, n_sol - 1), cols], 0)
    gn = np.where(has_n, g[np.clip(following, 0, n_sol - 1), cols], 0)
    tp = sol_times[np.clip(prev, 0, n_sol - 1)]
    tn = sol_times[np.clip(following, 0, n_sol - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(has_p & has_n & (tn > tp), (times[:, None] - tp) / (tn - tp), 0.0)
    w = np.clip(w, 0.0, 1.0)
    both = has_p & has_n
    amp = (1 - w) * np.abs(gp) + w * np.abs(gn)
    with np.errstate(invalid="ignore", divide="ignore"):
        dphi = np.angle(gn * np.conj(gp))
    phase = np.angle(gp) + w * dphi
    interp = amp * np.exp(1j * phase)
    out = np.where(both, interp, np.where(has_p, gp, gn))
    out_flags = ~(has_p | has_n)
    out = np.where(out_flags, 0, out)
    shape = (len(times),) + rest
    return out.reshape(shape).astype(np.complex128), out_flags.reshape(shape)


def apply_gains(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                time_index: np.ndarray, gains: np.ndarray, gain_flags: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Correct rows of visibilities ``(n_row, n_chan, n_pol)``.

    ``gains``/``gain_flags`` have shape (n_time, n_ant, n_chan or 1, n_pol); row r uses
    time ``time_index[r]``. Rows whose gains are flagged or zero come back flagged (and
    zero). Returns (corrected, flags) as new arrays.
    """
    if vis.ndim != 3 or flags.shape != vis.shape:
        raise ValueError(f"vis {vis.shape} and flags {flags.shape} must be (n_row, n_chan, "
                         "n_pol)")
    ti = np.asarray(time_index)
    gp = gains[ti, ant1]
    gq = gains[ti, ant2]
    fp = gain_flags[ti, ant1] | gain_flags[ti, ant2]
    denom = gp * np.conj(gq)
    bad = fp | (denom == 0) | ~np.isfinite(denom)
    bad = np.broadcast_to(bad, vis.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(bad, 0, vis / np.where(bad, 1, denom))
    return out.astype(vis.dtype, copy=False), flags | bad


def combine_bg(bandpass: np.ndarray, bandpass_flags: np.ndarray, gains: np.ndarray,
               gain_flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total gain G(t) B(ν): bandpass (n_ant, n_chan, n_pol) and interpolated gains
    (n_time, n_ant, 1, n_pol) give (n_time, n_ant, n_chan, n_pol) with merged flags."""
    total = gains * bandpass[None]
    flags = gain_flags | bandpass_flags[None]
    return total, flags


@numba.njit(cache=True, nogil=True, parallel=True)
def _inverse_gains(gains, gflags, inv):  # pragma: no cover
    """1 / g where the gain is usable, else 0 (flagged)."""
    g = gains.reshape(-1)
    f = gflags.reshape(-1)
    out = inv.reshape(-1)
    for i in numba.prange(g.size):
        d = complex(g[i])
        ok = not f[i] and not (d.real == 0 and d.imag == 0) and np.isfinite(d.real) \
            and np.isfinite(d.imag)
        out[i] = 1.0 / d if ok else 0j


@numba.njit(cache=True, nogil=True, parallel=True)
def _correct_kernel(vis, flags, ant1, ant2, tidx, inv, out, oflags):  # pragma: no cover
    nt, nb, nc, npol = vis.shape
    for b in numba.prange(nb):
        p_ = ant1[b]
        q_ = ant2[b]
        for t in range(nt):
            ti = tidx[t]
            for c in range(nc):
                for k in range(npol):
                    z = inv[ti, p_, c, k] * inv[ti, q_, c, k].conjugate()
                    bad = z.real == 0 and z.imag == 0
                    out[t, b, c, k] = 0 if bad else complex(vis[t, b, c, k]) * z
                    oflags[t, b, c, k] = bad or flags[t, b, c, k]


def apply_gains_cube(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                     time_index: np.ndarray, gains: np.ndarray, gain_flags: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`apply_gains` for a cube ``(n_time, n_bl, n_chan, n_pol)`` (numba, parallel
    over baselines): time t uses gains ``time_index[t]`` of ``gains``/``gain_flags``
    (n_gain_time, n_ant, n_chan, n_pol). Returns (corrected, flags) as new arrays in the
    dtype of ``vis``; the arithmetic runs in double precision."""
    if vis.ndim != 4 or flags.shape != vis.shape:
        raise ValueError(f"vis {vis.shape} and flags {flags.shape} must be (n_time, n_bl, "
                         "n_chan, n_pol)")
    if gains.shape[2:] != vis.shape[2:] or gain_flags.shape != gains.shape:
        raise ValueError(f"gains {gains.shape} do not match the data {vis.shape}")
    ti = np.asarray(time_index, np.int64)
    used = np.unique(ti)
    inv = np.empty((used.size,) + gains.shape[1:], np.complex128)
    _inverse_gains(np.ascontiguousarray(gains[used]), np.ascontiguousarray(gain_flags[used]),
                   inv)
    out = np.empty(vis.shape, vis.dtype)
    oflags = np.empty(vis.shape, bool)
    _correct_kernel(vis, flags, np.asarray(ant1, np.int64), np.asarray(ant2, np.int64),
                    np.searchsorted(used, ti), inv, out, oflags)
    return out, oflags
