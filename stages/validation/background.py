"""Robust background statistics of an image: global rms and box-wise mean / rms maps.

Each sample (the whole image, or one box) is sorted once; sigma clipping then only moves
the ends of the kept range, so the median and the quartiles of the kept values are
look-ups. The rms is the interquartile range / 1.349 (the sigma of a Gaussian with that
IQR), which like the MAD ignores the sources' positive tail.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: IQR of a unit Gaussian.
_IQR_TO_SIGMA = 1.0 / 1.3489795


def _quantile(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (linear interpolation) of ``s[r, lo[r]:hi[r]]`` for every sorted row."""
    pos = lo + q * np.maximum(hi - lo - 1, 0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, np.maximum(hi - 1, 0))
    f = pos - i0
    rows = np.arange(s.shape[0])
    with np.errstate(invalid="ignore"):  # rows without a finite value give NaN
        return (1.0 - f) * s[rows, i0] + f * s[rows, i1]


def clipped_stats_sorted(s: np.ndarray, clip: float = 3.0,
                         iters: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped median and rms of every row of ``s`` (rows sorted ascending, as
    ``np.sort`` leaves them: -inf first, +inf and NaN last; only finite values count).
    Returns (median, rms, number of values kept); NaN where a row has no finite value."""
    s = np.asarray(s)
    n_fin = np.isfinite(s).sum(axis=1)
    lo = (s == -np.inf).sum(axis=1)
    hi = lo + n_fin
    has = n_fin > 0
    lo_e, hi_e = lo, np.where(has, hi, lo + 1)
    med = sig = np.full(s.shape[0], np.nan)
    for it in range(iters + 1):
        med = _quantile(s, lo_e, hi_e, 0.5)
        sig = (_quantile(s, lo_e, hi_e, 0.75) - _quantile(s, lo_e, hi_e, 0.25)) * _IQR_TO_SIGMA
        if it == iters:
            break
        lo_n = (s < (med - clip * sig)[:, None]).sum(axis=1)
        hi_n = (s <= (med + clip * sig)[:, None]).sum(axis=1)
        ok = has & (sig > 0) & (hi_n > lo_n)
        lo_n = np.where(ok, lo_n, lo_e)
        hi_n = np.where(ok, hi_n, hi_e)
        if np.array_equal(lo_n, lo_e) and np.array_equal(hi_n, hi_e):
            break
        lo_e, hi_e = lo_n, hi_n
    med = np.where(has, med, np.nan)
    sig = np.where(has, sig, np.nan)
    return med, sig, np.where(has, hi_e - lo_e, 0)


def robust_stats(values: np.ndarray, clip: float = 3.0, iters: int = 5) -> tuple[float, float]:
    """Median and sigma-clipped rms (IQR/1.349) of the finite values (NaN, NaN when none)."""
    v = np.asarray(values).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    s = np.sort(v.astype(np.float32 if v.dtype.itemsize <= 4 else np.float64))[None, :]
    med, sig, _ = clipped_stats_sorted(s, clip, iters)
    return float(med[0]), float(sig[0])


def _interp_nodes(n: int, n_nodes: int, offset: int,
                  box: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation between box centres (clamped at the ends): for each of ``n``
    pixels the lower node, the upper node and the weight of the upper one."""
    pos = np.clip((np.arange(n) - offset - (box - 1) / 2.0) / box, 0, n_nodes - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), max(n_nodes - 2, 0))
    i1 = np.minimum(i0 + 1, n_nodes - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _upsample(m: np.ndarray, ny: int, nx: int, oy: int, ox: int, box: int) -> np.ndarray:
    """Bilinear interpolation of the tile values ``m`` onto the full pixel grid."""
    y0, y1, fy = _interp_nodes(ny, m.shape[0], oy, box)
    x0, x1, fx = _interp_nodes(nx, m.shape[1], ox, box)
    m = m.astype(np.float32)
    rows = m[y0] * (1.0 - fy)[:, None] + m[y1] * fy[:, None]
    out = rows[:, x0]
    out *= 1.0 - fx
    upper = rows[:, x1]
    upper *= fx
    out += upper
    return out


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
    tiles = np.sort(tiles.transpose(0, 2, 1, 3).reshape(ty * tx, box * box), axis=1)
    med, sig, count = clipped_stats_sorted(tiles, clip, iters)
    med, sig, count = med.reshape(ty, tx), sig.reshape(ty, tx), count.reshape(ty, tx)
    valid = (count > 0.2 * box * box) & np.isfinite(sig) & (sig > 0)
    if not valid.any():
        med0, sig0 = robust_stats(img, clip, iters + 2)
        return np.full(img.shape, med0, np.float32), np.full(img.shape, sig0, np.float32)
    if not valid.all():  # fill invalid tiles from the nearest valid one
        idx = ndimage.distance_transform_edt(~valid, return_distances=False,
                                             return_indices=True)
        med = med[tuple(idx)]
        sig = sig[tuple(idx)]
    return _upsample(med, ny, nx, oy, ox, box), _upsample(sig, ny, nx, oy, ox, box)


__all__ = ["robust_stats", "background_maps", "clipped_stats_sorted"]
