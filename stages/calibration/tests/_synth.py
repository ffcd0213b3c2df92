"""Synthetic visibilities for the calibration tests: a point source with known antenna
gains, bandpasses, noise and RFI, built in numpy (no files)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Synth:
    vis: np.ndarray          # (n_time, n_bl, n_chan, n_pol) complex128, MS convention
    model: np.ndarray        # same shape, the sky model (no gains)
    flags: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    times: np.ndarray        # MJD seconds
    freqs: np.ndarray        # Hz, ascending
    gains: np.ndarray        # (n_time, n_ant, n_chan, n_pol) true total gain g(t, ν)
    bandpass: np.ndarray     # (n_ant, n_chan, n_pol)
    gain_t: np.ndarray       # (n_time, n_ant, n_pol)
    sigma: float             # noise rms of real and imaginary parts
    n_ant: int
    rfi_mask: np.ndarray | None = None


def baselines(n_ant: int, autos: bool = False) -> tuple[np.ndarray, np.ndarray]:
    a1, a2 = np.triu_indices(n_ant, 0 if autos else 1)
    return a1.astype(np.int32), a2.astype(np.int32)


def make(n_ant: int = 12, n_time: int = 24, n_chan: int = 32, n_pol: int = 2,
         flux: float = 10.0, sigma: float = 0.05, seed: int = 1, autos: bool = False,
         gain_drift: float = 0.0, delay_ns: float = 0.0, const_gain: bool = False,
         f0: float = 1.35e9, df: float = 244_140.625 * 4, gain_step: float | None = None,
         ant_scale: dict[int, float] | None = None) -> Synth:
    """``gain_step`` (s) holds the time-variable gains constant over intervals of that
    length starting at the first time; ``ant_scale`` multiplies some antennas' gains."""
    rng = np.random.default_rng(seed)
    a1, a2 = baselines(n_ant, autos)
    freqs = f0 + df * np.arange(n_chan)
    times = 5.0e9 + 12.884902 * np.arange(n_time)
    model1 = flux * (freqs / 1.4e9) ** -0.7
    model = np.broadcast_to(model1[None, None, :, None],
                            (n_time, len(a1), n_chan, n_pol)).astype(np.complex128)
    # bandpass: smooth amplitude ripple and phase slope per antenna/pol
    x = (freqs - freqs.mean()) / (np.ptp(freqs) + 1.0)
    amp = 1.0 + 0.2 * rng.standard_normal((n_ant, 1, n_pol)) * 0.5 \
        + 0.1 * np.sin(2 * np.pi * (x[None, :, None] * rng.uniform(1, 3, (n_ant, 1, n_pol))
                                    + rng.uniform(0, 1, (n_ant, 1, n_pol))))
    phase = rng.uniform(-np.pi, np.pi, (n_ant, 1, n_pol)) \
        + rng.normal(0, 1.0, (n_ant, 1, n_pol)) * x[None, :, None]
    tau = rng.normal(0, delay_ns * 1e-9, (n_ant, 1, 1)) if delay_ns else 0.0
    phase = phase + 2 * np.pi * tau * (freqs[None, :, None] - freqs[0])
    bandpass = amp * np.exp(1j * phase)
    # slow time-variable complex gain
    tt = (times - times[0]) / max(times[-1] - times[0], 1.0)
    if const_gain:
        gain_t = np.ones((n_time, n_ant, n_pol), complex)
    else:
        ga = 1.0 + gain_drift * np.sin(2 * np.pi * tt[:, None, None]
                                       + rng.uniform(0, 6, (1, n_ant, n_pol)))
        gp = gain_drift * 3 * np.cos(2 * np.pi * tt[:, None, None]
                                     + rng.uniform(0, 6, (1, n_ant, n_pol)))
        gain_t = ga * np.exp(1j * gp)
        if gain_step is not None:
            first = np.floor((times - times[0]) / gain_step + 1e-6).astype(int)
            starts = np.searchsorted(first, first)
            gain_t = gain_t[starts]
    for ant, scale in (ant_scale or {}).items():
        gain_t[:, ant] *= scale
    gains = gain_t[:, :, None, :] * bandpass[None]
    vis = gains[:, a1] * model * np.conj(gains[:, a2])
    noise = sigma * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    vis = vis + noise
    flags = np.zeros(vis.shape, dtype=bool)
    return Synth(vis=vis, model=model.copy(), flags=flags, ant1=a1, ant2=a2, times=times,
                 freqs=freqs, gains=gains, bandpass=bandpass, gain_t=gain_t, sigma=sigma,
                 n_ant=n_ant)


def inject_rfi(s: Synth, seed: int = 7, level: float = 1.0) -> Synth:
    """Add narrow-band lines, broadband bursts and isolated spikes; sets ``s.rfi_mask``.

    Amplitudes are in units of the noise rms σ times ``level`` (5σ to 50σ)."""
    rng = np.random.default_rng(seed)
    nt, nb, nc, npol = s.vis.shape
    mask = np.zeros(s.vis.shape, dtype=bool)
    rfi = np.zeros(s.vis.shape, dtype=complex)
    sig = s.sigma * level

    def add(sl, amp):
        shape = rfi[sl].shape
        ph = np.exp(1j * rng.uniform(0, 2 * np.pi, shape))
        rfi[sl] += amp * ph * rng.uniform(0.7, 1.3, shape)
        mask[sl] = True

    # persistent narrow-band lines on all baselines
    for c in rng.choice(nc, 2, replace=False):
        add((slice(None), slice(None), c), 8 * sig)
    # intermittent line over a few integrations
    c = int(rng.integers(nc))
    t0 = int(rng.integers(0, nt - 6))
    add((slice(t0, t0 + 6), slice(None), c), 15 * sig)
    # broadband bursts, one integration
    for t in rng.choice(nt, 2, replace=False):
        add((t, slice(None), slice(None)), 6 * sig)
    # isolated spikes on random samples
    n_spikes = max(1, nt * nb * nc // 500)
    it = rng.integers(0, nt, n_spikes)
    ib = rng.integers(0, nb, n_spikes)
    ic = rng.integers(0, nc, n_spikes)
    for t, b, c in zip(it, ib, ic, strict=True):
        add((t, b, c), rng.uniform(10, 50) * sig)
    s.vis = s.vis + rfi
    s.rfi_mask = mask
    return s
