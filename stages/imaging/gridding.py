"""Gridding and degridding: thin wrappers on ``ducc0.wgridder`` in FITS orientation.

Conventions (checked against a direct Fourier transform in ``tests/test_gridding.py`` and
against WSClean on a Measurement Set in ``tests/test_ms_reader.py``):

* Visibilities follow the Measurement Set convention as WSClean and CASA read it (and as
  pyuvdata's ``write_ms`` writes it: MS DATA = conj(UVH5 data), MS UVW = -UVH5 uvw):
  ``V(u, v, w) = sum I(l, m) exp(+2 pi i (u l + v m + w (n - 1)))`` with l east, m north.
* ducc0 models ``V = sum I(x, y) exp(-2 pi i (u x + v y - w (n - 1)))``. With
  ``flip_v=True`` (v -> -v) and x = -l, y = m the two agree, so ducc0's first image axis
  runs west (-l) and its second north (+m); a transpose gives the FITS layout
  ``image[row, col]`` with rows going north and columns going west (RA decreasing):
  ``l = -(col - nx/2) * cell``, ``m = (row - ny/2) * cell``, phase centre at
  (ny/2, nx/2) (FITS CRPIX = n/2 + 1).
* A point source of flux S at pixel (row, col) appears with peak S in the dirty image
  normalised by the sum of weights, and ``image_to_vis`` of a model holding S in that pixel
  predicts S exp(+2 pi i ...) (no 1/n factor in either direction: ``divide_by_n=False``).
* All channels are gridded together (multi-frequency synthesis).
"""

from __future__ import annotations

import numpy as np
from ducc0.wgridder.experimental import dirty2vis, vis2dirty

#: Flags passed to ducc0 so that its images come out in FITS orientation after a transpose.
_FLIPS = {"flip_u": False, "flip_v": True, "flip_w": False}


def _epsilon_for(dtype: np.dtype, epsilon: float) -> float:
    if np.dtype(dtype) in (np.complex64, np.float32) and epsilon <= 1e-5:
        raise ValueError(f"epsilon {epsilon:g} is too small for single precision (use > 1e-5 "
                         "or double-precision visibilities)")
    return float(epsilon)


def _check_image_shape(ny: int, nx: int) -> None:
    for n in (nx, ny):
        if n < 32 or n % 2:
            raise ValueError(f"image dimensions must be even and >= 32, got {ny}x{nx}")


def vis_to_image(uvw: np.ndarray, freq: np.ndarray, vis: np.ndarray,
                 weight: np.ndarray | None = None, mask: np.ndarray | None = None, *,
                 npix_x: int, npix_y: int, cell: float, epsilon: float = 1e-4,
                 nthreads: int = 1, do_wgridding: bool = True) -> np.ndarray:
    """Un-normalised dirty image ``sum_k w_k Re(V_k exp(...))`` in FITS orientation (ny, nx).

    ``uvw`` (nrow, 3) in metres, ``freq`` (nchan,) in Hz, ``vis`` (nrow, nchan) complex,
    ``weight`` (nrow, nchan) real of matching precision, ``mask`` (nrow, nchan) where non-zero
    marks visibilities to use. ``cell`` is the pixel size in radians (direction cosines).
    Divide by :func:`weight_sum` to get Jy/beam.
    """
    _check_image_shape(npix_y, npix_x)
    if vis.dtype not in (np.complex64, np.complex128):
        vis = vis.astype(np.complex128)
    real = np.float32 if vis.dtype == np.complex64 else np.float64
    # strided views (a channel subset, a broadcast constant) are passed as they are: ducc0
    # reads them without a copy
    if weight is not None:
        weight = np.asarray(weight, dtype=real)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.uint8)
    img = vis2dirty(uvw=np.ascontiguousarray(uvw, dtype=np.float64),
                    freq=np.ascontiguousarray(freq, dtype=np.float64), vis=vis, wgt=weight,
                    mask=mask, npix_x=npix_x, npix_y=npix_y, pixsize_x=cell, pixsize_y=cell,
                    epsilon=_epsilon_for(vis.dtype, epsilon), do_wgridding=do_wgridding,
                    nthreads=nthreads, divide_by_n=False, **_FLIPS)
    return np.ascontiguousarray(img.T)


def image_to_vis(uvw: np.ndarray, freq: np.ndarray, image: np.ndarray,
                 mask: np.ndarray | None = None, *, cell: float, epsilon: float = 1e-4,
                 nthreads: int = 1, do_wgridding: bool = True, weight: np.ndarray | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Predict visibilities (nrow, nchan) of a model image (ny, nx) in FITS orientation, Jy/pixel.

    The precision follows ``image`` (float32 -> complex64). Masked-out entries are zero.
    With ``weight``, the predictions come out multiplied by it; ``out`` (C-contiguous, of the
    right shape and precision) receives them without a new allocation.
    """
    _check_image_shape(*image.shape)
    dirty = np.ascontiguousarray(image.T)
    real = dirty.dtype
    if mask is not None:
        mask = np.asarray(mask, dtype=np.uint8)
    if weight is not None:
        weight = np.asarray(weight, dtype=real)
    return dirty2vis(uvw=np.ascontiguousarray(uvw, dtype=np.float64),
                     freq=np.ascontiguousarray(freq, dtype=np.float64), dirty=dirty, mask=mask,
                     wgt=weight, vis=out, pixsize_x=cell, pixsize_y=cell,
                     epsilon=_epsilon_for(dirty.dtype, epsilon), do_wgridding=do_wgridding,
                     nthreads=nthreads, divide_by_n=False, **_FLIPS)


def weight_sum(weight: np.ndarray | None, mask: np.ndarray | None, shape: tuple[int, int]) -> float:
    """Sum of the weights of the visibilities that ``vis_to_image`` grids."""
    if weight is None:
        return float(np.count_nonzero(mask)) if mask is not None else float(np.prod(shape))
    if mask is None:
        return float(np.sum(weight, dtype=np.float64))
    return float(np.sum(weight, where=mask.astype(bool), dtype=np.float64))


def pixel_lm(npix_y: int, npix_x: int, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines (l, m) of each pixel, FITS orientation (broadcastable row/col vectors)."""
    col = np.arange(npix_x) - npix_x // 2
    row = np.arange(npix_y) - npix_y // 2
    return (-col * cell)[None, :], (row * cell)[:, None]


def dft_image(uvw: np.ndarray, freq: np.ndarray, vis: np.ndarray, weight: np.ndarray, *,
              npix_x: int, npix_y: int, cell: float) -> np.ndarray:
    """Direct Fourier transform reference of :func:`vis_to_image` (slow; for tests and checks)."""
    from dsa110_pipeline.instrument import SPEED_OF_LIGHT

    l, m = pixel_lm(npix_y, npix_x, cell)
    l, m = np.broadcast_arrays(l, m)
    nm1 = np.sqrt(1.0 - l**2 - m**2) - 1.0
    out = np.zeros((npix_y, npix_x))
    for ich, f in enumerate(freq):
        u, v, w = (uvw * (f / SPEED_OF_LIGHT)).T
        for k in range(len(u)):
            if weight[k, ich] == 0:
                continue
            ph = -2j * np.pi * (u[k] * l + v[k] * m + w[k] * nm1)
            out += weight[k, ich] * (vis[k, ich] * np.exp(ph)).real
    return out
