"""Validation of one group from files: read, find, match, judge, and write the products.

This is the I/O shell around :func:`.analysis.analyse`; the stage calls it and so can
scripts and the perf suite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.catalogs import SourceCatalog
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.instrument import airy_beam

from . import plots
from .analysis import Analysis, analyse
from .config import ValidationConfig
from .finder import find_sources
from .image_io import SkyImage, read_fits_image
from .reference import load_reference
from .report import (
    render_group_report,
    write_metrics_json,
    write_text_atomic,
)
from .sources import write_sources_csv, write_sources_fits
from .verdict import Reason, Verdict, VerdictResult, not_validated


@dataclass
class Outcome:
    """What validating one group produced."""

    verdict: VerdictResult
    metrics: dict[str, Any]
    report: Path
    metrics_json: Path
    sources_csv: Path | None = None
    sources_fits: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the sources, matches and metrics behind the report (None when not validated)
    analysis: Analysis | None = None

    @property
    def products(self) -> list[Path]:
        return [p for p in (self.report, self.metrics_json, self.sources_csv,
                            self.sources_fits) if p is not None]


def airy_pb_for(image: SkyImage) -> np.ndarray:
    """Airy power beam on the image grid, centred on the reference pixel (the pointing)."""
    ny, nx = image.shape
    freq = image.freq_hz or 1.4e9
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = image.pix2world(xx.ravel(), yy.ravel())
    ra0, dec0 = image.centre
    cosang = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
    theta = np.arccos(np.clip(cosang, -1.0, 1.0)).reshape(ny, nx)
    diameter = image.header.get("PBDIAM")  # the imaging stage's dish, when it wrote one
    out = np.asarray(airy_beam(theta, freq) if diameter is None
                     else airy_beam(theta, freq, float(diameter)), np.float32)
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def _plane(path: str | Path, shape: tuple[int, int], what: str) -> np.ndarray:
    img = read_fits_image(path, require_beam=False)
    if img.shape != shape:
        raise InputError(f"{what} image has shape {img.shape}, the image {shape}",
                         files=[str(path)])
    return img.data


def primary_beam(image: SkyImage, cfg: ValidationConfig, pb_path: str | None,
                 pbcor_path: str | None) -> tuple[np.ndarray | None, str]:
    """The primary beam on the image grid and where it came from."""
    if pb_path:
        return _plane(pb_path, image.shape, "primary-beam"), "pb image"
    if pbcor_path:
        pbcor = _plane(pbcor_path, image.shape, "PB-corrected")
        with np.errstate(divide="ignore", invalid="ignore"):
            # pbcor = image / pb pixel by pixel, so the ratio is exact (noise cancels)
            pb = np.where(np.isfinite(pbcor) & (pbcor != 0), image.data / pbcor, np.nan)
        return pb.astype(np.float32), "image / pbcor"
    if str(image.header.get("PBMODEL", "")).upper() == "NONE":
        # the imaging stage knew no beam model for this telescope: do not invent one
        return None, f"none ({image.header.get('PBNOTE') or 'no beam model in the image'})"
    if cfg.pb_model == "airy":
        return airy_pb_for(image), "Airy model"
    return None, "none (flat)"


def validate_group(image_path: str | Path, out_dir: str | Path, *, group: str,
                   cfg: ValidationConfig, reference_path: str | Path | None,
                   theoretical_rms: float | None, pb_path: str | None = None,
                   pbcor_path: str | None = None, residual_path: str | None = None,
                   timing: list[dict[str, Any]] | None = None,
                   reference: SourceCatalog | None = None, ncores: int = 1) -> Outcome:
    """Validate the restored image ``image_path`` and write report, metrics JSON and
    source lists to ``out_dir`` (named ``<group>_…``).

    Missing file → :class:`InputError`. An image without a beam, no reference catalog or
    an empty one → an explicit NOT_VALIDATED report, never an ACCEPT.
    """
    t0 = time.perf_counter()
    image = read_fits_image(image_path, require_beam=False)
    pb, pb_source, residual = None, "none", None
    if image.beam is not None:  # else NOT_VALIDATED: nothing more is read
        if reference is None and reference_path is not None:
            reference = load_reference(reference_path)
        pb, pb_source = primary_beam(image, cfg, pb_path, pbcor_path)
        residual = _plane(residual_path, image.shape, "residual") if residual_path else None
    return validate_image(image, out_dir, group=group, cfg=cfg, reference=reference,
                          reference_path=reference_path, theoretical_rms=theoretical_rms,
                          pb=pb, pb_source=pb_source, residual=residual, timing=timing,
                          ncores=ncores, t0=t0)


def validate_image(image: SkyImage, out_dir: str | Path, *, group: str, cfg: ValidationConfig,
                   reference: SourceCatalog | None, reference_path: str | Path | None,
                   theoretical_rms: float | None, pb: np.ndarray | None, pb_source: str,
                   residual: np.ndarray | None = None,
                   timing: list[dict[str, Any]] | None = None, ncores: int = 1,
                   t0: float | None = None) -> Outcome:
    """Validate an image already in memory (a group image, or a mosaic in its apparent
    form) and write report, metrics JSON and source lists to ``out_dir``. ``pb`` is the
    image's primary beam (None: flat), ``residual`` its residual on the same grid."""
    t0 = time.perf_counter() if t0 is None else t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in group) or "group"
    report = out / f"{stem}_validation.html"
    mjson = out / f"{stem}_metrics.json"
    timings: dict[str, float] = {}
    image_path = image.path
    extra = {"group": group, "image": str(image_path),
             "reference": str(reference_path) if reference_path else None}
    if image.beam is None:
        v = not_validated("image has no restoring beam (BMAJ/BMIN missing in the header): "
                          "sources cannot be measured", "beam")
        return _write_minimal(v, report, mjson, group, str(image_path), extra, timing)
    if reference is None:
        v = not_validated("no reference catalog configured (validation.reference_catalog)",
                          "reference")
        return _write_minimal(v, report, mjson, group, str(image_path), extra, timing)
    empty_reference = len(reference) == 0

    mask = np.isfinite(image.data)
    if pb is not None:
        mask &= np.isfinite(pb) & (pb >= cfg.pb_cut)
    t = time.perf_counter()
    found = find_sources(image, method=cfg.finder, thresh_pix=cfg.thresh_pix,
                         thresh_isl=cfg.thresh_isl, rms_box_beams=cfg.rms_box_beams,
                         mask=mask, ncores=ncores, bdsf_background=cfg.bdsf_background,
                         island_max_beams=cfg.island_max_beams,
                         point_fit_snr=cfg.point_fit_snr)
    timings["find_s"] = time.perf_counter() - t
    t = time.perf_counter()
    a = analyse(image, pb, found, reference, cfg, theoretical_rms, residual)
    timings["analyse_s"] = time.perf_counter() - t
    verdict = a.verdict
    if empty_reference:
        verdict = VerdictResult(
            Verdict.REJECT if verdict.verdict == Verdict.REJECT else Verdict.NOT_VALIDATED,
            (Reason("reference", Verdict.NOT_VALIDATED,
                    f"reference catalog {reference_path} is empty"),) + verdict.reasons)
    a.metrics["verdict"] = verdict.verdict.value
    a.metrics["primary_beam"] = pb_source

    t = time.perf_counter()
    pb_at = a.src_pb if pb is not None else None
    csv_path = write_sources_csv(out / f"{stem}_sources.csv", a.finder.sources, pb_at)
    fits_path = write_sources_fits(out / f"{stem}_sources.fits", a.finder.sources, pb_at,
                                   meta={"GROUP": group, "FINDER": a.finder.method})
    bmaj, bmin, bpa = image.beam.bmaj, image.beam.bmin, image.beam.bpa
    figures = {
        "image": plots.thumbnail_png(image.data, a, cfg.thumbnail_pixels, title=group),
        "flux_ratio": plots.flux_ratio_png(a),
        "astrometry": plots.astrometry_png(a, bmaj, bmin, bpa),
        "completeness": plots.completeness_png(a),
        "noise": plots.noise_png(a),
    }
    timings["plots_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    a.metrics["timings"] = dict(timings)
    rows = list(timing or []) + [{"stage": "validation (this report)",
                                  "wall_s": timings["total_s"]}]
    write_metrics_json(mjson, a.metrics, verdict, extra)
    html = render_group_report(
        group=group, verdict=verdict, metrics=a.metrics, figures=figures, timing=rows,
        products={"metrics JSON": mjson.name, "sources CSV": csv_path.name,
                  "sources FITS": fits_path.name},
        image_path=str(image_path), reference=str(reference_path))
    write_text_atomic(report, html)
    return Outcome(verdict, a.metrics, report, mjson, csv_path, fits_path, timings, a)


def _write_minimal(v: VerdictResult, report: Path, mjson: Path, group: str, image_path: str,
                   extra: dict[str, Any], timing: list[dict[str, Any]] | None) -> Outcome:
    metrics: dict[str, Any] = {"verdict": v.verdict.value}
    write_metrics_json(mjson, metrics, v, extra)
    html = render_group_report(group=group, verdict=v, metrics=metrics, figures={},
                               timing=list(timing or []),
                               products={"metrics JSON": mjson.name}, image_path=image_path,
                               reference=str(extra.get("reference")))
    write_text_atomic(report, html)
    return Outcome(v, metrics, report, mjson)


__all__ = ["Outcome", "validate_group", "validate_image", "primary_beam", "airy_pb_for"]
