"""Bandpass (B), time-dependent gain (G) and delay (K) solutions from a calibrator cube.

Data are cubes ``(n_time, n_bl, n_chan, n_pol)`` as in :mod:`.flagging`; the model holds the
calibrator's visibilities (no instrumental effects). The total antenna gain is modelled as
g_p(t, ν) = G_p(t) B_p(ν): B per channel and polarisation over the whole transit, G per
solution interval averaged over frequency; B is normalised to mean amplitude 1 and zero
mean phase over the band per antenna, so G carries the overall amplitude and phase.

The normal-equation sums come from :mod:`.normal_sums`, the solver from :mod:`.stefcal`,
the delays from :mod:`.delays`; the solutions are :class:`.gain_solution.GainSolution`
objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .delays import fit_delays
from .gain_solution import GainSolution
from .normal_sums import compact_sums, normal_equations, reduce_sums
from .stefcal import NormalEquations, choose_refant, reference_phase, stefcal, time_bins


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


def solve_bandpass(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                   ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray, *,
                   refant: int, weight: np.ndarray | None = None,
                   gains_t: np.ndarray | None = None, min_snr: float = 3.0,
                   max_iter: int = 200, tol: float = 1e-10) -> GainSolution:
    """Per-channel, per-polarisation complex bandpass over the whole cube (one interval).

    ``gains_t`` (n_time, n_ant, n_pol), when given, is applied to the model first so that
    time-variable gains do not decorrelate the time average.
    """
    n_time, _, n_chan, _ = vis.shape
    ne = normal_equations(vis, model, flags, weight, ant1, ant2, n_ant,
                          np.zeros(n_time, np.int64), 1, np.arange(n_chan), n_chan,
                          gains_t=gains_t)
    return _bandpass_solution(ne, times, freqs, refant, min_snr, max_iter, tol)


def solve_gains(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray, *,
                refant: int, solint: float | None = None, weight: np.ndarray | None = None,
                bandpass: np.ndarray | None = None, min_snr: float = 3.0,
                max_iter: int = 200, tol: float = 1e-10) -> GainSolution:
    """Time-dependent complex gains per solution interval, averaged over all channels.

    ``bandpass`` (n_ant, n_chan, n_pol), when given, is applied to the model first.
    """
    n_chan = vis.shape[2]
    bins, centres = time_bins(times, solint)
    ne = normal_equations(vis, model, flags, weight, ant1, ant2, n_ant, bins, len(centres),
                          np.zeros(n_chan, np.int64), 1, bandpass=bandpass)
    return _gain_solution(ne, times, freqs, bins, centres, refant, solint, min_snr, max_iter,
                          tol)


def _antenna_axis_second(res: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StEFCal's (n_time, n_chan, n_pol, n_ant) gains, flags and SNR as
    (n_time, n_ant, n_chan, n_pol), the layout of a :class:`GainSolution`."""
    return (np.moveaxis(res.gains, -1, 1), np.moveaxis(res.flags, -1, 1),
            np.moveaxis(res.snr, -1, 1))


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
    """StEFCal on the per-channel normal matrices ``ne`` of one interval: the bandpass
    (started from ``prev``, when given) over the whole span of ``times``."""
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol,
                  g0=_warm(prev, ne.A.shape[:-1]))
    t = np.asarray(times, float)
    return GainSolution("B", *_antenna_axis_second(res), np.array([t.mean()]),
                        np.array([t.max() - t.min() + _integration(t)]),
                        np.asarray(freqs, float), refant,
                        meta={"n_iter": res.n_iter, "converged": bool(res.converged.all())})


def _gain_solution(ne: NormalEquations, times: np.ndarray, freqs: np.ndarray,
                   bins: np.ndarray, centres: np.ndarray, refant: int, solint: float | None,
                   min_snr: float, max_iter: int, tol: float,
                   prev: GainSolution | None = None) -> GainSolution:
    """StEFCal on the per-interval normal matrices ``ne``: the gains of the time bins
    ``bins`` (centres ``centres``), started from ``prev`` when given."""
    res = stefcal(ne, refant=refant, min_snr=min_snr, max_iter=max_iter, tol=tol,
                  g0=_warm(prev, ne.A.shape[:-1]))
    t = np.asarray(times, float)
    n_bins = len(centres)
    tmin = np.array([t[bins == b].min() for b in range(n_bins)])
    tmax = np.array([t[bins == b].max() for b in range(n_bins)])
    return GainSolution("G", *_antenna_axis_second(res), centres, tmax - tmin + _integration(t),
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
        full = compact_sums(vis, model, flags, weight, a1c, a2c, n, bins, n_tb,
                            np.arange(n_c), n_c, store_single=True)
        del model  # the sums replace it
        x1, x2 = a1c[xc], a2c[xc]

        def ne_b(g_t):  # g_t: (n_tb, n, n_pol) -> (n_tb, n_pol, n)
            return reduce_sums(full, None if g_t is None else np.moveaxis(g_t, 1, -1),
                               True, x1, x2, n)

        def ne_g(b):  # b: (n, n_chan, n_pol) -> (n_chan, n_pol, n)
            return reduce_sums(full, None if b is None else np.moveaxis(b, 0, -1),
                               False, x1, x2, n)
    else:
        def ne_b(g_t):  # g_t: (n_tb, n, n_pol) -> per integration
            return normal_equations(vis, model, flags, weight, a1c, a2c, n,
                                    np.zeros(len(times), np.int64), 1, np.arange(n_c),
                                    n_c, gains_t=None if g_t is None else g_t[bins])

        def ne_g(b):  # b: (n, n_chan, n_pol)
            return normal_equations(vis, model, flags, weight, a1c, a2c, n, bins, n_tb,
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


__all__ = ["SolveParams", "CalibratorSolutions", "solve_bandpass", "solve_gains",
           "solve_calibrator", "normalise_bandpass", "total_gain"]
