"""Deconvolution: Högbom minor cycles on a PSF patch inside Cotton-Schwab major cycles.

The minor cycle is a numba kernel that keeps the per-row maximum of |residual| inside the
mask, so finding the next peak costs O(rows) plus the patch it just changed. The major cycle
is :func:`deconvolve`, which calls back ``compute_residual(model)`` (normally: predict the
model's visibilities with ducc0, subtract them and re-grid) after each minor cycle.
Optional multi-scale cleaning (:func:`multiscale_minor`) uses tapered scale kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.fft
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import ndimage

from dsa110_pipeline.threads import set_numba_threads


def robust_rms(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust rms: 1.4826 x median absolute deviation from the median (finite pixels)."""
    data = image[mask] if mask is not None else image
    data = data[np.isfinite(data)]
    if data.size == 0:
        return 0.0
    med = np.median(data)
    return float(1.4826 * np.median(np.abs(data - med)))


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


class PsfConvolver:
    """Exact (linear) convolution of an image-size model with a PSF peaked at its centre.

    With a double-size PSF (2ny, 2nx) peaked at (ny, nx) (the default ``image_shape``), every
    pixel offset lies inside the PSF and the circular FFT convolution of size (2ny, 2nx) is
    exact. With a smaller PSF (py, px) peaked at (py//2, px//2), offsets beyond it count as
    zero and the FFT size is the linear-convolution size (ny + py - 1, nx + px - 1).
    """

    def __init__(self, psf: np.ndarray, nthreads: int = 1,
                 image_shape: tuple[int, int] | None = None) -> None:
        if psf.ndim != 2 or psf.shape[0] % 2 or psf.shape[1] % 2:
            raise ValueError(f"PSF must be 2-D with even sides, got {psf.shape}")
        py, px = psf.shape
        self.shape = (py // 2, px // 2) if image_shape is None else tuple(image_shape)
        self.nthreads = nthreads
        ny, nx = self.shape
        psf = np.asarray(psf, np.float32)
        if (py, px) == (2 * ny, 2 * nx):
            self._fft_shape = (py, px)
            self._offset = (0, 0)
            self._kft = scipy.fft.rfft2(np.fft.ifftshift(psf), workers=nthreads)
        else:
            self._fft_shape = (scipy.fft.next_fast_len(ny + py - 1, real=True),
                               scipy.fft.next_fast_len(nx + px - 1, real=True))
            self._offset = (py // 2, px // 2)
            self._kft = scipy.fft.rfft2(psf, s=self._fft_shape, workers=nthreads)

    def __call__(self, model: np.ndarray) -> np.ndarray:
        if model.shape != self.shape:
            raise ValueError(f"model {model.shape} does not match the PSF ({self.shape})")
        ny, nx = self.shape
        ft = scipy.fft.rfft2(np.asarray(model, np.float32), s=self._fft_shape,
                             workers=self.nthreads)
        ft *= self._kft
        out = scipy.fft.irfft2(ft, s=self._fft_shape, workers=self.nthreads)
        oy, ox = self._offset
        return out[oy:oy + ny, ox:ox + nx]


class CleanParams(BaseModel):
    """Deconvolution parameters (thresholds in Jy/beam): the ``imaging.clean`` config
    section, handed to :func:`deconvolve` as it is (the stage sets only ``nthreads``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Iteration budget: CLEAN stops on its thresholds long before (a few thousand).
    niter: int = Field(50000, ge=0)
    gain: float = Field(0.1, gt=0, le=1)
    mgain: float = Field(0.8, gt=0, le=1)
    threshold: float = Field(0.0, ge=0)
    #: CLEAN searches the whole image down to ``auto_mask`` x the residual rms, then cleans
    #: only where it has found flux down to ``auto_threshold`` x rms: deep on the sources
    #: (their sidelobes go), never on noise (a free CLEAN to 3 sigma put thousands of
    #: components on noise and stopped on its budget with bright sources half cleaned).
    #: 5, not 4: a full-scale group takes 1700 fewer iterations (6 s) for the same peaks;
    #: at 3 a demo-scale group had 72 false and 75 negative 5-sigma peaks (imaging README,
    #: session 17). None: off.
    auto_threshold: float | None = Field(2.0, gt=0)
    auto_mask: float | None = Field(5.0, gt=0)
    max_major: int = Field(30, ge=1)
    psf_patch: int | None = Field(None, ge=8)
    multiscale: bool = False
    scales: tuple[float, ...] = (0.0, 4.0, 8.0, 16.0)
    #: Threads of the minor cycles and PSF convolutions (the stage sets the run's).
    nthreads: int = Field(1, ge=1)
    #: With a double-size PSF, run cheap image-domain major cycles between the
    #: visibility-domain (Cotton-Schwab) ones; a visibility-domain cycle always ends. Each
    #: subtracts ``PSF * (model change)`` from the last exact residual: exact where the PSF
    #: is position-invariant, and good enough for the faint model changes of deep cleaning
    #: elsewhere (the w-term varies DSA-110's PSF over its 3.4 deg field; the next exact
    #: cycle corrects what they miss). On the full-scale fidelity group they gave the same
    #: figures as 18 exact cycles (imaging README).
    image_domain_cycles: bool = True
    max_image_cycles: int = Field(50, ge=1)
    #: Image-domain cycles start once an exact residual's peak is at most this fraction of
    #: the model's brightest component: they carry only faint model changes then (the bright
    #: sources, whose PSF the w-term changes most in absolute terms, are already modelled by
    #: exact cycles). Cleaning a 9 Jy calibrator in image-domain cycles from the dirty image
    #: left 8x the noise (tests/test_end_to_end's calibrated group).
    image_cycle_fraction: float = Field(0.01, gt=0)
    #: Most exact (visibility-domain) major cycles once image-domain cycles run between
    #: them (counting the one that started them; a predict and re-grid of every visibility
    #: each, ~15 s at full scale); None: no limit. Where the model cannot represent the data
    #: better (calibration errors, the dynamic-range limit at very bright sources) exact
    #: cycles stop converging: beyond three the residual at 8-15 Jy sources stalls at ~4
    #: sigma and no fidelity figure changes.
    max_exact_cycles: int | None = Field(3, ge=1)
    #: Högbom with sub-minor loops over the brightest pixels (needs a double-size PSF and
    #: gives the same components as plain Högbom, much faster on large images).
    subminor: bool = True
    #: Accuracy guard of the approximate cycles: when a residual from a channel subset, or an
    #: exact one after image-domain cycles, peaks above this many times what the last minor
    #: cycle left, those approximations no longer describe the data; from then on CLEAN runs
    #: exact cycles only (the exact-cycle budget starting again). None: off.
    approx_tolerance: float | None = Field(2.0, ge=1)
    #: Divergence guard: an exact residual whose peak exceeds this many times the last exact
    #: one after new components undoes them; CLEAN goes on with exact cycles alone if
    #: approximate cycles made them, else stops ("diverging"). None: off.
    divergence_limit: float | None = Field(1.1, ge=1)

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(s < 0 for s in v):
            raise ValueError("scales must be a non-empty list of sizes >= 0 (pixels)")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _mask_above_threshold(self) -> CleanParams:
        if self.auto_mask is not None and self.auto_threshold is not None \
                and self.auto_mask < self.auto_threshold:
            raise ValueError("auto_mask must be >= auto_threshold")
        return self


@dataclass
class CleanResult:
    model: np.ndarray
    residual: np.ndarray
    n_iter: int
    n_major: int
    stop_reason: str
    rms: float
    history: list[dict] = field(default_factory=list)
    n_image_cycles: int = 0
    #: major cycles on an approximate residual (``approx_residual``, e.g. a channel subset)
    n_approx_cycles: int = 0


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


# -- the major-cycle driver ------------------------------------------------------------------

def _unsubtracted_sidelobe(psf: np.ndarray, shape: tuple[int, int],
                           patch: int | None) -> float:
    """Largest |PSF| the minor cycle cannot subtract inside an image of ``shape``.

    Offsets up to the image size minus one occur; those beyond the PSF (or the patch
    half-width) are not subtracted. Beyond the PSF the sidelobe level is unknown and taken
    as the largest sidelobe at the PSF's edge band.
    """
    ny, nx = shape
    py, px = psf.shape
    cy, cx = py // 2, px // 2
    hy = min(cy, py - cy - 1, patch if patch is not None else max(py, px))
    hx = min(cx, px - cx - 1, patch if patch is not None else max(py, px))
    if hy >= ny - 1 and hx >= nx - 1:
        return 0.0
    inner = np.zeros(psf.shape, bool)
    inner[cy - hy:cy + hy + 1, cx - hx:cx + hx + 1] = True
    band = np.abs(psf[~inner]) if (~inner).any() else np.array([0.0])
    edge = np.abs(np.concatenate([psf[cy - hy, :], psf[cy + hy, :], psf[:, cx - hx],
                                  psf[:, cx + hx]]))
    return float(min(1.0, max(band.max(), edge.max())))


def clean_support(model: np.ndarray, strong: float) -> np.ndarray:
    """Pixels CLEAN may still clean once the auto-mask is on: those holding model flux, and
    the 8 neighbours of those holding at least ``strong`` (Jy/beam).

    A bright source between pixel centres needs flux on the neighbours of its peak pixel
    (Högbom's dipole, the sub-pixel position ``points.point_sources`` reads). Where that
    dipole is below the auto-mask level when the free search stops, a support of the
    flux-holding pixels alone can never add it: CLEAN then puts the source at the pixel
    centre and over-fits it. Measured on the full-scale dec +52.2 group: two 35-39 mJy
    sources 0.1 px off their columns took 7 % too much flux and left a ring of 25 negative
    peaks (5-16 sigma) around them (imaging README, session 15).
    """
    near = ndimage.binary_dilation(np.abs(model) >= strong, structure=np.ones((3, 3), bool))
    return (model != 0) | near


def deconvolve(dirty: np.ndarray, psf: np.ndarray,
               compute_residual: Callable[[np.ndarray], np.ndarray],
               params: CleanParams, mask: np.ndarray | None = None,
               convolver: PsfConvolver | None = None,
               approx_residual: Callable[[np.ndarray], np.ndarray] | None = None,
               dirty_exact: bool = True,
               more: Callable[[float], bool] | None = None) -> CleanResult:
    """Cotton-Schwab CLEAN of ``dirty`` (Jy/beam) with ``psf`` (peak 1 at the centre).

    ``psf`` may be the image size or twice it (2ny, 2nx), peaked at its centre. With a
    double-size PSF the minor cycle subtracts the exact PSF at any offset; with a smaller
    PSF or a ``psf_patch``, each minor cycle also stops (Clark's rule) at ``peak x`` the
    largest PSF sidelobe it cannot subtract, which keeps CLEAN stable.

    Each major cycle cleans down to ``max(stop level, (1 - mgain) x peak)`` with Högbom (or
    multi-scale) minor cycles, then replaces the residual by ``compute_residual(model)``
    (a visibility-domain major cycle; it may move flux within ``model`` in place, as the
    imager's point refinement does, and returns the residual of the model it leaves). The
    stop level is
    ``max(threshold, auto_threshold x robust rms)``. With ``auto_mask``, cleaning is free
    until the minor cycles reach ``auto_mask x rms``; from then on only pixels that already
    hold model flux, and the neighbours of those holding at least ``auto_mask x rms``, are
    cleaned (down to the auto threshold; see ``clean_support``). ``mask`` restricts
    cleaning.

    Cheaper, approximate major cycles: ``approx_residual(model)`` (for example the residual
    of a subset of the channels; ``dirty_exact=False`` says ``dirty`` is such an
    approximation too), or, with a ``convolver`` (double-size PSF) and
    ``params.image_domain_cycles``, the image-domain update
    ``residual = last exact residual - PSF * (model - model at that residual)``. Either way
    an exact cycle runs only when the approximate ones say CLEAN is done (or the budget is
    spent), the cycles after it are exact, and CLEAN stops only on an exact residual.

    ``more(stop_level)``, asked when CLEAN would stop on its threshold, may call for another
    exact cycle (at most three): the model's prediction changed since the last residual
    (for example its spectral indices were measured anew).
    """
    residual = np.array(dirty, dtype=np.float32, copy=True)
    model = np.zeros_like(residual)
    psf32 = np.asarray(psf, dtype=np.float32)
    free_mask = np.ones(residual.shape, bool) if mask is None else mask.astype(bool)
    active_mask = free_mask
    auto_mask_on = False
    use_image = convolver is not None and params.image_domain_cycles
    true_residual, true_model = (residual.copy(), model.copy()) if use_image else (None, None)
    exact = bool(dirty_exact)
    approx_on = approx_residual is not None
    image_on = False  # image-domain cycles started (see ``image_cycle_fraction``)
    n_exact_image = 0  # exact cycles since they started
    n_iter, n_major, n_image, n_approx, history = 0, 0, 0, 0, []
    outside = _unsubtracted_sidelobe(psf32, residual.shape, params.psf_patch)
    sub_conv = convolver
    stop_reason = "niter"
    rms = robust_rms(residual)
    n_more = 0

    def exact_budget_spent() -> bool:
        return image_on and params.max_exact_cycles is not None \
            and n_exact_image >= params.max_exact_cycles

    def exact_cycle() -> None:
        nonlocal residual, exact, n_major, true_residual, true_model, approx_on, image_on, \
            n_exact_image
        residual = np.asarray(compute_residual(model), dtype=np.float32)
        n_major += 1
        exact = True
        approx_on = False  # from the first exact cycle on, no channel-subset cycles
        if use_image:
            true_residual, true_model = residual.copy(), model.copy()
            top = float(np.max(np.abs(model)))
            image_on = image_on or (top > 0 and float(np.max(np.abs(residual[active_mask])))
                                    <= params.image_cycle_fraction * top)
            n_exact_image += int(image_on)

    # guards. ``left``: the peak the last minor cycle left (or the last approximate residual
    # showed), which the next residual should show if the approximations were right;
    # ``added``: components were added since the last residual; ``best``: the last exact
    # residual (peak, model, residual), and whether approximate cycles ran since it
    left = np.inf
    added = False
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    approx_since_best = False
    image_since_exact = False
    approx_ok = True  # image-domain cycles allowed (a guard turns them off)

    while True:
        rms = robust_rms(residual)
        stop_level = params.threshold
        if params.auto_threshold is not None:
            stop_level = max(stop_level, params.auto_threshold * rms)
        peak = float(np.max(np.abs(residual[active_mask]))) if active_mask.any() else 0.0
        history.append({"major": n_major, "image_cycles": n_image, "approx_cycles": n_approx,
                        "exact": exact,
                        "peak": peak, "rms": rms, "n_iter": n_iter})
        tol, limit = params.approx_tolerance, params.divergence_limit
        # below the auto-mask level an exact residual's peak is a noise peak, whatever the
        # approximate one showed
        floor = params.auto_mask * rms if params.auto_mask is not None else stop_level
        if tol is not None and peak > tol * max(left, floor) \
                and (not exact and added or image_since_exact):
            # the approximate cycles disagree with the data: a channel subset aliases a bright
            # source into the image, or the image-domain update misses how the prediction of
            # bright sources (sub-pixel points, spectra) moves with the model. Exact only now.
            history[-1]["inaccurate"] = "image-domain" if image_since_exact else "approximate"
            approx_ok = False
            # ... and when they gained less than one exact cycle would have (``mgain``),
            # their components are worth less than the exact cycles that must correct them
            undo = image_since_exact and exact and best is not None \
                and peak > (1.0 - params.mgain) * best[0]
            if image_since_exact and exact:
                n_exact_image = 0  # the exact-cycle budget starts again
            image_since_exact = False
            if undo:
                # the components the image-domain cycles placed answer a residual the data
                # disagree with: cleaning the exact residual would spend the exact cycles
                # undoing them (at demo scale it left noise-like components that came back
                # restored as false peaks of both signs): back to the last exact model and
                # its residual
                history[-1]["undone"] = True
                model[...] = best[1]
                residual = best[2].copy()
                true_residual, true_model = best[2].copy(), best[1].copy()
                added = False
                # and the auto-mask they shaped goes with them: the free search resumes
                auto_mask_on, active_mask = False, free_mask
                continue
            if not exact:
                exact_cycle()
                added = False
                continue
        if added and limit is not None and exact and best is not None \
                and peak > limit * best[0]:
            # the model change since the last exact residual made it worse: undo it; go on
            # with exact cycles alone if approximate ones made it, else stop
            history[-1]["diverged"] = True
            model[...] = best[1]
            residual = best[2].copy()
            if use_image:
                true_residual, true_model = best[2].copy(), best[1].copy()
            added = False
            if not approx_since_best:
                stop_reason = "diverging"
                break
            approx_ok = approx_on = False
            approx_since_best = False
            continue
        if exact and (best is None or added or peak < best[0]):
            best = (peak, model.copy(), residual.copy())
            approx_since_best = False
        added = False
        image_since_exact = image_since_exact and not exact
        if not exact:
            left = peak  # what an exact residual should show now
        reason = None
        if peak <= stop_level:
            reason = "threshold"
        elif n_iter >= params.niter:
            reason = "niter"
        elif n_major + n_approx >= params.max_major:
            reason = "max_major"
        elif exact and exact_budget_spent():
            reason = "max_exact"
        if reason is not None:
            if not exact:
                exact_cycle()  # decide on the residual computed from all the visibilities
                continue
            if reason == "threshold" and more is not None and n_more < 3 \
                    and not exact_budget_spent() and more(stop_level):
                n_more += 1
                exact_cycle()
                continue
            stop_reason = reason
            break
        # aim a little below the stop level so that the small mismatch between the minor
        # cycle and the true residual does not leave the peak just above it
        minor_stop = max(0.9 * stop_level, (1.0 - params.mgain) * peak, outside * peak)
        floor_hit = False
        if params.auto_mask is not None and not auto_mask_on \
                and minor_stop <= params.auto_mask * rms:
            minor_stop = params.auto_mask * rms
            floor_hit = True
        budget = params.niter - n_iter
        if params.multiscale:
            n, last = multiscale_minor(residual, psf32, model, scales=params.scales,
                                       gain=params.gain, threshold=minor_stop, max_iter=budget,
                                       mask=active_mask, nthreads=params.nthreads)
        elif params.subminor and params.psf_patch is None:
            if sub_conv is None:
                sub_conv = PsfConvolver(psf32, nthreads=params.nthreads,
                                        image_shape=residual.shape)
            n, last = subminor_cycle(residual, psf32, model, gain=params.gain,
                                     threshold=minor_stop, max_iter=budget, mask=active_mask,
                                     convolver=sub_conv)
        else:
            n, last = hogbom_minor(residual, psf32, model, gain=params.gain,
                                   threshold=minor_stop, max_iter=budget, mask=active_mask,
                                   patch=params.psf_patch, nthreads=params.nthreads)
        if floor_hit and last <= minor_stop and np.any(model):
            # the free search reached the auto-mask level: from now on clean only where
            # flux has been found
            auto_mask_on = True
            active_mask = free_mask & clean_support(model, params.auto_mask * rms)
        if n == 0:
            # nothing could be cleaned (or the minor cycle undid a round that diverged): decide
            # on an exact residual
            if not exact:
                exact_cycle()
                continue
            stop_reason = "stalled"
            break
        n_iter += n
        added, left = True, last
        # a channel subset is cleaned down to its own auto-mask level, not below: its peaks
        # there are its own noise (that of a fraction of the visibilities), which would go
        # into the model; the exact residual decides from there
        if approx_on and not floor_hit and n_iter < params.niter \
                and n_major + n_approx < params.max_major - 1:
            residual = np.asarray(approx_residual(model), dtype=np.float32)
            n_approx += 1
            exact = False
            approx_since_best = True
        elif image_on and approx_ok and n_image < params.max_image_cycles \
                and n_iter < params.niter:
            residual = (true_residual - convolver(model - true_model)).astype(np.float32)
            n_image += 1
            exact = False
            approx_since_best = image_since_exact = True
        else:
            exact_cycle()
    return CleanResult(model=model, residual=residual, n_iter=n_iter, n_major=n_major,
                       stop_reason=stop_reason, rms=rms, history=history,
                       n_image_cycles=n_image, n_approx_cycles=n_approx)
