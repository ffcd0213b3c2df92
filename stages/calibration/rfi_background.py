"""The smooth background of the RFI passes: a masked Gaussian in time and frequency
(samples of zero weight ignored, "nearest" edges), computed on a grid decimated in
frequency with the variance of the requested Gaussian (see :mod:`.rfi_kernels`)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .rfi_kernels import decimated_gaussian, smooth_plane


def _time_kernel(n: int, sigma: float) -> np.ndarray:
    """The Gaussian smoothing along an axis of length ``n`` as an (n, n) matrix
    ("nearest" edges, truncated at 3σ); row i holds the weights of output i."""
    return gaussian_filter1d(np.eye(n), sigma, axis=0, mode="nearest", truncate=3.0)


def _gauss_taps(sigma: float) -> np.ndarray:
    """The taps of a Gaussian truncated at 3σ (as scipy's ``gaussian_filter1d``)."""
    r = int(3.0 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=float)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def masked_smooth(values: np.ndarray, weights: np.ndarray, sigma_time: float,
                  sigma_chan: float) -> np.ndarray:
    """Smooth background of ``values`` (n_time, n_bl, n_chan, n_pol) ignoring samples of
    zero weight, along axes 0 and 2: the kernel of :func:`.rfi.flag_rfi` (a Gaussian of
    ``sigma_time`` integrations and ``sigma_chan`` channels, computed on a decimated
    grid; "nearest" edges), 0 where no weight is near. Returns float32."""
    nt, nb, nc, npol = values.shape
    dec, ktime, taps = background_smoothing(nt, nc, sigma_time, sigma_chan)
    ncc = (nc + dec - 1) // dec
    r = (taps.size - 1) // 2
    work = [np.empty((nt, (ncc + (2 * r if k > 1 else 0)) * npol), np.float32)
            for k in range(4)]
    out = np.empty(values.shape, np.float32)
    for b in range(nb):
        amp = np.ascontiguousarray(values[:, b], np.float32).reshape(nt, nc * npol)
        w = np.ascontiguousarray(weights[:, b], np.float32).reshape(nt, nc * npol)
        bg = np.empty((nt, nc * npol), np.float32)
        smooth_plane(amp, w, npol, dec, ktime, taps, *work, bg)
        out[:, b] = bg.reshape(nt, nc, npol)
    return out


def background_smoothing(nt: int, nc: int, sigma_time: float, sigma_chan: float
                         ) -> tuple[int, np.ndarray, np.ndarray]:
    """(decimation, time matrix, coarse frequency taps) of the background smoothing."""
    ktime = (_time_kernel(nt, sigma_time) if sigma_time > 0 and nt > 1
             else np.eye(nt)).astype(np.float32)
    if sigma_chan <= 0 or nc < 2:
        return 1, ktime, np.ones(1, np.float32)
    dec, sig_c = decimated_gaussian(sigma_chan)
    if nc < 4 * dec:
        dec, sig_c = 1, sigma_chan
    taps = _gauss_taps(sig_c) if sig_c > 0.05 else np.ones(1)
    return dec, ktime, taps.astype(np.float32)


__all__ = ["masked_smooth", "background_smoothing"]
