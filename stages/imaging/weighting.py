"""Imaging weights: natural, uniform and Briggs (robust), with a uv range and a Gaussian taper.

Density weighting uses a uv grid of the image's Fourier cell (1 / field of view), filled with
``np.bincount`` at both (u, v) and (-u, -v) since each visibility also stands for its
Hermitian conjugate. Arrays are processed in row blocks to bound memory; for data read in
chunks, accumulate :func:`grid_weight_density` over the chunks, then call :func:`apply_weighting`
on each chunk with the summed grid.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dsa110_pipeline.instrument import SPEED_OF_LIGHT

Scheme = Literal["natural", "uniform", "briggs"]
_ROW_BLOCK = 8192


def _uv_lambda(uvw: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.asarray(freq, dtype=np.float64)[None, :] / SPEED_OF_LIGHT
    return uvw[:, 0:1] * scale, uvw[:, 1:2] * scale


def _grid_index(u: np.ndarray, v: np.ndarray, npix_x: int, npix_y: int,
                cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat uv-grid index of (u, v) in wavelengths and whether it falls on the grid."""
    du_x = 1.0 / (npix_x * cell)
    du_y = 1.0 / (npix_y * cell)
    iu = np.rint(u / du_x).astype(np.int64) + npix_x // 2
    iv = np.rint(v / du_y).astype(np.int64) + npix_y // 2
    ok = (iu >= 0) & (iu < npix_x) & (iv >= 0) & (iv < npix_y)
    return iv * npix_x + iu, ok


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
    flat = out.reshape(-1)
    n = npix_x * npix_y
    for r0 in range(0, uvw.shape[0], _ROW_BLOCK):
        sl = slice(r0, r0 + _ROW_BLOCK)
        u, v = _uv_lambda(uvw[sl], freq)
        w = np.asarray(weight[sl], dtype=np.float64)
        if mask is not None:
            w = np.where(mask[sl] != 0, w, 0.0)
        if uv_min > 0 or uv_max is not None:
            r2 = u * u + v * v
            w = np.where((r2 >= uv_min**2) & (r2 <= (np.inf if uv_max is None else uv_max**2)),
                         w, 0.0)
        for sign in (1.0, -1.0):
            idx, ok = _grid_index(sign * u, sign * v, npix_x, npix_y, cell)
            flat += np.bincount(idx[ok], weights=w[ok], minlength=n)
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
                    taper_fwhm: float | None = None) -> np.ndarray:
    """Imaging weights (nrow, nchan) float32; masked visibilities and those off the grid get 0.

    ``density`` is the output of :func:`grid_weight_density` over the whole data set (needed
    for uniform and Briggs; computed from these arrays when omitted).
    """
    if scheme not in ("natural", "uniform", "briggs"):
        raise ValueError(f"unknown weighting scheme '{scheme}'")
    sel = None
    if uv_min > 0 or uv_max is not None or taper_fwhm:
        sel = uv_selection(uvw, freq, uv_min=uv_min, uv_max=uv_max, taper_fwhm=taper_fwhm)
    out = np.array(weight, dtype=np.float32, copy=True)
    if mask is not None:
        out[mask == 0] = 0.0
    if scheme != "natural":
        if density is None:
            density = grid_weight_density(uvw, freq, out, None, npix_x=npix_x, npix_y=npix_y,
                                          cell=cell, uv_min=uv_min, uv_max=uv_max)
        f2 = briggs_factor(density, robust) if scheme == "briggs" else 0.0
        flat = density.reshape(-1)
        for r0 in range(0, uvw.shape[0], _ROW_BLOCK):
            sl = slice(r0, r0 + _ROW_BLOCK)
            u, v = _uv_lambda(uvw[sl], freq)
            idx, ok = _grid_index(u, v, npix_x, npix_y, cell)
            dens = np.where(ok, flat[np.where(ok, idx, 0)], 0.0)
            blk = out[sl]
            if scheme == "uniform":
                with np.errstate(divide="ignore", invalid="ignore"):
                    fac = np.where(dens > 0, 1.0 / dens, 0.0)
            else:
                fac = 1.0 / (1.0 + dens * f2)
            blk *= np.where(ok, fac, 0.0).astype(np.float32)
    if sel is not None:
        out *= sel
    return out
