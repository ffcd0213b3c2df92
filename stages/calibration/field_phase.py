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
from .solve import GainSolution, solve_gains


@dataclass(frozen=True)
class FieldPhaseParams:
    """Solution interval (s; None: one per group), least per-solution S/N, the least total
    apparent model flux (Jy) worth solving on, and the least per-solution S/N at which an
    antenna's *relative* amplitude is taken from the field too (None: never)."""

    solint_s: float | None = 60.0
    min_snr: float = 5.0
    min_model_flux_jy: float = 0.05
    #: An amplitude solved at S/N s is good to ~1/s: at 300, 0.3 %, about the few 0.1 % the
    #: gain amplitudes drift in the minutes since the calibrator's transit, which leave a
    #: cross of ±5-8 sigma along the arms of a 5 Jy source (the demo's first target group)
    amp_min_snr: float | None = 300.0


def refine_phases(vis: np.ndarray, model: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                  ant2: np.ndarray, n_ant: int, times: np.ndarray, freqs: np.ndarray,
                  bandpass: GainSolution, gains: GainSolution, refant: int,
                  params: FieldPhaseParams = FieldPhaseParams()) -> tuple[GainSolution, dict]:
    """Gains of the target: the calibrator's amplitudes (interpolated to the target's
    solution intervals) with the phases solved on ``model`` (n_time, n_bl, n_chan, n_pol)
    through the calibrator's ``bandpass``. Intervals or antennas whose phase solution is
    flagged (low S/N) keep the calibrator's gain. Returns (gains, metrics)."""
    sol = solve_gains(vis, model, flags, ant1, ant2, n_ant, times, freqs, refant=refant,
                      solint=params.solint_s, bandpass=bandpass.gains[0],
                      min_snr=params.min_snr)
    g_cal, f_cal = interpolate_gains(gains.times, gains.gains, gains.flags, sol.times)
    g_cal = g_cal.reshape(sol.gains.shape)
    f_cal = f_cal.reshape(sol.flags.shape)
    ok = ~sol.flags & (np.abs(sol.gains) > 0)
    phase = np.where(ok, sol.gains / np.where(ok, np.abs(sol.gains), 1.0), 1.0)
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
    changed = amp != 1.0 if amp is not None else np.zeros(1, bool)
    # the phase step the refinement made, per antenna and interval, less the common phase
    # of each interval (the two solves' reference antennas differ), for the metrics
    with np.errstate(invalid="ignore"):
        d = new * np.conj(g_cal)
        common = np.sum(np.where(ok, d, 0), axis=1, keepdims=True)
        step = np.angle(d * np.conj(common / np.where(np.abs(common) > 0, np.abs(common), 1)))
    metrics = {"field_phase_solved_fraction": float(ok.mean()),
               "field_phase_rms_deg": float(np.degrees(np.sqrt(np.mean(step[ok] ** 2))))
               if ok.any() else None,
               "field_phase_solint_s": params.solint_s,
               "field_amp_solved_fraction": float(np.mean(changed)),
               "field_amp_rms_pct": float(100 * np.sqrt(np.mean(np.log(amp[changed]) ** 2)))
               if changed.any() else None}
    return replace(sol, gains=new, flags=f_cal & ~ok,
                   meta={**sol.meta, "from": "calibrator amplitudes, field phases"}), metrics


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


__all__ = ["FieldPhaseParams", "refine_phases", "relative_amplitudes"]
