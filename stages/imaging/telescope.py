"""Which telescope an MS comes from, and whether the Airy primary-beam model fits it.

The FITS products name the telescope of the MS (``OBSERVATION::TELESCOPE_NAME``, or the
real name conversion keeps beside the CASA-friendly one), and the primary beam is the Airy
pattern of the dish diameter in the MS ``ANTENNA`` table. Where the antennas that carry data
have no diameter, or dishes of different sizes, no single Airy beam describes the array:
the imaging stage then writes no pb/pbcor image and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_pipeline.errors import InputError

#: Largest relative spread of the dish diameters still imaged with one Airy beam.
DIAMETER_TOLERANCE = 0.01


@dataclass(frozen=True)
class TelescopeInfo:
    """Telescope name for FITS, and the dish diameter of the PB model (None: no model)."""

    name: str
    dish_diameter: float | None
    #: why there is no primary-beam model ("" when there is one)
    note: str = ""
    #: ITRF position (m) of the array centre (the mean of the antennas that carry data), or
    #: None when the ANTENNA table has no usable positions
    position: np.ndarray | None = None


def beam_diameter(diameters: np.ndarray) -> tuple[float | None, str]:
    """(diameter m, "") when one Airy beam fits dishes ``diameters``, else (None, reason)."""
    d = np.asarray(diameters, dtype=np.float64).ravel()
    if d.size == 0:
        return None, "the ANTENNA table lists no antenna that carries data"
    bad = ~np.isfinite(d) | (d <= 0)
    if bad.any():
        return None, (f"{int(bad.sum())} of {d.size} antennas have no DISH_DIAMETER "
                      "in the ANTENNA table")
    lo, hi = float(d.min()), float(d.max())
    if hi - lo > DIAMETER_TOLERANCE * hi:
        return None, (f"dish diameters differ ({lo:g} to {hi:g} m): a heterogeneous array "
                      "has no single Airy beam")
    return float(np.median(d)), ""


def read_telescope(ms: str | Path, telescope_name: str = "") -> TelescopeInfo:
    """Telescope of ``ms``: ``telescope_name`` (as read by ``read_ms_info``) and the dish
    diameter of the antennas that appear in its rows (ANTENNA1/ANTENNA2)."""
    from casacore import tables

    p = Path(ms)
    try:
        with tables.table(str(p), ack=False) as t:
            used = np.union1d(t.getcol("ANTENNA1"), t.getcol("ANTENNA2"))
        with tables.table(str(p / "ANTENNA"), ack=False) as t:
            nant = t.nrows()
            diam = (np.asarray(t.getcol("DISH_DIAMETER"), dtype=np.float64)
                    if "DISH_DIAMETER" in t.colnames() and nant else np.full(nant, np.nan))
            xyz = (np.asarray(t.getcol("POSITION"), dtype=np.float64)
                   if "POSITION" in t.colnames() and nant else np.full((nant, 3), np.nan))
    except Exception as exc:  # casacore raises RuntimeError for damaged tables
        raise InputError("cannot read the ANTENNA table", files=[str(p)], cause=exc) from exc
    if used.size and (used.min() < 0 or used.max() >= nant):
        raise InputError(f"rows name antenna {int(used.max())} but the ANTENNA table has "
                         f"{nant} rows", files=[str(p)])
    diameter, note = beam_diameter(diam[used])
    centre = xyz[used].mean(axis=0) if used.size else np.full(3, np.nan)
    # a position on the ground (not zeros, not the geocentre): within 100 km of the surface
    on_earth = bool(np.all(np.isfinite(centre))) and abs(np.linalg.norm(centre) - 6.371e6) < 1e5
    return TelescopeInfo(name=telescope_name.strip() or "UNKNOWN", dish_diameter=diameter,
                         note=note, position=centre if on_earth else None)


def pb_header_cards(tel: TelescopeInfo) -> dict[str, tuple[object, str]]:
    """FITS cards saying which primary-beam model the products carry: PBDIAM (the Airy
    dish diameter, m), or PBMODEL 'NONE' and PBNOTE (why there is no pb/pbcor image)."""
    if tel.dish_diameter is not None:
        return {"PBMODEL": ("AIRY", "primary-beam model of the pb/pbcor images"),
                "PBDIAM": (tel.dish_diameter, "dish diameter (m) of the Airy primary beam")}
    return {"PBMODEL": ("NONE", "no primary-beam model: no pb/pbcor images"),
            "PBNOTE": (tel.note, "why no primary beam")}
