"""Validation of an image handed over as arrays (a mosaic): the hook other stages name in
their config (``mosaic.validator``), so no stage imports this one.

The image comes in its apparent form (uniform noise) with its primary beam (a mosaic's
sensitivity) and residual; the result is plain data: verdict, metrics, the report's path
and the detections with whether each matched the reference catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.beam import Beam
from dsa110_pipeline.fits_image import celestial_wcs, header_frequency

from .config import ValidationConfig
from .image_io import SkyImage
from .reference import load_reference
from .validate import validate_image


def validate_arrays(image: np.ndarray, header: dict[str, Any], pb: np.ndarray,
                    residual: np.ndarray | None, out_dir: str | Path, name: str, *,
                    reference_path: str | None, theoretical_rms: float,
                    settings: dict[str, Any] | None = None,
                    pb_source: str = "given") -> dict[str, Any]:
    """Validate ``image`` (2-D, the WCS and beam in ``header``: FITS cards, BMAJ/BMIN in
    deg) as a group image is, with the ``validation`` config ``settings``; write the report
    under ``out_dir``. Returns ``verdict``, ``metrics``, ``report`` and ``sources`` (arrays
    ``ra_deg``, ``dec_deg``, ``snr``, ``flux_jy`` (primary-beam corrected),
    ``flux_err_jy``, ``matched``)."""
    from astropy.io import fits

    cfg = ValidationConfig.model_validate(settings or {})
    hdr = fits.Header(header)
    wcs = celestial_wcs(hdr)
    beam = Beam.from_header(hdr)
    freq = header_frequency(hdr)
    sky = SkyImage(data=np.asarray(image, np.float32), wcs=wcs, beam=beam,
                   freq_hz=freq, path=str(hdr.get("ORIGIN", name)),
                   unit=str(hdr.get("BUNIT", "")),
                   header={k: hdr[k] for k in ("TELESCOP", "OBJECT", "BUNIT") if k in hdr})
    reference = load_reference(reference_path) if reference_path and beam else None
    out = validate_image(sky, out_dir, group=name, cfg=cfg, reference=reference,
                         reference_path=reference_path, theoretical_rms=theoretical_rms,
                         pb=np.asarray(pb, np.float32), pb_source=pb_source,
                         residual=None if residual is None else np.asarray(residual,
                                                                           np.float32))
    sources: dict[str, np.ndarray] = {k: np.zeros(0) for k in (
        "ra_deg", "dec_deg", "snr", "flux_jy", "flux_err_jy")}
    sources["matched"] = np.zeros(0, bool)
    a = out.analysis
    if a is not None:
        src = a.finder.sources
        matched = np.zeros(len(src), bool)
        matched[a.match.det] = True
        with np.errstate(invalid="ignore", divide="ignore"):
            err = src.peak_err_jy / a.src_pb
        sources = {"ra_deg": np.degrees(src.ra), "dec_deg": np.degrees(src.dec),
                   "snr": np.asarray(src.snr), "flux_jy": np.asarray(a.src_flux_pbcor),
                   "flux_err_jy": np.asarray(err), "matched": matched}
    return {"verdict": out.verdict.verdict.value, "metrics": out.metrics,
            "report": str(out.report), "sources": sources,
            "match_radius_deg": float(np.degrees(cfg.match_radius_beams * beam.bmaj))
            if beam else None}


__all__ = ["validate_arrays"]
