"""RFI detection (:func:`flag_rfi`) on visibility cubes of shape ``(n_time, n_bl, n_chan,
n_pol)``; flags are boolean arrays of the same shape (True = flagged). Nothing here does
I/O. It follows the SumThreshold idea (Offringa et al. 2010):

1. very strong RFI is pre-flagged from the baseline-median amplitude per (time, channel),
   compared with a robust smooth model (running medians), so that it cannot bias the
   backgrounds below (:mod:`.rfi_prefilter`);
2. per baseline, a smooth background (Gaussian filter in time and frequency, ignoring
   flagged samples; :mod:`.rfi_background`) is removed from the amplitudes, the residual
   is scaled by a robust (MAD) noise per baseline and polarisation, and runs of M samples
   whose mean exceeds ``χ1 / ρ^log2(M)`` are flagged along time and frequency, M = 1, 2,
   4, …; this is repeated with the previous flags kept out of the background, the flags
   being derived afresh each time (thresholds 2χ1 then χ1); between the passes, cells
   flagged on most baselines are flagged on all, so that they stay out of every
   background; where the source dominates, the amplitudes are first divided by an
   antenna-based model (:mod:`.rfi_antenna_model`);
3. the baseline-averaged residual is searched for weak RFI common to all baselines
   (:mod:`.sumthreshold`);
4. cells flagged on most baselines, and channels/integrations mostly flagged, are
   flagged whole (:mod:`.flag_grow`).

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

import numpy as np

from dsa110_pipeline.threads import set_numba_threads

from .flag_grow import grow_inplace, or_cells, or_plane_joint
from .flag_samples import writable_bool
from .rfi_antenna_model import antenna_amplitude_factors, source_snr
from .rfi_background import background_smoothing
from .rfi_kernels import changed_baselines, rfi_block, take_baselines
from .rfi_prefilter import strong_rfi_cells
from .sumthreshold import robust_sigma, sumthreshold, sumthreshold_windows

#: Most samples per (baseline, polarisation) in the MAD noise estimate of the RFI passes
#: (evenly spread over the plane; the estimate's relative error is about 1.7/sqrt(n)).
MAD_MAX_SAMPLES = 2048
#: Above this fraction of baselines whose flags the first pass changed, ``flag_rfi`` runs
#: its second pass plainly instead of redoing those baselines.
REUSE_MAX_CHANGED = 0.25


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
    (:func:`.rfi_antenna_model.antenna_amplitude_factors`) with thermal-σ thresholds.
    """
    p = params or RFIParams()
    if vis.ndim != 4 or flags.shape != vis.shape:
        raise ValueError(f"vis and flags must have the same 4-d shape, got {vis.shape} "
                         f"and {flags.shape}")
    nt, nb, nc, npol = vis.shape
    set_numba_threads(nthreads)
    fin = flags if inplace and writable_bool(flags) else np.array(flags, dtype=bool, order="C")
    if p.prefilter and nb > 1:
        strong = strong_rfi_cells(vis, fin, p.prefilter_threshold, p.model_tolerance)
        or_cells(fin, strong)
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
    dec, ktime, taps = background_smoothing(nt, nc, p.sigma_time, p.sigma_chan)
    factors = list(np.linspace(2.0, 1.0, p.iterations)) if p.iterations > 1 else [1.0]
    sets = [sumthreshold_windows(p.threshold * f, p.rho, p.max_window) for f in factors]
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
        grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
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
        grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
    else:
        for k, set_k in enumerate(sets):
            last = k == len(sets) - 1
            xsum, xcnt = run(vis, fin, cur, set_k, none, no_cube, last)
            grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
    if p.combined and nb > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(xcnt > 0, xsum / xcnt, 0.0)[:, None]
        comb = _combined_flags(mean, xcnt[:, None] == 0, p)[:, 0]
        or_plane_joint(cur, comb)
        grow_inplace(cur, p.grow_fraction, p.grow_axis_fraction)
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


__all__ = ["RFIParams", "flag_rfi", "MAD_MAX_SAMPLES", "REUSE_MAX_CHANGED"]
