"""Reading a group's FITS images for photometry: pixels, WCS, restoring beam, time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.beam import Beam
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.fits_image import celestial_wcs, read_image_plane
from dsa110_pipeline.robust import robust_rms


@dataclass(frozen=True)
class Plane:
    """One image plane: ``data`` (ny, nx), its celestial WCS, beam and header."""

    data: np.ndarray
    wcs: Any
    beam: Beam | None
    header: Any
    path: str

    @property
    def cell_deg(self) -> float:
        return abs(float(self.header["CDELT1"]))

    @property
    def mjd(self) -> float | None:
        v = self.header.get("MJD-OBS")
        return None if v is None else float(v)

    def pixels(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel coordinates (x along NAXIS1) of sky positions."""
        x, y = self.wcs.all_world2pix(ra_deg, dec_deg, 0)
        return np.asarray(x, float), np.asarray(y, float)


def read_plane(path: str | Path, *, need_beam: bool = False) -> Plane:
    """The first celestial plane of a FITS image; an :class:`InputError` naming the file
    when it is unreadable or, with ``need_beam``, has no restoring beam."""
    data, hdr = read_image_plane(path)
    beam = Beam.from_header(hdr)
    if need_beam and beam is None:
        raise InputError("FITS image has no restoring beam (BMAJ/BMIN)", files=[str(path)])
    return Plane(data, celestial_wcs(hdr), beam, hdr, str(path))


def tile_rms(residual: np.ndarray, tile: int) -> np.ndarray:
    """Robust rms (1.4826 MAD) of ``residual`` in tiles of ``tile`` pixels: the local noise
    map, coarse. NaN where a tile is blank."""
    ny, nx = residual.shape
    ty, tx = -(-ny // tile), -(-nx // tile)
    out = np.full((ty, tx), np.nan)
    for j in range(ty):
        for i in range(tx):
            t = residual[j * tile:(j + 1) * tile, i * tile:(i + 1) * tile]
            out[j, i] = robust_rms(t, min_count=17)
    return out
