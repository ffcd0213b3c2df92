"""Bandpass (B), time-dependent gain (G) and delay (K) solutions from a calibrator cube.

Data are cubes ``(n_time, n_bl, n_chan, n_pol)`` as in :mod:`.flagging`; the model holds the
calibrator's visibilities (no instrumental effects). The total antenna gain is modelled as
g_p(t, ν) = G_p(t) B_p(ν): B per channel and polarisation over the whole transit, G per
solution interval averaged over frequency; B is normalised to mean amplitude 1 and zero
mean phase over the band per antenna, so G carries the overall amplitude and phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from .stefcal import (
    NormalEquations,
    choose_refant,
    reference_phase,
    stefcal,
    time_bins,
    to_dense,
)


@dataclass(frozen=True)
class GainSolution:
    """Complex antenna gains of one calibration kind ("B" or "G", or "K" delays in s).

    ``gains`` has shape (n_sol_time, n_ant, n_sol_chan, n_pol); ``times`` are the centres
    (MJD s) and ``interval`` the widths (s) of the time intervals; ``freqs`` (Hz) the
    channel centres of the solutions (one value, the mean, for G).
    """

    kind: str
    gains: np.ndarray
    flags: np.ndarray
    snr: np.ndarray
    times: np.ndarray
    interval: np.ndarray
    freqs: np.ndarray
    refant: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("B", "G", "K"):
            raise ValueError(f"solution kind must be B, G or K, got {self.kind!r}")
        g = np.asarray(self.gains)
        if g.ndim != 4:
            raise ValueError(f"gains must be (n_time, n_ant, n_chan, n_pol), got {g.shape}")
        for name in ("flags", "snr"):
            if np.shape(getattr(self, name)) != g.shape:
                raise ValueError(f"{name} shape {np.shape(getattr(self, name))} != gains "
                                 f"shape {g.shape}")
        if np.shape(self.times) != (g.shape[0],) or np.shape(self.interval) != (g.shape[0],):
            raise ValueError("times and interval need one value per solution interval")
        if np.shape(self.freqs) != (g.shape[2],):
            raise ValueError(f"freqs shape {np.shape(self.freqs)} != ({g.shape[2]},)")
        if not 0 <= self.refant < g.shape[1]:
            raise ValueError(f"refant {self.refant} outside 0..{g.shape[1] - 1}")

    @property
    def n_ant(self) -> int:
        return self.gains.shape[1]

    @property
    def flagged_fraction(self) -> float:
        return float(np.mean(self.flags))


@dataclass(frozen=True)
class SolveParams:
    """Parameters of :func:`solve_calibrator`."""

    gain_solint: float | None = None   #: s; None = one interval over the whole cube
    min_snr: float = 3.0
    refant: int | None = None          #: None = antenna with most unflagged data
    solve_delay: bool = False
    max_iter: int = 200
    tol: float = 1e-8
    bandpass_iterations: int = 2       #: alternations B → G → B


@numba.njit(cache=True, nogil=True, parallel=True)
def _acc_kernel(vis, model, flags, weight, tbins, cbins, cross_idx, gfac, bfac,
                A, B, C, N):  # pragma: no cover
    """Fused accumulation of the per-baseline sums (see :func:`accumulate_baselines`)
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


def _accumulate_compact(vis: np.ndarray, model: np.ndarray, flags: np.ndarray,
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


def _accumulate_chunked(vis: np.ndarray, model: np.ndarray, flags: np.ndarray,
                        weight: np.ndarray | None, ant1: np.ndarray, ant2: np.ndarray,
                        n_ant: int, tbins: np.ndarray, n_tbins: int, cbins: np.ndarray,
                        n_cbins: int, gains_t: np.ndarray | None = None,
                        bandpass: np.ndarray | None = None) -> NormalEquations:
    """Normal matrices of a cube in one fused pass (see :func:`_accumulate_compact`)."""
    return _dense(_accumulate_compact(vis, model, flags, weight, ant1, ant2, n_ant, tbins,
                                      n_tbins, cbins, n_cbins, gains_t, bandpass),
                  ant1, ant2, n_ant)


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
                    f = fac[t, k, p_]
                    h = fac[t, k, q_]
                    z = f.conjugate() * h
                    w2 = (f.real * f.real + f.imag * f.imag) * (h.real * h.real
                                                                 + h.imag * h.imag)
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
                        f = fac[c, k, p_]
                        h = fac[c, k, q_]
                        z = f.conjugate() * h
                        w2 = (f.real * f.real + f.imag * f.imag) * (h.real * h.real
                                                                     + h.imag * h.imag)
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


def _reduce_full(full: dict, fac: np.ndarray | None, over_time: bool,
                 a1: np.ndarray, a2: np.ndarray, n_ant: int) -> NormalEquations:
    """Normal matrices per channel (``over_time``: (1, n_c, n_pol, n, n)) or per time bin
    ((n_tb, 1, n_pol, n, n)) from the compact per-(bin, channel) sums, the gains or
    bandpass ``fac`` applied to the model (None: ones)."""
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


def solve_bandpass(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                   ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray, *,
                   refant: int, weight: np.ndarray | None = None,
                   gains_t: np.ndarray | None = None, min_snr: float = 3.0,
                   max_iter: int = 200, tol: float = 1e-10) -> GainSolution:
    """Per-channel, per-polarisation complex bandpass over the whole cube (one interval).

    ``gains_t`` (n_time, n_ant, n_pol), when given, is applied to the model first so that
    time-variable gains do not decorrelate the time average.
    """
    n_time, _, n_chan, n_pol = vis.shape
    ne = _accumulate_chunked(vis, model, flags, weight, ant1, ant2, n_ant,
                             np.zeros(n_time, np.int64), 1, np.arange(n_chan), n_chan,
                             gains_t=gains_t)
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol)
    g, f, snr = _antenna_axis_second(res)
    t = np.asarray(times, float)
    dt = _integration(t)
    return GainSolution("B", g, f, snr, np.array([t.mean()]),
                        np.array([t.max() - t.min() + dt]), np.asarray(freqs, float), refant,
                        meta={"n_iter": res.n_iter, "converged": bool(res.converged.all())})


def _antenna_axis_second(res: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StEFCal's (n_time, n_chan, n_pol, n_ant) gains, flags and SNR as
    (n_time, n_ant, n_chan, n_pol), the layout of a :class:`GainSolution`."""
    return (np.moveaxis(res.gains, -1, 1), np.moveaxis(res.flags, -1, 1),
            np.moveaxis(res.snr, -1, 1))


def solve_gains(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray, *,
                refant: int, solint: float | None = None, weight: np.ndarray | None = None,
                bandpass: np.ndarray | None = None, min_snr: float = 3.0,
                max_iter: int = 200, tol: float = 1e-10) -> GainSolution:
    """Time-dependent complex gains per solution interval, averaged over all channels.

    ``bandpass`` (n_ant, n_chan, n_pol), when given, is applied to the model first.
    """
    n_time, _, n_chan, n_pol = vis.shape
    bins, centres = time_bins(times, solint)
    n_bins = len(centres)
    ne = _accumulate_chunked(vis, model, flags, weight, ant1, ant2, n_ant, bins, n_bins,
                             np.zeros(n_chan, np.int64), 1, bandpass=bandpass)
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol)
    g, f, snr = _antenna_axis_second(res)
    t = np.asarray(times, float)
    dt = _integration(t)
    tmin = np.array([t[bins == b].min() for b in range(n_bins)])
    tmax = np.array([t[bins == b].max() for b in range(n_bins)])
    return GainSolution("G", g, f, snr, centres, tmax - tmin + dt,
                        np.array([float(np.mean(freqs))]), refant,
                        meta={"n_iter": res.n_iter, "converged": bool(res.converged.all()),
                              "solint": solint})


def _integration(t: np.ndarray) -> float:
    u = np.unique(t)
    return float(np.median(np.diff(u))) if len(u) > 1 else 0.0


def normalise_bandpass(bp: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each antenna/polarisation bandpass (n_ant, n_chan, n_pol) by its mean over
    unflagged channels (amplitude mean 1, zero mean phase). Returns (bandpass, factors)."""
    good = ~flags & (np.abs(bp) > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.where(good, np.abs(bp), 0).sum(axis=1) / good.sum(axis=1)
        phasor = np.where(good, bp / np.where(good, np.abs(bp), 1), 0).sum(axis=1)
        phasor = phasor / np.where(np.abs(phasor) > 0, np.abs(phasor), 1)
    factor = np.where(np.isfinite(amp) & (amp > 0), amp * phasor, 1.0)
    return np.where(good, bp / factor[:, None, :], 0), factor


def fit_delays(gains: np.ndarray, flags: np.ndarray, freqs: np.ndarray,
               oversample: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Delay (s) and phase at the first channel of per-channel gains ``(..., n_chan)``.

    A zero-padded FFT finds the coarse delay, a weighted linear fit of the unwrapped
    residual phase refines it. Returns (delay, phase0) of shape ``gains.shape[:-1]``.
    """
    freqs = np.asarray(freqs, float)
    n = len(freqs)
    df = float(np.median(np.diff(freqs))) if n > 1 else 1.0
    w = (~flags & (np.abs(gains) > 0)).astype(float)
    z = np.where(w > 0, gains / np.where(w > 0, np.abs(gains), 1), 0)
    # positions on a regular channel grid (frequencies may have gaps)
    k = np.rint((freqs - freqs[0]) / df).astype(int)
    nfft = int(2 ** np.ceil(np.log2(max(k.max() + 1, 2) * oversample)))
    grid = np.zeros(z.shape[:-1] + (nfft,), complex)
    grid[..., k] = z
    spec = np.abs(np.fft.fft(grid, axis=-1))  # Σ z_n e^{-2πi k n / N} peaks at k/N = τ Δν
    peak = np.argmax(spec, axis=-1)
    lag = np.fft.fftfreq(nfft, d=df)
    tau0 = lag[peak]
    # refine: residual phase is nearly flat; fit a line (weighted)
    rot = z * np.exp(-2j * np.pi * tau0[..., None] * (freqs - freqs[0]))
    phase = np.angle(rot)
    x = freqs - freqs[0]
    sw = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(-1) / sw
        # unwrap around the mean phasor first
        ref = np.angle((w * rot).sum(-1))
        phase = np.angle(rot * np.exp(-1j * ref[..., None])) + ref[..., None]
        my = (w * phase).sum(-1) / sw
        sxx = (w * (x - mx[..., None]) ** 2).sum(-1)
        sxy = (w * (x - mx[..., None]) * (phase - my[..., None])).sum(-1)
        slope = np.where(sxx > 0, sxy / sxx, 0.0)
    tau = tau0 + slope / (2 * np.pi)
    phi0 = np.angle(np.exp(1j * (my - slope * mx)))
    bad = sw < 2
    return np.where(bad, 0.0, tau), np.where(bad, 0.0, phi0)


@dataclass(frozen=True)
class CalibratorSolutions:
    """The outcome of :func:`solve_calibrator`."""

    bandpass: GainSolution
    gains: GainSolution
    delays: np.ndarray | None     #: (n_ant, n_pol) s, relative to the reference antenna
    refant: int


#: Memory (bytes) allowed for the per-(baseline, interval, channel) sums that let
#: :func:`solve_calibrator` read the visibilities once; above it, it re-reads them per step.
ONE_PASS_BYTES = 2.0e9


def _warm(prev: GainSolution | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A previous solution as the starting point of the next solve (same layout)."""
    if prev is None:
        return None
    g0 = np.moveaxis(prev.gains, 1, -1)  # (n_t, n_c, n_pol, n)
    g0 = np.where(np.abs(g0) > 0, g0, 1.0)
    return np.broadcast_to(g0, shape).copy() if g0.shape != shape else g0


def _bandpass_solution(ne: NormalEquations, times: np.ndarray, freqs: np.ndarray,
                       refant: int, min_snr: float, max_iter: int, tol: float,
                       prev: GainSolution | None = None) -> GainSolution:
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol,
                  g0=_warm(prev, ne.A.shape[:-1]))
    t = np.asarray(times, float)
    return GainSolution("B", np.moveaxis(res.gains, -1, 1), np.moveaxis(res.flags, -1, 1),
                        np.moveaxis(res.snr, -1, 1), np.array([t.mean()]),
                        np.array([t.max() - t.min() + _integration(t)]),
                        np.asarray(freqs, float), refant,
                        meta={"n_iter": res.n_iter, "converged": bool(res.converged.all())})


def _gain_solution(ne: NormalEquations, times: np.ndarray, freqs: np.ndarray,
                   bins: np.ndarray, centres: np.ndarray, refant: int, solint: float | None,
                   min_snr: float, max_iter: int, tol: float,
                   prev: GainSolution | None = None) -> GainSolution:
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol,
                  g0=_warm(prev, ne.A.shape[:-1]))
    t = np.asarray(times, float)
    n_bins = len(centres)
    tmin = np.array([t[bins == b].min() for b in range(n_bins)])
    tmax = np.array([t[bins == b].max() for b in range(n_bins)])
    return GainSolution("G", np.moveaxis(res.gains, -1, 1), np.moveaxis(res.flags, -1, 1),
                        np.moveaxis(res.snr, -1, 1), centres, tmax - tmin + _integration(t),
                        np.array([float(np.mean(freqs))]), refant,
                        meta={"n_iter": res.n_iter, "converged": bool(res.converged.all()),
                              "solint": solint})


def solve_calibrator(vis: np.ndarray, model: np.ndarray | Callable[[], np.ndarray],
                     flags: np.ndarray,
                     ant1: np.ndarray, ant2: np.ndarray, n_ant: int, times: np.ndarray,
                     freqs: np.ndarray, params: SolveParams | None = None,
                     weight: np.ndarray | None = None) -> CalibratorSolutions:
    """Bandpass and time-dependent gains from a calibrator cube (see module docstring).

    Sequence: B over the transit → G per interval with B applied → B with G applied
    (repeated ``bandpass_iterations`` times) → normalise B → final G with B applied.
    Antennas without cross-correlations get flagged solutions. When the per-(interval,
    channel) normal matrices fit in :data:`ONE_PASS_BYTES`, the visibilities are read
    once and every step works on those matrices. ``model`` may be a function returning the
    model cube: the solver then holds the model only while it needs it (in one-pass mode,
    while taking the sums), not for the whole solve.
    """
    p = params or SolveParams()
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    present = np.unique(np.concatenate([ant1[cross], ant2[cross]]))
    if present.size < 2:
        raise ValueError("fewer than two antennas have cross-correlations")
    # solve on the antennas present only (the dense matrices scale with n_ant²)
    index = np.zeros(n_ant, np.int64)
    index[present] = np.arange(present.size)
    a1c, a2c = index[ant1], index[ant2]
    n = present.size
    if p.refant is not None:
        if p.refant not in present:
            raise ValueError(f"reference antenna {p.refant} has no cross-correlations")
        ref_full = int(p.refant)
    else:
        ref_full = choose_refant(flags, ant1, ant2, n_ant)
    ref = int(index[ref_full])
    bins, centres = time_bins(times, p.gain_solint)
    n_tb, n_c, n_pol = len(centres), vis.shape[2], vis.shape[3]
    kw = {"max_iter": p.max_iter, "tol": p.tol}
    xc = a1c != a2c
    n_x = int(xc.sum())
    one_pass = n_tb * n_c * n_pol * n_x * 16 <= ONE_PASS_BYTES
    if callable(model):
        model = model()
    if one_pass:
        full = _accumulate_compact(vis, model, flags, weight, a1c, a2c, n, bins, n_tb,
                                   np.arange(n_c), n_c, store_single=True)
        del model  # the sums replace it
        x1, x2 = a1c[xc], a2c[xc]

        def ne_b(g_t):  # g_t: (n_tb, n, n_pol) -> (n_tb, n_pol, n)
            return _reduce_full(full, None if g_t is None else np.moveaxis(g_t, 1, -1),
                                True, x1, x2, n)

        def ne_g(b):  # b: (n, n_chan, n_pol) -> (n_chan, n_pol, n)
            return _reduce_full(full, None if b is None else np.moveaxis(b, 0, -1),
                                False, x1, x2, n)
    else:
        def ne_b(g_t):  # g_t: (n_tb, n, n_pol) -> per integration
            return _accumulate_chunked(vis, model, flags, weight, a1c, a2c, n,
                                       np.zeros(len(times), np.int64), 1, np.arange(n_c),
                                       n_c, gains_t=None if g_t is None else g_t[bins])

        def ne_g(b):  # b: (n, n_chan, n_pol)
            return _accumulate_chunked(vis, model, flags, weight, a1c, a2c, n, bins, n_tb,
                                       np.zeros(n_c, np.int64), 1, bandpass=b)

    bp = _bandpass_solution(ne_b(None), times, freqs, ref, 0.0, **kw)
    delays = None
    if p.solve_delay:
        tau, _ = fit_delays(np.moveaxis(bp.gains[0], 1, -1), np.moveaxis(bp.flags[0], 1, -1),
                            freqs)
        delays = tau - tau[ref]
    g = None
    for _ in range(max(p.bandpass_iterations, 1)):
        g = _gain_solution(ne_g(bp.gains[0]), times, freqs, bins, centres, ref, p.gain_solint,
                           0.0, prev=g, **kw)
        # per-interval gains (n_tb, n, n_pol)
        bp = _bandpass_solution(ne_b(g.gains[:, :, 0, :]), times, freqs, ref, p.min_snr,
                                prev=bp, **kw)
    b_norm, _ = normalise_bandpass(bp.gains[0], bp.flags[0])
    b_norm = reference_phase(b_norm.transpose(1, 2, 0), ~bp.flags[0].transpose(1, 2, 0),
                             ref).transpose(2, 0, 1)
    bp = GainSolution("B", b_norm[None], bp.flags | (b_norm[None] == 0), bp.snr, bp.times,
                      bp.interval, bp.freqs, ref, meta={**bp.meta, "one_pass": one_pass})
    g = _gain_solution(ne_g(bp.gains[0]), times, freqs, bins, centres, ref, p.gain_solint,
                       p.min_snr, prev=g, **kw)
    return CalibratorSolutions(bandpass=_expand(bp, present, n_ant, ref_full),
                               gains=_expand(g, present, n_ant, ref_full),
                               delays=None if delays is None else
                               _expand_array(delays, present, n_ant),
                               refant=ref_full)


def _expand_array(x: np.ndarray, present: np.ndarray, n_ant: int) -> np.ndarray:
    out = np.zeros((n_ant,) + x.shape[1:], x.dtype)
    out[present] = x
    return out


def _expand(sol: GainSolution, present: np.ndarray, n_ant: int, refant: int) -> GainSolution:
    """Solutions on the present antennas -> all ``n_ant`` (absent ones flagged zeros)."""
    shape = (sol.gains.shape[0], n_ant) + sol.gains.shape[2:]
    g = np.zeros(shape, complex)
    f = np.ones(shape, bool)
    snr = np.zeros(shape)
    g[:, present] = sol.gains
    f[:, present] = sol.flags
    snr[:, present] = sol.snr
    return GainSolution(sol.kind, g, f, snr, sol.times, sol.interval, sol.freqs, refant,
                        meta=sol.meta)


def total_gain(bandpass: GainSolution, gains: GainSolution, bins: np.ndarray) -> np.ndarray:
    """g(t, ν) = G(t) B(ν) per integration: (n_time, n_ant, n_chan, n_pol)."""
    return gains.gains[bins] * bandpass.gains[0][None]


__all__ = ["GainSolution", "SolveParams", "CalibratorSolutions", "solve_bandpass",
           "solve_gains", "solve_calibrator", "normalise_bandpass", "fit_delays",
           "total_gain", "NormalEquations"]
