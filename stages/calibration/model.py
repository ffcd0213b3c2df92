"""Model visibilities of the calibrator (and optional field sources) for the solvers.

The kernel is the simulator's exact direct Fourier sum with the w-term
(:func:`dsa110_pipeline.dft.predict_visibilities_drift`; sign +1 for MS DATA with
MS UVW, since both are pyuvdata's conjugated and negated), fed with source directions in
the phase centre's (ICRS) frame and apparent fluxes: the intrinsic spectrum (Perley-Butler
2017 for flux standards, else S (ν/ν0)^α) times the Airy power beam of a dish pointed at
the meridian at the pointing declination.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_pipeline.catalogs import (
    DEFAULT_REF_FREQ_HZ,
    DEFAULT_SPECTRAL_INDEX,
    flux_density,
    is_flux_standard,
)
from dsa110_pipeline.dft import predict_visibilities_drift
from dsa110_pipeline.instrument import airy_beam


@dataclass(frozen=True)
class ModelSources:
    """Point sources for a model: ICRS ra/dec (rad) and spectra (n_src, n_chan) in Jy."""

    names: tuple[str, ...]
    ra: np.ndarray
    dec: np.ndarray
    spectra: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if np.shape(self.ra) != (n,) or np.shape(self.dec) != (n,):
            raise ValueError("ra/dec need one value per source")
        if np.ndim(self.spectra) != 2 or np.shape(self.spectra)[0] != n:
            raise ValueError(f"spectra must be (n_src={n}, n_chan)")
        if not np.all(np.isfinite(self.spectra)):
            raise ValueError("source spectra must be finite")


def source_spectrum(name: str, freqs: np.ndarray, flux_ref: float | None = None,
                    alpha: float = DEFAULT_SPECTRAL_INDEX,
                    ref_freq: float = DEFAULT_REF_FREQ_HZ) -> np.ndarray:
    """Spectrum (Jy) at ``freqs``: Perley-Butler 2017 for a flux standard, else power law."""
    if is_flux_standard(name):
        return np.asarray(flux_density(name, np.asarray(freqs, float)), float)
    if flux_ref is None:
        raise ValueError(f"source {name!r} is not a flux standard and has no reference flux")
    return flux_ref * (np.asarray(freqs, float) / ref_freq) ** alpha


def beam_separation(hour_angle: np.ndarray, dec: np.ndarray, pointing_dec: float
                    ) -> np.ndarray:
    """Angle (rad) between (hour angle, dec) and a pointing on the meridian at pointing_dec."""
    cosang = (np.sin(dec) * np.sin(pointing_dec)
              + np.cos(dec) * np.cos(pointing_dec) * np.cos(hour_angle))
    return np.arccos(np.clip(cosang, -1.0, 1.0))


def apparent_spectra(spectra: np.ndarray, hour_angle: np.ndarray, app_dec: np.ndarray,
                     pointing_dec: float, freqs: np.ndarray, beam: bool = True) -> np.ndarray:
    """Beam-attenuated spectra (n_time, n_src, n_chan) from intrinsic spectra (n_src, n_chan)
    and per-time apparent hour angles / declinations (n_time, n_src)."""
    spectra = np.asarray(spectra, float)
    if not beam:
        return np.broadcast_to(spectra[None], (np.shape(hour_angle)[0],) + spectra.shape).copy()
    theta = beam_separation(hour_angle, app_dec, pointing_dec)
    return spectra[None] * airy_beam(theta[..., None], np.asarray(freqs, float))


def model_visibilities(uvw: np.ndarray, time_index: np.ndarray, freqs: np.ndarray,
                       lmn: np.ndarray, app_flux: np.ndarray, *,
                       nthreads: int | None = None, dtype: type = np.complex128
                       ) -> np.ndarray:
    """Exact model visibilities (n_row, n_chan) of MS DATA with MS UVW: sign +1, w (n-1)
    (MS DATA and UVW are pyuvdata's conjugated and negated; checked end to end).

    ``uvw`` (n_row, 3) m, ``time_index`` (n_row,) into the time axis of ``lmn`` (n_time,
    n_src, 3) and ``app_flux`` (n_time, n_src, n_chan) Jy. The sum runs in double
    precision whatever the output ``dtype``.
    """
    return predict_visibilities_drift(uvw, time_index, freqs, lmn, app_flux, sign=1,
                                      unprojected=False, dtype=dtype,
                                      nthreads=nthreads, precision="double")
