"""Reading FITS images: the first 2-D plane, its celestial WCS and its frequency.

One reader for every stage that reads images (validation, photometry, the mosaic): cubes
with degenerate frequency and Stokes axes (the imaging stage's 4-D products) give their
first plane; a missing, unreadable or empty file is an :class:`InputError` naming it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def read_image_plane(path: str | Path, dtype: Any = np.float64) -> tuple[np.ndarray, Any]:
    """(the first 2-D plane of the file's first image HDU as ``dtype``, a copy of its
    header)."""
    from astropy.io import fits

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
            data = np.asarray(hdu.data, dtype=dtype)
    except InputError:
        raise
    except Exception as exc:  # astropy raises several types for corrupt files
        raise InputError("cannot read FITS image", files=[str(p)], cause=exc) from exc
    while data.ndim > 2:
        data = data[0]
    return data, hdr


def celestial_wcs(hdr: Any) -> Any:
    """The celestial part of a header's WCS (astropy), without the warnings a 4-D header
    of a 2-D plane raises."""
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdr).celestial


def header_frequency(hdr: Any) -> float | None:
    """The image's frequency (Hz): its FREQ axis's reference value, else ``RESTFRQ`` (or
    ``RESTFREQ``, ``FREQ``); None when the header says nothing of it."""
    naxis = int(hdr.get("WCSAXES", hdr.get("NAXIS", 0)) or 0)
    for i in range(1, max(naxis, 4) + 1):
        if str(hdr.get(f"CTYPE{i}", "")).upper().startswith("FREQ") \
                and hdr.get(f"CRVAL{i}") is not None:
            return float(hdr[f"CRVAL{i}"])
    for key in ("RESTFRQ", "RESTFREQ", "FREQ"):
        try:
            return float(hdr[key])
        except (KeyError, TypeError, ValueError):
            continue
    return None


__all__ = ["celestial_wcs", "header_frequency", "read_image_plane"]
