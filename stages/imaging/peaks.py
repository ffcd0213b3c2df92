"""Sub-pixel peak of an image: a parabola through the brightest pixel on each axis."""

from __future__ import annotations

import numpy as np


def parabolic_peak(image: np.ndarray, row: int, col: int,
                   half: int = 2) -> tuple[float, float, float] | None:
    """(value, row, col) of the brightest pixel within ``half`` pixels of (``row``, ``col``),
    refined by a parabola through it and its two neighbours along each axis (NaNs ignored).

    Row and column are fractional image indices. None when the brightest pixel lies on the
    window's edge (no neighbour outside it is looked at) or the window leaves the image.
    """
    r0, c0 = row - half, col - half
    if r0 < 0 or c0 < 0 or row + half >= image.shape[0] or col + half >= image.shape[1]:
        return None
    win = np.asarray(image[r0:row + half + 1, c0:col + half + 1], dtype=np.float64)
    r, c = np.unravel_index(np.nanargmax(win), win.shape)
    if not (1 <= r < win.shape[0] - 1 and 1 <= c < win.shape[1] - 1):
        return None
    yy, xx = win[r - 1:r + 2, c], win[r, c - 1:c + 2]
    cy, cx = yy[0] - 2 * yy[1] + yy[2], xx[0] - 2 * xx[1] + xx[2]
    dy = 0.5 * (yy[0] - yy[2]) / cy if cy else 0.0
    dx = 0.5 * (xx[0] - xx[2]) / cx if cx else 0.0
    value = win[r, c] - 0.25 * ((yy[0] - yy[2]) * dy + (xx[0] - xx[2]) * dx)
    return float(value), r0 + r + dy, c0 + c + dx


__all__ = ["parabolic_peak"]
