"""Flagging kernels: bad samples, known RFI channels, SumThreshold RFI detection, dead antennas.

All functions work on visibility cubes of shape ``(n_time, n_bl, n_chan, n_pol)`` with the
baseline antenna indices ``ant1``/``ant2`` of shape ``(n_bl,)``; flags are boolean arrays of
the same shape (True = flagged). Nothing here does I/O.

RFI detection (:func:`flag_rfi`) follows the SumThreshold idea (Offringa et al. 2010):

1. very strong RFI is pre-flagged from the baseline-median amplitude per (time, channel),
   compared with a robust smooth model (running medians), so that it cannot bias the
   backgrounds below;
2. per baseline, a smooth background (Gaussian filter in time and frequency, ignoring
   flagged samples) is removed from the amplitudes, the residual is scaled by a robust (MAD)
   noise per baseline and polarisation, and runs of M samples whose mean exceeds
   ``χ1 / ρ^log2(M)`` are flagged along time and frequency, M = 1, 2, 4, …; this is
   repeated with the previous flags kept out of the background, the flags being derived
   afresh each time (thresholds 2χ1 then χ1); between the passes, cells flagged on most
   baselines are flagged on all, so that they stay out of every background;
3. the baseline-averaged residual is searched for weak RFI common to all baselines;
4. cells flagged on most baselines, and channels/integrations mostly flagged, are
   flagged whole.

The per-baseline passes are fused numba kernels (:mod:`.rfi_kernels`: one baseline's
plane at a time, in cache; loops vectorised along contiguous axes) run on blocks of
baselines in threads; the result does not depend on the block size or the number of
threads. The smooth background is computed on a grid decimated in frequency (see
:mod:`.rfi_kernels`), with the variance of the requested Gaussian.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import gaussian_filter1d

from dsa110_pipeline.threads import set_numba_threads

from .rfi_kernels import (
    MAD_TO_SIGMA,
    changed_baselines,
    decimated_gaussian,
    mad_of,
    rfi_block,
    smooth_plane,
    st_lines,
    st_work,
    take_baselines,
)

#: Most samples per (baseline, polarisation) in the MAD noise estimate of the RFI passes
#: (evenly spread over the plane; the estimate's relative error is about 1.7/sqrt(n)).
MAD_MAX_SAMPLES = 2048
#: Most baselines (evenly spread) in the baseline median of the strong-RFI prefilter.
PREFILTER_MAX_BASELINES = 1024


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


def _writable_bool(a: np.ndarray) -> bool:
    return a.dtype == np.bool_ and a.flags.c_contiguous and a.flags.writeable


def flag_bad_samples(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                     *, flag_autos: bool = True, inplace: bool = False) -> np.ndarray:
    """Flags plus exact zeros, NaN/Inf and (optionally) autocorrelations. Returns a new array
    (``flags`` itself, updated, with ``inplace``)."""
    _check_cube(vis, flags, ant1, ant2)
    auto = (np.asarray(ant1) == np.asarray(ant2)) if flag_autos else \
        np.zeros(vis.shape[1], bool)
    out = flags if inplace and _writable_bool(flags) else np.empty(vis.shape, dtype=bool)
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
    zero weight, along axes 0 and 2: the kernel of :func:`flag_rfi` (a Gaussian of
    ``sigma_time`` integrations and ``sigma_chan`` channels, computed on a decimated
    grid; "nearest" edges), 0 where no weight is near. Returns float32."""
    nt, nb, nc, npol = values.shape
    dec, ktime, taps = _smoothing(nt, nc, sigma_time, sigma_chan)
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


def _smoothing(nt: int, nc: int, sigma_time: float, sigma_chan: float
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


def robust_sigma(values: np.ndarray, flags: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """MAD-based standard deviation over ``axis`` of the unflagged values (NaN when none),
    with the reduced axes kept (size 1)."""
    axis = tuple(a % values.ndim for a in axis)
    keep = [a for a in range(values.ndim) if a not in axis]
    order = keep + list(axis)
    v = np.ascontiguousarray(np.transpose(values, order), dtype=np.float64)
    f = np.ascontiguousarray(np.transpose(flags, order))
    n_keep = int(np.prod([values.shape[a] for a in keep])) if keep else 1
    sig = _mad_lines(v.reshape(n_keep, -1), f.reshape(n_keep, -1)) * MAD_TO_SIGMA
    shape = [1 if a in axis else values.shape[a] for a in range(values.ndim)]
    return sig.reshape(shape)


@numba.njit(cache=True, nogil=True)
def _mad_lines(v: np.ndarray, f: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.full(v.shape[0], np.nan)
    buf = np.empty(v.shape[1])
    for i in range(v.shape[0]):
        k = 0
        for j in range(v.shape[1]):
            if not f[i, j] and np.isfinite(v[i, j]):
                buf[k] = v[i, j]
                k += 1
        out[i] = mad_of(buf, k)
    return out


def _windows(threshold: float, rho: float, max_window: int) -> tuple[np.ndarray, np.ndarray]:
    windows = (2 ** np.arange(int(np.log2(max(max_window, 1))) + 1)).astype(np.int64)
    chis = (threshold / rho ** np.log2(windows)).astype(np.float32)
    return windows, chis


def sumthreshold(x: np.ndarray, flags: np.ndarray, *, threshold: float = 6.0,
                 rho: float = 1.5, max_window: int = 32, axes: tuple[int, ...] = (0, 2),
                 positive_only: bool = False) -> np.ndarray:
    """SumThreshold on a normalised residual ``x`` (noise σ = 1) along ``axes``: excursions of
    both signs, or only positive ones with ``positive_only``.

    A window of M samples is flagged when the mean of its unflagged samples exceeds
    ``threshold / rho**log2(M)``, for M = 1, 2, 4, … ``max_window``. Returns the updated
    flags (a new array).
    """
    windows, chis = _windows(threshold, rho, max_window)
    out = np.array(flags, dtype=bool, copy=True, order="C")
    for axis in axes:
        xs = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), axis, 0))
        fs = np.ascontiguousarray(np.moveaxis(out, axis, 0))
        n = xs.shape[0]
        x2, f2 = xs.reshape(n, -1), fs.reshape(n, -1)
        st_lines(x2, f2, windows, chis, positive_only, *st_work(n, x2.shape[1]))
        out = np.ascontiguousarray(np.moveaxis(fs, 0, axis))
    return out


@dataclass(frozen=True)
class RFIParams:
    """Parameters of :func:`flag_rfi`."""

    threshold: float = 6.0          #: χ1, in σ, for a single sample
    rho: float = 1.5                #: SumThreshold threshold decrease per doubling of M
    max_window: int = 32            #: largest window M (samples)
    sigma_time: float = 3.0         #: background smoothing, integrations
    sigma_chan: float = 4.0         #: background smoothing, channels
    iterations: int = 2             #: background re-estimates (thresholds 2x→1x of χ1)
    combined: bool = True           #: also test the baseline-averaged residual
    combined_factor: float = 1.5    #: its threshold, in units of ``threshold``
    combined_max_window: int = 8    #: its largest SumThreshold window
    combined_max_baselines: int = 256  #: its noise floor is that of this many baselines
    prefilter: bool = True          #: pre-flag very strong RFI from the baseline median
    prefilter_threshold: float = 8.0
    grow_fraction: float = 0.5      #: flag a (time, chan) everywhere if this fraction of
    #: baselines flagged it
    grow_axis_fraction: float = 0.8  #: flag a whole channel/integration above this fraction
    #: Fraction of the smooth background amplitude added (in quadrature) to the noise:
    #: where a bright source dominates, gain and bandpass structure finer than the
    #: smoothing (not the thermal noise) limits the residual, so thresholds scale with the
    #: signal; 0: thermal noise only (thresholds in σ whatever the SNR).
    model_tolerance: float = 0.03
    #: Where the source dominates (median amplitude / thermal σ of the cross-correlations
    #: at least this), the per-baseline passes run on the amplitudes divided by an
    #: antenna-based model |g_p||g_q| fitted per (time, channel, polarisation) over the
    #: baselines: the source and its gain and bandpass structure (antenna-based, however
    #: fine) are removed, so thresholds are in thermal σ (``model_tolerance`` is not
    #: applied there) whatever the SNR, and RFI (baseline-dependent) stands out. Needs the
    #: baselines' antennas (``flag_rfi(..., ant1=, ant2=)``) and at least 4 antennas; 0: off.
    antenna_model_snr: float = 10.0


def _running_median(x: np.ndarray, size: int) -> np.ndarray:
    """Running median of a 1-d series (NaN ignored, edges use the samples available)."""
    n = x.size
    half = size // 2
    out = np.empty(n)
    for i in range(n):
        w = x[max(0, i - half):i + half + 1]
        w = w[np.isfinite(w)]
        out[i] = np.median(w) if w.size else np.nan
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _median_plane(vis, flags, bsel, plane):  # pragma: no cover
    """Median amplitude over the baselines ``bsel`` and polarisations per (time, chan)."""
    nt, _, nc, npol = vis.shape
    for t in numba.prange(nt):
        buf = np.empty((nc, bsel.size * npol))
        cnt = np.zeros(nc, np.int64)
        for bi in range(bsel.size):
            b = bsel[bi]
            for c in range(nc):
                for p in range(npol):
                    if not flags[t, b, c, p]:
                        a = abs(vis[t, b, c, p])
                        if np.isfinite(a):
                            buf[c, cnt[c]] = a
                            cnt[c] += 1
        for c in range(nc):
            plane[t, c] = np.median(buf[c, :cnt[c]]) if cnt[c] > 0 else np.nan


def strong_rfi_cells(vis: np.ndarray, flags: np.ndarray, threshold: float = 8.0,
                     tolerance: float = 0.0) -> np.ndarray:
    """Cells (time, channel) hit by RFI strong enough to stand out in the baseline median.

    The median amplitude over baselines (at most :data:`PREFILTER_MAX_BASELINES`, evenly
    spread) and polarisations per (time, channel) is modelled as a channel shape times a
    time shape (medians), and cells deviating by more than ``threshold`` robust σ (MAD)
    upwards are returned (n_time, n_chan); ``tolerance`` × the model is added to σ in
    quadrature (see ``RFIParams.model_tolerance``). This keeps very strong bursts and lines
    from biasing the smooth backgrounds of :func:`flag_rfi`.
    """
    nb = vis.shape[1]
    bsel = np.unique(np.linspace(0, nb - 1, min(nb, PREFILTER_MAX_BASELINES)).astype(np.int64))
    plane = np.empty((vis.shape[0], vis.shape[2]))
    _median_plane(vis, flags, bsel, plane)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # robust, smooth shapes: running medians reject lines and bursts a few samples wide
        shape_c = _running_median(np.nanmedian(plane, axis=0), 9)[None, :]
        shape_t = _running_median(np.nanmedian(plane / shape_c, axis=1), 5)[:, None]
        model = shape_c * shape_t
        resid = plane - model
        med = np.nanmedian(resid)
        sig = MAD_TO_SIGMA * np.nanmedian(np.abs(resid - med))
    if not np.isfinite(sig) or sig <= 0:
        return np.zeros(plane.shape, bool)
    # RFI adds power: only cells above the model count
    sig_eff = np.sqrt(sig * sig + (tolerance * model) ** 2) if tolerance > 0 else sig
    return np.nan_to_num((resid - med) / sig_eff, nan=0.0) > threshold


@numba.njit(cache=True, nogil=True, parallel=True)
def _cell_counts(flags):  # pragma: no cover
    """Flagged samples per (time, chan) over baselines and polarisations."""
    nt, nb, nc, npol = flags.shape
    out = np.zeros((nt, nc), np.int64)
    for t in numba.prange(nt):
        for b in range(nb):
            for c in range(nc):
                for p in range(npol):
                    if flags[t, b, c, p]:
                        out[t, c] += 1
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _or_cells(flags, cells):  # pragma: no cover
    """flags[t, b, c, :] |= cells[t, c] in place."""
    nt, nb, nc, npol = flags.shape
    for t in numba.prange(nt):
        for c in range(nc):
            if cells[t, c]:
                for b in range(nb):
                    for p in range(npol):
                        flags[t, b, c, p] = True


@numba.njit(cache=True, nogil=True, parallel=True)
def _or_plane_joint(flags, plane):  # pragma: no cover
    """flags |= plane[t, c, p] (broadcast over baselines), then polarisations together."""
    nt, nb, nc, npol = flags.shape
    for t in numba.prange(nt):
        for b in range(nb):
            for c in range(nc):
                hit = False
                for p in range(npol):
                    hit = hit or flags[t, b, c, p] or plane[t, c, p]
                if hit:
                    for p in range(npol):
                        flags[t, b, c, p] = True


#: Above this fraction of baselines whose flags the first pass changed, ``flag_rfi`` runs
#: its second pass plainly instead of redoing those baselines.
REUSE_MAX_CHANGED = 0.25


def source_snr(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray
               ) -> float:
    """Median amplitude over thermal σ of the unflagged cross-correlations; σ from the
    differences of adjacent channels (MAD of their real and imaginary parts / √2), at most
    64 baselines (evenly spread)."""
    cross = np.flatnonzero(np.asarray(ant1) != np.asarray(ant2))
    if cross.size == 0 or vis.shape[2] < 2:
        return 0.0
    sel = cross[np.unique(np.linspace(0, cross.size - 1, min(cross.size, 64)).astype(int))]
    v, f = vis[:, sel], flags[:, sel]
    d = v[:, :, 1:] - v[:, :, :-1]
    ok = ~(f[:, :, 1:] | f[:, :, :-1]) & np.isfinite(d)
    amp = np.abs(v[~f & np.isfinite(v)])
    if not ok.any() or amp.size == 0:
        return 0.0
    parts = np.concatenate([d.real[ok], d.imag[ok]])
    sig = MAD_TO_SIGMA * np.median(np.abs(parts - np.median(parts))) / np.sqrt(2.0)
    return float(np.median(amp) / sig) if sig > 0 else float("inf")


def antenna_amplitude_factors(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray,
                              ant2: np.ndarray, n_ant: int, iterations: int = 6
                              ) -> np.ndarray:
    """1 / (antenna amplitude) per (time, antenna, channel, polarisation), float32: the
    least-squares fit log|V_pq| = α_p + α_q over the unflagged cross-correlations of each
    (time, channel, polarisation) (damped Jacobi iterations from α = half the mean); 1
    where an antenna has no data."""
    from scipy import sparse

    nt, nb, nc, npol = vis.shape
    a1, a2 = np.asarray(ant1, np.int64), np.asarray(ant2, np.int64)
    cross = (a1 != a2).astype(np.float32)
    cols = np.arange(nb)
    m1 = sparse.csr_matrix((cross, (a1, cols)), shape=(n_ant, nb))
    m2 = sparse.csr_matrix((cross, (a2, cols)), shape=(n_ant, nb))
    out = np.ones((nt, n_ant, nc, npol), np.float32)
    m = nc * npol
    for t in range(nt):
        a = np.abs(vis[t]).reshape(nb, m).astype(np.float32)
        w = (~flags[t].reshape(nb, m) & np.isfinite(a) & (a > 0)).astype(np.float32)
        lg = np.log(np.where(w > 0, a, 1.0)) * w
        den = m1 @ w + m2 @ w
        num = m1 @ lg + m2 @ lg
        has = den > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = np.where(has, 0.5 * num / np.where(has, den, 1.0), 0.0)
            for _ in range(iterations):
                other = m1 @ (w * alpha[a2]) + m2 @ (w * alpha[a1])
                new = np.where(has, (num - other) / np.where(has, den, 1.0), 0.0)
                alpha = 0.5 * (alpha + new)
        out[t] = np.where(has, np.exp(-alpha), 1.0).reshape(n_ant, nc, npol)
    return out


def flag_rfi(vis: np.ndarray, flags: np.ndarray, params: RFIParams | None = None, *,
             bl_chunk: int = 64, nthreads: int = 1, reuse: bool = True,
             inplace: bool = False, ant1: np.ndarray | None = None,
             ant2: np.ndarray | None = None) -> np.ndarray:
    """Robust per-baseline RFI flags (new array) for a cube ``(n_time, n_bl, n_chan, n_pol)``.

    With ``inplace`` the input ``flags`` serve as scratch (they may gain the strong-RFI
    prefilter's flags) instead of being copied: one cube of booleans less.

    Works on amplitudes, ``bl_chunk`` baselines per task (``nthreads`` tasks at once);
    polarisations are flagged together. After the per-baseline passes, the
    baseline-averaged residual is tested too. ``reuse`` (two passes) lets the first pass
    also search its residual with the second pass's thresholds, so that the second pass
    is redone only where the flags changed; the result is the same.

    With the baselines' antennas ``ant1``/``ant2``, data where the source dominates (see
    ``RFIParams.antenna_model_snr``) are searched against an antenna-based amplitude model
    (:func:`antenna_amplitude_factors`) with thermal-σ thresholds.
    """
    p = params or RFIParams()
    if vis.ndim != 4 or flags.shape != vis.shape:
        raise ValueError(f"vis and flags must have the same 4-d shape, got {vis.shape} "
                         f"and {flags.shape}")
    nt, nb, nc, npol = vis.shape
    set_numba_threads(nthreads)
    fin = flags if inplace and _writable_bool(flags) else np.array(flags, dtype=bool, order="C")
    if p.prefilter and nb > 1:
        strong = strong_rfi_cells(vis, fin, p.prefilter_threshold, p.model_tolerance)
        _or_cells(fin, strong)
    cur = fin.copy()
    gf = np.zeros((0, 0, 0, 0), np.float32)
    a1 = np.zeros(nb, np.int64) if ant1 is None else np.asarray(ant1, np.int64)
    a2 = np.zeros(nb, np.int64) if ant2 is None else np.asarray(ant2, np.int64)
    tol = p.model_tolerance
    if ant1 is not None and ant2 is not None and p.antenna_model_snr > 0:
        n_ant = int(max(a1.max(), a2.max())) + 1
        present = np.unique(np.concatenate([a1[a1 != a2], a2[a1 != a2]]))
        if present.size >= 4 and source_snr(vis, fin, a1, a2) >= p.antenna_model_snr:
            gf = antenna_amplitude_factors(vis, fin, a1, a2, n_ant)
            tol = 0.0
    dec, ktime, taps = _smoothing(nt, nc, p.sigma_time, p.sigma_chan)
    factors = list(np.linspace(2.0, 1.0, p.iterations)) if p.iterations > 1 else [1.0]
    sets = [_windows(p.threshold * f, p.rho, p.max_window) for f in factors]
    none = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    no_cube = np.zeros((0, 0, 0, 0), bool)

    def run(v, f_in, c_out, set1, set2, cand, want_x, bls=None):
        """One pass over the cube ``v`` (the baselines ``bls`` of ``vis``, default all) in
        blocks of baselines; returns (xsum, xcnt)."""
        n = v.shape[1]
        b1, b2 = (a1, a2) if bls is None else (a1[bls], a2[bls])

        def block(b0: int):
            xs = np.zeros((nt, nc, npol))
            xc = np.zeros((nt, nc, npol))
            rfi_block(v, f_in, c_out, b0, min(b0 + bl_chunk, n), dec, ktime, taps,
                      MAD_MAX_SAMPLES, *set1, *set2, cand, want_x, xs, xc,
                      np.float32(tol), gf, b1, b2)
            return xs, xc

        starts = list(range(0, n, max(1, bl_chunk)))
        if nthreads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(nthreads) as pool:
                results = list(pool.map(block, starts))
        else:
            results = [block(b0) for b0 in starts]
        xs = np.zeros((nt, nc, npol))
        xc = np.zeros((nt, nc, npol))
        for a, c in results:
            xs += a
            xc += c
        return xs, xc

    if len(sets) == 2 and reuse:
        # the second pass equals the first pass's residual searched with the second
        # thresholds wherever the weights did not change (most baselines): both searches
        # run in the first pass; only the baselines whose flags changed are redone
        cand = np.empty_like(fin)
        xsum, xcnt = run(vis, fin, cur, sets[0], sets[1], cand, True)
        _grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
        changed = changed_baselines(cur, fin)
        idx = np.flatnonzero(changed)
        if idx.size > REUSE_MAX_CHANGED * changed.size:
            # most baselines changed (broadband RFI): a plain second pass over the cube is
            # cheaper than redoing them on copies (and the same)
            del cand
            xsum, xcnt = run(vis, fin, cur, sets[1], none, no_cube, True)
        else:
            take_baselines(cur, cand, ~changed)
            del cand
            if idx.size:
                v_s, f_s = vis[:, idx], fin[:, idx]
                xs_old, xc_old = run(v_s, f_s, f_s.copy(), sets[0], sets[1],
                                     np.empty_like(f_s), True, idx)
                c_s = cur[:, idx]
                xs_new, xc_new = run(v_s, f_s, c_s, sets[1], none, no_cube, True, idx)
                cur[:, idx] = c_s
                xsum += xs_new - xs_old
                xcnt += xc_new - xc_old
        _grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
    else:
        for k, set_k in enumerate(sets):
            last = k == len(sets) - 1
            xsum, xcnt = run(vis, fin, cur, set_k, none, no_cube, last)
            _grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
    if p.combined and nb > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(xcnt > 0, xsum / xcnt, 0.0)[:, None]
        comb = _combined_flags(mean, xcnt[:, None] == 0, p)[:, 0]
        _or_plane_joint(cur, comb)
        _grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
    return cur


def _combined_flags(mean: np.ndarray, cell_flags: np.ndarray, p: RFIParams) -> np.ndarray:
    """SumThreshold (positive excursions) on the baseline-averaged residual plane
    (n_time, 1, n_chan, n_pol); returns flags of the same shape.

    Its noise is tiny, so any smooth structure left by the per-baseline backgrounds would
    be "detected": lines (narrow in frequency) are searched along time after removing a
    running median across 5 channels, bursts (narrow in time) along frequency after
    removing a running median over 5 integrations.
    """
    from scipy.ndimage import median_filter

    fill = np.where(cell_flags, np.nan, mean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        col = np.nanmedian(fill, axis=0, keepdims=True)
    fill = np.where(cell_flags, np.nan_to_num(col), mean)
    out = np.zeros(mean.shape, bool)
    for size, axis in (((1, 1, 5, 1), 0), ((5, 1, 1, 1), 2)):
        resid = fill - median_filter(fill, size=size, mode="nearest")
        sig = robust_sigma(resid, cell_flags, axis=(0, 2))
        # never more sensitive than an average over ``combined_max_baselines`` baselines
        # (x is in units of the per-baseline noise): with thousands of baselines the plane
        # shows percent-level structure of the backgrounds, not RFI
        sig = np.maximum(sig, 1.0 / np.sqrt(p.combined_max_baselines))
        sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.inf)
        z = np.where(cell_flags, 0.0, resid / sig)
        out |= sumthreshold(z, cell_flags, threshold=p.threshold * p.combined_factor,
                            rho=p.rho, max_window=p.combined_max_window, axes=(axis,),
                            positive_only=True)
    return out & ~cell_flags


def _grow_cells(cnt: np.ndarray, per_cell: int, fraction: float,
                axis_fraction: float) -> np.ndarray:
    """(time, chan) cells to flag everywhere, from the flagged counts per cell."""
    nt, nc = cnt.shape
    cell = cnt > fraction * per_cell if fraction < 1.0 else np.zeros(cnt.shape, bool)
    cnt = np.where(cell, per_cell, cnt)
    if axis_fraction < 1.0:
        chan = cnt.sum(axis=0) > axis_fraction * nt * per_cell
        time_ = cnt.sum(axis=1) > axis_fraction * nc * per_cell
        cell = cell | chan[None, :] | time_[:, None]
    return cell


def _grow_inplace(flags: np.ndarray, fraction: float, axis_fraction: float = 1.0) -> None:
    cell = _grow_cells(_cell_counts(flags), flags.shape[1] * flags.shape[3], fraction,
                       axis_fraction)
    if cell.any():
        _or_cells(flags, cell)


def _grow(flags: np.ndarray, fraction: float, axis_fraction: float = 1.0) -> np.ndarray:
    """Flag (time, chan) cells on all baselines when more than ``fraction`` of the baselines
    flagged them, and whole channels or integrations above ``axis_fraction`` (new array)."""
    out = np.array(flags, dtype=bool, order="C")
    _grow_inplace(out, fraction, axis_fraction)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _good_counts(flags):  # pragma: no cover
    """Unflagged samples per baseline (n_bl,) and per (baseline, channel) summed over
    time and polarisation (n_bl, n_chan)."""
    nt, nb, nc, npol = flags.shape
    per_bc = np.zeros((nb, nc), np.int64)
    for b in numba.prange(nb):
        for t in range(nt):
            for c in range(nc):
                for p in range(npol):
                    if not flags[t, b, c, p]:
                        per_bc[b, c] += 1
    return per_bc


def flag_dead_antennas(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                       *, min_good_fraction: float = 0.05,
                       inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flag every baseline of antennas with less than ``min_good_fraction`` unflagged
    cross-correlation data. Returns (new flags, or ``flags`` updated with ``inplace``;
    boolean mask of dead antennas)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    frac = antenna_good_fraction(flags, ant1, ant2, n_ant)
    present = np.zeros(n_ant, dtype=bool)
    cross = ant1 != ant2
    present[ant1[cross]] = True
    present[ant2[cross]] = True
    dead = present & (frac < min_good_fraction)
    out = flags if inplace else flags.copy()
    if dead.any():
        bl = dead[ant1] | dead[ant2]
        out[:, bl] = True
    return out, dead


def _antenna_fraction(per_bl_good: np.ndarray, per_bl_total: float, ant1: np.ndarray,
                      ant2: np.ndarray, n_ant: int) -> np.ndarray:
    cross = ant1 != ant2
    good_bl = per_bl_good[cross].astype(float)
    total_bl = np.full(good_bl.shape, float(per_bl_total))
    good = np.bincount(ant1[cross], good_bl, n_ant) + np.bincount(ant2[cross], good_bl, n_ant)
    total = np.bincount(ant1[cross], total_bl, n_ant) + np.bincount(ant2[cross], total_bl,
                                                                     n_ant)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, good / total, 0.0)


def antenna_good_fraction(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                          n_ant: int) -> np.ndarray:
    """Fraction of unflagged cross-correlation samples per antenna (0 for absent antennas)."""
    per_bl = _good_counts(np.asarray(flags, bool)).sum(axis=1)
    total = flags.shape[0] * flags.shape[2] * flags.shape[3]
    return _antenna_fraction(per_bl, total, np.asarray(ant1), np.asarray(ant2), n_ant)


@dataclass(frozen=True)
class FlagSummary:
    """Flag fractions: overall, per antenna (cross-correlations) and per channel."""

    total: float
    per_antenna: np.ndarray
    per_channel: np.ndarray
    dead_antennas: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {"flagged_fraction": self.total,
                "per_antenna": [round(float(v), 4) for v in self.per_antenna],
                "per_channel": [round(float(v), 4) for v in self.per_channel],
                "dead_antennas": list(self.dead_antennas)}


def flag_summary(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                 dead: np.ndarray | None = None) -> FlagSummary:
    """Flag fractions of a cube (cross-correlations only)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    nt, _, nc, npol = flags.shape
    per_bc = _good_counts(np.asarray(flags, bool))
    per_ant = 1.0 - _antenna_fraction(per_bc.sum(axis=1), nt * nc * npol, ant1, ant2, n_ant)
    dead_idx = tuple(int(i) for i in np.flatnonzero(dead)) if dead is not None else ()
    n_x = int(cross.sum())
    if n_x == 0 or nt * nc * npol == 0:
        return FlagSummary(total=1.0, per_antenna=per_ant, per_channel=np.ones(0),
                           dead_antennas=dead_idx)
    good_c = per_bc[cross].sum(axis=0)
    return FlagSummary(total=1.0 - float(good_c.sum()) / (n_x * nt * nc * npol),
                       per_antenna=per_ant, per_channel=1.0 - good_c / (n_x * nt * npol),
                       dead_antennas=dead_idx)


def _check_cube(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray
                ) -> None:
    if vis.ndim != 4:
        raise ValueError(f"visibilities must be (n_time, n_bl, n_chan, n_pol), got {vis.shape}")
    if flags.shape != vis.shape:
        raise ValueError(f"flags shape {flags.shape} != visibility shape {vis.shape}")
    if np.shape(ant1) != (vis.shape[1],) or np.shape(ant2) != (vis.shape[1],):
        raise ValueError("ant1/ant2 must have one entry per baseline")


def flag_all(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
             n_ant: int, *, freqs: np.ndarray | None = None,
             rfi_freqs: tuple[float, ...] = (), rfi_channels: tuple[int, ...] = (),
             rfi: RFIParams | None = None, detect_rfi: bool = True,
             min_good_fraction: float = 0.05, nthreads: int = 1, inplace: bool = False
             ) -> tuple[np.ndarray, FlagSummary]:
    """The whole flagging sequence: bad samples and autos, known RFI channels, SumThreshold,
    dead antennas. Returns (new flags, summary). With ``inplace`` the input ``flags`` are
    used as scratch (their content afterwards is unspecified): two cubes of booleans less."""
    set_numba_threads(nthreads)
    out = flag_bad_samples(vis, flags, ant1, ant2, inplace=inplace)
    if freqs is not None and (len(rfi_freqs) or len(rfi_channels)):
        out[:, :, channel_mask(freqs, rfi_freqs, rfi_channels=rfi_channels)] = True
    if detect_rfi:  # autocorrelations are flagged already and take no part
        out = flag_rfi(vis, out, rfi, nthreads=nthreads, inplace=True, ant1=ant1, ant2=ant2)
    # ``out`` is this call's own array (or the caller's scratch): update it in place
    out, dead = flag_dead_antennas(out, ant1, ant2, n_ant, min_good_fraction=min_good_fraction,
                                   inplace=True)
    return out, flag_summary(out, ant1, ant2, n_ant, dead)
