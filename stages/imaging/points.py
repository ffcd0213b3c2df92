"""Bright compact sources as point sources between pixel centres.

A point source between pixel centres is not one CLEAN component: Högbom represents it by a
peak and a dipole of neighbours, and, because the PSF's sidelobes (DSA-110's arm ridges and
grating lobes) shift with the source, by further positive and negative components out to
the sidelobes, which compensate the shifted sidelobes in the major cycle. Restored with a
Gaussian beam those far components become positive and negative blobs around the source:
measured on a noise-free, uncorrupted 15 Jy source 0.1 pixel off a pixel centre (6" cells,
26" x 15" beam), a single component at the nearest pixel left a dipole of ±0.6 Jy/beam
(4 %) in the residual, and CLEAN then spread 9 % of the flux over ~1500 components reaching
20 pixels out. Each such blob is a false detection at a bright source.

So the major cycle models each bright compact cluster of components as one point source at
the cluster's flux-weighted centre (the sub-pixel position the components encode), predicts
it exactly (a direct Fourier sum), and restores it as a Gaussian at that position. Pure
functions on arrays; the imager wires them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .beam import Beam

#: the largest position step (pixels) one refinement takes (a Newton step on a dipole far
#: larger than this is not the small position error it models)
MAX_STEP_PX = 0.1
#: a point with another of at least this fraction of its flux within two fit windows is
#: not refined: the neighbour's residual dipole enters its fit (a pair 4.5 px apart, 0.09
#: and 0.10 Jy, dec +41.6: each step made the next exact residual worse, up to 10 mJy)
BLEND_FRACTION = 0.1


@dataclass(frozen=True)
class PointSources:
    """Point sources at sub-pixel positions (pixel coordinates, FITS orientation: x the
    column, y the row) with fluxes (Jy, apparent, as CLEAN measures them), and the image of
    the model components they stand for (to leave out of the gridded model)."""

    y: np.ndarray
    x: np.ndarray
    flux: np.ndarray
    replaced: np.ndarray

    def __len__(self) -> int:
        return int(self.flux.size)


def point_sources(model: np.ndarray, floor: float, beam_px: float,
                  radius_px: float = 1.5, compact: float = 0.8) -> PointSources:
    """The bright compact sources of ``model`` as point sources.

    Each positive component that is the largest within ``beam_px`` of it (brightest first)
    becomes one point when the components within ``radius_px`` of it (the peak and the
    dipole of neighbours that encode its sub-pixel position) sum to at least ``floor`` and
    to at least ``compact`` of the flux within ``beam_px`` of it (not yet taken by a
    brighter point): one point of those components' flux at their flux-weighted centre.
    The other components stay on the grid: moving them would move real structure.

    Compactness is judged within a beam of the peak, not over the cluster of components
    joined to it: in a dense field, deep cleaning joins neighbouring sources into chains,
    and a 0.31 Jy source whose chain grew to 0.43 Jy stopped counting as compact, went
    back onto the grid (a 10 % change of its prediction) and back again, cycle after cycle
    (dec +39.8, 3C345, seed 131: CLEAN stopped "diverging" with the field half cleaned).

    "Within ``beam_px``" is a circle for both tests, and the components within
    ``radius_px`` of another peak are that peak's, not counted against this one's
    compactness. Before, two compact sources 4.5 px apart (dec +41.6, 3C119, seed 223:
    0.09 and 0.10 Jy, 2 rows and 4 columns apart, a 4.3 px beam) took turns: whichever
    brightest pixel was the larger (a position refinement moves flux between a point's
    pixels) was the point and the other went onto the grid, and each was compact by a
    hair (0.79-0.85 of the flux within a beam, its neighbour's edge components counted);
    each turn changed both predictions by ~10 mJy and CLEAN stopped "diverging" with 21
    negative 5-sigma peaks left.
    """
    ny, nx = model.shape
    replaced = np.zeros(model.shape, np.float32)
    empty = PointSources(np.zeros(0), np.zeros(0), np.zeros(0), replaced)
    if floor <= 0 or not np.any(model > 0):
        return empty
    h = max(1, int(np.ceil(beam_px)))
    r_near = int(np.ceil(radius_px))
    # a point's flux sits within radius_px of its peak, at most (2 r + 1)^2 components
    cy, cx = np.nonzero(model >= floor / (2 * r_near + 1) ** 2)
    order = np.argsort(-model[cy, cx], kind="stable")
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    dist = np.hypot(yy, xx)
    # the peaks (the largest component within a beam), brightest first, and the pixels
    # within radius_px of each: its own, never counted against another's compactness
    peaks = []
    owner = np.full(model.shape, -1, np.int32)
    for y0, x0 in zip(cy[order], cx[order]):
        r0, r1, c0, c1 = max(0, y0 - h), min(ny, y0 + h + 1), max(0, x0 - h), min(nx, x0 + h + 1)
        d = dist[r0 - y0 + h:r1 - y0 + h, c0 - x0 + h:c1 - x0 + h]
        if model[y0, x0] < model[r0:r1, c0:c1][d <= beam_px].max():
            continue  # not the largest within a beam: not a peak
        own = owner[r0:r1, c0:c1]
        own[(d <= radius_px) & (own < 0)] = len(peaks)
        peaks.append((r0, r1, c0, c1, d))
    ys, xs, fs = [], [], []
    for k, (r0, r1, c0, c1, d) in enumerate(peaks):
        free = np.where(replaced[r0:r1, c0:c1] == 0, model[r0:r1, c0:c1], 0.0)
        near = (d <= radius_px) & (free != 0)
        tot = float(free[near].sum())
        theirs = (owner[r0:r1, c0:c1] >= 0) & (owner[r0:r1, c0:c1] != k)
        local = float(free[(d <= beam_px) & ~theirs].sum())
        if tot <= 0 or tot < floor or tot < compact * local:
            continue
        py, px = np.nonzero(near)
        w = free[py, px]
        ys.append(float(np.sum(w * (py + r0)) / tot))
        xs.append(float(np.sum(w * (px + c0)) / tot))
        fs.append(tot)
        replaced[py + r0, px + c0] = w
    if not fs:
        return empty
    return PointSources(np.asarray(ys), np.asarray(xs), np.asarray(fs), replaced)


def add_points(image: np.ndarray, pts: PointSources, beam: Beam, cell: float) -> np.ndarray:
    """Add each point restored as the Gaussian ``beam`` (peak = flux) at its sub-pixel
    position, in place; returns ``image``."""
    ny, nx = image.shape
    pa = np.radians(beam.bpa)
    s_maj = beam.bmaj / (2 * np.sqrt(2 * np.log(2))) / cell
    s_min = beam.bmin / (2 * np.sqrt(2 * np.log(2))) / cell
    h = int(np.ceil(6 * s_maj)) + 1
    for y0, x0, f in zip(pts.y, pts.x, pts.flux):
        r0, r1 = max(0, int(y0) - h), min(ny, int(y0) + h + 2)
        c0, c1 = max(0, int(x0) - h), min(nx, int(x0) + h + 2)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        ex = -(xx - x0)  # east: l grows to decreasing column
        ny_ = yy - y0
        maj = ex * np.sin(pa) + ny_ * np.cos(pa)
        mnr = ex * np.cos(pa) - ny_ * np.sin(pa)
        image[r0:r1, c0:c1] += (f * np.exp(-0.5 * ((maj / s_maj) ** 2 + (mnr / s_min) ** 2))
                                ).astype(image.dtype)
    return image


def _derivatives(patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d/dy, d/dx) of ``patch`` by the five-point central difference (edges: zero)."""
    gy = np.zeros_like(patch)
    gx = np.zeros_like(patch)
    gy[2:-2] = (patch[:-4] - 8 * patch[1:-3] + 8 * patch[3:-1] - patch[4:]) / 12.0
    gx[:, 2:-2] = (patch[:, :-4] - 8 * patch[:, 1:-3] + 8 * patch[:, 3:-1] - patch[:, 4:]) / 12.0
    return gy, gx


def _psf_window(psf: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """PSF values (float64) at offsets rows r0..r1-1, columns c0..c1-1 from its peak (at
    ``shape // 2``); zero beyond the array."""
    py, px = psf.shape
    out = np.zeros((r1 - r0, c1 - c0))
    a0, a1 = max(0, r0 + py // 2), min(py, r1 + py // 2)
    b0, b1 = max(0, c0 + px // 2), min(px, c1 + px // 2)
    if a0 < a1 and b0 < b1:
        out[a0 - r0 - py // 2:a1 - r0 - py // 2, b0 - c0 - px // 2:b1 - c0 - px // 2] = \
            psf[a0:a1, b0:b1]
    return out


def _has_close_neighbour(pts: PointSources, i: int, radius: float, min_flux: float) -> bool:
    """Whether another point of at least ``min_flux`` lies within ``radius`` pixels of
    point ``i``."""
    d = np.hypot(pts.y - pts.y[i], pts.x - pts.x[i])
    d[i] = np.inf
    return bool(np.any((d <= radius) & (pts.flux >= min_flux)))


def refine_positions(model: np.ndarray, residual: np.ndarray, psf: np.ndarray,
                     pts: PointSources, min_flux: float, beam_px: float,
                     max_step: float = MAX_STEP_PX, reach: int = 256
                     ) -> tuple[np.ndarray, float]:
    """Newton steps on the positions of the points brighter than ``min_flux``, in place.

    A point at x_m whose true position is x_t leaves ``S (x_m - x_t) . grad PSF`` in the
    residual: a dipole, at 1e-3 pixel and 20 Jy already ~20 times DSA-110's demo noise,
    which CLEAN would otherwise model with positive and negative components around the
    source (restored, false peaks of both signs). The residual within a beam of each point
    is fitted (least squares) by the PSF's two derivatives and the PSF itself, all shifted
    to the point's sub-pixel position; the step ``-a / S`` (at most ``max_step`` pixels per
    axis) moves the point's centroid (``point_sources``) by moving flux between its
    brightest pixel and a neighbour, and the fitted dipole is taken out of ``residual``
    within ``reach`` pixels of the point (the PSF's derivatives; ``psf`` peaked at its
    centre; the next exact residual shows what is left beyond). Returns ((n, 2) steps
    (dy, dx) in pixels, zero where not refined; the largest dipole removed, Jy/beam).
    """
    ny, nx = residual.shape
    py, px = psf.shape
    cy, cx = py // 2, px // 2
    steps = np.zeros((len(pts), 2))
    change = 0.0
    h = max(2, int(np.ceil(beam_px)))
    m = h + 32  # the PSF at the sub-pixel position this far out (and the stencil's margin)
    patch = psf[cy - h - m:cy + h + m + 1, cx - h - m:cx + h + m + 1].astype(np.float64)
    for i in np.flatnonzero(pts.flux >= min_flux):
        ys, xs, s = float(pts.y[i]), float(pts.x[i]), float(pts.flux[i])
        if _has_close_neighbour(pts, i, 2 * h, BLEND_FRACTION * s):
            continue  # its window holds another point's residual: the fit would mix them
        # the point's brightest pixel, as ``point_sources`` found it
        r0, c0 = int(np.floor(ys)), int(np.floor(xs))
        box = model[max(0, r0 - 1):r0 + 3, max(0, c0 - 1):c0 + 3]
        if box.size == 0:
            continue
        by, bx = np.unravel_index(int(np.argmax(box)), box.shape)
        y0, x0 = max(0, r0 - 1) + int(by), max(0, c0 - 1) + int(bx)
        if not (h <= y0 < ny - h and h <= x0 < nx - h):
            continue
        # the PSF about the point's sub-pixel position, on the window's pixels
        shifted = ndimage.shift(patch, (ys - y0, xs - x0), order=3, mode="nearest")
        gy, gx = _derivatives(shifted)
        win = (slice(m, m + 2 * h + 1), slice(m, m + 2 * h + 1))
        basis = np.stack([gy[win].ravel(), gx[win].ravel(), shifted[win].ravel()], axis=1)
        rhs = residual[y0 - h:y0 + h + 1, x0 - h:x0 + h + 1].astype(np.float64).ravel()
        coef, *_ = np.linalg.lstsq(basis, rhs, rcond=None)
        a_y, a_x = float(coef[0]), float(coef[1])
        # R = S (x_m - x_t) . grad PSF: the step x_t - x_m is -a / S
        dy = float(np.clip(-a_y / s, -max_step, max_step))
        dx = float(np.clip(-a_x / s, -max_step, max_step))
        if dy == 0.0 and dx == 0.0:
            continue
        # the centroid moves by eps / S when eps moves one pixel along an axis
        for d, (oy, ox) in ((dy, (1, 0)), (dx, (0, 1))):
            sgn = 1 if d > 0 else -1
            eps = np.float32(abs(d) * s)
            model[y0, x0] -= eps
            model[y0 + sgn * oy, x0 + sgn * ox] += eps
        steps[i] = dy, dx
        # residual -= the dipole removed, -S d . grad PSF, within ``reach`` pixels of the
        # point (the next exact cycle sees the rest): the PSF at the point's pixel, at its
        # sub-pixel position within ``m`` pixels of it
        b0, b1 = max(0, y0 - reach), min(ny, y0 + reach + 1)
        c0, c1 = max(0, x0 - reach), min(nx, x0 + reach + 1)
        fy, fx = _derivatives(_psf_window(psf, b0 - y0 - 2, b1 - y0 + 2, c0 - x0 - 2,
                                          c1 - x0 + 2))
        fy, fx = fy[2:-2, 2:-2], fx[2:-2, 2:-2]
        r0n, r1n = max(b0, y0 - h - m + 2), min(b1, y0 + h + m - 1)
        c0n, c1n = max(c0, x0 - h - m + 2), min(c1, x0 + h + m - 1)
        near = (slice(r0n - b0, r1n - b0), slice(c0n - c0, c1n - c0))
        src = (slice(r0n - y0 + h + m, r1n - y0 + h + m), slice(c0n - x0 + h + m, c1n - x0 + h + m))
        fy[near], fx[near] = gy[src], gx[src]
        removed = -s * (dy * fy + dx * fx)
        residual[b0:b1, c0:c1] -= removed.astype(residual.dtype)
        change = max(change, float(np.max(np.abs(removed))))
    return steps, change


__all__ = ["MAX_STEP_PX", "PointSources", "add_points", "point_sources", "refine_positions"]
