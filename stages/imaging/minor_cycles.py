"""CLEAN's minor cycles: Högbom (numba, keeping each row's maximum of |residual| inside the
mask so the next peak costs O(rows) plus the patch it changed), Högbom on an active pixel
list with exact full-image subtraction (sub-minor loops), and multi-scale with tapered scale
kernels. :func:`~stages.imaging.clean.deconvolve` drives them inside major cycles."""

from __future__ import annotations

import numba
import numpy as np
import scipy.fft

from dsa110_pipeline.threads import set_numba_threads

from .psf_convolver import PsfConvolver


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _hogbom(residual, model, psf, mask, all_mask, gain, threshold, max_iter,
            patch):  # pragma: no cover
    """Högbom loop; keeps the per-row maximum of |residual| in the mask up to date."""
    ny, nx = residual.shape
    py, px = psf.shape
    pcy, pcx = py // 2, px // 2
    rowmax = np.empty(ny)
    rowarg = np.zeros(ny, dtype=np.int64)
    r_lo, r_hi, c_lo, c_hi, r, c = 0, ny, 0, 0, 0, 0
    comp = 0.0
    n = 0
    peak = 0.0
    while True:
        # subtract comp x PSF centred on (r, c) from rows r_lo..r_hi and refresh their peaks
        for rr in numba.prange(r_lo, r_hi):
            pr = rr - r + pcy
            off = pcx - c
            if comp != 0.0:
                for cc in range(c_lo, c_hi):  # vectorised
                    residual[rr, cc] -= comp * psf[pr, cc + off]
            best = -1.0
            arg = 0
            if all_mask:
                for cc in range(nx):  # vectorised max reduction
                    best = max(best, abs(residual[rr, cc]))
                for cc in range(nx):
                    if abs(residual[rr, cc]) == best:
                        arg = cc
                        break
            else:
                for cc in range(nx):
                    if mask[rr, cc]:
                        a = abs(residual[rr, cc])
                        if a > best:
                            best = a
                            arg = cc
            rowmax[rr] = best
            rowarg[rr] = arg
        if n >= max_iter:
            break
        r = 0
        best = -1.0
        for i in range(ny):
            if rowmax[i] > best:
                best = rowmax[i]
                r = i
        if best < 0:
            peak = 0.0
            break
        c = rowarg[r]
        val = residual[r, c]
        peak = abs(val)
        if peak <= threshold:
            break
        comp = gain * val
        model[r, c] += comp
        r_lo = max(0, r - patch, r - pcy)
        r_hi = min(ny, r + patch + 1, r - pcy + py)
        c_lo = max(0, c - patch, c - pcx)
        c_hi = min(nx, c + patch + 1, c - pcx + px)
        n += 1
    return n, peak


def hogbom_minor(residual: np.ndarray, psf: np.ndarray, model: np.ndarray, *, gain: float,
                 threshold: float, max_iter: int, mask: np.ndarray | None = None,
                 patch: int | None = None, nthreads: int | None = None) -> tuple[int, float]:
    """Högbom CLEAN in place on ``residual`` and ``model``; returns (iterations, last |peak|).

    ``psf`` has its peak (1) at (ny//2, nx//2); ``patch`` is the half-width (pixels) of the
    PSF patch subtracted per component (default: the whole PSF). Components are only found
    where ``mask`` is true. Stops at ``max_iter`` or when the peak is <= ``threshold``.
    """
    if residual.shape != model.shape:
        raise ValueError("residual and model must have the same shape")
    if not 0 < gain <= 1:
        raise ValueError(f"loop gain must be in (0, 1], got {gain}")
    if mask is None:
        mask = np.ones(residual.shape, dtype=np.bool_)
    patch = max(psf.shape) if patch is None else int(patch)
    set_numba_threads(nthreads)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    n, peak = _hogbom(residual, model, np.asarray(psf, dtype=residual.dtype), mask,
                      bool(mask.all()), float(gain), float(threshold), int(max_iter), patch)
    return int(n), float(peak)


#: A Högbom round whose peak grows beyond this many times its start diverges (Högbom on a
#: positive definite PSF only lets a peak rise by a sidelobe step at a time)
_DIVERGED = 2.0


@numba.njit(cache=True, nogil=True)
def _subminor(ys, xs, vals, psf, comps, gain, stop, max_iter):  # pragma: no cover - numba
    """Högbom on an active pixel list: exact PSF values between listed pixels."""
    py, px = psf.shape
    pcy, pcx = py // 2, px // 2
    n_act = len(vals)
    n = 0
    start = np.inf
    while n < max_iter:
        best = -1.0
        k = 0
        for j in range(n_act):
            a = abs(vals[j])
            if a > best:
                best = a
                k = j
        if best <= stop or best > _DIVERGED * start:  # done, or diverging (undone by the caller)
            break
        if n == 0:
            start = best
        comp = gain * vals[k]
        comps[k] += comp
        yk, xk = ys[k], xs[k]
        for j in range(n_act):
            dy = ys[j] - yk + pcy
            dx = xs[j] - xk + pcx
            if 0 <= dy < py and 0 <= dx < px:  # beyond a small PSF: taken as zero
                vals[j] -= comp * psf[dy, dx]
        n += 1
    return n


def subminor_cycle(residual: np.ndarray, psf: np.ndarray, model: np.ndarray, *, gain: float,
                   threshold: float, max_iter: int, mask: np.ndarray | None = None,
                   convolver: PsfConvolver | None = None, max_active: int = 20_000,
                   fraction: float = 0.2) -> tuple[int, float]:
    """Högbom minor cycle with sub-minor loops (Clark-like), in place; (iterations, |peak|).

    Each round lists the pixels above ``max(threshold, fraction x peak)`` (at most
    ``max_active``), runs Högbom among them with exact PSF values, then subtracts the
    round's components from the whole residual exactly: directly for a few components, by
    FFT (``convolver``, built from ``psf`` when omitted) for many. With a double-size PSF
    the result equals Högbom's up to the order in which equal-valued components are found,
    at a cost of O(active pixels) per iteration instead of O(image); with a smaller PSF
    (peak at its centre), offsets beyond it count as zero, as in Högbom on a PSF patch.
    """
    ny, nx = residual.shape
    py, px = psf.shape
    cy, cx = py // 2, px // 2
    if mask is None:
        mask = np.ones(residual.shape, dtype=bool)
    absr = np.empty(residual.shape, dtype=np.float32)
    n_total, peak = 0, 0.0
    last: tuple[float, int, np.ndarray] | None = None  # the last round: start peak, n, delta

    def subtract(delta: np.ndarray, hit_idx: np.ndarray, sign: float) -> None:
        """residual -= sign x PSF * delta (delta non-zero at the flat indices ``hit_idx``)."""
        nonlocal convolver
        if hit_idx.size > 16:
            if convolver is None:
                convolver = PsfConvolver(psf, image_shape=residual.shape)
            residual[...] -= sign * convolver(delta).astype(np.float32)
            return
        for k in hit_idx:
            y, x = divmod(int(k), nx)
            r0, r1 = max(0, y - cy), min(ny, y - cy + py)
            c0, c1 = max(0, x - cx), min(nx, x - cx + px)
            residual[r0:r1, c0:c1] -= np.float32(sign * delta.flat[k]) * psf[
                r0 - y + cy:r1 - y + cy, c0 - x + cx:c1 - x + cx]

    while n_total < max_iter:
        np.abs(residual, out=absr)
        absr[~mask] = 0.0
        peak = float(absr.max())
        if last is not None and peak > last[0]:
            # the last round raised the peak it started from well beyond what Högbom's
            # sidelobe steps do: the PSF does not describe these data here (a w-term PSF far
            # from the phase centre is not positive definite). Undo it and stop.
            start, n_last, delta = last
            model -= delta
            subtract(delta, np.flatnonzero(delta), -1.0)
            n_total -= n_last
            peak = start
            break
        if peak <= threshold:
            break
        level = max(threshold, fraction * peak)
        idx = np.flatnonzero(absr > level)
        if idx.size > max_active:
            part = np.argpartition(absr.ravel()[idx], idx.size - max_active)
            idx = idx[part[idx.size - max_active:]]
            level = max(level, float(absr.ravel()[idx].min()))
        ys, xs = np.divmod(idx, nx)
        vals = residual.ravel()[idx].astype(np.float64)
        comps = np.zeros(idx.size)
        n = _subminor(ys.astype(np.int64), xs.astype(np.int64), vals, psf, comps, float(gain),
                      float(level), int(max_iter - n_total))
        if n == 0:  # cannot happen unless the peak is on the level; take one Högbom step
            level = 0.0
            n = _subminor(ys.astype(np.int64), xs.astype(np.int64), vals, psf, comps,
                          float(gain), 0.0, 1)
        n_total += n
        hit = np.flatnonzero(comps)
        delta = np.zeros(residual.shape, dtype=np.float32)
        delta.ravel()[idx[hit]] = comps[hit]
        model += delta
        subtract(delta, idx[hit], 1.0)
        last = (peak, n, delta)
    return n_total, peak


# -- multi-scale ------------------------------------------------------------------------------

def scale_kernel(scale: float, size: int) -> np.ndarray:
    """Tapered-paraboloid scale kernel of diameter ``scale`` pixels (a delta for 0), sum 1."""
    k = np.zeros((size, size))
    c = size // 2
    if scale <= 0:
        k[c, c] = 1.0
        return k
    y, x = np.mgrid[-c:size - c, -c:size - c]
    r = np.hypot(x, y) / (scale / 2.0)
    inside = r < 1
    k[inside] = 1.0 - r[inside] ** 2
    return k / k.sum()


def _fftconv_same(a: np.ndarray, k: np.ndarray, nthreads: int = 1) -> np.ndarray:
    """Convolution of ``a`` with centred kernel ``k`` (same shape as ``a``), zero padded."""
    ny, nx = a.shape
    ky, kx = k.shape
    shape = (ny + ky, nx + kx)
    out = scipy.fft.irfft2(scipy.fft.rfft2(a, s=shape, workers=nthreads)
                           * scipy.fft.rfft2(k, s=shape, workers=nthreads), s=shape,
                           workers=nthreads)
    return out[ky // 2:ky // 2 + ny, kx // 2:kx // 2 + nx]


def multiscale_minor(residual: np.ndarray, psf: np.ndarray, model: np.ndarray, *,
                     scales: tuple[float, ...], gain: float, threshold: float, max_iter: int,
                     mask: np.ndarray | None = None, small_scale_bias: float = 0.6,
                     nthreads: int = 1) -> tuple[int, float]:
    """Multi-scale CLEAN (Cornwell 2008) in place; returns (iterations, last |peak|).

    With sum-1 scale kernels k_s, smoothed residuals R_s = k_s * R and cross PSFs
    B_st = k_s * k_t * PSF, each iteration picks the scale and pixel maximising
    ``(1 - small_scale_bias * s / max(scales)) |R_s|``, adds ``A k_s`` to the model with
    ``A = gain R_s(p) / B_ss(0)`` and subtracts ``A B_st`` from every R_t. Stops when the
    point-scale peak |R| in the mask is <= ``threshold``.
    """
    ny, nx = residual.shape
    if mask is None:
        mask = np.ones(residual.shape, dtype=bool)
    size = int(2 * (max(max(scales), 1) // 2) + 1)
    kernels = [scale_kernel(s, size) for s in scales]
    smax = max(max(scales), 1.0)
    bias = np.array([1.0 - small_scale_bias * s / smax for s in scales])
    smoothed = [residual] + [_fftconv_same(residual, k, nthreads) for k in kernels[1:]] \
        if scales[0] == 0 else [_fftconv_same(residual, k, nthreads) for k in kernels]
    psf_s = [_fftconv_same(psf, k, nthreads) for k in kernels]
    cross = [[_fftconv_same(psf_s[i], kj, nthreads) for kj in kernels]
             for i in range(len(scales))]
    pcy, pcx = psf.shape[0] // 2, psf.shape[1] // 2
    kc = size // 2
    n, peak = 0, 0.0
    while n < max_iter:
        peak = float(np.max(np.abs(residual[mask]))) if mask.any() else 0.0
        if peak <= threshold:
            break
        best, bi, br, bc = -1.0, 0, 0, 0
        for i, sm in enumerate(smoothed):
            a = np.where(mask, np.abs(sm), -1.0)
            idx = int(np.argmax(a))
            if a.flat[idx] * bias[i] > best:
                best, bi = float(a.flat[idx] * bias[i]), i
                br, bc = divmod(idx, nx)
        amp = gain * float(smoothed[bi][br, bc]) / float(cross[bi][bi][pcy, pcx])
        r0, r1 = max(0, br - kc), min(ny, br + kc + 1)
        c0, c1 = max(0, bc - kc), min(nx, bc + kc + 1)
        model[r0:r1, c0:c1] += amp * kernels[bi][r0 - br + kc:r1 - br + kc,
                                                 c0 - bc + kc:c1 - bc + kc]
        r0, r1 = max(0, br - pcy), min(ny, br - pcy + psf.shape[0])
        c0, c1 = max(0, bc - pcx), min(nx, bc - pcx + psf.shape[1])
        sl_p = (slice(r0 - br + pcy, r1 - br + pcy), slice(c0 - bc + pcx, c1 - bc + pcx))
        if smoothed[0] is not residual:
            residual[r0:r1, c0:c1] -= amp * psf_s[bi][sl_p]
        for j in range(len(scales)):
            smoothed[j][r0:r1, c0:c1] -= amp * cross[bi][j][sl_p]
        n += 1
    return n, peak
