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
        """|Δx|, |Δy| of one pixel (rad) at the reference pixel."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        sx, sy = proj_plane_pixel_scales(self.wcs)
        return float(np.radians(sx)), float(np.radians(sy))

    @property
    def centre(self) -> tuple[float, float]:
        """RA, Dec (rad) of the reference pixel (the phase centre)."""
        ra, dec = self.wcs.wcs.crval[:2]
        return float(np.radians(ra)), float(np.radians(dec))

    def beam_pixels(self) -> tuple[float, float, float]:
        """Beam major/minor FWHM in pixels and the PA (rad) measured from +y toward -x
        (north through east on a standard RA---/DEC-- image)."""
        if self.beam is None:
            raise MissingBeamError("image has no restoring beam", files=[self.path])
        sx, sy = self.pixel_scale
        s = np.sqrt(sx * sy)
        return self.beam.bmaj / s, self.beam.bmin / s, float(np.radians(self.beam.bpa))

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


def _freq_from_header(hdr: Any) -> float | None:
    naxis = int(hdr.get("NAXIS", 0))
    for i in range(1, naxis + 1):
        if str(hdr.get(f"CTYPE{i}", "")).upper().startswith("FREQ"):
            return float(hdr.get(f"CRVAL{i}"))
    for key in ("RESTFRQ", "RESTFREQ", "FREQ", "CRVAL3"):
        if key in hdr:
            try:
                return float(hdr[key])
            except (TypeError, ValueError):
                continue
    return None


def read_fits_image(path: str | Path, *, require_beam: bool = True) -> SkyImage:
    """Read a FITS image into a :class:`SkyImage`.

    Raises :class:`InputError` for a missing or unreadable file and
    :class:`MissingBeamError` when ``require_beam`` and the header has no beam.
    """
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    p = Path(path)
    if not p.is_file():
        raise InputError("image file does not exist", files=[str(p)])
    try:
        with fits.open(p, memmap=False) as hdul:
            hdu = next((h for h in hdul if getattr(h, "data", None) is not None
                        and h.is_image and h.data.ndim >= 2), None)
            if hdu is None:
                raise InputError("FITS file holds no image data", files=[str(p)])
            hdr = hdu.header.copy()
            data = np.asarray(hdu.data, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # astropy raises several types for corrupt files
        raise InputError("cannot read FITS image", files=[str(p)], cause=exc) from exc
    while data.ndim > 2:
        data = data[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr).celestial
    beam = Beam.from_header(hdr)
    if beam is None and require_beam:
        raise MissingBeamError("image header has no restoring beam (BMAJ/BMIN)",
                               files=[str(p)])
    keep = {k: hdr[k] for k in ("BUNIT", "TELESCOP", "OBJECT", "DATE-OBS", "EXPOSURE",
                                "BANDWIDTH", "BANDWID", "NANTENNA", "FLAGFRAC", "THEORMS",
                                "PBMODEL", "PBDIAM", "PBNOTE")
            if k in hdr}
    return SkyImage(data=data, wcs=wcs, beam=beam, freq_hz=_freq_from_header(hdr),
                    path=str(p), unit=str(hdr.get("BUNIT", "")), header=keep)


__all__ = ["SkyImage", "MissingBeamError", "read_fits_image"]
