"""Flags and weights of one chunk on their way to the MS, in one pass.

Pure numpy (numba when present); no I/O. Per chunk of (rows, chans, pols) flags and
nsamples this puts the channels in output order, derives the per-row weight (the
median over channels of nsamples, as pyuvdata's ``write_ms`` does; a copy of the first
channel when nsamples do not vary over channels, which is then exact) and whether a row
is flagged in every channel and polarization.
"""

from __future__ import annotations

import numpy as np

try:  # optional accelerator: one pass instead of several numpy passes
    import numba as _numba
except ImportError:  # pragma: no cover - numpy fallback
    _numba = None


def _pass_py(flags: np.ndarray, ns: np.ndarray, flip: bool, flags_out: np.ndarray,
             weights_out: np.ndarray, write_weights: bool, row_weight: np.ndarray,
             all_flagged: np.ndarray) -> bool:
    """Reference loop (compiled with numba when present); returns channel uniformity."""
    n, nf, npol = flags.shape
    uniform = True
    for r in range(n):
        every = True
        same = True
        for j in range(nf):
            src = nf - 1 - j if flip else j
            for q in range(npol):
                f = flags[r, src, q]
                flags_out[r, j, q] = f
                every = every and f
                same = same and ns[r, src, q] == ns[r, 0, q]
        if write_weights:
            for j in range(nf):
                src = nf - 1 - j if flip else j
                for q in range(npol):
                    weights_out[r, j, q] = ns[r, src, q]
        for q in range(npol):
            row_weight[r, q] = ns[r, 0, q]
        all_flagged[r] = every
        uniform = uniform and same
    return uniform


_pass = _numba.njit(cache=True, nogil=True)(_pass_py) if _numba else None


def flags_and_weights(flags: np.ndarray, nsamples: np.ndarray, *, flip: bool = False,
                      flags_out: np.ndarray | None = None,
                      weights_out: np.ndarray | None = None,
                      want_weights: bool = True
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, bool]:
    """(flags, weights, row_weight, all_flagged, uniform) of a chunk.

    ``flags`` (bool) and ``nsamples`` (float32) are (rows, chans, pols); with ``flip`` the
    channel axis is reversed. ``weights`` (= nsamples in output order) is returned only
    with ``want_weights``. ``row_weight`` (rows, pols) is the median over channels,
    ``all_flagged`` (rows,) whether every value of a row is flagged, and ``uniform``
    whether nsamples is constant over channels in every row and polarization.
    ``flags_out``/``weights_out`` are reused buffers of at least ``rows`` rows.
    """
    n = flags.shape[0]
    shape = flags.shape
    fo = np.empty(shape, bool) if flags_out is None else flags_out[:n]
    wo = (np.empty(shape, np.float32) if weights_out is None else weights_out[:n]) \
        if want_weights else np.empty((1, 1, 1), np.float32)
    row_weight = np.empty((n, shape[2]), np.float32)
    all_flagged = np.empty(n, bool)
    if _pass is not None and flags.dtype == np.bool_ and nsamples.dtype == np.float32:
        uniform = bool(_pass(flags, nsamples, flip, fo, wo, want_weights, row_weight,
                             all_flagged))
    else:
        src_f = flags[:, ::-1] if flip else flags
        src_w = nsamples[:, ::-1] if flip else nsamples
        np.copyto(fo, src_f)
        if want_weights:
            np.copyto(wo, src_w)
        row_weight[:] = src_w[:, 0, :]
        uniform = bool((src_w == src_w[:, :1, :]).all())
        all_flagged[:] = flags.reshape(n, -1).all(axis=1)
    if not uniform:
        row_weight = np.median(nsamples, axis=1).astype(np.float32)
    return fo, (wo if want_weights else None), row_weight, all_flagged, uniform


__all__ = ["flags_and_weights"]
