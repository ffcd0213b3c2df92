"""Restoring-beam summary for the report."""

from __future__ import annotations

import numpy as np

_ARCSEC = np.degrees(1.0) * 3600.0


def beam_summary(bmaj: float, bmin: float, bpa_deg: float, pixel_scale: float) -> dict:
    """Beam FWHM (arcsec), PA (deg), area (sr), pixels across the minor axis and axis ratio.
    ``bmaj``/``bmin``/``pixel_scale`` in rad."""
    if not (bmaj > 0 and bmin > 0 and pixel_scale > 0):
        raise ValueError("beam axes and pixel scale must be positive")
    return {"bmaj_arcsec": float(bmaj * _ARCSEC), "bmin_arcsec": float(bmin * _ARCSEC),
            "bpa_deg": float(bpa_deg),
            "area_sr": float(np.pi * bmaj * bmin / (4 * np.log(2))),
            "pixels_per_bmin": float(bmin / pixel_scale), "axis_ratio": float(bmaj / bmin)}


__all__ = ["beam_summary"]
