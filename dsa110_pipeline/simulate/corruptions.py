"""Instrumental corruptions with known truth: antenna gains, bandpasses, RFI, noise.

Signal model of one baseline (antennas i, j; polarisation p; pyuvdata convention)::

    V_ij(t, f) = G_i(t, f) * [V_sky(t, f) + V_rfi,ij(t, f) + n_ij(t, f)] * conj(G_j(t, f))
    G_a(t, f)  = g_a(t) * B_a(f)   (per polarisation)

``n`` is the radiometer noise in Jy (sky units), so after calibration its rms per real or
imaginary part is ``instrument.radiometer_noise(SEFD, channel width, integration)``.
Autocorrelations carry the system power (SEFD) plus the sky and RFI power, with a real noise
of ``sqrt(2)`` times that rms. A dead antenna has G = 0: its baselines are exactly zero.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

#: Narrowband RFI: width (Hz) of each line and its power range (Jy).
RFI_LINE_WIDTH_HZ = 0.6e6
RFI_LINE_POWER_JY = (30.0, 300.0)
#: Impulsive bursts: expected number per file (Poisson) and power range (Jy).
RFI_BURSTS_PER_FILE = 1.0
RFI_BURST_POWER_JY = (20.0, 100.0)


def draw_gains(rng: np.random.Generator, n_ant: int, n_pol: int, times_s: np.ndarray,
               amp_sd: float = 0.1, phase_drift_rad_per_hour: float = 0.3,
               amp_drift: float = 0.02) -> np.ndarray:
    """Slowly varying complex gains (ntime, nant, npol): amplitude 1 ± ``amp_sd`` with a
    sinusoidal drift of a few hours' period, random phase with a linear drift.

    ``times_s`` are seconds since a fixed epoch, so consecutive calls with later times
    continue the same gains when ``rng`` is seeded identically.
    """
    t = np.asarray(times_s, dtype=float)[:, None, None] / 3600.0
    amp0 = np.clip(1.0 + amp_sd * rng.standard_normal((n_ant, n_pol)), 0.5, 1.5)
    ph0 = rng.uniform(-np.pi, np.pi, (n_ant, n_pol))
    rate = phase_drift_rad_per_hour * rng.standard_normal((n_ant, n_pol))
    period_h = rng.uniform(2.0, 6.0, (n_ant, n_pol))
    ph_amp = rng.uniform(0.0, 2 * np.pi, (n_ant, n_pol))
    amp = amp0 * (1.0 + amp_drift * np.sin(2 * np.pi * t / period_h + ph_amp))
    return (amp * np.exp(1j * (ph0 + rate * t))).astype(np.complex64)


def draw_bandpasses(rng: np.random.Generator, n_ant: int, n_pol: int, freqs_hz: np.ndarray,
                    ripple: float = 0.05, delay_sd_s: float = 2e-9) -> np.ndarray:
    """Per-antenna bandpasses (nant, nfreq, npol): smooth amplitude ripple (a slope plus a
    sinusoid of 20-60 MHz period) and a phase slope from a delay of ~``delay_sd_s``."""
    f = np.asarray(freqs_hz, dtype=float)
    fc = 0.5 * (f.max() + f.min())
    x = (f - fc)[None, :, None]
    slope = rng.normal(0.0, 0.1, (n_ant, 1, n_pol)) * x / 1e8
    period = rng.uniform(20e6, 60e6, (n_ant, 1, n_pol))
    phase = rng.uniform(0, 2 * np.pi, (n_ant, 1, n_pol))
    amp = 1.0 + slope + ripple * rng.uniform(0.3, 1.0, (n_ant, 1, n_pol)) * np.sin(
        2 * np.pi * x / period + phase)
    delay = rng.normal(0.0, delay_sd_s, (n_ant, 1, n_pol))
    phase_ripple = 0.05 * np.sin(2 * np.pi * x / (1.7 * period) + 2 * phase)
    return (amp * np.exp(1j * (2 * np.pi * delay * x + phase_ripple))).astype(np.complex64)


def rfi_power(rng: np.random.Generator, freqs_hz: np.ndarray, n_time: int,
              line_freqs_hz: tuple[float, ...], line_width_hz: float = RFI_LINE_WIDTH_HZ,
              bursts_per_file: float = RFI_BURSTS_PER_FILE) -> np.ndarray:
    """RFI power (Jy) per (time, channel): narrowband lines at ``line_freqs_hz`` (each on for
    a random 50-100% of the integrations, power varying in time) plus impulsive broadband
    bursts in single integrations. Zero where there is no RFI, so ``power > 0`` is the mask.
    """
    f = np.asarray(freqs_hz, dtype=float)
    p = np.zeros((n_time, f.size))
    for f0 in line_freqs_hz:
        chans = np.abs(f - f0) <= 0.5 * line_width_hz + 0.5 * _chan_width(f)
        if not chans.any():
            continue
        on = rng.uniform(0, 1, n_time) < rng.uniform(0.5, 1.0)
        level = rng.uniform(*RFI_LINE_POWER_JY) * rng.uniform(0.5, 1.5, n_time)
        shape = np.exp(-0.5 * ((f[chans] - f0) / max(line_width_hz / 2, 1.0)) ** 2) + 0.2
        p[np.ix_(on, chans)] += level[on, None] * shape[None, :]
    for _ in range(rng.poisson(bursts_per_file)):
        t = rng.integers(n_time)
        spec = rng.uniform(*RFI_BURST_POWER_JY) * (1.0 + 0.3 * rng.standard_normal(f.size))
        p[t] += np.abs(spec)
    return p


def _chan_width(f: np.ndarray) -> float:
    return float(np.abs(f[1] - f[0])) if f.size > 1 else 0.0


def rfi_antenna_phases(rng: np.random.Generator, n_ant: int) -> np.ndarray:
    """Phase (rad) of the RFI voltage at each antenna (one terrestrial emitter)."""
    return rng.uniform(-np.pi, np.pi, n_ant)


@numba.njit(parallel=True, cache=True, nogil=True)
def _corrupt(model, tidx, a1, a2, gtab, rfi_p, rfi_ph, noise, sefd, noise_auto,
             out):  # pragma: no cover
    # gtab (ntime, nant, nchan, npol): the total complex gain of each antenna
    nblt, nchan = model.shape
    npol = out.shape[2]
    for b in prange(nblt):
        t = tidx[b]
        i = a1[b]
        j = a2[b]
        auto = i == j
        rph = rfi_ph[i] - rfi_ph[j]
        rc = math.cos(rph)
        rs = math.sin(rph)
        for c in range(nchan):
            v = model[b, c]
            vr = v.real + rfi_p[t, c] * rc
            vi = v.imag + rfi_p[t, c] * rs
            for p in range(npol):
                nr = noise[b, c, p, 0]
                ni = noise[b, c, p, 1]
                if auto:
                    xr = vr + sefd + noise_auto * nr
                    xi = 0.0
                else:
                    xr = vr + nr
                    xi = vi + ni
                gg = gtab[t, i, c, p] * gtab[t, j, c, p].conjugate()
                out[b, c, p] = complex(gg.real * xr - gg.imag * xi, gg.real * xi + gg.imag * xr)


def corrupt(model: np.ndarray, time_index: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
            gains: np.ndarray, bandpass: np.ndarray, rfi_power_jy: np.ndarray,
            rfi_phase: np.ndarray, noise: np.ndarray, sefd: float, out: np.ndarray
            ) -> np.ndarray:
    """Apply the signal model of this module to one subband.

    model (nblt, nchan) complex sky visibilities (same for every polarisation); time_index,
    ant1, ant2 (nblt,) indices into gains (ntime, nant, npol), bandpass (nant, nchan, npol),
    rfi_power_jy (ntime, nchan) and rfi_phase (nant,); noise (nblt, nchan, npol, 2) standard
    normal draws already scaled to the cross-correlation rms (Jy). Writes ``out``
    (nblt, nchan, npol) complex64 and returns it.
    """
    nblt, nchan = model.shape
    npol = out.shape[2]
    if out.shape != (nblt, nchan, npol) or noise.shape != (nblt, nchan, npol, 2):
        raise ValueError("inconsistent shapes of model, noise and out")
    if bandpass.shape[1] != nchan or gains.shape[2] != npol or bandpass.shape[2] != npol:
        raise ValueError("gains/bandpass do not match the channels or polarisations")
    gtab = (gains[:, :, None, :] * bandpass[None]).astype(np.complex64)
    _corrupt(np.ascontiguousarray(model), np.asarray(time_index, np.int64),
             np.asarray(ant1, np.int64), np.asarray(ant2, np.int64), gtab,
             np.asarray(rfi_power_jy, np.float32), np.asarray(rfi_phase, np.float64),
             noise, np.float32(sefd), np.float32(math.sqrt(2.0)), out)
    return out
