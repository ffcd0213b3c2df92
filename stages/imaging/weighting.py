"""Imaging weights: natural, uniform and Briggs (robust), with a uv range and a Gaussian taper.

Density weighting uses a uv grid of the image's Fourier cell (1 / field of view), filled with
a numba loop at both (u, v) and (-u, -v) since each visibility also stands for its
Hermitian conjugate (no temporaries of the visibilities' size); for data read in chunks,
accumulate :func:`grid_weight_density` over the chunks, then call :func:`apply_weighting` on
each chunk with the summed grid.
"""

from __future__ import annotations

import math
from typing import Literal

import numba
import numpy as np

from dsa110_pipeline.instrument import SPEED_OF_LIGHT

Scheme = Literal["natural", "uniform", "briggs"]


def _uv_lambda(uvw: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.asarray(freq, dtype=np.float64)[None, :] / SPEED_OF_LIGHT
    return uvw[:, 0:1] * scale, uvw[:, 1:2] * scale


def uv_selection(uvw: np.ndarray, freq: np.ndarray, *, uv_min: float = 0.0,
                 uv_max: float | None = None, taper_fwhm: float | None = None) -> np.ndarray:
    """Multiplicative factor (nrow, nchan) for a uv range (wavelengths) and a Gaussian taper.

    ``taper_fwhm`` is the image-plane FWHM (rad) of the taper; its Fourier transform
    ``exp(-(pi theta r)^2 / (4 ln 2))`` multiplies the weight at uv distance r (wavelengths).
    """
    u, v = _uv_lambda(uvw, freq)
    r2 = u * u + v * v
    fac = np.ones(r2.shape, dtype=np.float32)
    if uv_min > 0:
        fac[r2 < uv_min**2] = 0.0
    if uv_max is not None:
        fac[r2 > uv_max**2] = 0.0
    if taper_fwhm:
        fac *= np.exp(-(np.pi * taper_fwhm) ** 2 * r2 / (4.0 * np.log(2.0))).astype(np.float32)
    return fac


@numba.njit(cache=True, nogil=True)
def _density_kernel(uvw, scale, weight, mask, use_mask, du_x, du_y, nx, ny, r2min, r2max,
                    out):  # pragma: no cover - numba
    """Add each visibility's weight at (u, v) and (-u, -v) of the flat uv grid ``out``."""
    for i in range(uvw.shape[0]):
        u0, v0 = uvw[i, 0], uvw[i, 1]
        for k in range(scale.shape[0]):
            w = weight[i, k]
            if w == 0.0 or (use_mask and mask[i, k] == 0):
                continue
            u, v = u0 * scale[k], v0 * scale[k]
            r2 = u * u + v * v
            if r2 < r2min or r2 > r2max:
                continue
            for sgn in (1.0, -1.0):
                iu = int(math.floor(sgn * u / du_x + 0.5)) + nx // 2
                iv = int(math.floor(sgn * v / du_y + 0.5)) + ny // 2
                if 0 <= iu < nx and 0 <= iv < ny:
                    out[iv * nx + iu] += w


@numba.njit(cache=True, nogil=True)
def _apply_kernel(uvw, scale, out, mask, use_mask, density, use_density, uniform, f2, du_x,
                  du_y, nx, ny, r2min, r2max, taper):  # pragma: no cover - numba
    """In place: out *= density factor x uv range x taper; masked entries -> 0."""
    for i in range(uvw.shape[0]):
        u0, v0 = uvw[i, 0], uvw[i, 1]
        for k in range(scale.shape[0]):
            if use_mask and mask[i, k] == 0:
                out[i, k] = 0.0
                continue
            w = out[i, k]
            if w == 0.0:
                continue
            u, v = u0 * scale[k], v0 * scale[k]
            r2 = u * u + v * v
            if r2 < r2min or r2 > r2max:
                out[i, k] = 0.0
                continue
            fac = 1.0
            if use_density:
                iu = int(math.floor(u / du_x + 0.5)) + nx // 2
                iv = int(math.floor(v / du_y + 0.5)) + ny // 2
                if not (0 <= iu < nx and 0 <= iv < ny):
                    out[i, k] = 0.0
                    continue
                d = density[iv * nx + iu]
                fac = (1.0 / d if d > 0 else 0.0) if uniform else 1.0 / (1.0 + d * f2)
            if taper > 0.0:
                fac *= math.exp(-taper * r2)
            out[i, k] = w * fac


def _r2_limits(uv_min: float, uv_max: float | None) -> tuple[float, float]:
    return (float(uv_min) ** 2 if uv_min > 0 else -1.0,
            float(uv_max) ** 2 if uv_max is not None else np.inf)


def _mask_arg(mask: np.ndarray | None) -> tuple[np.ndarray, bool]:
    if mask is None:
        return np.zeros((1, 1), np.uint8), False
    return np.ascontiguousarray(mask).view(np.uint8) if mask.dtype == np.bool_ \
        else np.ascontiguousarray(mask, dtype=np.uint8), True


def grid_weight_density(uvw: np.ndarray, freq: np.ndarray, weight: np.ndarray,
                        mask: np.ndarray | None, *, npix_x: int, npix_y: int, cell: float,
                        uv_min: float = 0.0, uv_max: float | None = None,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Sum of weights per uv cell (npix_y, npix_x), both Hermitian halves, float64.

    Visibilities outside the uv range (wavelengths) do not count. Pass ``out`` to accumulate
    over chunks of the same data set.
    """
    if out is None:
        out = np.zeros((npix_y, npix_x), dtype=np.float64)
    if out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float64 array")
    mask_arr, use_mask = _mask_arg(mask)
    r2min, r2max = _r2_limits(uv_min, uv_max)
    _density_kernel(np.ascontiguousarray(uvw, dtype=np.float64),
                    np.asarray(freq, dtype=np.float64) / SPEED_OF_LIGHT,
                    np.asarray(weight), mask_arr, use_mask, 1.0 / (npix_x * cell),
                    1.0 / (npix_y * cell), npix_x, npix_y, r2min, r2max, out.reshape(-1))
    return out


def briggs_factor(density: np.ndarray, robust: float) -> float:
    """The f^2 of Briggs weighting: (5 10^-R)^2 / (sum W_k^2 / sum W_k) over uv cells."""
    total = density.sum()
    if total <= 0:
        raise ValueError("no unflagged weight to compute Briggs weighting from")
    return float((5.0 * 10.0 ** (-robust)) ** 2 / ((density**2).sum() / total))


def apply_weighting(uvw: np.ndarray, freq: np.ndarray, weight: np.ndarray,
                    mask: np.ndarray | None, *, scheme: Scheme, npix_x: int, npix_y: int,
                    cell: float, density: np.ndarray | None = None, robust: float = 0.0,
                    uv_min: float = 0.0, uv_max: float | None = None,
                    taper_fwhm: float | None = None, inplace: bool = False) -> np.ndarray:
    """Imaging weights (nrow, nchan) float32; masked visibilities and those off the grid get 0.

    ``density`` is the output of :func:`grid_weight_density` over the whole data set (needed
    for uniform and Briggs; computed from these arrays when omitted). With ``inplace`` and a
    C-contiguous float32 ``weight``, the weights are overwritten (no copy).
    """
    if scheme not in ("natural", "uniform", "briggs"):
        raise ValueError(f"unknown weighting scheme '{scheme}'")
    if inplace and weight.dtype == np.float32 and weight.flags.c_contiguous \
            and weight.flags.writeable:
        out = weight
    else:
        out = np.array(weight, dtype=np.float32, copy=True, order="C")
    mask_arr, use_mask = _mask_arg(mask)
    f2 = 0.0
    if scheme != "natural":
        if density is None:
            density = grid_weight_density(uvw, freq, out, mask, npix_x=npix_x, npix_y=npix_y,
                                          cell=cell, uv_min=uv_min, uv_max=uv_max)
        f2 = briggs_factor(density, robust) if scheme == "briggs" else 0.0
        dens = np.ascontiguousarray(density, dtype=np.float64).reshape(-1)
    else:
        dens = np.zeros(1)
    r2min, r2max = _r2_limits(uv_min, uv_max)
    taper = (np.pi * taper_fwhm) ** 2 / (4.0 * np.log(2.0)) if taper_fwhm else 0.0
    _apply_kernel(np.ascontiguousarray(uvw, dtype=np.float64),
                  np.asarray(freq, dtype=np.float64) / SPEED_OF_LIGHT, out, mask_arr,
                  use_mask, dens, scheme != "natural", scheme == "uniform", float(f2),
                  1.0 / (npix_x * cell), 1.0 / (npix_y * cell), npix_x, npix_y, r2min, r2max,
                  float(taper))
    return out


@numba.njit(cache=True, nogil=True)
def _sums_kernel(data_w, w, tindex, chan, per_time):  # pragma: no cover - numba
    wsum = 0.0
    var = 0.0
    for i in range(w.shape[0]):
        g = tindex[i]
        for k in range(w.shape[1]):
            x = float(w[i, k])
            if x == 0.0:
                continue
            wsum += x
            chan[k] += x
            per_time[g, k] += x
            d = float(data_w[i, k])
            if d > 0:
                var += x * x / d
    return wsum, var


def weight_sums(data_w: np.ndarray, w: np.ndarray, time: np.ndarray | None = None
                ) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """Sums of imaging weights ``w`` (nrow, nchan) made from data weights ``data_w``.

    Returns (sum w, sum w^2 / data_w (the variance numerator of the image), per-channel sums
    (nchan,), the distinct row times (ntime,), and the per-time, per-channel sums
    (ntime, nchan)); without ``time`` all rows count as one time, 0.
    """
    if data_w.shape != w.shape:
        raise ValueError(f"data weights {data_w.shape} and weights {w.shape} differ")
    if time is None:
        times, tindex = np.zeros(1), np.zeros(w.shape[0], np.int64)
    else:
        times, tindex = np.unique(np.asarray(time), return_inverse=True)
    chan = np.zeros(w.shape[1])
    per_time = np.zeros((len(times), w.shape[1]))
    wsum, var = _sums_kernel(data_w, w, tindex.astype(np.int64).ravel(), chan, per_time)
    return float(wsum), float(var), chan, times, per_time
