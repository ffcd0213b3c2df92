"""One interface over the two source finders: PyBDSF (primary) and the built-in island
finder (fallback, :mod:`.finder_islands`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .background import background_maps
from .finder_bdsf import bdsf_available, run_bdsf
from .finder_islands import find_pixel_sources
from .image_io import MissingBeamError, SkyImage
from .sources import SourceTable

Method = Literal["auto", "bdsf", "islands"]


@dataclass(frozen=True, eq=False)
class FinderResult:
    """Sources plus the background maps they were found against."""

    sources: SourceTable
    mean: np.ndarray
    rms: np.ndarray
    method: str


def choose_method(method: Method) -> str:
    """Resolve "auto" to "bdsf" when PyBDSF imports, else "islands"."""
    if method == "auto":
        return "bdsf" if bdsf_available() else "islands"
    if method == "bdsf" and not bdsf_available():
        raise RuntimeError("finder 'bdsf' requested but the bdsf package is not installed")
    return method


def find_sources(image: SkyImage, *, method: Method = "auto", thresh_pix: float = 5.0,
                 thresh_isl: float = 3.0, rms_box_beams: float = 30.0,
                 mask: np.ndarray | None = None, ncores: int = 1,
                 bdsf_background: Literal["builtin", "pybdsf"] = "builtin",
                 island_max_beams: float = 16.0, point_fit_snr: float = 10.0
                 ) -> FinderResult:
    """Find sources in ``image`` above ``thresh_pix``·rms (islands grown to ``thresh_isl``).

    ``rms_box_beams`` sets the background box (in beam major axes; 0 = global); ``mask``
    (True = usable) limits the search, e.g. to where the primary beam is above its cut.
    ``bdsf_background``: whether PyBDSF gets the built-in mean/rms maps or makes its own.
    ``island_max_beams`` and ``point_fit_snr``: see :func:`.finder_islands.find_pixel_sources`
    (``max_fit_beams``, ``shape_snr``).
    """
    if image.beam is None:
        raise MissingBeamError("source finding needs a restoring beam", files=[image.path])
    bmaj_px, bmin_px, pa = image.beam_pixels()
    box = int(round(rms_box_beams * bmaj_px)) if rms_box_beams > 0 else 0
    which = choose_method(method)
    data = np.array(image.data, dtype=np.float32)
    if mask is not None:
        data[~mask] = np.nan
    if which == "bdsf":
        bg = background_maps(data, box) if bdsf_background == "builtin" else None
        src, mean, rms = run_bdsf(image, thresh_pix=thresh_pix, thresh_isl=thresh_isl,
                                  rms_box=box, mask=mask, ncores=ncores, background=bg)
        return FinderResult(src, mean, rms, "pybdsf")
    mean, rms = background_maps(data, box)
    pix = find_pixel_sources(data, mean, rms, (bmaj_px, bmin_px, pa), thresh_pix, thresh_isl,
                             mask=np.isfinite(data), max_fit_beams=island_max_beams,
                             shape_snr=point_fit_snr)
    if len(pix.x) == 0:
        return FinderResult(SourceTable.empty("islands"), mean, rms, "islands")
    ra, dec = image.pix2world(pix.x, pix.y)
    sx, sy = image.pixel_scale
    s = np.sqrt(sx * sy)
    src = SourceTable(ra=ra, dec=dec, ra_err=pix.x_err * sx, dec_err=pix.y_err * sy, x=pix.x,
                      y=pix.y, peak_jy=pix.peak, peak_err_jy=pix.peak_err, int_jy=pix.total,
                      int_err_jy=pix.total_err, maj=pix.fwhm_maj * s, min=pix.fwhm_min * s,
                      pa_deg=np.degrees(pix.pa), rms_jy=pix.rms, island=pix.island,
                      finder="islands", fit=pix.fit)
    return FinderResult(src, mean, rms, "islands")


__all__ = ["FinderResult", "find_sources", "choose_method", "bdsf_available"]
