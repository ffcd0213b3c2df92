"""PyBDSF back end of the source finder (the primary finder when ``bdsf`` imports).

PyBDSF reads images from files, so the 2-D plane is written to a private temporary
directory (with its WCS, beam and frequency) together with PyBDSF's log; the input image is
never touched. PyBDSF holds its arrays as [x, y]; they are transposed back to [row, col].
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from pathlib import Path

import numpy as np

from .image_io import SkyImage
from .sources import SourceTable

#: PyBDSF keeps module-level state and forks helper processes; two runs in threads of one
#: process break each other (a helper dies), so runs in one process take turns.
_BDSF_LOCK = threading.Lock()


def bdsf_available() -> bool:
    """True when the ``bdsf`` package can be imported."""
    return importlib.util.find_spec("bdsf") is not None


def run_bdsf(image: SkyImage, *, thresh_pix: float, thresh_isl: float, rms_box: int,
             mask: np.ndarray | None = None,
             ncores: int = 1) -> tuple[SourceTable, np.ndarray, np.ndarray]:
    """Run PyBDSF on ``image``; returns (sources, mean map, rms map).

    Pixels where ``mask`` is False are blanked (NaN) before the search. ``rms_box`` is the
    box size in pixels (step = box/3); 0 lets PyBDSF choose.
    """
    import bdsf
    from astropy.io import fits

    if image.beam is None:
        raise ValueError("PyBDSF needs an image with a restoring beam")
    data = np.array(image.data, dtype=np.float32)
    if mask is not None:
        data[~mask] = np.nan
    hdr = image.wcs.to_header()
    hdr["BMAJ"] = np.degrees(image.beam.bmaj)
    hdr["BMIN"] = np.degrees(image.beam.bmin)
    hdr["BPA"] = image.beam.bpa
    hdr["BUNIT"] = "JY/BEAM"
    kwargs: dict = {"thresh_pix": thresh_pix, "thresh_isl": thresh_isl, "quiet": True,
                    "ncores": max(1, int(ncores)), "thresh": "hard"}
    if image.freq_hz:
        kwargs["frequency"] = float(image.freq_hz)
    else:
        kwargs["frequency"] = 1.4e9
    if rms_box > 0:
        box = int(min(rms_box, min(data.shape) // 2))
        kwargs["rms_box"] = (box, max(1, box // 3))
    with tempfile.TemporaryDirectory(prefix="dsa110-bdsf-") as tmp:
        path = Path(tmp) / "image.fits"
        fits.PrimaryHDU(data=data, header=hdr).writeto(path)
        with _BDSF_LOCK:
            img = bdsf.process_image(str(path), outdir=tmp, **kwargs)
    mean = np.asarray(img.mean_arr, dtype=np.float32).T
    rms = np.asarray(img.rms_arr, dtype=np.float32).T
    srcs = list(getattr(img, "sources", []) or [])
    if not srcs:
        return SourceTable.empty("pybdsf"), mean, rms
    deg = np.radians(1.0)
    ra = np.array([s.posn_sky_centroid[0] for s in srcs], float)
    dec = np.array([s.posn_sky_centroid[1] for s in srcs], float)
    ra_e = np.array([s.posn_sky_centroidE[0] for s in srcs], float)
    dec_e = np.array([s.posn_sky_centroidE[1] for s in srcs], float)
    size = np.array([s.size_sky for s in srcs], float)
    x, y = image.world2pix(np.radians(ra), np.radians(dec))
    table = SourceTable(
        ra=np.radians(np.mod(ra, 360.0)), dec=np.radians(dec),
        ra_err=ra_e * deg * np.cos(np.radians(dec)), dec_err=dec_e * deg, x=x, y=y,
        peak_jy=[s.peak_flux_max for s in srcs], peak_err_jy=[s.peak_flux_maxE for s in srcs],
        int_jy=[s.total_flux for s in srcs], int_err_jy=[s.total_fluxE for s in srcs],
        maj=size[:, 0] * deg, min=size[:, 1] * deg, pa_deg=size[:, 2],
        rms_jy=[s.rms_isl for s in srcs], island=[s.island_id for s in srcs], finder="pybdsf")
    return table, mean, rms


__all__ = ["bdsf_available", "run_bdsf"]
