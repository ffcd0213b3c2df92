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
   afresh each time (thresholds 2χ1 then χ1);
3. the baseline-averaged residual is searched for weak RFI common to all baselines;
4. cells flagged on most baselines, and channels/integrations mostly flagged, are
   flagged whole.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import gaussian_filter1d

MAD_TO_SIGMA = 1.4826


def flag_bad_samples(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                     *, flag_autos: bool = True) -> np.ndarray:
    """Flags plus exact zeros, NaN/Inf and (optionally) autocorrelations. Returns a new array."""
    _check_cube(vis, flags, ant1, ant2)
    out = flags | ~np.isfinite(vis) | (vis == 0)
    if flag_autos:
        out[:, np.asarray(ant1) == np.asarray(ant2)] = True
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
    ("nearest" edges, truncated at 3σ)."""
    return gaussian_filter1d(np.eye(n), sigma, axis=0, mode="nearest", truncate=3.0)


def masked_smooth(values: np.ndarray, weights: np.ndarray, sigma_time: float,
                  sigma_chan: float) -> np.ndarray:
    """Gaussian-smoothed ``values`` ignoring samples of zero weight, along axes 0 and 2.

    Along time (short axis) the filter is a small matrix product; along frequency a
    recursive-free 1-d correlation. Works in the dtype of ``values`` (float32 is faster).
    """
    dt = values.dtype if values.dtype in (np.float32, np.float64) else np.float64
    num = (values * weights).astype(dt, copy=False)
    den = weights.astype(dt)
    n_t = values.shape[0]
    if sigma_time > 0 and n_t > 1:
        k = _time_kernel(n_t, sigma_time).astype(dt)
        shape = num.shape
        num = (k @ num.reshape(n_t, -1)).reshape(shape)
        den = (k @ den.reshape(n_t, -1)).reshape(shape)
    if sigma_chan > 0 and values.shape[2] > 1:
        num = gaussian_filter1d(num, sigma_chan, axis=2, mode="nearest", truncate=3.0)
        den = gaussian_filter1d(den, sigma_chan, axis=2, mode="nearest", truncate=3.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(den > 1e-6, out, 0.0).astype(dt, copy=False)


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
def _gather_valid(v: np.ndarray, f: np.ndarray, i: int,
                  buf: np.ndarray) -> int:  # pragma: no cover
    """Copy row ``i``'s unflagged finite values into ``buf``; returns how many."""
    k = 0
    for j in range(v.shape[1]):
        if not f[i, j] and np.isfinite(v[i, j]):
            buf[k] = v[i, j]
            k += 1
    return k


@numba.njit(cache=True, nogil=True)
def _median_lines(v: np.ndarray, f: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.full(v.shape[0], np.nan)
    buf = np.empty(v.shape[1])
    for i in range(v.shape[0]):
        k = _gather_valid(v, f, i, buf)
        if k > 0:
            out[i] = np.median(buf[:k])
    return out


@numba.njit(cache=True, nogil=True)
def _mad_lines(v: np.ndarray, f: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.full(v.shape[0], np.nan)
    buf = np.empty(v.shape[1])
    for i in range(v.shape[0]):
        k = _gather_valid(v, f, i, buf)
        if k == 0:
            continue
        med = np.median(buf[:k])
        for j in range(k):
            buf[j] = abs(buf[j] - med)
        out[i] = np.median(buf[:k])
    return out


@numba.njit(cache=True, nogil=True)
def _sumthreshold_lines(x: np.ndarray, flags: np.ndarray, windows: np.ndarray,
                        chis: np.ndarray, positive_only: bool) -> None:  # pragma: no cover
    """In place on 3-d (outer, n, inner): SumThreshold along axis 1 for each window size,
    all ``inner`` lines at once (contiguous access)."""
    n_outer, n, n_inner = x.shape
    s = np.zeros(n_inner)
    cnt = np.zeros(n_inner, dtype=np.int64)
    hit = np.zeros((n, n_inner), dtype=np.bool_)
    for o in range(n_outer):
        for k in range(windows.shape[0]):
            m = windows[k]
            if m > n:
                break
            chi = chis[k]
            hit[:, :] = False
            s[:] = 0.0
            cnt[:] = 0
            for j in range(n):
                for i in range(n_inner):
                    if not flags[o, j, i]:
                        s[i] += x[o, j, i]
                        cnt[i] += 1
                    if j >= m and not flags[o, j - m, i]:
                        s[i] -= x[o, j - m, i]
                        cnt[i] -= 1
                    if j >= m - 1 and cnt[i] > 0:
                        v = s[i] if positive_only else abs(s[i])
                        if v > chi * cnt[i]:
                            for q in range(j - m + 1, j + 1):
                                hit[q, i] = True
            for j in range(n):
                for i in range(n_inner):
                    if hit[j, i]:
                        flags[o, j, i] = True


def sumthreshold(x: np.ndarray, flags: np.ndarray, *, threshold: float = 6.0,
                 rho: float = 1.5, max_window: int = 32, axes: tuple[int, ...] = (0, 2),
                 positive_only: bool = False) -> np.ndarray:
    """SumThreshold on a normalised residual ``x`` (noise σ = 1) along ``axes``: excursions of
    both signs, or only positive ones with ``positive_only``.

    A window of M samples is flagged when the mean of its unflagged samples exceeds
    ``threshold / rho**log2(M)`` (flagged samples count as exactly at the threshold), for
    M = 1, 2, 4, … ``max_window``. Returns the updated flags (a new array).
    """
    windows = (2 ** np.arange(int(np.log2(max(max_window, 1))) + 1)).astype(np.int64)
    chis = (threshold / rho ** np.log2(windows)).astype(np.float64)
    xs = np.ascontiguousarray(x)
    out = np.array(flags, dtype=bool, copy=True, order="C")
    for axis in axes:
        n = x.shape[axis]
        outer = int(np.prod(x.shape[:axis]))
        inner = int(np.prod(x.shape[axis + 1:]))
        _sumthreshold_lines(xs.reshape(outer, n, inner), out.reshape(outer, n, inner),
                            windows, chis, positive_only)
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


def strong_rfi_cells(vis: np.ndarray, flags: np.ndarray, threshold: float = 8.0
                     ) -> np.ndarray:
    """Cells (time, channel) hit by RFI strong enough to stand out in the baseline median.

    The median amplitude over baselines and polarisations per (time, channel) is modelled
    as a channel shape times a time shape (medians), and cells deviating by more than
    ``threshold`` robust σ (MAD) upwards are returned (n_time, n_chan). This keeps very strong
    bursts and lines from biasing the smooth backgrounds of :func:`flag_rfi`.
    """
    plane = np.empty((vis.shape[0], vis.shape[2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for t in range(vis.shape[0]):  # one integration at a time bounds the memory
            amp = np.ascontiguousarray(np.moveaxis(np.abs(vis[t]), 1, 0), dtype=np.float64)
            f = np.ascontiguousarray(np.moveaxis(flags[t], 1, 0))
            plane[t] = _median_lines(amp.reshape(vis.shape[2], -1),
                                     f.reshape(vis.shape[2], -1))
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
    return np.nan_to_num((resid - med) / sig, nan=0.0) > threshold


def flag_rfi(vis: np.ndarray, flags: np.ndarray, params: RFIParams | None = None, *,
             bl_chunk: int = 256, nthreads: int = 1) -> np.ndarray:
    """Robust per-baseline RFI flags (new array) for a cube ``(n_time, n_bl, n_chan, n_pol)``.

    Works on amplitudes, ``bl_chunk`` baselines at a time (``nthreads`` blocks at once);
    polarisations are flagged together. After the per-baseline passes, the
    baseline-averaged residual is tested too.
    """
    p = params or RFIParams()
    if vis.ndim != 4 or flags.shape != vis.shape:
        raise ValueError(f"vis and flags must have the same 4-d shape, got {vis.shape} "
                         f"and {flags.shape}")
    nt, nb, nc, npol = vis.shape
    if p.prefilter and nb > 1:
        strong = strong_rfi_cells(vis, flags, p.prefilter_threshold)
        flags = flags | strong[:, None, :, None]
    out = np.empty(flags.shape, dtype=bool)
    xsum = np.zeros((nt, 1, nc, npol))
    xcnt = np.zeros((nt, 1, nc, npol))

    def block(b0: int) -> tuple[slice, np.ndarray, np.ndarray, np.ndarray]:
        sl = slice(b0, min(b0 + bl_chunk, nb))
        f, x = _flag_baselines(vis[:, sl], flags[:, sl], p)
        good = ~f
        return (sl, f, np.where(good, x, 0.0).sum(axis=1, keepdims=True),
                good.sum(axis=1, keepdims=True))

    starts = range(0, nb, bl_chunk)
    if nthreads > 1 and len(starts) > 1:
        # the kernels release the GIL (numba nogil, scipy, large numpy operations)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(nthreads) as pool:
            results = pool.map(block, starts)
            for sl, f, xs, xc in results:
                out[:, sl] = f
                xsum += xs
                xcnt += xc
    else:
        for b0 in starts:
            sl, f, xs, xc = block(b0)
            out[:, sl] = f
            xsum += xs
            xcnt += xc
    if p.combined and nb > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(xcnt > 0, xsum / xcnt, 0.0)
        out |= _combined_flags(mean, xcnt == 0, p)
        out |= out.any(axis=3, keepdims=True)
    return _grow(out, p.grow_fraction, p.grow_axis_fraction)


def _flag_baselines(vis: np.ndarray, flags: np.ndarray, p: RFIParams
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Iterated background removal and SumThreshold on a block of baselines.
    Returns (flags, final normalised residual)."""
    amp = np.abs(vis).astype(np.float32)
    out = flags.copy()
    factors = np.linspace(2.0, 1.0, p.iterations) if p.iterations > 1 else [1.0]
    x = np.zeros(amp.shape, np.float32)
    for factor in factors:
        bg = masked_smooth(amp, ~out, p.sigma_time, p.sigma_chan)
        resid = amp - bg
        sigma = robust_sigma(resid, out, axis=(0, 2))
        sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.inf)
        x = (resid / sigma).astype(np.float32)
        x[~np.isfinite(x)] = 0.0
        # flags are re-derived from the input flags each pass: the previous pass's flags
        # only keep RFI out of the background and noise estimates, so samples wrongly hit
        # next to strong RFI (while the background was still biased) are released again
        new = sumthreshold(x, flags, threshold=p.threshold * factor, rho=p.rho,
                           max_window=p.max_window)
        new |= new.any(axis=3, keepdims=True)  # polarisations together
        out = _grow(flags | new, p.grow_fraction, p.grow_axis_fraction)
    return out, x


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


def _grow(flags: np.ndarray, fraction: float, axis_fraction: float = 1.0) -> np.ndarray:
    """Flag (time, chan) cells on all baselines when more than ``fraction`` of the baselines
    flagged them, and whole channels or integrations above ``axis_fraction``."""
    nt, nb, nc, npol = flags.shape
    per_cell = nb * npol
    cnt = np.count_nonzero(flags, axis=(1, 3))                   # (n_time, n_chan)
    cell = cnt > fraction * per_cell if fraction < 1.0 else np.zeros(cnt.shape, bool)
    cnt = np.where(cell, per_cell, cnt)
    if axis_fraction < 1.0:
        chan = cnt.sum(axis=0) > axis_fraction * nt * per_cell
        time_ = cnt.sum(axis=1) > axis_fraction * nc * per_cell
        cell = cell | chan[None, :] | time_[:, None]
    if not cell.any():
        return flags
    return flags | cell[:, None, :, None]


def flag_dead_antennas(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                       *, min_good_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Flag every baseline of antennas with less than ``min_good_fraction`` unflagged
    cross-correlation data. Returns (new flags, boolean mask of dead antennas)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    frac = antenna_good_fraction(flags, ant1, ant2, n_ant)
    present = np.zeros(n_ant, dtype=bool)
    cross = ant1 != ant2
    present[ant1[cross]] = True
    present[ant2[cross]] = True
    dead = present & (frac < min_good_fraction)
    out = flags.copy()
    if dead.any():
        bl = dead[ant1] | dead[ant2]
        out[:, bl] = True
    return out, dead


def antenna_good_fraction(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                          n_ant: int) -> np.ndarray:
    """Fraction of unflagged cross-correlation samples per antenna (0 for absent antennas)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    per_bl = (~flags[:, cross]).sum(axis=(0, 2, 3)).astype(float)
    total_bl = np.full(per_bl.shape, float(flags.shape[0] * flags.shape[2] * flags.shape[3]))
    good = np.bincount(ant1[cross], per_bl, n_ant) + np.bincount(ant2[cross], per_bl, n_ant)
    total = np.bincount(ant1[cross], total_bl, n_ant) + np.bincount(ant2[cross], total_bl,
                                                                     n_ant)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, good / total, 0.0)


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
    cross = np.asarray(ant1) != np.asarray(ant2)
    f = flags[:, cross]
    per_ant = 1.0 - antenna_good_fraction(flags, ant1, ant2, n_ant)
    dead_idx = tuple(int(i) for i in np.flatnonzero(dead)) if dead is not None else ()
    return FlagSummary(total=float(f.mean()) if f.size else 1.0, per_antenna=per_ant,
                       per_channel=f.mean(axis=(0, 1, 3)) if f.size else np.ones(0),
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
             min_good_fraction: float = 0.05, nthreads: int = 1
             ) -> tuple[np.ndarray, FlagSummary]:
    """The whole flagging sequence: bad samples and autos, known RFI channels, SumThreshold,
    dead antennas. Returns (new flags, summary)."""
    out = flag_bad_samples(vis, flags, ant1, ant2)
    if freqs is not None and (len(rfi_freqs) or len(rfi_channels)):
        out[:, :, channel_mask(freqs, rfi_freqs, rfi_channels=rfi_channels)] = True
    if detect_rfi:  # autocorrelations are flagged already and take no part
        out = flag_rfi(vis, out, rfi, nthreads=nthreads)
    out, dead = flag_dead_antennas(out, ant1, ant2, n_ant, min_good_fraction=min_good_fraction)
    return out, flag_summary(out, ant1, ant2, n_ant, dead)
