"""QA gate on calibration solutions, run before they may be registered (pure numpy; its
limits are a typed config section)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .gain_solution import GainSolution


class QAThresholds(BaseModel):
    """Limits a solution set must meet: the ``calibration.qa`` config section, handed to
    :func:`qa_gate` as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_median_snr: float = Field(10.0, ge=0)
    max_flagged_fraction: float = Field(0.3, ge=0, le=1)
    #: rms of channel-to-channel bandpass amplitude jumps (fraction), robust
    max_bandpass_amp_scatter: float = Field(0.1, gt=0)
    #: rms of channel-to-channel bandpass phase jumps (deg), robust
    max_bandpass_phase_scatter_deg: float = Field(10.0, gt=0)
    #: rms of the gain amplitude about its time mean (fraction)
    max_gain_amp_scatter: float = Field(0.2, gt=0)
    #: rms of gain phase changes between consecutive intervals (deg)
    max_gain_phase_scatter_deg: float = Field(30.0, gt=0)
    min_good_antennas: int = Field(4, ge=1)


@dataclass(frozen=True)
class QAResult:
    """Verdict of the gate: ``passed``, the metrics and, when failed, the reasons."""

    passed: bool
    metrics: dict
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _robust_rms(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _subset(sol: GainSolution, antennas: np.ndarray | None) -> GainSolution:
    if antennas is None:
        return sol
    idx = np.flatnonzero(antennas) if np.asarray(antennas).dtype == bool else \
        np.asarray(antennas)
    ref = int(np.searchsorted(idx, sol.refant)) if sol.refant in idx else 0
    return GainSolution(sol.kind, sol.gains[:, idx], sol.flags[:, idx], sol.snr[:, idx],
                        sol.times, sol.interval, sol.freqs, ref, sol.meta)


def solution_metrics(bandpass: GainSolution, gains: GainSolution,
                     antennas: np.ndarray | None = None) -> dict:
    """SNR, flagged fractions and amplitude/phase scatter of a B + G solution set,
    over ``antennas`` (mask or indices: those present in the data) or all of them."""
    refant = int(bandpass.refant)
    bandpass, gains = _subset(bandpass, antennas), _subset(gains, antennas)
    b = bandpass.gains[0]                       # (n_ant, n_chan, n_pol)
    bf = bandpass.flags[0]
    good_b = ~bf & (np.abs(b) > 0)
    db_amp = np.where(good_b[:, 1:] & good_b[:, :-1], np.abs(b[:, 1:]) - np.abs(b[:, :-1]),
                      np.nan)
    db_ph = np.where(good_b[:, 1:] & good_b[:, :-1], np.angle(b[:, 1:] * np.conj(b[:, :-1])),
                     np.nan)
    g = gains.gains[:, :, 0, :]                 # (n_t, n_ant, n_pol)
    gf = gains.flags[:, :, 0, :]
    good_g = ~gf & (np.abs(g) > 0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        amp = np.where(good_g, np.abs(g), np.nan)
        mean_amp = np.nanmean(amp, axis=0, keepdims=True)
        amp_scatter = np.sqrt(np.nanmean((amp / mean_amp - 1) ** 2)) if g.shape[0] > 1 else 0.0
    if g.shape[0] > 1:
        pair = good_g[1:] & good_g[:-1]
        dph = np.where(pair, np.angle(g[1:] * np.conj(g[:-1])), np.nan)
        phase_scatter = float(np.degrees(np.sqrt(np.nanmean(dph ** 2)))) if pair.any() else 0.0
    else:
        phase_scatter = 0.0
    ant_good = good_b.any(axis=(1, 2)) & good_g.any(axis=(0, 2))
    snr_b = bandpass.snr[~bandpass.flags]
    snr_g = gains.snr[~gains.flags]
    return {
        "bandpass_median_snr": float(np.median(snr_b)) if snr_b.size else 0.0,
        "gain_median_snr": float(np.median(snr_g)) if snr_g.size else 0.0,
        "bandpass_flagged_fraction": float(bf.mean()),
        "gain_flagged_fraction": float(gf.mean()),
        "bandpass_amp_scatter": _robust_rms(db_amp) / np.sqrt(2),
        "bandpass_phase_scatter_deg": float(np.degrees(_robust_rms(db_ph) / np.sqrt(2))),
        "gain_amp_scatter": float(np.nan_to_num(amp_scatter)),
        "gain_phase_scatter_deg": float(np.nan_to_num(phase_scatter)),
        "n_good_antennas": int(ant_good.sum()),
        "refant": refant,
    }


def qa_gate(bandpass: GainSolution, gains: GainSolution,
            limits: QAThresholds | None = None, antennas: np.ndarray | None = None
            ) -> QAResult:
    """Check a solution set over ``antennas`` (those present in the data; None: all).
    Bad solutions must never be registered."""
    lim = limits or QAThresholds()
    m = solution_metrics(bandpass, gains, antennas)
    reasons = []

    def check(ok: bool, text: str) -> None:
        if not ok:
            reasons.append(text)

    check(m["bandpass_median_snr"] >= lim.min_median_snr,
          f"bandpass median SNR {m['bandpass_median_snr']:.1f} < {lim.min_median_snr}")
    check(m["gain_median_snr"] >= lim.min_median_snr,
          f"gain median SNR {m['gain_median_snr']:.1f} < {lim.min_median_snr}")
    check(m["bandpass_flagged_fraction"] <= lim.max_flagged_fraction,
          f"bandpass flagged fraction {m['bandpass_flagged_fraction']:.2f} > "
          f"{lim.max_flagged_fraction}")
    check(m["gain_flagged_fraction"] <= lim.max_flagged_fraction,
          f"gain flagged fraction {m['gain_flagged_fraction']:.2f} > "
          f"{lim.max_flagged_fraction}")
    check(not m["bandpass_amp_scatter"] > lim.max_bandpass_amp_scatter,
          f"bandpass amplitude scatter {m['bandpass_amp_scatter']:.3f} > "
          f"{lim.max_bandpass_amp_scatter}")
    check(not m["bandpass_phase_scatter_deg"] > lim.max_bandpass_phase_scatter_deg,
          f"bandpass phase scatter {m['bandpass_phase_scatter_deg']:.1f} deg > "
          f"{lim.max_bandpass_phase_scatter_deg}")
    check(m["gain_amp_scatter"] <= lim.max_gain_amp_scatter,
          f"gain amplitude scatter {m['gain_amp_scatter']:.3f} > {lim.max_gain_amp_scatter}")
    check(m["gain_phase_scatter_deg"] <= lim.max_gain_phase_scatter_deg,
          f"gain phase scatter {m['gain_phase_scatter_deg']:.1f} deg > "
          f"{lim.max_gain_phase_scatter_deg}")
    check(m["n_good_antennas"] >= lim.min_good_antennas,
          f"only {m['n_good_antennas']} antennas have solutions (< {lim.min_good_antennas})")
    return QAResult(passed=not reasons, metrics=m, reasons=tuple(reasons))
