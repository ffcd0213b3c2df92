"""Exact direct Fourier sum of point sources, with the w-term (numba kernel).

Convention (pyuvdata / UVH5, the complex conjugate of Measurement Set ``DATA``)::

    V(u, v, w, f) = sum_k S_k(f) * exp(+2 pi i f / c * (u l_k + v m_k + w (n_k - 1)))

for data phased to a centre, where (l, m, n) are direction cosines about the phase centre
and (u, v, w) the baseline (antenna 2 - antenna 1) in metres. For UNPROJECTED (drift, zenith)
data pyuvdata takes w = 0 as the reference, so the term is ``w n`` instead of ``w (n - 1)``:
pass ``unprojected=True`` with (u, v, w) the ENU baseline and (l, m, n) the ENU direction
cosines (east, north, up). MS ``DATA`` is the conjugate of pyuvdata's data and MS ``UVW``
the negative of its uvw, so with MS ``UVW`` as given the two flips cancel: use ``sign=+1``
for MS ``DATA`` too; ``sign=-1`` is for MS ``DATA`` predicted from pyuvdata's uvw.

Speed: for uniformly spaced channels the phasor of channel c is z0 * r**c, with one complex
multiply per channel (geometric recurrence) instead of a sine and a cosine; loops run in
parallel over blocks of baseline-times that share one time sample.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .instrument import SPEED_OF_LIGHT
from .threads import set_numba_threads

_TWO_PI_OVER_C = 2.0 * math.pi / SPEED_OF_LIGHT
#: Baseline-times per block of the parallel loop (fits the accumulators in L1/L2).
BLOCK = 64


# sincos without library calls, so that loops over baselines vectorise: reduce to [-pi, pi]
# (Cody-Waite, two-part 2 pi), Taylor series of the half angle, double-angle formulae.
# Absolute error < 2e-12 for |x| < 1e6 rad.
_INV_2PI = 1.0 / (2.0 * math.pi)
_TWO_PI_HI = 6.28318530717958623200e00
_TWO_PI_LO = 2.44929359829470635445e-16
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52: x + M - M rounds to the nearest integer
_S = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(9))
_C = tuple((-1) ** k / math.factorial(2 * k) for k in range(9))
_S1, _S3, _S5, _S7, _S9, _S11, _S13, _S15, _S17 = _S
_C0, _C2, _C4, _C6, _C8, _C10, _C12, _C14, _C16 = _C
#: fast-math flags that keep the rounding trick exact (no reassociation)
_FM = {"contract", "nsz", "nnan", "ninf", "arcp"}


@numba.njit(inline="always", fastmath=_FM)
def _sincos(x):  # pragma: no cover
    q = (x * _INV_2PI + _ROUND_MAGIC) - _ROUND_MAGIC
    h = 0.5 * ((x - q * _TWO_PI_HI) - q * _TWO_PI_LO)
    h2 = h * h
    s = h * (_S1 + h2 * (_S3 + h2 * (_S5 + h2 * (_S7 + h2 * (_S9 + h2 * (
        _S11 + h2 * (_S13 + h2 * (_S15 + h2 * _S17))))))))
    c = _C0 + h2 * (_C2 + h2 * (_C4 + h2 * (_C6 + h2 * (_C8 + h2 * (
        _C10 + h2 * (_C12 + h2 * (_C14 + h2 * _C16)))))))
    return 2.0 * s * c, 1.0 - 2.0 * s * s


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x) by the kernel's own vectorisable method (for tests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    s, c = np.empty_like(x), np.empty_like(x)
    _sincos_array(x.ravel(), s.ravel(), c.ravel())
    return s, c


@numba.njit(fastmath=_FM, cache=True)
def _sincos_array(x, s, c):  # pragma: no cover
    for i in range(x.size):
        s[i], c[i] = _sincos(x[i])


@numba.njit(parallel=True, cache=True, fastmath=_FM, nogil=True)
def _dft_uniform(uvw, tidx, rows, lo_arr, hi_arr, f0, df, lmn, flux, sign, w_offset, proto,
                 accumulate, out):  # pragma: no cover
    # proto: a 1-element array whose dtype (float32/float64) sets the accumulation precision
    nchan = flux.shape[2]
    nsrc = flux.shape[1]
    scale = sign * _TWO_PI_OVER_C
    dt = proto.dtype
    for ic in prange(lo_arr.size):
        lo = lo_arr[ic]
        nb = hi_arr[ic] - lo
        t = tidx[lo]
        acc_re = np.zeros((nchan, nb), dtype=dt)
        acc_im = np.zeros((nchan, nb), dtype=dt)
        zr = np.empty(nb, dtype=dt)
        zi = np.empty(nb, dtype=dt)
        rr = np.empty(nb, dtype=dt)
        ri = np.empty(nb, dtype=dt)
        sk = np.empty(nchan, dtype=dt)
        uu = uvw[0, lo:lo + nb]
        vv = uvw[1, lo:lo + nb]
        ww = uvw[2, lo:lo + nb]
        for k in range(nsrc):
            lk = lmn[t, k, 0]
            mk = lmn[t, k, 1]
            nk = lmn[t, k, 2] - w_offset
            for c in range(nchan):
                sk[c] = flux[t, k, c]
            for b in range(nb):
                tau = scale * (uu[b] * lk + vv[b] * mk + ww[b] * nk)
                s0, c0 = _sincos(tau * f0)
                s1, c1 = _sincos(tau * df)
                zr[b] = c0
                zi[b] = s0
                rr[b] = c1
                ri[b] = s1
            for c in range(nchan):
                s = sk[c]
                ar = acc_re[c]
                ai = acc_im[c]
                for b in range(nb):
                    x = zr[b]
                    y = zi[b]
                    ar[b] += s * x
                    ai[b] += s * y
                    zr[b] = x * rr[b] - y * ri[b]
                    zi[b] = x * ri[b] + y * rr[b]
        for b in range(nb):
            for c in range(nchan):
                v = complex(acc_re[c, b], acc_im[c, b])
                if accumulate:
                    out[rows[lo + b], c] += v
                else:
                    out[rows[lo + b], c] = v


@numba.njit(parallel=True, cache=True, fastmath=_FM, nogil=True)
def _dft_general(uvw, tidx, rows, lo_arr, hi_arr, freqs, lmn, flux, sign, w_offset,
                 accumulate, out):  # pragma: no cover
    nchan = freqs.size
    nsrc = flux.shape[1]
    scale = sign * _TWO_PI_OVER_C
    for ic in prange(lo_arr.size):
        lo = lo_arr[ic]
        nb = hi_arr[ic] - lo
        t = tidx[lo]
        if not accumulate:
            for b in range(nb):
                for c in range(nchan):
                    out[rows[lo + b], c] = 0.0
        for k in range(nsrc):
            lk = lmn[t, k, 0]
            mk = lmn[t, k, 1]
            nk = lmn[t, k, 2] - w_offset
            for b in range(nb):
                tau = scale * (uvw[lo + b, 0] * lk + uvw[lo + b, 1] * mk + uvw[lo + b, 2] * nk)
                for c in range(nchan):
                    sp, cp = _sincos(tau * freqs[c])
                    out[rows[lo + b], c] += flux[t, k, c] * complex(cp, sp)


def _blocks(tidx: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Start/end indices of runs of equal time index, cut into pieces of at most ``block``."""
    n = tidx.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    edges = np.flatnonzero(np.diff(tidx)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    lo, hi = [], []
    for s, e in zip(starts, ends):
        b = np.arange(s, e, block)
        lo.append(b)
        hi.append(np.minimum(b + block, e))
    return np.concatenate(lo).astype(np.int64), np.concatenate(hi).astype(np.int64)


def predict_visibilities_drift(uvw_m: np.ndarray, time_index: np.ndarray, freqs_hz: np.ndarray,
                               lmn: np.ndarray, flux: np.ndarray, *, sign: int = 1,
                               unprojected: bool = True, out: np.ndarray | None = None,
                               dtype: type = np.complex64, nthreads: int | None = None,
                               precision: str = "single", accumulate: bool = False) -> np.ndarray:
    """Direct Fourier sum when source directions and fluxes change with time (drift scans).

    uvw_m: (nblt, 3) baselines in metres; time_index: (nblt,) index into the time axis of
    ``lmn`` (ntime, nsrc, 3) direction cosines and ``flux`` (ntime, nsrc, nchan) in Jy
    (apparent, i.e. beam-attenuated). Rows in any order (visited grouped by time).
    ``precision`` "single" runs the channel recurrence in float32 (relative error < 1e-5,
    restarted exactly at every call), "double" in float64. Returns (nblt, nchan) complex
    visibilities in Jy (added to ``out`` with ``accumulate``); see the module docstring for
    the sign and w-term conventions.
    """
    uvw = np.ascontiguousarray(uvw_m, dtype=np.float64)
    tidx = np.ascontiguousarray(time_index, dtype=np.int64)
    freqs = np.ascontiguousarray(np.atleast_1d(freqs_hz), dtype=np.float64)
    lmn = np.ascontiguousarray(lmn, dtype=np.float64)
    flux = np.ascontiguousarray(flux, dtype=np.float64)
    nblt, nchan = uvw.shape[0], freqs.size
    if uvw.ndim != 2 or uvw.shape[1] != 3:
        raise ValueError(f"uvw_m must have shape (nblt, 3), got {uvw.shape}")
    if tidx.shape != (nblt,):
        raise ValueError(f"time_index must have shape ({nblt},), got {tidx.shape}")
    if lmn.ndim != 3 or lmn.shape[2] != 3:
        raise ValueError(f"lmn must have shape (ntime, nsrc, 3), got {lmn.shape}")
    if flux.shape != (lmn.shape[0], lmn.shape[1], nchan):
        raise ValueError(f"flux must have shape {(lmn.shape[0], lmn.shape[1], nchan)}, "
                         f"got {flux.shape}")
    if nblt and (tidx.min() < 0 or tidx.max() >= lmn.shape[0]):
        raise ValueError("time_index out of range of the lmn/flux time axis")
    if precision not in ("single", "double"):
        raise ValueError("precision must be 'single' or 'double'")
    if sign not in (1, -1):
        raise ValueError("sign must be +1 or -1")
    if out is None:
        out = (np.zeros if accumulate else np.empty)((nblt, nchan), dtype=dtype)
    elif out.shape != (nblt, nchan):
        raise ValueError(f"out must have shape {(nblt, nchan)}, got {out.shape}")
    if nblt == 0 or nchan == 0:
        return out
    set_numba_threads(nthreads)
    rows = np.arange(nblt, dtype=np.int64)
    if np.count_nonzero(np.diff(tidx)) + 1 > 2 * len(np.unique(tidx)):
        # rows not grouped by time (e.g. sorted by w): visit them in time order
        rows = np.argsort(tidx, kind="stable")
        uvw, tidx = uvw[rows], tidx[rows]
    lo, hi = _blocks(tidx, BLOCK)
    w_offset = 0.0 if unprojected else 1.0
    df = freqs[1] - freqs[0] if nchan > 1 else 0.0
    uniform = nchan == 1 or np.allclose(np.diff(freqs), df, rtol=1e-9, atol=1e-6)
    if uniform:
        proto = np.zeros(1, np.float32 if precision == "single" else np.float64)
        _dft_uniform(np.ascontiguousarray(uvw.T), tidx, rows, lo, hi, float(freqs[0]), float(df),
                     lmn, flux, float(sign), w_offset, proto, bool(accumulate), out)
    else:
        _dft_general(uvw, tidx, rows, lo, hi, freqs, lmn, flux, float(sign), w_offset,
                     bool(accumulate), out)
    return out


def predict_visibilities(uvw_m: np.ndarray, freqs_hz: np.ndarray, l: np.ndarray,  # noqa: E741
                         m: np.ndarray, n: np.ndarray, flux: np.ndarray, *, sign: int = 1,
                         unprojected: bool = False, dtype: type = np.complex128,
                         nthreads: int | None = None) -> np.ndarray:
    """Exact visibilities of point sources at fixed (l, m, n): the model-visibility kernel.

    uvw_m: (nblt, 3) metres; freqs_hz: (nchan,); l, m, n: (nsrc,) direction cosines about
    the phase centre; flux: (nsrc, nchan) Jy (or (nsrc,) for flat spectra). Returns
    (nblt, nchan) complex: ``sum_k flux_k exp(sign 2 pi i f/c (u l + v m + w (n - 1)))``
    (``w n`` if ``unprojected``). ``sign=+1`` gives pyuvdata/UVH5 data (and MS DATA from
    MS UVW), ``-1`` the conjugate.
    """
    freqs = np.atleast_1d(np.asarray(freqs_hz, dtype=np.float64))
    lmn = np.stack([np.atleast_1d(l), np.atleast_1d(m), np.atleast_1d(n)], axis=-1)[None]
    flux = np.asarray(flux, dtype=np.float64)
    if flux.ndim == 1:
        flux = np.repeat(flux[:, None], freqs.size, axis=1)
    uvw = np.asarray(uvw_m, dtype=np.float64)
    return predict_visibilities_drift(uvw, np.zeros(uvw.shape[0], np.int64), freqs, lmn,
                                      flux[None], sign=sign, unprojected=unprojected,
                                      dtype=dtype, nthreads=nthreads, precision="double")

