"""Antenna delays from per-channel gains: the phase slope over frequency (a pure numpy
kernel, used by :func:`.solve.solve_calibrator` on the bandpass)."""

from __future__ import annotations

import numpy as np


def fit_delays(gains: np.ndarray, flags: np.ndarray, freqs: np.ndarray,
               oversample: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Delay (s) and phase at the first channel of per-channel gains ``(..., n_chan)``.

    A zero-padded FFT finds the coarse delay, a weighted linear fit of the unwrapped
    residual phase refines it. Returns (delay, phase0) of shape ``gains.shape[:-1]``.
    """
    freqs = np.asarray(freqs, float)
    n = len(freqs)
    df = float(np.median(np.diff(freqs))) if n > 1 else 1.0
    w = (~flags & (np.abs(gains) > 0)).astype(float)
    z = np.where(w > 0, gains / np.where(w > 0, np.abs(gains), 1), 0)
    # positions on a regular channel grid (frequencies may have gaps)
    k = np.rint((freqs - freqs[0]) / df).astype(int)
    nfft = int(2 ** np.ceil(np.log2(max(k.max() + 1, 2) * oversample)))
    grid = np.zeros(z.shape[:-1] + (nfft,), complex)
    grid[..., k] = z
    spec = np.abs(np.fft.fft(grid, axis=-1))  # Σ z_n e^{-2πi k n / N} peaks at k/N = τ Δν
    peak = np.argmax(spec, axis=-1)
    lag = np.fft.fftfreq(nfft, d=df)
    tau0 = lag[peak]
    # refine: residual phase is nearly flat; fit a line (weighted)
    rot = z * np.exp(-2j * np.pi * tau0[..., None] * (freqs - freqs[0]))
    phase = np.angle(rot)
    x = freqs - freqs[0]
    sw = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(-1) / sw
        # unwrap around the mean phasor first
        ref = np.angle((w * rot).sum(-1))
        phase = np.angle(rot * np.exp(-1j * ref[..., None])) + ref[..., None]
        my = (w * phase).sum(-1) / sw
        sxx = (w * (x - mx[..., None]) ** 2).sum(-1)
        sxy = (w * (x - mx[..., None]) * (phase - my[..., None])).sum(-1)
        slope = np.where(sxx > 0, sxy / sxx, 0.0)
    tau = tau0 + slope / (2 * np.pi)
    phi0 = np.angle(np.exp(1j * (my - slope * mx)))
    bad = sw < 2
    return np.where(bad, 0.0, tau), np.where(bad, 0.0, phi0)


__all__ = ["fit_delays"]
