"""The simulator's own geometry: the primary beam towards source directions and the time
of a transit. Site, sidereal time and apparent positions are the science core's
(:mod:`dsa110_pipeline.coordinates`, pyuvdata's computations, so that phasing a simulation
with pyuvdata's ``phase()`` recovers real visibilities)."""

from __future__ import annotations

import numpy as np

from ..instrument import SIDEREAL_DAY, airy_beam

SECONDS_PER_DAY = 86400.0


def beam_power(lmn: np.ndarray, pointing_enu: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """Airy power beam for directions ``lmn`` (..., 3) and pointing ``pointing_enu`` (3,):
    shape (..., nfreq)."""
    cosang = np.clip(np.asarray(lmn) @ np.asarray(pointing_enu, float), -1.0, 1.0)
    theta = np.arccos(cosang)
    return airy_beam(theta[..., None], np.asarray(freqs_hz, float))


def transit_offset_s(app_ra: float, lst: float) -> float:
    """Seconds from the time of ``lst`` until (or, if negative, since) a source at apparent RA
    ``app_ra`` is on the meridian (the nearest transit)."""
    dha = np.angle(np.exp(1j * (app_ra - lst)))
    return float(dha / (2 * np.pi) * SIDEREAL_DAY)
