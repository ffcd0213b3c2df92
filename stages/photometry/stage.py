"""Forced photometry of a group's image at the survey catalog's positions.

Requires ``images`` (the imaging stage's FITS: image, residual, pb); produces
``photometry``: a CSV table, one row per catalog source inside the primary-beam cut, with
the beam-fit flux density (:mod:`.forced`) in the image (apparent) and corrected for the
primary beam, errors from the local noise and the noise's own correlation, and flags:
``edge`` (the fit box leaves the image), ``blended`` (another catalog source within a
beam), ``artefact`` (the local noise or the fit's chi^2 is well above the image's). Where
the catalog gives position errors (NVSS does), fluxes and errors are divided by the mean
fraction a fit at an uncertain position recovers (``position_loss``; 1 % for 1" errors
in a 25" x 13" beam, 18 % at NVSS's 4.6" near its limit), so that they are unbiased.
"""

from __future__ import annotations

import csv
import glob
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.catalogs import SourceCatalog, read_catalog
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.stage import PipelineStage, Resources, StageConfig

from .forced import forced_fluxes, noise_acf, noise_factor, position_loss
from .image import read_plane, tile_rms
from .positions import first_of_each

#: A new source within this of one listed before it is the same source (deg): about
#: half DSA-110's synthesized beam.
NEW_SOURCE_RADIUS_DEG = 10.0 / 3600

COLUMNS = ("name", "ra_deg", "dec_deg", "x", "y", "pb", "flux_app_jy", "err_app_jy",
           "flux_jy", "err_jy", "snr", "noise_err_app_jy", "chi2", "local_rms_jy", "edge",
           "blended", "artefact", "group_id", "mjd", "catalog_flux_jy", "position_loss")


class PhotometryConfig(StageConfig):
    """Typed config of the photometry stage (the ``photometry`` branch)."""

    #: Sources where the group's primary beam is below this are left out.
    pb_cut: float = Field(0.2, gt=0, le=1)
    #: Another catalog source within this many beam major axes: ``blended``.
    blend_beams: float = Field(1.0, ge=0)
    #: Local noise above this many times the image's median noise, or the fit's reduced
    #: chi^2 above ``artefact_chi2``: ``artefact``.
    artefact_noise: float = Field(2.0, gt=1)
    artefact_chi2: float = Field(4.0, gt=1)
    #: The fit's allowed error, as a fraction of the source's peak (beam shape, spectrum):
    #: ``artefact`` needs chi^2 above ``artefact_chi2 (1 + (model_error S/N)^2)``.
    model_error: float = Field(0.03, ge=0)
    #: A fractional error added in quadrature to the noise error (calibration, primary
    #: beam, beam shape). 0.015 gives steady sources a pull width of 1.06 (std; 0.96 MAD)
    #: over S/N 5-300 on the survey suite's night (dec +33.2, seed 51); the noise alone
    #: gives 1.06 at S/N 5-20 but 1.3 at 20-100 and 1.9 (MAD) above.
    systematic_frac: float = Field(0.015, ge=0)
    #: Divide by the mean flux a fit at the catalog's uncertain positions loses (its
    #: ``pos_err`` column); False: raw fits.
    correct_position_loss: bool = True
    #: Tile (pixels) of the local-noise map.
    noise_tile: int = Field(64, ge=16)
    #: The catalog; None: the night's survey catalog.
    catalog: str | None = None
    #: New sources found earlier (the mosaic stage's CSVs, a glob; relative paths are
    #: under the run's output directory), measured beside the catalog; None: none.
    new_sources: str | None = "mosaics/*-new_sources.csv"
    output_dir: str | None = None


class PhotometryStage(PipelineStage):
    name = "photometry"
    version = "1"
    Config = PhotometryConfig
    requires = ("images",)
    produces = ("photometry",)
    resources = Resources(cpu=1, memory_gb=1.0)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg: PhotometryConfig = self.config  # type: ignore[assignment]
        t0 = time.perf_counter()
        refs = ctx.get("images")
        roles = {r.meta.get("role"): r for r in (refs if isinstance(refs, list) else [refs])}
        missing = [r for r in ("image", "residual", "pb") if r not in roles]
        if missing:
            raise InputError(f"photometry needs the image, residual and pb images; "
                             f"missing {missing}", stage=self.name,
                             files=[r.path for r in roles.values()])
        catalog_path = cfg.catalog or ctx.metadata.get("survey_catalog")
        if not catalog_path:
            raise InputError("no catalog to measure at: set photometry.catalog or give the "
                             "night a survey catalog", stage=self.name)
        image = read_plane(roles["image"].path, need_beam=True)
        residual = read_plane(roles["residual"].path)
        pb = read_plane(roles["pb"].path)
        cat = self._with_new_sources(ctx, read_catalog(catalog_path))
        table = measure(image, residual.data, pb.data, cat, cfg)
        table["group_id"] = np.full(len(table["name"]), ctx.group_id or "")
        n = len(table["name"])
        out_dir = self.products_dir(ctx, "photometry")
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / f"{Path(roles['image'].path).name.removesuffix('-image.fits')}" \
                          f".photometry.csv"
        with atomic_path(final) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for i in range(n):
                w.writerow([_cell(table[c][i]) for c in COLUMNS])
        dt = time.perf_counter() - t0
        return (ctx.with_output("photometry", ProductRef.for_path(
                    "csv", final, n_sources=n, mjd=image.mjd, image=roles["image"].path,
                    catalog=str(catalog_path)))
                .with_metrics(self.name, n_sources=n, wall_s=dt,
                              n_flagged=int(sum(np.asarray(table[k]).sum()
                                                for k in ("edge", "blended", "artefact")))))


    def _with_new_sources(self, ctx: PipelineContext, cat: SourceCatalog) -> SourceCatalog:
        """``cat`` and the new sources found earlier (each once: a repeat within a beam
        of one listed before it, or of a catalog source, is dropped)."""
        cfg: PhotometryConfig = self.config  # type: ignore[assignment]
        if not cfg.new_sources:
            return cat
        pattern = self.output_root() / cfg.new_sources  # absolute stays absolute
        found = [c for c in (read_catalog(p) for p in sorted(glob.glob(str(pattern))))
                 if len(c)]
        if not found:
            return cat
        new = SourceCatalog.concat(found)
        keep = first_of_each(np.r_[cat.ra, new.ra], np.r_[cat.dec, new.dec],
                             np.radians(NEW_SOURCE_RADIUS_DEG))[len(cat):]
        return SourceCatalog.concat([cat, new.select(keep)], source=cat.source)


def measure(image, residual: np.ndarray, pb: np.ndarray, cat, cfg: PhotometryConfig) -> dict:
    """The photometry table (column -> array) of catalog ``cat`` on ``image``."""
    ra, dec = np.degrees(cat.ra), np.degrees(cat.dec)
    x, y = image.pixels(ra, dec)
    ny, nx = image.data.shape
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    pbv = np.where(inside, pb[iy, ix], 0.0)
    keep = np.flatnonzero(inside & np.isfinite(pbv) & (pbv >= cfg.pb_cut))
    beam = image.beam
    cell = np.radians(image.cell_deg)
    bmaj_px, bmin_px = beam.bmaj / cell, beam.bmin / cell
    half = int(np.ceil(bmaj_px))
    rms_map = tile_rms(residual, cfg.noise_tile)
    local = rms_map[iy[keep] // cfg.noise_tile, ix[keep] // cfg.noise_tile]
    median_rms = float(np.nanmedian(rms_map))
    local = np.where(np.isfinite(local), local, median_rms)
    factor = noise_factor(bmaj_px, bmin_px, beam.bpa, noise_acf(residual, half))
    got = forced_fluxes(image.data, x[keep], y[keep], local, bmaj_px, bmin_px, beam.bpa,
                        factor=factor, half=half)
    # blends: another catalog source (measured or not) within blend_beams major axes
    blended = np.zeros(keep.size, bool)
    if x.size > 1 and keep.size:
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x[keep], y[keep]]),
                                                         k=2)
        blended = dist[:, 1] < cfg.blend_beams * bmaj_px  # [:, 0] is the source itself
    # a bright source's fit is allowed a model error of model_error of its peak
    with np.errstate(invalid="ignore"):
        snr = got["flux"] / got["err"]
        allowed = cfg.artefact_chi2 * (1.0 + (cfg.model_error * snr) ** 2)
    artefact = (local > cfg.artefact_noise * median_rms) | (got["chi2"] > allowed)
    p = pbv[keep]
    # the catalog's position errors cost the fit a known fraction of the flux on average
    loss = (position_loss(np.asarray(cat.pos_err)[keep] / cell, bmaj_px, bmin_px)
            if cfg.correct_position_loss else np.ones(keep.size))
    got["flux"], got["err"] = got["flux"] / loss, got["err"] / loss
    err = np.hypot(got["err"], cfg.systematic_frac * np.abs(got["flux"]))
    return {"name": np.asarray(cat.name)[keep], "ra_deg": ra[keep], "dec_deg": dec[keep],
            "x": x[keep], "y": y[keep], "pb": p, "flux_app_jy": got["flux"],
            "err_app_jy": err, "flux_jy": got["flux"] / p, "err_jy": err / p,
            "snr": got["flux"] / err, "noise_err_app_jy": got["err"], "chi2": got["chi2"],
            "local_rms_jy": local,
            "edge": got["edge"], "blended": blended, "artefact": artefact,
            "mjd": np.full(keep.size, image.mjd if image.mjd is not None else np.nan),
            "catalog_flux_jy": np.asarray(cat.flux_jy)[keep], "position_loss": loss}


def _cell(v: object) -> object:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.7g}"
    return v
