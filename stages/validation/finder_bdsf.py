"""PyBDSF back end of the source finder (the primary finder when ``bdsf`` imports).

PyBDSF reads images from files, so the 2-D plane is written to a leased scratch directory
(tmpfs when it has room; with its WCS, beam and frequency) together with PyBDSF's log; the
input image is never touched. PyBDSF holds its arrays as [x, y]; they are transposed back
to [row, col].
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dsa110_pipeline.staging import lease_scratch

from .image_io import SkyImage
from .sources import SourceTable

#: PyBDSF keeps module-level state and forks helper processes; two runs in threads of one
#: process break each other (a helper dies), so runs in one process take turns.
_BDSF_LOCK = threading.Lock()


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """Move every object alive now out of the collector's sight for the duration: PyBDSF
    calls ``gc.collect()`` after each of its steps, and in a process holding astropy and
    matplotlib each full collection costs ~0.1 s."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def bdsf_available() -> bool:
    """True when the ``bdsf`` package can be imported."""
    return importlib.util.find_spec("bdsf") is not None


def run_bdsf(image: SkyImage, *, thresh_pix: float, thresh_isl: float, rms_box: int,
             mask: np.ndarray | None = None, ncores: int = 1,
             background: tuple[np.ndarray, np.ndarray] | None = None,
             ) -> tuple[SourceTable, np.ndarray, np.ndarray]:
    """Run PyBDSF on ``image``; returns (sources, mean map, rms map).

    Pixels where ``mask`` is False are blanked (NaN) before the search. ``rms_box`` is the
    box size in pixels (step = box/3); 0 lets PyBDSF choose. ``background`` = (mean, rms)
    maps on the image grid are handed to PyBDSF (``rmsmean_map_filename``) instead of
    letting it compute its own (its box statistics run in forked helper processes and are
    most of its run time); islands and Gaussian fits are PyBDSF's either way.
    """
    import bdsf
    from astropy.io import fits

    if image.beam is None:
        raise ValueError("PyBDSF needs an image with a restoring beam")
    data = np.array(image.data, dtype=np.float32)
    if mask is not None:
        data[~mask] = np.nan
    hdr = image.wcs.to_header()
    for key, (value, _) in image.beam.header_cards().items():
        hdr[key] = value
    hdr["BUNIT"] = "JY/BEAM"
    if threading.current_thread() is not threading.main_thread():
        ncores = 1  # more than one core makes PyBDSF fork helpers: not from a thread
    kwargs: dict = {"thresh_pix": thresh_pix, "thresh_isl": thresh_isl, "quiet": True,
                    "ncores": max(1, int(ncores)), "thresh": "hard"}
    if image.freq_hz:
        kwargs["frequency"] = float(image.freq_hz)
    else:
        kwargs["frequency"] = 1.4e9
    if rms_box > 0:
        box = int(min(rms_box, min(data.shape) // 2))
        kwargs["rms_box"] = (box, max(1, box // 3))
    # the plane and the maps are written once and read back once: tmpfs when it has room
    estimate = data.nbytes * (3 if background is not None else 1) + (1 << 20)
    with lease_scratch(estimate, fallback_dir=tempfile.gettempdir()) as lease:
        tmp = str(lease.path)
        path = Path(tmp) / "image.fits"
        fits.PrimaryHDU(data=data, header=hdr).writeto(path)
        if background is not None:
            names = []  # PyBDSF looks for them in the image's folder
            for what, arr in zip(("mean", "rms"), background):
                names.append(f"{what}.fits")
                fits.PrimaryHDU(data=np.asarray(arr, np.float32),
                                header=hdr).writeto(Path(tmp) / names[-1])
            # use them as given (PyBDSF's own test of whether a map is needed is not free)
            kwargs.update(rmsmean_map_filename=names, rms_map=True, mean_map="map")
        with _BDSF_LOCK, _gc_frozen():
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
