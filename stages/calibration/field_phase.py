"""Target groups: antenna phases refined on the field's own sources (the survey catalog).

The calibrator's gains are measured at its transit; a target observed minutes to hours
later carries the phase drift since (the simulator's gains drift by ~0.3 rad per hour per
antenna, as real ones do with the atmosphere and the electronics). Left in, 0.05 rad of
antenna phase error caps a target image's dynamic range near 1000:1: its bright sources
grow rings of positive and negative errors that a catalog reads as sources. So the target's
phases are solved per interval against a model of its field — the survey catalog's sources
near the pointing, attenuated by the primary beam as they drift — with the calibrator's
bandpass applied to the model, and the calibrator's gain amplitudes kept (the survey
fluxes carry ~3 % errors; phases do not depend on them). Where the field is too faint to
solve, the calibrator's gains stand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .apply import interpolate_gains
from .gain_solution import GainSolution
from .solve import solve_gains


@dataclass(frozen=True)
class FieldPhaseParams:
    """Solution interval (s; None: one per group), least per-solution S/N, the least total
    apparent model flux (Jy) worth solving on, and the least per-solution S/N at which an
    antenna's *relative* amplitude is taken from the field too (None: never)."""

    solint_s: float | None = 60.0
    min_snr: float = 5.0
    #: Keep the calibrator's astrometry: the field solve's phase gradient across the array
    #: (a shift of the whole image) is removed. The survey's positions carry 1-7" errors; a
    #: 2" error of one 5 Jy source is up to 0.4 rad on DSA-110's longest baselines, and
    #: solving it into the antenna phases at one frequency leaves a chromatic error that
    #: gave the demo's first target group 21 false peaks around that source.
    keep_astrometry: bool = True
    min_model_flux_jy: float = 0.05
    #: An amplitude solved at S/N s is good to ~1/s: at 300, 0.3 %, about the few 0.1 % the
    #: gain amplitudes drift in the minutes since the calibrator's transit, which leave a
    #: cross of ±5-8 sigma along the arms of a 5 Jy source (the demo's first target group)
    amp_min_snr: float | None = 300.0
    #: The phase gradient is measured against the calibrator's phases carried forward at
    #: their own drift rate (a straight line through its solutions, ``drift_phases``) for
    #: up to this many seconds past its last solution (then held): the antennas' drift since
    #: transit has a gradient part, which held calibrator phases would count as a catalog
    #: error and remove (0.1-0.9 deg of antenna phase left on demo targets 5-15 minutes
    #: after transit, north-south ghosts of a 17 Jy source). 0: the calibrator's phases held.
    drift_extrapolation_s: float = 1800.0


def refine_phases(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                  ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray,
                  bandpass: GainSolution, gains: GainSolution, refant: int,
                  params: FieldPhaseParams = FieldPhaseParams(),
                  positions: np.ndarray | None = None) -> tuple[GainSolution, dict]:
    """Gains of the target: the calibrator's amplitudes (interpolated to the target's
    solution intervals) with the phases solved on ``model`` (n_time, n_bl, n_chan, n_pol)
    through the calibrator's ``bandpass``. Intervals or antennas whose phase solution is
    flagged (low S/N) keep the calibrator's gain. With antenna ``positions`` (n_ant, 3) m
    and ``params.keep_astrometry``, the phase gradient across the array that the solve
    adds to the calibrator's phases is removed. Returns (gains, metrics)."""
    sol = solve_gains(vis, model, flags, ant1, ant2, n_ant, times, freqs, refant=refant,
                      solint=params.solint_s, bandpass=bandpass.gains[0],
                      min_snr=params.min_snr)
    g_cal, f_cal = interpolate_gains(gains.times, gains.gains, gains.flags, sol.times)
    g_cal = g_cal.reshape(sol.gains.shape)
    f_cal = f_cal.reshape(sol.flags.shape)
    ok = ~sol.flags & (np.abs(sol.gains) > 0)
    phase = np.where(ok, sol.gains / np.where(ok, np.abs(sol.gains), 1.0), 1.0)
    shift = None
    solved = ok.any(axis=(0, 2, 3))
    if params.keep_astrometry and positions is not None and solved.sum() >= 4:
        cal_phase = drift_phases(gains.times, gains.gains, gains.flags, sol.times,
                                 params.drift_extrapolation_s).reshape(sol.gains.shape)
        plane, grad = phase_gradient(phase * np.conj(cal_phase), ok,
                                     array_plane(positions, solved))
        phase = phase * np.conj(plane)
        # the shift it stood for: |gradient| lambda / 2 pi, at the band's mean frequency
        shift = np.degrees(np.hypot(*grad) * 299792458.0 / (2 * np.pi * np.mean(freqs))) \
            * 3600.0
    new = np.where(ok, np.abs(g_cal) * phase, g_cal).astype(sol.gains.dtype)
    amp = None
    if params.amp_min_snr is not None:
        # amplitudes drift slowly: one solution over the group (S/N up by the square root
        # of the number of phase intervals), against the calibrator's mean over the group
        whole = solve_gains(vis, model, flags, ant1, ant2, n_ant, times, freqs,
                            refant=refant, solint=None, bandpass=bandpass.gains[0],
                            min_snr=params.min_snr)
        g_mean = np.mean(np.abs(g_cal), axis=0, keepdims=True)
        use = ~whole.flags & (whole.snr >= params.amp_min_snr)
        amp = relative_amplitudes(whole.gains, g_mean, use)
        new = (new * amp).astype(sol.gains.dtype)
    # the fractions count the antennas with data, not every station of the ANTENNA table
    has = np.zeros(n_ant, bool)
    live = ~np.all(flags, axis=(0, 2, 3))
    has[np.asarray(ant1)[live]] = True
    has[np.asarray(ant2)[live]] = True
    changed = (amp != 1.0)[:, has] if amp is not None else np.zeros(1, bool)
    # the phase step the refinement made, per antenna and interval, less the common phase
    # of each interval (the two solves' reference antennas differ), for the metrics
    with np.errstate(invalid="ignore"):
        d = new * np.conj(g_cal)
        common = np.sum(np.where(ok, d, 0), axis=1, keepdims=True)
        step = np.angle(d * np.conj(common / np.where(np.abs(common) > 0, np.abs(common), 1)))
    metrics = {"field_phase_solved_fraction": float(ok[:, has].mean()) if has.any() else 0.0,
               "field_phase_rms_deg": float(np.degrees(np.sqrt(np.mean(step[ok] ** 2))))
               if ok.any() else None,
               "field_phase_solint_s": params.solint_s,
               "field_shift_removed_arcsec": float(np.median(shift))
               if shift is not None and shift.size else None,
               "field_amp_solved_fraction": float(np.mean(changed)),
               "field_amp_rms_pct": float(100 * np.sqrt(np.mean(np.log(amp[:, has][changed])
                                                                 ** 2)))
               if changed.any() else None}
    return replace(sol, gains=new, flags=f_cal & ~ok,
                   meta={**sol.meta, "from": "calibrator amplitudes, field phases"}), metrics


def drift_phases(sol_times: np.ndarray, gains: np.ndarray, flags: np.ndarray,
                 times: np.ndarray, max_extrapolation_s: float) -> np.ndarray:
    """Unit phasors of ``gains`` (n_sol, ...) at ``times``: per series, the least-squares
    straight line of its unwrapped phase against time through its unflagged solutions,
    evaluated no further than ``max_extrapolation_s`` beyond their first and last (held
    there). A series with one solution is held; with none it is 1."""
    t_sol = np.asarray(sol_times, np.float64)
    g = np.asarray(gains).reshape(len(t_sol), -1)
    ok = ~np.asarray(flags, bool).reshape(g.shape) & (np.abs(g) > 0) & np.isfinite(g)
    n = ok.sum(axis=0)
    ph = np.unwrap(np.angle(np.where(ok, g, 1.0)), axis=0)
    w = ok.astype(np.float64)
    tm = np.sum(w * t_sol[:, None], axis=0) / np.maximum(n, 1)
    pm = np.sum(w * ph, axis=0) / np.maximum(n, 1)
    dt = np.where(ok, t_sol[:, None] - tm, 0.0)
    var = np.sum(dt * dt, axis=0)
    rate = np.where(var > 0, np.sum(dt * (ph - pm), axis=0) / np.where(var > 0, var, 1.0), 0.0)
    first = np.where(n > 0, np.min(np.where(ok, t_sol[:, None], np.inf), axis=0), 0.0)
    last = np.where(n > 0, np.max(np.where(ok, t_sol[:, None], -np.inf), axis=0), 0.0)
    t = np.clip(np.asarray(times, np.float64)[:, None], first - max_extrapolation_s,
                last + max_extrapolation_s)
    out = np.exp(1j * (pm + rate * (t - tm)))
    out = np.where(n > 0, out, 1.0)
    return out.reshape((len(times),) + np.asarray(gains).shape[1:])


def array_plane(positions: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(n_ant, 2) m: the antennas' positions along the two principal axes of the present
    ones (the plane the array lies in; a sky shift is a phase gradient in it)."""
    p = np.asarray(positions, np.float64)
    centred = p - p[present].mean(axis=0)
    _, _, vt = np.linalg.svd(centred[present], full_matrices=False)
    return centred @ vt[:2].T


def phase_gradient(step: np.ndarray, ok: np.ndarray, plane: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The phase plane across the array that best fits the unit phasors ``step``
    (n_time, n_ant, n_chan, n_pol) where ``ok``, per time, channel and polarisation:
    (phasors exp(i k.x) of that shape, gradients k (2, n_time, n_chan, n_pol) rad/m).
    Phases are taken about their circular mean (a common phase is no gradient); each
    fit is repeated on what the last one left, so gradients past a turn across the
    array are found. Fewer than four antennas: no gradient."""
    nt, na, nc, npl = step.shape
    k = np.zeros((2, nt, nc, npl))
    w = ok.astype(np.float64)
    x = np.concatenate([np.ones((na, 1)), plane], axis=1)  # (n_ant, 3)
    for _ in range(3):
        rest = step * np.exp(-1j * np.einsum("ad,dtcp->tacp", plane, k))
        mean = np.sum(np.where(ok, rest, 0), axis=1, keepdims=True)
        phi = np.angle(rest * np.conj(mean))
        for t in range(nt):
            for c in range(nc):
                for q in range(npl):
                    use = w[t, :, c, q] > 0
                    if use.sum() < 4:
                        continue
                    coef, *_ = np.linalg.lstsq(x[use], phi[t, use, c, q], rcond=None)
                    k[:, t, c, q] += coef[1:]
    return np.exp(1j * np.einsum("ad,dtcp->tacp", plane, k)), k


def relative_amplitudes(solved: np.ndarray, calibrator: np.ndarray, use: np.ndarray
                        ) -> np.ndarray:
    """Per-antenna amplitude corrections ``|solved| / |calibrator|`` where ``use`` (gains
    (n_time, n_ant, n_chan, n_pol)), divided by their geometric mean over the used antennas
    of each interval, channel and polarisation, so that the flux scale stays the
    calibrator's (a field model's flux errors scale every antenna alike). 1 elsewhere, and
    where fewer than four antennas qualify."""
    a_s, a_c = np.abs(solved), np.abs(calibrator)
    use = use & (a_s > 0) & (a_c > 0)
    lr = np.where(use, np.log(np.where(use, a_s, 1.0) / np.where(use, a_c, 1.0)), 0.0)
    n = use.sum(axis=1, keepdims=True)
    mean = lr.sum(axis=1, keepdims=True) / np.maximum(n, 1)
    return np.where(use & (n >= 4), np.exp(lr - mean), 1.0)


__all__ = ["FieldPhaseParams", "array_plane", "drift_phases", "phase_gradient", "refine_phases",
           "relative_amplitudes"]
