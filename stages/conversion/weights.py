"""Flags and weights of one chunk on their way to the MS, in one pass.

Pure numpy (numba when present); no I/O. Per chunk of (rows, chans, pols) flags and
nsamples this puts the channels in output order, derives the per-row weight (the
median over channels of nsamples, as pyuvdata's ``write_ms`` does; a copy of the first
channel when nsamples do not vary over channels, which is then exact) and whether a row
is flagged in every channel and polarization.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class ScreenCounts:
    """What :func:`screen_chunk` found and flagged in one file (summed over chunks)."""

    bad_nsamples: int = 0  # unflagged samples with nsamples <= 0 or non-finite: flagged
    #: The value nsamples holds everywhere in the file's first chunk when that value is
    #: impossible (<= 0): the writer did not record nsamples; unit weights are used.
    unrecorded: float | None = None
    absurd: int = 0  # unflagged samples with |V| above the limit: flagged
    zero_chunks: int = 0  # chunks whose visibilities are all exactly zero: flagged
    chunks: int = 0

    @property
    def dead(self) -> bool:
        """Every visibility of the file is exactly zero (a dead subband)."""
        return self.chunks > 0 and self.zero_chunks == self.chunks


def reference_amplitude(vis: np.ndarray, flags: np.ndarray) -> float:
    """Median |V| of the unflagged samples of a chunk (0 when there are none)."""
    good = vis[~flags]
    if good.size == 0:
        return 0.0
    return float(np.median(np.abs(good[:: max(1, good.size // 200_000)])))


def screen_chunk(vis: np.ndarray, flags: np.ndarray, nsamples: np.ndarray,
                 max_amplitude: float, counts: ScreenCounts) -> None:
    """Flag impossible samples of a chunk in place and count them in ``counts``.

    - nsamples <= 0 or non-finite: the sample is flagged and its nsamples set to 0, so
      no negative weight reaches the MS; but when the first chunk holds one such value
      everywhere (a writer that never filled nsamples, e.g. -1.2e12 in ATA files), that
      value means "unrecorded" in the whole file and becomes 1 (``counts.unrecorded``);
    - |V| > ``max_amplitude`` (e.g. 1e6 x the median): flagged;
    - a chunk whose visibilities are all exactly zero: flagged entirely (no information).

    Fast path: three reductions when nothing is wrong.
    """
    first = counts.chunks == 0
    counts.chunks += 1
    if not nsamples.size:
        return
    if counts.unrecorded is not None or not float(nsamples.min()) > 0.0:  # NaN too
        v0 = float(nsamples.flat[0])
        if first and not v0 > 0.0 and np.isfinite(v0) and bool((nsamples == v0).all()):
            counts.unrecorded = v0  # one impossible value everywhere: never recorded
        if counts.unrecorded is not None:
            nsamples[nsamples == counts.unrecorded] = 1.0
        bad = ~(nsamples > 0)
        counts.bad_nsamples += int(np.count_nonzero(bad & ~flags))
        flags |= bad
        nsamples[bad] = 0.0
    comp = vis.view(np.float32)
    peak = max(float(comp.max()), -float(comp.min()))
    if peak == 0.0:
        counts.zero_chunks += 1
        flags[...] = True
        return
    if np.isfinite(max_amplitude) and peak * np.sqrt(2.0) > max_amplitude:
        absurd = np.abs(vis) > max_amplitude
        counts.absurd += int(np.count_nonzero(absurd & ~flags))
        flags |= absurd


__all__ = ["flags_and_weights", "screen_chunk", "reference_amplitude", "ScreenCounts"]
