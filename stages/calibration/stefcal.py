"""StEFCal (Salvini & Wijnholds 2014) per-antenna complex gain solver on normal matrices.

The measurement equation is V_pq = g_p M_pq conj(g_q) + noise. Visibilities are first
reduced, over each solution interval, to dense per-problem matrices

    A_pq = Σ w V_pq conj(M_pq),   B_pq = Σ w |M_pq|²,   C = Σ w |V_pq|²,   N = Σ [w > 0]

(both (p, q) and (q, p) entries filled), so the alternating least-squares iteration

    g_p ← Σ_q A_pq g_q / Σ_q B_pq |g_q|²     (averaged with the previous g every 2nd step)

costs O(n_ant²) per problem whatever the amount of data. Problems (channels, polarisations,
time intervals) are solved together, vectorised. Everything here is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass
class NormalEquations:
    """Accumulated normal matrices of shape ``(..., n_ant, n_ant)`` (see module docstring).

    Two accumulations over disjoint data add up (``a + b``), so data can be streamed in chunks.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    N: np.ndarray

    def __post_init__(self) -> None:
        if self.A.shape != self.B.shape or self.A.shape != self.N.shape \
                or self.C.shape != self.A.shape:
            raise ValueError(f"normal matrices differ in shape: A {self.A.shape}, "
                             f"B {self.B.shape}, C {self.C.shape}, N {self.N.shape}")
        if self.A.ndim < 2 or self.A.shape[-1] != self.A.shape[-2]:
            raise ValueError(f"normal matrices must end in (n_ant, n_ant), got {self.A.shape}")

    def __add__(self, other: NormalEquations) -> NormalEquations:
        return NormalEquations(self.A + other.A, self.B + other.B, self.C + other.C,
                               self.N + other.N)

    @property
    def n_ant(self) -> int:
        return self.A.shape[-1]


def _reduce(x: np.ndarray, bins: np.ndarray, n_bins: int, axis: int) -> np.ndarray:
    """Sum ``x`` along ``axis`` into ``n_bins`` bins given per-element bin indices."""
    bins = np.asarray(bins)
    if bins.shape != (x.shape[axis],):
        raise ValueError(f"bin array of length {bins.shape} does not match axis {axis} "
                         f"of length {x.shape[axis]}")
    if n_bins == 1:
        return x.sum(axis=axis, keepdims=True)
    if np.all(bins == np.arange(x.shape[axis])) and n_bins == x.shape[axis]:
        return x
    if np.all(np.diff(bins) >= 0):
        starts = np.searchsorted(bins, np.arange(n_bins))
        present = np.isin(np.arange(n_bins), bins)
        out = np.add.reduceat(x, np.minimum(starts, x.shape[axis] - 1), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = n_bins
        return out * present.reshape(shape)
    out_shape = list(x.shape)
    out_shape[axis] = n_bins
    out = np.zeros(out_shape, dtype=x.dtype)
    idx = [slice(None)] * x.ndim
    for b in range(n_bins):
        idx[axis] = bins == b
        sel = list(idx)
        sel_out = [slice(None)] * x.ndim
        sel_out[axis] = slice(b, b + 1)
        out[tuple(sel_out)] = x[tuple(sel)].sum(axis=axis, keepdims=True)
    return out


def accumulate_baselines(vis: np.ndarray, model: np.ndarray, weight: np.ndarray,
                         ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                         time_bins: np.ndarray, n_time_bins: int, chan_bins: np.ndarray,
                         n_chan_bins: int) -> dict[str, np.ndarray]:
    """The sums behind the normal matrices, per cross-correlation baseline: arrays
    (n_time_bins, n_chan_bins, n_pol, n_cross) under "A", "B", "C", "N" (see
    :func:`accumulate`); sums over disjoint data add up. Autocorrelations are ignored."""
    if not (vis.shape == model.shape == weight.shape) or vis.ndim != 4:
        raise ValueError(f"vis {vis.shape}, model {model.shape} and weight {weight.shape} "
                         "must share one (n_time, n_bl, n_chan, n_pol) shape")
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    if np.any((ant1 < 0) | (ant1 >= n_ant) | (ant2 < 0) | (ant2 >= n_ant)):
        raise ValueError(f"antenna index outside 0..{n_ant - 1}")
    cross = ant1 != ant2
    w = np.where(np.isfinite(vis) & np.isfinite(model), weight, 0.0)[:, cross]
    v = np.where(w > 0, vis[:, cross], 0)
    m = np.where(w > 0, model[:, cross], 0)
    terms = {"A": w * v * np.conj(m), "B": w * np.abs(m) ** 2, "C": w * np.abs(v) ** 2,
             "N": (w > 0).astype(float)}
    out = {}
    for key, x in terms.items():
        x = _reduce(x, time_bins, n_time_bins, axis=0)
        x = _reduce(x, chan_bins, n_chan_bins, axis=2)
        out[key] = np.moveaxis(x, 1, -1)  # (t, bl, c, pol) -> (t, c, pol, bl)
    return out


def to_dense(sums: dict[str, np.ndarray], ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
             dtypes: tuple[type, type] = (np.complex128, np.float64)) -> NormalEquations:
    """Per-baseline sums (of the cross-correlations of ``ant1``/``ant2``) into dense
    (…, n_ant, n_ant) normal matrices, both (p, q) and (q, p) filled."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    a1, a2 = ant1[cross], ant2[cross]
    upper = (a1 * n_ant + a2).astype(np.int64)
    lower = (a2 * n_ant + a1).astype(np.int64)
    out = {}
    for key, x in sums.items():
        lead = x.shape[:-1]
        dense = np.zeros((int(np.prod(lead)), n_ant * n_ant),
                         dtype=dtypes[0] if key == "A" else dtypes[1])
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1])).astype(dense.dtype)
        _scatter(dense, flat, upper, lower, key == "A")
        out[key] = dense.reshape(lead + (n_ant, n_ant))
    return NormalEquations(**out)


@numba.njit(cache=True, nogil=True, parallel=True)
def _scatter(dense: np.ndarray, flat: np.ndarray, upper: np.ndarray, lower: np.ndarray,
             hermitian: bool) -> None:  # pragma: no cover
    for r in numba.prange(flat.shape[0]):
        for b in range(flat.shape[1]):
            v = flat[r, b]
            dense[r, upper[b]] = v
            dense[r, lower[b]] = np.conj(v) if hermitian else v


def accumulate(vis: np.ndarray, model: np.ndarray, weight: np.ndarray, ant1: np.ndarray,
               ant2: np.ndarray, n_ant: int, time_bins: np.ndarray, n_time_bins: int,
               chan_bins: np.ndarray, n_chan_bins: int) -> NormalEquations:
    """Normal matrices per (time bin, channel bin, polarisation) from a cube.

    ``vis``, ``model`` and ``weight`` have shape (n_time, n_bl, n_chan, n_pol); weight 0
    marks flagged samples. Autocorrelations are ignored. The result has shape
    (n_time_bins, n_chan_bins, n_pol, n_ant, n_ant).
    """
    sums = accumulate_baselines(vis, model, weight, ant1, ant2, n_ant, time_bins,
                                n_time_bins, chan_bins, n_chan_bins)
    return to_dense(sums, ant1, ant2, n_ant)


@dataclass(frozen=True)
class StefcalResult:
    """Gains ``g`` (..., n_ant), their flags, SNR and the solver's diagnostics."""

    gains: np.ndarray
    flags: np.ndarray
    snr: np.ndarray
    n_iter: int
    converged: np.ndarray
    chi2_reduced: np.ndarray


def stefcal(ne: NormalEquations, *, refant: int | None = None, g0: np.ndarray | None = None,
            max_iter: int = 200, tol: float = 1e-10, min_snr: float = 0.0,
            min_baselines: int = 2) -> StefcalResult:
    """Solve every problem of ``ne`` for per-antenna complex gains (numba, parallel over
    problems, each iterated until it converges).

    Antennas with fewer than ``min_baselines`` baselines holding data get no solution
    (gain 0, flagged). With ``refant`` the phase of that antenna is set to zero (if it has
    no solution in a problem, the antenna with most data there is used). Solutions with
    SNR < ``min_snr`` are flagged. The SNR of g_p is |g_p| / sqrt(s² / Σ_q B_pq |g_q|²),
    with s² the residual variance per visibility.
    """
    A = np.asarray(ne.A, dtype=np.complex128)
    B = np.asarray(ne.B, dtype=np.float64)
    nbl_per_ant = (ne.N > 0).sum(axis=-1)
    usable = nbl_per_ant >= min_baselines
    g = _initial_gains(A, B, refant) if g0 is None else np.array(g0, dtype=np.complex128)
    if g.shape != A.shape[:-1]:
        raise ValueError(f"g0 shape {g.shape} != {A.shape[:-1]}")
    g = np.where(usable, g, 0)
    lead = A.shape[:-2]
    n = A.shape[-1]
    gf = np.ascontiguousarray(g.reshape(-1, n))
    conv = np.zeros(gf.shape[0], dtype=bool)
    iters = np.zeros(gf.shape[0], dtype=np.int64)
    bgg = np.zeros(gf.shape)
    cross = np.zeros(gf.shape[0])
    model_power = np.zeros(gf.shape[0])
    _iterate(np.ascontiguousarray(A.reshape(-1, n, n)), np.ascontiguousarray(B.reshape(-1, n, n)),
             np.ascontiguousarray(usable.reshape(-1, n)), gf, int(max_iter), float(tol), conv,
             iters, bgg, cross, model_power)
    g = gf.reshape(lead + (n,))
    converged = conv.reshape(lead)
    it = int(iters.max()) if iters.size else 0
    usable &= np.abs(g) > 0
    # statistics: Re(g^H A g), B |g|², Σ |g|² B |g|² from the kernel
    bgg = bgg.reshape(lead + (n,))
    cross = cross.reshape(lead)
    model_power = model_power.reshape(lead)
    chi2 = 0.5 * (ne.C.sum(axis=(-1, -2)) - 2 * cross + model_power)
    n_vis = 0.5 * ne.N.sum(axis=(-1, -2))
    dof = n_vis - usable.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(dof > 0, np.maximum(chi2, 0) / dof, np.inf)
        den = bgg
        snr = np.where(usable & (den > 0), np.abs(g) / np.sqrt(s2[..., None] / den), 0.0)
    snr = np.nan_to_num(snr, nan=0.0, posinf=1e12)
    if refant is not None:
        g = reference_phase(g, usable, refant, ne.N.sum(axis=-1))
    flags = ~usable | (snr < min_snr)
    g = np.where(usable, g, 0)
    return StefcalResult(gains=g, flags=flags, snr=snr, n_iter=it, converged=converged,
                         chi2_reduced=s2)


@numba.njit(cache=True, nogil=True, inline="always")
def _abs2(g, out):  # pragma: no cover
    """|g|² into ``out``."""
    for j in range(g.size):
        out[j] = g[j].real * g[j].real + g[j].imag * g[j].imag


@numba.njit(cache=True, nogil=True, inline="always")
def _row_sums(A, B, q, i, g, amp2):  # pragma: no cover
    """(Σ_j A[q,i,j] g_j, Σ_j B[q,i,j] |g_j|²): one antenna's StEFCal numerator and
    denominator."""
    num = 0j
    den = 0.0
    for j in range(g.size):
        num += A[q, i, j] * g[j]
        den += B[q, i, j] * amp2[j]
    return num, den


@numba.njit(cache=True, nogil=True, parallel=True)
def _iterate(A, B, usable, g, max_iter, tol, converged, n_iter, bgg, cross, model_power
             ):  # pragma: no cover
    """The StEFCal iteration of every problem (P, n, n) in place on g (P, n), each problem
    until its relative change is below ``tol`` (every second step averaged with the
    previous gains), at most ``max_iter`` steps; then the statistics of the solution:
    ``bgg`` = B |g|², ``cross`` = Re(g^H A g), ``model_power`` = Σ |g|² B |g|²."""
    n_prob, n = g.shape
    for q in numba.prange(n_prob):
        gq = g[q]
        g_new = np.empty(n, np.complex128)
        amp2 = np.empty(n)
        for it in range(1, max_iter + 1):
            _abs2(gq, amp2)
            d2 = 0.0
            n2 = 0.0
            for i in range(n):
                num, den = _row_sums(A, B, q, i, gq, amp2)
                v = num / den if usable[q, i] and den > 0 else 0j
                if it % 2 == 0:
                    v = 0.5 * (v + gq[i])
                g_new[i] = v
                dv = v - gq[i]
                d2 += dv.real * dv.real + dv.imag * dv.imag
                n2 += v.real * v.real + v.imag * v.imag
            for i in range(n):
                gq[i] = g_new[i]
            n_iter[q] = it
            # NaN (no solution at all) counts as converged, as in the vectorised form
            if not (np.sqrt(d2) > tol * np.sqrt(n2)):
                converged[q] = True
                break
        _abs2(gq, amp2)
        cr = 0.0
        mp = 0.0
        for i in range(n):
            num, den = _row_sums(A, B, q, i, gq, amp2)
            bgg[q, i] = den
            cr += (gq[i].conjugate() * num).real
            mp += amp2[i] * den
        cross[q] = cr
        model_power[q] = mp


def _initial_gains(A: np.ndarray, B: np.ndarray, refant: int | None) -> np.ndarray:
    """A starting point close to the solution: amplitudes from row sums, phases from the
    baselines to the reference antenna (A_p,ref ≈ g_p conj(g_ref) |M|²)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.sqrt(np.abs(A).sum(-1) / B.sum(-1))
    amp = np.where(np.isfinite(amp) & (amp > 0), amp, 1.0)
    if refant is None:
        return amp.astype(np.complex128)
    row = A[..., :, refant]
    phase = np.where(np.abs(row) > 0, row / np.where(np.abs(row) > 0, np.abs(row), 1), 1.0)
    return amp * phase


def reference_phase(g: np.ndarray, usable: np.ndarray, refant: int,
                    amount: np.ndarray | None = None) -> np.ndarray:
    """Rotate each problem's gains so that ``refant`` has zero phase (the best-filled usable
    antenna when refant is unusable there)."""
    n_ant = g.shape[-1]
    if not 0 <= refant < n_ant:
        raise ValueError(f"refant {refant} outside 0..{n_ant - 1}")
    score = np.where(usable, amount if amount is not None else 1.0, -1.0)
    fallback = np.argmax(score, axis=-1)
    ref = np.where(usable[..., refant], refant, fallback)
    gref = np.take_along_axis(g, ref[..., None], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rot = np.where(np.abs(gref) > 0, np.conj(gref) / np.abs(gref), 1.0)
    return g * rot


@numba.njit(cache=True, nogil=True, parallel=True)
def _unflagged_per_baseline(flags):  # pragma: no cover
    nt, nb, nc, npol = flags.shape
    out = np.zeros(nb, np.int64)
    for b in numba.prange(nb):
        k = 0
        for t in range(nt):
            for c in range(nc):
                for p in range(npol):
                    k += not flags[t, b, c, p]
        out[b] = k
    return out


def choose_refant(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int) -> int:
    """The antenna with the most unflagged cross-correlation samples."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    good = _unflagged_per_baseline(np.asarray(flags, bool))[cross].astype(float)
    count = np.bincount(ant1[cross], good, n_ant) + np.bincount(ant2[cross], good, n_ant)
    if count.max() <= 0:
        raise ValueError("no unflagged cross-correlation data: cannot choose a reference "
                         "antenna")
    return int(np.argmax(count))


def time_bins(times: np.ndarray, solint: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Solution-interval index of each time and the mean time of each interval.

    ``solint`` None or inf gives one interval. Intervals start at the first time.
    """
    times = np.asarray(times, dtype=float)
    if solint is None or not np.isfinite(solint):
        bins = np.zeros(len(times), dtype=np.int64)
    else:
        if solint <= 0:
            raise ValueError(f"solution interval must be positive, got {solint}")
        rel = times - times.min()
        bins = np.floor(rel / solint + 1e-6).astype(np.int64)
        _, bins = np.unique(bins, return_inverse=True)
    n = int(bins.max()) + 1 if len(bins) else 0
    centres = np.bincount(bins, times, n) / np.maximum(np.bincount(bins, None, n), 1)
    return bins, centres
