"""FITS image products with a SIN-projection WCS, beam, units and provenance.

Every product is a 4-D image (Stokes, frequency, Dec, RA) in the usual radio order, written
under a temporary name in the same directory and renamed into place when complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_pipeline import __version__ as PIPELINE_VERSION
from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.instrument import TELESCOPE_NAME

from .beam import Beam

#: BUNIT of each product role.
BUNITS = {"image": "Jy/beam", "residual": "Jy/beam", "pbcor": "Jy/beam", "model": "Jy/pixel",
          "psf": "", "pb": ""}


@dataclass(frozen=True)
class ImageGeometry:
    """Where the image lies: phase centre (rad), cell (rad), size, frequency (Hz)."""

    ra: float
    dec: float
    cell: float
    npix_x: int
    npix_y: int
    freq_ref: float
    bandwidth: float = 0.0
    radesys: str = "FK5"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.ra) and np.isfinite(self.dec) and abs(self.dec) <= np.pi / 2):
            raise ValueError(f"invalid phase centre ra={self.ra}, dec={self.dec} (rad)")
        if not self.cell > 0:
            raise ValueError(f"cell must be positive, got {self.cell}")
        if self.npix_x < 1 or self.npix_y < 1:
            raise ValueError("image size must be positive")
        if not self.freq_ref > 0:
            raise ValueError(f"reference frequency must be positive, got {self.freq_ref}")


def mjd_seconds_to_isot(t: float) -> str:
    """ISO-8601 UTC string of a time in MJD seconds (the MS TIME convention)."""
    from astropy.time import Time

    return Time(t / 86400.0, format="mjd", scale="utc").isot


def build_header(geom: ImageGeometry, *, role: str, beam: Beam | None = None,
                 date_obs: str | None = None, object_name: str = "",
                 provenance: Mapping[str, str] | None = None,
                 calibration_tables: Sequence[str] = (),
                 telescope: str = TELESCOPE_NAME) -> fits.Header:
    """FITS header of one product ``role`` (image, residual, model, psf, pb, pbcor);
    ``telescope`` (the MS's) fills TELESCOP and INSTRUME."""
    if role not in BUNITS:
        raise ValueError(f"unknown image role '{role}' (known: {', '.join(BUNITS)})")
    h = fits.Header()
    h["BTYPE"] = "Intensity" if role not in ("psf", "pb") else "Response"
    h["BUNIT"] = BUNITS[role]
    cell_deg = np.degrees(geom.cell)
    axes = [("RA---SIN", np.degrees(geom.ra) % 360.0, -cell_deg, geom.npix_x // 2 + 1, "deg"),
            ("DEC--SIN", np.degrees(geom.dec), cell_deg, geom.npix_y // 2 + 1, "deg"),
            ("FREQ", geom.freq_ref, geom.bandwidth or 1.0, 1.0, "Hz"),
            ("STOKES", 1.0, 1.0, 1.0, "")]
    for i, (ctype, crval, cdelt, crpix, cunit) in enumerate(axes, start=1):
        h[f"CTYPE{i}"] = ctype
        h[f"CRVAL{i}"] = crval
        h[f"CDELT{i}"] = cdelt
        h[f"CRPIX{i}"] = float(crpix)
        h[f"CUNIT{i}"] = cunit
    h["RADESYS"] = geom.radesys
    if geom.radesys.upper() == "FK5":
        h["EQUINOX"] = 2000.0
    h["LONPOLE"] = 180.0
    h["LATPOLE"] = np.degrees(geom.dec)
    h["SPECSYS"] = "TOPOCENT"
    h["OBSRA"] = np.degrees(geom.ra) % 360.0
    h["OBSDEC"] = np.degrees(geom.dec)
    if beam is not None:
        for key, card in beam.header_cards().items():
            h[key] = card
    if date_obs:
        from astropy.time import Time

        h["DATE-OBS"] = date_obs
        h["MJD-OBS"] = Time(date_obs, format="isot", scale="utc").mjd
        h["TIMESYS"] = "UTC"
    h["OBJECT"] = object_name or "UNKNOWN"
    h["TELESCOP"] = telescope or "UNKNOWN"
    h["INSTRUME"] = telescope or "UNKNOWN"
    h["ORIGIN"] = "dsa110_pipeline"
    h["IMROLE"] = (role, "image product role")
    prov = {"PIPEVER": PIPELINE_VERSION, **(provenance or {})}
    for key, value in prov.items():
        h[key.upper()[:8]] = str(value)
    h["NCALTAB"] = (len(calibration_tables), "number of calibration tables applied")
    for i, tab in enumerate(calibration_tables, start=1):
        h[f"CALTAB{i}"] = str(tab)
    return h


def write_fits(path: str | Path, data: np.ndarray, header: fits.Header) -> Path:
    """Write a 2-D image as (1, 1, ny, nx) float32 under a temporary name, then rename."""
    path = Path(path)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32)[None, None], header=header)
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, overwrite=True, output_verify="exception")
    return path
