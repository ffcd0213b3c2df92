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
    """Solution interval (s; None: one per group), least per-solution S/N, and the least
    total apparent model flux (Jy) worth solving on."""

    solint_s: float | None = 60.0
    min_snr: float = 5.0
    min_model_flux_jy: float = 0.05


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
    # the phase step the refinement made, per antenna and interval, less the common phase
    # of each interval (the two solves' reference antennas differ), for the metrics
    with np.errstate(invalid="ignore"):
        d = new * np.conj(g_cal)
        common = np.sum(np.where(ok, d, 0), axis=1, keepdims=True)
        step = np.angle(d * np.conj(common / np.where(np.abs(common) > 0, np.abs(common), 1)))
    metrics = {"field_phase_solved_fraction": float(ok.mean()),
               "field_phase_rms_deg": float(np.degrees(np.sqrt(np.mean(step[ok] ** 2))))
               if ok.any() else None,
               "field_phase_solint_s": params.solint_s}
    return replace(sol, gains=new, flags=f_cal & ~ok,
                   meta={**sol.meta, "from": "calibrator amplitudes, field phases"}), metrics


__all__ = ["FieldPhaseParams", "refine_phases"]
