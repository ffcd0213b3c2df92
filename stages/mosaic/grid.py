"""The mosaic's pixel grid: one projection (SIN for an hour, CAR for a night's strip) that
holds every group image's footprint, at the finest cell among them (pure functions)."""

from __future__ import annotations

import numpy as np


def mosaic_header(centres_deg: np.ndarray, corners_deg: np.ndarray, cell_deg: float,
                  projection: str = "SIN", radesys: str = "ICRS",
                  equinox: float | None = None) -> dict[str, object]:
    """FITS WCS cards of a grid centred on the mean of ``centres_deg`` ((n, 2) RA, Dec)
    covering every corner in ``corners_deg`` ((m, 2) RA, Dec), square pixels of
    ``cell_deg``, in the frame ``radesys`` (``equinox`` for FK4/FK5): the groups' own, so
    that reprojection needs no frame transformation. RA is unwrapped about the centre (a
    window across 0h works).

    CAR grids are one lattice for all windows: reference on the equator at an RA that is a
    whole number of cells, so the pixels of every window's CAR mosaic (an hour's tile of a
    night's strip, the same hour on another night) fall on each other exactly and tiles
    of any length join without resampling."""
    from astropy.wcs import WCS

    ra0 = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(centres_deg[:, 0]))))))
    ra0 %= 360.0
    if projection == "CAR":
        ra0 = (round(ra0 / cell_deg) * cell_deg) % 360.0
    dec0 = float(np.mean(centres_deg[:, 1]))
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [ra0, dec0 if projection == "SIN" else 0.0]
    w.wcs.cdelt = [-cell_deg, cell_deg]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.radesys = radesys
    if equinox is not None:
        w.wcs.equinox = equinox
    x, y = w.all_world2pix(corners_deg[:, 0], corners_deg[:, 1], 0)
    ok = np.isfinite(x) & np.isfinite(y)
    x0, x1 = np.floor(x[ok].min()) - 2, np.ceil(x[ok].max()) + 2
    y0, y1 = np.floor(y[ok].min()) - 2, np.ceil(y[ok].max()) + 2
    hdr = dict(w.to_header())
    hdr.update(NAXIS=2, NAXIS1=int(x1 - x0 + 1), NAXIS2=int(y1 - y0 + 1),
               CRPIX1=1.0 - x0, CRPIX2=1.0 - y0, CUNIT1="deg", CUNIT2="deg")
    return hdr


def footprint_box(corners_px: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The bounding box (x0, x1, y0, y1; end exclusive) in a grid of ``shape`` (ny, nx) of a
    footprint given by its corners' pixel coordinates ((m, 2) x, y), clipped to the grid."""
    x, y = corners_px[:, 0], corners_px[:, 1]
    ny, nx = shape
    x0 = int(max(0, np.floor(np.nanmin(x)) - 1))
    x1 = int(min(nx, np.ceil(np.nanmax(x)) + 2))
    y0 = int(max(0, np.floor(np.nanmin(y)) - 1))
    y1 = int(min(ny, np.ceil(np.nanmax(y)) + 2))
    return x0, x1, y0, y1
