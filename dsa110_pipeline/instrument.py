"""DSA-110 instrument model: the one home of the array's constants.

Everything is in SI units (Hz, m, s, rad). Other modules import these names
instead of repeating numbers.
"""

from __future__ import annotations

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0  # m/s
ARCSEC = np.pi / (180 * 3600)  # rad

TELESCOPE_NAME = "DSA-110"
#: Name written to Measurement Sets so that CASA accepts them; the real name is kept beside it.
CASA_TELESCOPE_NAME = "OVRO_MMA"

N_STATIONS = 117
N_ACTIVE_ANTENNAS = 96
N_EW, N_NS, N_OUTRIGGERS = 47, 35, 14
DISH_DIAMETER = 4.65  # m

SITE_LATITUDE_DEG = 37.2334
SITE_LONGITUDE_DEG = -118.2834
SITE_HEIGHT = 1182.6  # m; also the fill value for a station CSV's blank elevation

N_SUBBANDS = 16
N_CHANNELS_PER_SUBBAND = 48
CHANNEL_WIDTH = 244_140.625  # Hz
BAND_LOW = 1311.25e6  # Hz, lower edge of the lowest channel
BAND_HIGH = 1498.75e6  # Hz, upper edge of the highest channel

N_INTEGRATIONS = 24
INTEGRATION_TIME = 12.884902  # s
SIDEREAL_DAY = 86164.0905  # s
SIDEREAL_RATE = 2 * np.pi / SIDEREAL_DAY  # rad of hour angle per second
FILE_DURATION = N_INTEGRATIONS * INTEGRATION_TIME  # ~309.24 s
FILENAME_JITTER = 60.0  # s, tolerated jitter of the start time in file names

POLARIZATIONS = ("XX", "YY")
POLARIZATION_NUMBERS = (-5, -6)  # AIPS/pyuvdata codes for XX, YY

SEFD = 6500.0  # Jy per antenna (system-equivalent flux density)

#: Known narrow-band RFI near the site (Hz).
KNOWN_RFI_FREQUENCIES = (1350e6, 1395e6, 1405e6, 1475e6)


def subband_frequencies(subband: int, n_channels: int = N_CHANNELS_PER_SUBBAND) -> np.ndarray:
    """Channel centre frequencies (Hz) of one subband, descending as the correlator writes them.

    Subband 0 is the highest. With ``n_channels`` below 48 the subband keeps its
    full width and channels widen accordingly.
    """
    if not 0 <= subband < N_SUBBANDS:
        raise ValueError(f"subband must be in 0..{N_SUBBANDS - 1}, got {subband}")
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    width = CHANNEL_WIDTH * N_CHANNELS_PER_SUBBAND / n_channels
    top = BAND_HIGH - subband * N_CHANNELS_PER_SUBBAND * CHANNEL_WIDTH
    return top - (np.arange(n_channels) + 0.5) * width


def channel_width(n_channels: int = N_CHANNELS_PER_SUBBAND) -> float:
    """Channel width (Hz) when a subband is divided into ``n_channels``."""
    return CHANNEL_WIDTH * N_CHANNELS_PER_SUBBAND / n_channels


def airy_beam(theta: np.ndarray | float, freq: np.ndarray | float,
              diameter: float = DISH_DIAMETER) -> np.ndarray:
    """Power primary beam (1 at the centre) of a uniformly illuminated dish.

    ``theta`` is the angle from the pointing centre (rad) and ``freq`` in Hz; the
    two broadcast against each other.
    """
    from scipy.special import j1

    x = np.pi * diameter * np.asarray(freq) * np.sin(np.asarray(theta)) / SPEED_OF_LIGHT
    x = np.asarray(x, dtype=float)
    out = np.ones_like(x)
    nz = np.abs(x) > 1e-12
    out[nz] = (2.0 * j1(x[nz]) / x[nz]) ** 2
    return out


def primary_beam_fwhm(freq: float, diameter: float = DISH_DIAMETER) -> float:
    """Full width at half maximum (rad) of the Airy power beam: 1.02 λ/D."""
    return 1.02895 * SPEED_OF_LIGHT / freq / diameter


def radiometer_noise(sefd: float, bandwidth: float, tint: float) -> float:
    """Noise rms (Jy) of one real or imaginary part of a single-polarisation visibility.

    σ = SEFD / sqrt(2 Δν τ) for a baseline of two identical antennas.
    """
    if bandwidth <= 0 or tint <= 0:
        raise ValueError("bandwidth and integration time must be positive")
    return sefd / np.sqrt(2.0 * bandwidth * tint)
