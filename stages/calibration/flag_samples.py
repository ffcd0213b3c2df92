"""Flags of single samples: bad samples (exact zeros, NaN/Inf), autocorrelations, and
channels of known RFI. Cubes ``(n_time, n_bl, n_chan, n_pol)`` with baseline antennas
``ant1``/``ant2`` (n_bl,); flags are booleans of the cube's shape (True = flagged).
Pure numpy/numba, no I/O."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def _bad_samples(vis, flags, auto, out):  # pragma: no cover
    nt, nb, nc, npol = vis.shape
    for t in numba.prange(nt):
        for b in range(nb):
            for c in range(nc):
                for p in range(npol):
                    v = vis[t, b, c, p]
                    bad = not (np.isfinite(v.real) and np.isfinite(v.imag)) or (
                        v.real == 0 and v.imag == 0)
                    out[t, b, c, p] = flags[t, b, c, p] or bad or auto[b]


def writable_bool(a: np.ndarray) -> bool:
    """Whether ``a`` can take flags in place: a writeable C-contiguous boolean array."""
    return a.dtype == np.bool_ and a.flags.c_contiguous and a.flags.writeable


def flag_bad_samples(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                     *, flag_autos: bool = True, inplace: bool = False) -> np.ndarray:
    """Flags plus exact zeros, NaN/Inf and (optionally) autocorrelations. Returns a new array
    (``flags`` itself, updated, with ``inplace``)."""
    _check_cube(vis, flags, ant1, ant2)
    auto = (np.asarray(ant1) == np.asarray(ant2)) if flag_autos else \
        np.zeros(vis.shape[1], bool)
    out = flags if inplace and writable_bool(flags) else np.empty(vis.shape, dtype=bool)
    _bad_samples(vis, flags, auto, out)
    return out


def channel_mask(freqs: np.ndarray, rfi_freqs: tuple[float, ...] | np.ndarray = (),
                 channel_width: float | None = None,
                 rfi_channels: tuple[int, ...] | np.ndarray = ()) -> np.ndarray:
    """Boolean mask over channels hit by known RFI.

    ``rfi_freqs`` (Hz) flag every channel whose extent (centre ± width/2) contains one of
    them; ``rfi_channels`` are channel indices flagged directly.
    """
    freqs = np.asarray(freqs, dtype=float)
    mask = np.zeros(freqs.shape, dtype=bool)
    if len(freqs) == 0:
        return mask
    if channel_width is None:
        channel_width = float(np.median(np.abs(np.diff(freqs)))) if len(freqs) > 1 else 1.0
    half = abs(channel_width) / 2.0
    for f in np.atleast_1d(np.asarray(rfi_freqs, dtype=float)):
        mask |= np.abs(freqs - f) <= half
    idx = np.atleast_1d(np.asarray(rfi_channels, dtype=int))
    if idx.size:
        if np.any((idx < -len(freqs)) | (idx >= len(freqs))):
            raise ValueError(f"RFI channel index out of range 0..{len(freqs) - 1}: {idx}")
        mask[idx] = True
    return mask


def _check_cube(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray
                ) -> None:
    if vis.ndim != 4:
        raise ValueError(f"visibilities must be (n_time, n_bl, n_chan, n_pol), got {vis.shape}")
    if flags.shape != vis.shape:
        raise ValueError(f"flags shape {flags.shape} != visibility shape {vis.shape}")
    if np.shape(ant1) != (vis.shape[1],) or np.shape(ant2) != (vis.shape[1],):
        raise ValueError("ant1/ant2 must have one entry per baseline")


__all__ = ["flag_bad_samples", "channel_mask", "writable_bool"]
