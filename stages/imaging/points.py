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
from .spectral import bright_clusters


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
    """The bright compact clusters of ``model`` as point sources: clusters (components
    joined within a beam) of total flux at least ``floor`` whose components within
    ``radius_px`` of the cluster's brightest component (the peak and the dipole of
    neighbours that encode its sub-pixel position) hold at least ``compact`` of the flux;
    each becomes one point of those components' flux at their flux-weighted centre. The
    cluster's other components stay on the grid: moving them would move real structure."""
    cl = bright_clusters(model, floor, beam_px)
    replaced = np.zeros(model.shape, np.float32)
    ys, xs, fs = [], [], []
    boxes = ndimage.find_objects(cl.labels)
    for f, lab in zip(cl.flux, cl.index):
        box = boxes[lab - 1]
        iy, ix = np.nonzero(cl.labels[box] == lab)
        iy, ix = iy + box[0].start, ix + box[1].start
        k = int(np.argmax(model[iy, ix]))
        near = np.hypot(iy - iy[k], ix - ix[k]) <= radius_px
        w = model[iy[near], ix[near]]
        tot = float(w.sum())
        if tot <= 0 or tot < compact * f or tot < floor:
            continue
        ys.append(float(np.sum(w * iy[near]) / tot))
        xs.append(float(np.sum(w * ix[near]) / tot))
        fs.append(tot)
        replaced[iy[near], ix[near]] = w
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


__all__ = ["PointSources", "point_sources", "add_points"]
