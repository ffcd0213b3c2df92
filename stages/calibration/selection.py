"""Calibrator selection: which calibrators transit inside the primary beam during an
observation, ranked by beam-weighted L-band flux (pure numpy on LST ranges).

"None suitable" is a normal outcome (:attr:`CalibratorSelection.found` is False, with the
reason), not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_pipeline.instrument import SIDEREAL_RATE, airy_beam


@dataclass(frozen=True)
class CalibratorCandidate:
    """A calibrator transiting during the observation."""

    name: str
    ra: float               #: rad
    dec: float              #: rad
    flux_jy: float          #: L-band flux
    transit_time: float     #: MJD seconds
    separation: float       #: rad from the pointing at transit
    beam: float             #: primary-beam power at transit (at ``freq_hz``)
    weighted_flux_jy: float  #: flux × beam


@dataclass(frozen=True)
class CalibratorSelection:
    """Candidates, best first; ``reason`` says why there are none."""

    candidates: tuple[CalibratorCandidate, ...]
    reason: str = ""

    @property
    def found(self) -> bool:
        return bool(self.candidates)

    @property
    def best(self) -> CalibratorCandidate | None:
        return self.candidates[0] if self.candidates else None


def select_calibrators(names: list[str] | tuple[str, ...], ra: np.ndarray, dec: np.ndarray,
                       flux_jy: np.ndarray, *, t_start: float, t_end: float,
                       lst_start: float, pointing_dec: float, freq_hz: float = 1.4e9,
                       min_beam: float = 0.5, min_weighted_flux_jy: float = 1.0
                       ) -> CalibratorSelection:
    """Calibrators whose transit (hour angle 0) falls in [t_start, t_end] (MJD s) with
    primary-beam power ≥ ``min_beam`` at transit and flux × beam ≥ ``min_weighted_flux_jy``.

    ``lst_start`` (rad) is the local sidereal time at ``t_start``; positions are in the
    frame of that LST (apparent, or ICRS as an approximation).
    """
    ra = np.asarray(ra, float)
    dec = np.asarray(dec, float)
    flux = np.asarray(flux_jy, float)
    if not (len(names) == ra.size == dec.size == flux.size):
        raise ValueError("names, ra, dec and flux_jy must have one entry per calibrator")
    if t_end < t_start:
        raise ValueError(f"t_end {t_end} before t_start {t_start}")
    if ra.size == 0:
        return CalibratorSelection((), "no calibrators to choose from")
    # time from t_start until the next transit
    dha = np.mod(ra - lst_start, 2 * np.pi)
    dt = dha / SIDEREAL_RATE
    transits = dt <= (t_end - t_start)
    sep = np.abs(dec - pointing_dec)  # at transit the hour angle is 0
    beam = airy_beam(sep, freq_hz)
    flux_ok = np.isfinite(flux) & (flux > 0)
    weighted = np.where(flux_ok, flux, 0.0) * beam
    ok = transits & (beam >= min_beam) & (weighted >= min_weighted_flux_jy)
    if not ok.any():
        if not transits.any():
            reason = "no calibrator transits during the observation"
        elif not (transits & (beam >= min_beam)).any():
            reason = (f"no transiting calibrator inside the primary beam (power >= {min_beam}"
                      f" at {freq_hz / 1e6:.0f} MHz)")
        else:
            reason = (f"transiting calibrators in the beam are fainter than "
                      f"{min_weighted_flux_jy} Jy after beam weighting")
        return CalibratorSelection((), reason)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(-weighted[idx], kind="stable")]
    cands = tuple(CalibratorCandidate(
        name=str(names[i]), ra=float(ra[i]), dec=float(dec[i]), flux_jy=float(flux[i]),
        transit_time=float(t_start + dt[i]), separation=float(sep[i]), beam=float(beam[i]),
        weighted_flux_jy=float(weighted[i])) for i in idx)
    return CalibratorSelection(cands)
