"""Reading the imaging stage's FITS products into a self-checking :class:`SkyImage`.

The imaging stage writes FITS with a SIN (or other celestial) WCS, ``BMAJ``/``BMIN``/``BPA``
in degrees and ``BUNIT`` Jy/beam. Cubes with degenerate frequency / Stokes axes (2-4
dimensions) are accepted; the first plane is used. Beam size is kept in radians here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.beam import Beam
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.fits_image import celestial_wcs, header_frequency, read_image_plane


class MissingBeamError(InputError):
    """The image header has no usable restoring beam (BMAJ/BMIN/BPA)."""


@dataclass(frozen=True, eq=False)
class SkyImage:
    """A 2-D celestial image (rows = latitude axis) with its WCS, beam and frequency."""

    data: np.ndarray
    wcs: Any  # astropy.wcs.WCS, celestial only
    beam: Beam | None
    freq_hz: float | None
    path: str = "<memory>"
    unit: str = ""
    header: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise InputError(f"image must be 2-D after dropping degenerate axes, got shape "
                             f"{self.data.shape}", files=[self.path])
        if min(self.data.shape) < 8:
            raise InputError(f"image is too small ({self.data.shape})", files=[self.path])
        if not np.isfinite(self.data).any():
            raise InputError("image has no finite pixel", files=[self.path])
        if not getattr(self.wcs, "has_celestial", False):
            raise InputError("image has no celestial WCS", files=[self.path])

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def pixel_scale(self) -> tuple[float, float]:
        """|Δx|, |Δy| of one pixel (rad) on the sky at the image's centre: for a SIN image
        its reference pixel's; for a CAR strip away from the equator the RA step shrinks
        by cos(Dec), where the header's CDELT1 (and the reference pixel's scale) does not."""
        from astropy.coordinates import angular_separation
        from astropy.wcs.utils import proj_plane_pixel_scales

        ny, nx = self.shape
        xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
        ra, dec = self.wcs.pixel_to_world_values(np.array([xc - 0.5, xc + 0.5, xc, xc]),
                                                 np.array([yc, yc, yc - 0.5, yc + 0.5]))
        ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
        if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
            sx, sy = proj_plane_pixel_scales(self.wcs)  # the centre is off the sky
            return float(np.radians(sx)), float(np.radians(sy))
        sep = angular_separation(ra[[0, 2]], dec[[0, 2]], ra[[1, 3]], dec[[1, 3]])
        return float(sep[0]), float(sep[1])

    @property
    def centre(self) -> tuple[float, float]:
        """RA, Dec (rad) of the reference pixel (the phase centre)."""
        ra, dec = self.wcs.wcs.crval[:2]
        return float(np.radians(ra)), float(np.radians(dec))

    def beam_pixels(self) -> tuple[float, float, float]:
        """Beam major/minor FWHM in pixels and the PA (rad) measured from +y toward -x
        (north through east on a standard RA---/DEC-- image), at the image's centre. Where
        the pixels are not square on the sky (a CAR strip away from the equator) the
        beam's covariance is scaled per axis, so its area and shape in pixels are right."""
        if self.beam is None:
            raise MissingBeamError("image has no restoring beam", files=[self.path])
        sx, sy = self.pixel_scale
        if abs(sx / sy - 1.0) < 1e-6:
            s = np.sqrt(sx * sy)
            return self.beam.bmaj / s, self.beam.bmin / s, float(np.radians(self.beam.bpa))
        return beam_in_pixels(self.beam.bmaj, self.beam.bmin, float(np.radians(self.beam.bpa)),
                              sx, sy)

    def pix2world(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel (column x, row y) → RA, Dec (rad)."""
        ra, dec = self.wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return np.radians(np.mod(ra, 360.0)), np.radians(dec)

    def world2pix(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (rad) → 0-based pixel (x, y); NaN where the projection is undefined."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = self.wcs.all_world2pix(np.degrees(ra), np.degrees(dec), 0)
        return np.asarray(x, float), np.asarray(y, float)


def beam_in_pixels(bmaj: float, bmin: float, bpa: float, sx: float, sy: float
                   ) -> tuple[float, float, float]:
    """A sky beam (FWHM rad, PA rad east of north) in pixels of on-sky size ``sx`` (east-west)
    by ``sy`` (north-south) with the axes along RA and Dec: its covariance scaled per axis.
    Returns (major, minor FWHM in pixels, PA from +y toward -x in rad)."""
    east, north = np.sin(bpa), np.cos(bpa)
    rot = np.array([[east, -north], [north, east]])  # columns: major, minor axis (E, N)
    cov = rot @ np.diag([bmaj ** 2, bmin ** 2]) @ rot.T
    d = np.diag([1.0 / sx, 1.0 / sy])
    vals, vecs = np.linalg.eigh(d @ cov @ d)
    major = vecs[:, 1]
    pa = float(np.arctan2(major[0], major[1]))
    pa = (pa + np.pi / 2) % np.pi - np.pi / 2  # an axis: within +-90 deg
    return float(np.sqrt(vals[1])), float(np.sqrt(vals[0])), pa


def read_fits_image(path: str | Path, *, require_beam: bool = True) -> SkyImage:
    """Read a FITS image into a :class:`SkyImage`.

    Raises :class:`InputError` for a missing or unreadable file and
    :class:`MissingBeamError` when ``require_beam`` and the header has no beam.
    """
    p = Path(path)
    data, hdr = read_image_plane(p, np.float32)
    wcs = celestial_wcs(hdr)
    beam = Beam.from_header(hdr)
    if beam is None and require_beam:
        raise MissingBeamError("image header has no restoring beam (BMAJ/BMIN)",
                               files=[str(p)])
    keep = {k: hdr[k] for k in ("BUNIT", "TELESCOP", "OBJECT", "DATE-OBS", "EXPOSURE",
                                "BANDWIDTH", "BANDWID", "NANTENNA", "FLAGFRAC", "THEORMS",
                                "PBMODEL", "PBDIAM", "PBNOTE")
            if k in hdr}
    return SkyImage(data=data, wcs=wcs, beam=beam, freq_hz=header_frequency(hdr),
                    path=str(p), unit=str(hdr.get("BUNIT", "")), header=keep)


__all__ = ["SkyImage", "MissingBeamError", "read_fits_image"]
