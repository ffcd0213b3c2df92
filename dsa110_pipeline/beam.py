"""The restoring beam: an elliptical Gaussian, and its FITS header cards.

Axes are FWHM in radians; the position angle is in degrees east of north (FITS/AIPS
``BPA``). The header cards ``BMAJ``/``BMIN`` are in degrees. One object for the imaging
stage, which writes it, and the validation stage, which reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .instrument import ARCSEC


@dataclass(frozen=True)
class Beam:
    """An elliptical Gaussian beam: FWHM major/minor axes (rad), position angle (deg E of N)."""

    bmaj: float
    bmin: float
    bpa: float

    def __post_init__(self) -> None:
        for v in (self.bmaj, self.bmin, self.bpa):
            if not np.isfinite(v):
                raise ValueError(f"beam values must be finite, got {self}")
        if not 0 < self.bmin <= self.bmaj * (1 + 1e-9):
            raise ValueError(f"beam needs 0 < bmin <= bmaj, got {self}")

    @property
    def solid_angle(self) -> float:
        """Beam area (sr) = pi bmaj bmin / (4 ln 2)."""
        return float(np.pi * self.bmaj * self.bmin / (4.0 * np.log(2.0)))

    @classmethod
    def from_arcsec(cls, bmaj_arcsec: float, bmin_arcsec: float, bpa_deg: float) -> Beam:
        """A beam given as FWHM axes in arcsec and a position angle in degrees E of N."""
        return cls(bmaj_arcsec * ARCSEC, bmin_arcsec * ARCSEC, float(bpa_deg))

    def header_cards(self) -> dict[str, tuple[float, str]]:
        """``BMAJ``, ``BMIN`` (deg) and ``BPA`` (deg E of N) with their comments."""
        return {"BMAJ": (float(np.degrees(self.bmaj)), "restoring beam major axis FWHM (deg)"),
                "BMIN": (float(np.degrees(self.bmin)), "restoring beam minor axis FWHM (deg)"),
                "BPA": (float(self.bpa), "restoring beam position angle (deg, E of N)")}

    @classmethod
    def from_header(cls, hdr: Mapping[str, Any]) -> Beam | None:
        """The beam of a FITS header (``BMAJ``/``BMIN`` deg, ``BPA`` deg, 0 if absent), or
        None where it has none usable. Swapped axes are put right (PA turned by 90 deg); the
        PA is brought into [-90, 90)."""
        try:
            bmaj, bmin = float(hdr["BMAJ"]), float(hdr["BMIN"])
            bpa = float(hdr.get("BPA", 0.0))
        except (KeyError, TypeError, ValueError):
            return None
        if not (np.isfinite(bmaj) and np.isfinite(bmin) and np.isfinite(bpa)) \
                or bmaj <= 0 or bmin <= 0:
            return None
        if bmin > bmaj:
            bmaj, bmin, bpa = bmin, bmaj, bpa + 90.0
        return cls(np.radians(bmaj), np.radians(bmin), ((bpa + 90.0) % 180.0) - 90.0)

    @classmethod
    def mean(cls, beams: list[Beam]) -> Beam:
        """The mean of ``beams``: mean axes, and the mean position angle as an axis (mod 180
        deg: +89.7 and -89.9 deg are one orientation, whose arithmetic mean, 0, is the
        other), in [-90, 90)."""
        if not beams:
            raise ValueError("no beams to average")
        two = np.radians([2.0 * b.bpa for b in beams])
        bpa = 0.5 * float(np.degrees(np.arctan2(np.sin(two).mean(), np.cos(two).mean())))
        return cls(float(np.mean([b.bmaj for b in beams])),
                   float(np.mean([b.bmin for b in beams])), ((bpa + 90.0) % 180.0) - 90.0)


__all__ = ["Beam"]
