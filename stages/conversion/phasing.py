"""Phasing kernels: baseline uvw toward a phase centre and the visibility phase rotation.

Pure numpy; no I/O. Conventions follow pyuvdata (uvw = position(ant2) − position(ant1),
visibilities rotated by exp(−2πi f Δw / c) with Δw = w_new − w_old, w_old = 0 for
unprojected drift data).
"""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.instrument import SPEED_OF_LIGHT

try:  # optional accelerator: one pass per chunk instead of several numpy passes
    import numba as _numba
except ImportError:  # pragma: no cover - numpy fallback
    _numba = None


def antenna_uvw(antenna_positions: np.ndarray, gha: np.ndarray, app_dec: np.ndarray,
                frame_pa: np.ndarray) -> np.ndarray:
    """uvw (m) of each antenna relative to the array centre, per time.

    ``antenna_positions`` (nants, 3) are ECEF offsets from the array centre (m);
    ``gha`` is the Greenwich hour angle of the phase centre (LST − app_ra − longitude),
    ``app_dec`` its apparent declination and ``frame_pa`` the position angle that turns
    apparent north into the reference frame's north (all rad, shape (ntimes,)).
    Returns (ntimes, nants, 3).
    """
    pos = np.asarray(antenna_positions, dtype=np.float64)
    h = np.asarray(gha, dtype=np.float64)[:, None]
    d = np.asarray(app_dec, dtype=np.float64)[:, None]
    pa = np.asarray(frame_pa, dtype=np.float64)[:, None]
    x, y, z = pos[None, :, 0], pos[None, :, 1], pos[None, :, 2]
    sh, ch, sd, cd = np.sin(h), np.cos(h), np.sin(d), np.cos(d)
    u = sh * x + ch * y
    v = -sd * ch * x + sd * sh * y + cd * z
    w = cd * ch * x - cd * sh * y + sd * z
    cp, sp = np.cos(pa), np.sin(pa)
    return np.stack([u * cp - v * sp, u * sp + v * cp, w], axis=-1)


def baseline_uvw(antenna_positions: np.ndarray, ant1_index: np.ndarray,
                 ant2_index: np.ndarray, time_index: np.ndarray, gha: np.ndarray,
                 app_dec: np.ndarray, frame_pa: np.ndarray) -> np.ndarray:
    """uvw (m, float64, (nrows, 3)) of rows: antenna ``ant2`` minus antenna ``ant1``.

    ``ant1_index``/``ant2_index`` index ``antenna_positions``; ``time_index`` indexes the
    per-time arrays ``gha``, ``app_dec`` and ``frame_pa``.
    """
    per_ant = antenna_uvw(antenna_positions, gha, app_dec, frame_pa)
    return per_ant[time_index, ant2_index] - per_ant[time_index, ant1_index]


def rotate_visibilities(vis: np.ndarray, delta_w: np.ndarray, freqs: np.ndarray, *,
                        conjugate: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Multiply visibilities by exp(−2πi f Δw / c) (w-term of a change of phase centre).

    ``vis`` is (nrows, nfreqs, npols), ``delta_w`` (nrows,) in m, ``freqs`` (nfreqs,) in Hz.
    The phase is evaluated in float64. With ``conjugate`` the result is conjugated
    (the Measurement Set convention). ``out`` may be ``vis`` itself (in place).
    """
    arg = (-2.0 * np.pi / SPEED_OF_LIGHT) * np.multiply.outer(
        np.asarray(delta_w, dtype=np.float64), np.asarray(freqs, dtype=np.float64))
    if conjugate:
        arg = -arg
    phasor = np.empty(arg.shape, dtype=np.complex64 if vis.dtype == np.complex64
                      else np.complex128)
    phasor.real = np.cos(arg)
    phasor.imag = np.sin(arg)
    if out is None:
        out = np.empty_like(vis)
    if conjugate:
        np.conjugate(vis, out=out)
        out *= phasor[:, :, None]
    else:
        np.multiply(vis, phasor[:, :, None], out=out)
    return out


def _rotate_uniform_py(vis: np.ndarray, delta_w: np.ndarray, f0: float, df: float,
                       conjugate: bool, flip: bool, out: np.ndarray) -> None:
    """Reference loop of :func:`rotate_uniform_channels` (compiled with numba when present)."""
    n, nf, npol = vis.shape
    k = 2.0 * np.pi / SPEED_OF_LIGHT * (1.0 if conjugate else -1.0)
    for r in range(n):
        a0 = k * delta_w[r] * f0
        da = k * delta_w[r] * df
        p = complex(np.cos(a0), np.sin(a0))
        step = complex(np.cos(da), np.sin(da))
        for j in range(nf):
            src = nf - 1 - j if flip else j
            pc = np.complex64(p)
            for q in range(npol):
                v = vis[r, src, q]
                if conjugate:
                    v = v.conjugate()
                out[r, j, q] = v * pc
            p = p * step


_rotate_uniform = (_numba.njit(cache=True, nogil=True)(_rotate_uniform_py) if _numba
                   else None)


def rotate_uniform_channels(vis: np.ndarray, delta_w: np.ndarray, freqs: np.ndarray, *,
                            conjugate: bool = False, flip: bool = False,
                            out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rotate_visibilities` for evenly spaced channels, in one pass.

    ``freqs`` are the output channel frequencies (ascending or not); with ``flip`` the
    input channel axis is reversed on the way (descending file -> ascending output).
    The per-channel phasor is advanced by a float64 complex recurrence, so only two
    trigonometric evaluations per row are needed. ``out`` must not alias ``vis`` when
    ``flip`` is set. Falls back to numpy without numba.
    """
    f = np.asarray(freqs, dtype=np.float64)
    df = float(f[1] - f[0]) if f.size > 1 else 0.0
    if f.size > 2 and not np.allclose(np.diff(f), df, rtol=1e-9, atol=1e-3):
        raise ValueError("rotate_uniform_channels needs evenly spaced channels")
    src = vis[:, ::-1] if flip else vis
    if _rotate_uniform is None or vis.dtype != np.complex64:
        return rotate_visibilities(np.ascontiguousarray(src), delta_w, f, conjugate=conjugate,
                                   out=out)
    if out is None:
        out = np.empty(vis.shape, dtype=np.complex64)
    _rotate_uniform(np.ascontiguousarray(vis), np.ascontiguousarray(delta_w, dtype=np.float64),
                    float(f[0]), df, conjugate, flip, out)
    return out
