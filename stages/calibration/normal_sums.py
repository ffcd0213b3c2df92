"""Normal-equation sums of a calibrator cube for :mod:`.solve`, in fused numba passes.

One pass over a visibility cube ``(n_time, n_bl, n_chan, n_pol)`` takes, per cross
baseline, time bin, channel bin and polarisation, the sums A = Σ w V conj(M),
B = Σ w |M|², C = Σ w |V|² and N = Σ 1 (see :mod:`.stefcal`), with gains or a bandpass
applied to the model M. Those compact sums either become the dense normal matrices
(:func:`normal_equations`) or are kept and reduced again later with other gains or another
bandpass (:func:`reduce_sums`), so that a solve reads the visibilities once. Pure numpy
and numba, no I/O.
"""

from __future__ import annotations

import numba
import numpy as np

from .stefcal import NormalEquations, to_dense


@numba.njit(cache=True, nogil=True, parallel=True)
def _acc_kernel(vis, model, flags, weight, tbins, cbins, cross_idx, gfac, bfac,
                A, B, C, N):  # pragma: no cover
    """Fused accumulation of the per-baseline sums (see :func:`.stefcal.accumulate_baselines`)
    into arrays laid out (n_cross, n_tbins, n_cbins, n_pol): one thread per baseline,
    each writing its own contiguous block."""
    nt, nb, nc, npol = vis.shape
    npm = model.shape[3]
    has_w = weight.shape[0] > 0
    has_g = gfac.shape[0] > 0
    has_b = bfac.shape[0] > 0
    for b in numba.prange(nb):
        k = cross_idx[b]
        if k < 0:
            continue
        for t in range(nt):
            tb = tbins[t]
            for c in range(nc):
                cb = cbins[c]
                for p in range(npol):
                    if flags[t, b, c, p]:
                        continue
                    v = complex(vis[t, b, c, p])
                    if not (np.isfinite(v.real) and np.isfinite(v.imag)):
                        continue
                    w = weight[t, b, c, p] if has_w else 1.0
                    if w <= 0:
                        continue
                    m = complex(model[t, b, c, p if npm > 1 else 0])
                    if has_b:
                        m *= bfac[b, c, p]
                    if has_g:
                        m *= gfac[t, b, p]
                    A[k, tb, cb, p] += w * v * m.conjugate()
                    B[k, tb, cb, p] += w * (m.real * m.real + m.imag * m.imag)
                    C[k, tb, cb, p] += w * (v.real * v.real + v.imag * v.imag)
                    N[k, tb, cb, p] += 1.0


def compact_sums(vis: np.ndarray, model: np.ndarray, flags: np.ndarray,
                 weight: np.ndarray | None, ant1: np.ndarray, ant2: np.ndarray,
                 n_ant: int, tbins: np.ndarray, n_tbins: int, cbins: np.ndarray,
                 n_cbins: int, gains_t: np.ndarray | None = None,
                 bandpass: np.ndarray | None = None,
                 store_single: bool = False) -> dict[str, np.ndarray]:
    """Per-cross-baseline sums "A", "B", "C", "N" of a cube in one fused pass (numba,
    parallel over baselines), each (n_cross, n_tbins, n_cbins, n_pol).

    ``model`` may have a polarisation axis of length 1 (unpolarised sky); it is broadcast.
    ``gains_t`` (n_time, n_ant, n_pol) and ``bandpass`` (n_ant, n_chan, n_pol) multiply
    the model; ``store_single`` keeps the sums in single precision (for bins of few
    samples)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    if np.any((ant1 < 0) | (ant1 >= n_ant) | (ant2 < 0) | (ant2 >= n_ant)):
        raise ValueError(f"antenna index outside 0..{n_ant - 1}")
    cross = ant1 != ant2
    cross_idx = np.where(cross, np.cumsum(cross) - 1, -1).astype(np.int64)
    n_x = int(cross.sum())
    nt, nb, nc, npol = vis.shape
    if model.shape[:3] != (nt, nb, nc) or model.shape[3] not in (1, npol):
        raise ValueError(f"model shape {model.shape} does not match the data {vis.shape}")
    shape = (n_x, n_tbins, n_cbins, npol)
    cdt, rdt = (np.complex64, np.float32) if store_single else (np.complex128, np.float64)
    sums = {"A": np.zeros(shape, cdt), "B": np.zeros(shape, rdt), "C": np.zeros(shape, rdt),
            "N": np.zeros(shape, rdt)}
    gfac = np.zeros((0, 0, 0), np.complex128)
    if gains_t is not None:
        gfac = np.ascontiguousarray(gains_t[:, ant1, :] * np.conj(gains_t[:, ant2, :]),
                                    dtype=np.complex128)
    bfac = np.zeros((0, 0, 0), np.complex128)
    if bandpass is not None:
        bfac = np.ascontiguousarray(bandpass[ant1] * np.conj(bandpass[ant2]),
                                    dtype=np.complex128)
    w = np.zeros((0, 0, 0, 0), np.float32) if weight is None else \
        np.ascontiguousarray(np.broadcast_to(weight, vis.shape), dtype=np.float32)
    _acc_kernel(vis, model, flags, w, np.asarray(tbins, np.int64),
                np.asarray(cbins, np.int64), cross_idx, gfac, bfac,
                sums["A"], sums["B"], sums["C"], sums["N"])
    return sums


def _dense(sums: dict[str, np.ndarray], ant1: np.ndarray, ant2: np.ndarray,
           n_ant: int) -> NormalEquations:
    """Compact (n_cross, ...) sums -> dense (..., n_ant, n_ant) normal matrices."""
    return to_dense({k: np.moveaxis(v, 0, -1) for k, v in sums.items()}, ant1, ant2, n_ant)


def normal_equations(vis: np.ndarray, model: np.ndarray, flags: np.ndarray,
                     weight: np.ndarray | None, ant1: np.ndarray, ant2: np.ndarray,
                     n_ant: int, tbins: np.ndarray, n_tbins: int, cbins: np.ndarray,
                     n_cbins: int, gains_t: np.ndarray | None = None,
                     bandpass: np.ndarray | None = None) -> NormalEquations:
    """Normal matrices of a cube in one fused pass (see :func:`compact_sums`)."""
    return _dense(compact_sums(vis, model, flags, weight, ant1, ant2, n_ant, tbins, n_tbins,
                               cbins, n_cbins, gains_t, bandpass),
                  ant1, ant2, n_ant)


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_factors(fac, i, k, p_, q_):  # pragma: no cover
    """conj(f_p) f_q and |f_p|² |f_q|² of the factors ``fac[i, k]`` of antennas p and q.
    Inlined into :func:`_reduce_kernel`'s loops (numba IR), so it costs nothing there."""
    f = fac[i, k, p_]
    h = fac[i, k, q_]
    return f.conjugate() * h, (f.real * f.real + f.imag * f.imag) * (h.real * h.real
                                                                     + h.imag * h.imag)


@numba.njit(cache=True, nogil=True, parallel=True)
def _reduce_kernel(A, B, C, N, fac, a1, a2, over_time, do_cn, oA, oB, oC, oN
                   ):  # pragma: no cover
    """Compact sums (n_x, n_tb, n_c, n_pol) reduced over time bins (``over_time``; ``fac``
    the per-bin gains (n_tb, n_pol, n_ant)) or over channels (``fac`` the bandpass (n_c,
    n_pol, n_ant)) with the factors applied to the model: A conj(f_p) f_q,
    B |f_p|² |f_q|², into (n_x, n_c or n_tb, n_pol); C and N only with ``do_cn``; one
    thread per baseline."""
    n_x, n_tb, n_c, npol = A.shape
    for x in numba.prange(n_x):
        p_ = a1[x]
        q_ = a2[x]
        if over_time:
            for t in range(n_tb):
                for k in range(npol):
                    z, w2 = _pair_factors(fac, t, k, p_, q_)
                    for c in range(n_c):
                        oA[x, c, k] += complex(A[x, t, c, k]) * z
                        oB[x, c, k] += B[x, t, c, k] * w2
                    if do_cn:
                        for c in range(n_c):
                            oC[x, c, k] += C[x, t, c, k]
                            oN[x, c, k] += N[x, t, c, k]
        else:
            for t in range(n_tb):
                for c in range(n_c):
                    for k in range(npol):
                        z, w2 = _pair_factors(fac, c, k, p_, q_)
                        oA[x, t, k] += complex(A[x, t, c, k]) * z
                        oB[x, t, k] += B[x, t, c, k] * w2
                        if do_cn:
                            oC[x, t, k] += C[x, t, c, k]
                            oN[x, t, k] += N[x, t, c, k]


@numba.njit(cache=True, nogil=True, parallel=True)
def _to_dense_rows(cA, cB, cC, cN, a1, a2, dA, dB, dC, dN):  # pragma: no cover
    """(rows, n_x) baseline sums into dense (rows, n, n): (p, q) and (q, p) filled."""
    n_rows, n_x = cA.shape
    for r in numba.prange(n_rows):
        for x in range(n_x):
            p_ = a1[x]
            q_ = a2[x]
            v = cA[r, x]
            dA[r, p_, q_] = v
            dA[r, q_, p_] = v.conjugate()
            dB[r, p_, q_] = cB[r, x]
            dB[r, q_, p_] = cB[r, x]
            dC[r, p_, q_] = cC[r, x]
            dC[r, q_, p_] = cC[r, x]
            dN[r, p_, q_] = cN[r, x]
            dN[r, q_, p_] = cN[r, x]


def reduce_sums(full: dict, fac: np.ndarray | None, over_time: bool,
                a1: np.ndarray, a2: np.ndarray, n_ant: int) -> NormalEquations:
    """Normal matrices per channel (``over_time``: (1, n_c, n_pol, n, n)) or per time bin
    ((n_tb, 1, n_pol, n, n)) from the compact per-(bin, channel) sums of
    :func:`compact_sums` (``full``, which also caches C and N, as they do not depend on the
    factors), the gains or bandpass ``fac`` applied to the model (None: ones)."""
    n_x, n_tb, n_c, npol = full["A"].shape
    if fac is None:
        fac = np.ones((n_tb if over_time else n_c, npol, n_ant), np.complex128)
    m = n_c if over_time else n_tb
    cached = full.get(("CN", over_time))  # C and N do not depend on the factors
    out = [np.zeros((n_x, m, npol), np.complex128), np.zeros((n_x, m, npol))]
    out += [np.zeros((0, 0, 0))] * 2 if cached else [np.zeros((n_x, m, npol)) for _ in range(2)]
    a1 = np.asarray(a1, np.int64)
    a2 = np.asarray(a2, np.int64)
    _reduce_kernel(full["A"], full["B"], full["C"], full["N"],
                   np.ascontiguousarray(fac, np.complex128), a1, a2, over_time, not cached,
                   *out)
    if cached:
        out[2:] = cached
    else:
        full[("CN", over_time)] = out[2:]
    rows = [np.ascontiguousarray(o.reshape(n_x, m * npol).T) for o in out]
    dtypes = [o.dtype for o in out]
    del out  # before the dense matrices, the largest arrays here
    dense = [np.zeros((m * npol, n_ant, n_ant), dt) for dt in dtypes]
    _to_dense_rows(*rows, a1, a2, *dense)
    shape = (1, m, npol, n_ant, n_ant) if over_time else (m, 1, npol, n_ant, n_ant)
    return NormalEquations(*(d.reshape(shape) for d in dense))


__all__ = ["compact_sums", "normal_equations", "reduce_sums"]
