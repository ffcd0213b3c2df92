"""Robust background statistics of an image: global rms and box-wise mean / rms maps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_MAD_TO_SIGMA = 1.4826


def robust_stats(values: np.ndarray, clip: float = 3.0, iters: int = 5) -> tuple[float, float]:
    """Median and sigma-clipped MAD rms of the finite values (NaN, NaN when none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    sig = _MAD_TO_SIGMA * float(np.median(np.abs(v - med)))
    for _ in range(iters):
        if sig <= 0:
            break
        keep = np.abs(v - med) < clip * sig
        if keep.all():
            break
        v = v[keep]
        med = float(np.median(v))
        sig = _MAD_TO_SIGMA * float(np.median(np.abs(v - med)))
    return med, sig


def background_maps(image: np.ndarray, box: int, clip: float = 3.0,
                    iters: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and rms maps (same shape as ``image``) from sigma-clipped statistics in
    non-overlapping ``box``×``box`` tiles, bilinearly interpolated between tile centres.

    ``box <= 0`` or a box larger than the image gives one global value. NaN pixels are
    ignored; a tile with too few finite pixels takes its value from its neighbours.
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    if box <= 0 or box >= min(ny, nx) // 2:
        med, sig = robust_stats(img, clip, iters + 2)
        return np.full(img.shape, med, np.float32), np.full(img.shape, sig, np.float32)
    ty, tx = ny // box, nx // box
    oy, ox = (ny - ty * box) // 2, (nx - tx * box) // 2
    tiles = img[oy:oy + ty * box, ox:ox + tx * box].reshape(ty, box, tx, box)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(ty, tx, box * box).astype(np.float64)
    med = np.nanmedian(tiles, axis=2)
    sig = _MAD_TO_SIGMA * np.nanmedian(np.abs(tiles - med[..., None]), axis=2)
    for _ in range(iters):
        bad = np.abs(tiles - med[..., None]) > clip * sig[..., None]
        tiles = np.where(bad, np.nan, tiles)
        med = np.nanmedian(tiles, axis=2)
        sig = _MAD_TO_SIGMA * np.nanmedian(np.abs(tiles - med[..., None]), axis=2)
    count = np.isfinite(tiles).sum(axis=2)
    valid = (count > 0.2 * box * box) & np.isfinite(sig) & (sig > 0)
    if not valid.any():
        med0, sig0 = robust_stats(img, clip, iters + 2)
        return np.full(img.shape, med0, np.float32), np.full(img.shape, sig0, np.float32)
    if not valid.all():  # fill invalid tiles from the nearest valid one
        idx = ndimage.distance_transform_edt(~valid, return_distances=False,
                                             return_indices=True)
        med = med[tuple(idx)]
        sig = sig[tuple(idx)]
    # tile-centre coordinates → fractional tile index of every pixel
    yc = (np.arange(ny) - oy - (box - 1) / 2.0) / box
    xc = (np.arange(nx) - ox - (box - 1) / 2.0) / box
    yc = np.clip(yc, 0, ty - 1)
    xc = np.clip(xc, 0, tx - 1)

    def upsample(m: np.ndarray) -> np.ndarray:
        rows = np.empty((ny, tx))
        for j in range(tx):
            rows[:, j] = np.interp(yc, np.arange(ty), m[:, j])
        out = np.empty((ny, nx), np.float32)
        for i in range(ny):
            out[i] = np.interp(xc, np.arange(tx), rows[i])
        return out

    return upsample(med), upsample(sig)


__all__ = ["robust_stats", "background_maps"]
