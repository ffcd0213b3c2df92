"""The mosaic window stage: an hour's group images in one linear mosaic, validated.

Window scope (an hour by default). Requires each group's ``images`` (image, pb and, when
every group has one, residual) and ``validation`` (its verdict, noise and reference
catalog); groups whose verdict is in ``leave_out`` are left out and named. The planes of
each group are resampled onto the part of the grid its footprint covers (:mod:`.resample`:
astropy's pixel map on a lattice, scipy's bicubic spline) and combined by :mod:`.combine`.
The mosaic is then validated as a group image is, by the hook ``validator`` names (no
stage imports another; the default config names
``stages.validation.mosaic:validate_arrays``), on its apparent form: uniform noise, the
sensitivity as its primary beam, the inverse-variance expectation as its theoretical
noise. Its detections with no counterpart in the reference catalog or among earlier
mosaics' new sources are written as new sources (:mod:`.new_sources`), which forced
photometry then measures in later groups.

Produces ``mosaic``: FITS image (primary-beam corrected, Jy/beam), residual, weight
(sum PB^2/sigma^2) and noise maps with the grid's WCS and provenance (the groups held,
their verdicts and calibration tables), a thumbnail, the validation report and the
new-sources CSV.
"""

from __future__ import annotations

import csv
import glob
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.beam import Beam
from dsa110_pipeline.config import resolve_stage
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import ConfigError, InputError
from dsa110_pipeline.fits_image import celestial_wcs, header_frequency, read_image_plane
from dsa110_pipeline.stage import Resources, StageConfig
from dsa110_pipeline.thumbnail import thumbnail_png
from dsa110_pipeline.window import WindowStage

from .combine import accumulate, apparent, finish
from .grid import footprint_box, mosaic_header
from .new_sources import snr_without_best_group, source_names, unmatched
from .resample import pixel_map, resample

NEW_SOURCES = "new_sources.csv"
#: new-source candidates the window's groups do not confirm (``new_source_confirm_snr``)
UNCONFIRMED = "unconfirmed.csv"
NEW_SOURCE_COLUMNS = ("name", "ra_deg", "dec_deg", "flux_jy", "flux_err_jy", "snr",
                      "window", "mosaic", "snr_without_best_group",
                      "snr_expected_without_best_group")


class MosaicConfig(StageConfig):
    """Typed config of the mosaic stage (the ``mosaic`` branch)."""

    #: Pixels where a group's primary beam is below this take nothing from it.
    pb_cut: float = Field(0.2, gt=0, le=1)
    leave_out: tuple[str, ...] = ("REJECT",)
    #: SIN (an hour); CAR: every window's grid is a tile of one lattice (see
    #: ``grid.mosaic_header``), so hourly CAR mosaics are a night's strip in tiles.
    projection: Literal["SIN", "CAR"] = "SIN"
    #: The largest grid (pixels) a window may take: its planes are held in memory (about
    #: 50 bytes a pixel with validation; an hour at full scale is 21 Mpx, 3.5 GB peak). A
    #: night's strip at 6" is 10-20 times that: mosaic hours in CAR instead.
    max_pixels: int = Field(60_000_000, ge=1)
    #: The mosaic is validated as a group image by this hook ("module:function", called
    #: with the apparent image, its header, sensitivity and residual, and the settings of
    #: the config branch ``validation_settings``; see
    #: ``stages.validation.mosaic.validate_arrays``); None: not validated, no new sources.
    validator: str | None = None
    #: The config branch whose settings the validator uses (the group validation's, so a
    #: mosaic is judged as its groups are); None or absent: the validator's defaults.
    validation_settings: str | None = "validation"
    #: The reference catalog; None: the one the groups were validated against.
    reference_catalog: str | None = None
    #: A detection this far above the mosaic's noise with no reference counterpart (within
    #: the validation's match radius) and no earlier new source is a new source.
    new_source_snr: float = Field(7.0, gt=0)
    #: ... and is still at least this far above the noise from the window's groups without
    #: the one that contributes most (``new_sources.snr_without_best_group``): an artefact
    #: of one group is no new source. Those that are not, where the other groups would
    #: have seen a steady source of that flux this far above the noise, are written to
    #: ``<mosaic>-unconfirmed.csv`` (a transient of a single group among them); where they
    #: could not (a source at the edge of the window's sky, covered by one group), the
    #: window cannot test it and it stays a new source, its expected S/N without the best
    #: group in the table (an unseen hour, dec +25.1: 3 real unsurveyed sources of 26-34
    #: sigma at a window's edge were unconfirmed).
    new_source_confirm_snr: float = Field(5.0, ge=0)
    #: Earlier new sources (a glob; relative paths are under the run's output directory).
    new_sources_glob: str = f"mosaics/*-{NEW_SOURCES}"
    output_dir: str | None = None


class MosaicStage(WindowStage):
    name = "mosaic"
    version = "4"  # 4: CAR grids on one lattice; 3: its validation finds no points in plateaus
    Config = MosaicConfig
    #: The settings of the ``validation_settings`` branch (see :meth:`bind_run`).
    validator_settings: dict[str, Any] | None = None
    requires = ("images", "validation")
    produces = ("mosaic",)
    #: an hour of 12 full-scale groups (a 9281 x 2251 grid) peaks at 3.5 GB, validation
    #: included (perf survey, mosaic_full)
    resources = Resources(cpu=1, memory_gb=4.0)
    window_s = 3600.0

    def bind_run(self, run_config: Any) -> None:
        """Also the validator's settings: the typed ``validation_settings`` branch."""
        super().bind_run(run_config)
        branch = self.config.validation_settings  # type: ignore[attr-defined]
        model = getattr(run_config, branch, None) if branch else None
        self.validator_settings = None if model is None else model.model_dump(mode="json")

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        from astropy.io import fits
        from astropy.wcs import WCS

        cfg: MosaicConfig = self.config  # type: ignore[assignment]
        info = self.window(ctx)
        groups, left_out = self._members(ctx, info)
        if not groups:
            raise InputError(f"window {info.window_id}: every group left out "
                             f"({left_out})", stage=self.name)
        with_residual = all(g.paths["residual"] is not None for g in groups)
        centres, corners = [], []
        for g in groups:
            ny, nx = g.shape
            centres.append(g.wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
            corners.append(_edge_world(g.wcs, nx, ny))
        cell = min(abs(float(g.header["CDELT1"])) for g in groups)
        frame = groups[0].wcs.wcs
        out_hdr = mosaic_header(np.array(centres), np.vstack(corners), cell, cfg.projection,
                                radesys=frame.radesys or "ICRS",
                                equinox=frame.equinox if np.isfinite(frame.equinox) else None)
        out_wcs = WCS(fits.Header(out_hdr))
        shape = (int(out_hdr["NAXIS2"]), int(out_hdr["NAXIS1"]))
        if shape[0] * shape[1] > cfg.max_pixels:
            raise ConfigError(
                f"window {info.window_id}: its {cfg.projection} grid is {shape[1]} x "
                f"{shape[0]} pixels ({shape[0] * shape[1] / 1e6:.0f} Mpx, about "
                f"{shape[0] * shape[1] * 50 / 1e9:.0f} GB), more than mosaic.max_pixels "
                f"({cfg.max_pixels / 1e6:.0f} Mpx): mosaic shorter windows "
                "(pipeline.windows.mosaic: hour); with mosaic.projection CAR their tiles "
                "share one pixel lattice", stage=self.name)
        k = 2 if with_residual else 1
        num, den = np.zeros((k, *shape)), np.zeros(shape)
        for g in groups:
            x0, x1, y0, y1 = footprint_box(np.column_stack(out_wcs.world_to_pixel_values(
                *_edge_world(g.wcs, g.shape[1], g.shape[0]).T)), shape)
            coords = pixel_map(g.wcs, out_wcs[y0:y1, x0:x1], (y1 - y0, x1 - x0))
            # bicubic for the images (bilinear would lose 3 % of a peak at 7.5 pixels a
            # beam); the primary beam is smooth on a pixel's scale: bilinear
            # one group's planes in memory at a time (a night of them would not fit)
            r = resample(np.stack([g.plane("image"),
                                   *([g.plane("residual")] if with_residual else [])]), coords)
            pb = resample(g.plane("pb")[None], coords, order=1)[0]
            accumulate(num[:, y0:y1, x0:x1], den[y0:y1, x0:x1], r, pb, g.sigma, cfg.pb_cut)
            del r, pb, coords
        planes, noise = finish(num, den)
        del num
        out_dir = self.products_dir(ctx, "mosaics")
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = info.window_id.replace(":", "").replace("@", "_")
        common = _provenance(groups, left_out, info.window_id)
        refs = []
        fits_planes = [("image", planes[0], "JY/BEAM"),
                       *([("residual", planes[1], "JY/BEAM")] if with_residual else []),
                       ("weight", den, "1/(JY/BEAM)2"), ("noise", noise, "JY/BEAM")]
        paths = {}
        for role, data, unit in fits_planes:
            hdr = fits.Header(out_hdr)
            hdr.update(common)
            hdr["BUNIT"] = unit
            hdr["MOSROLE"] = (role, "mosaic plane")
            paths[role] = path = out_dir / f"{stem}-{role}.fits"
            with atomic_path(path) as tmp:
                fits.writeto(tmp, data.astype(np.float32), hdr)
            refs.append(ProductRef.for_path("fits", path, role=role,
                                            groups=[g.gid for g in groups],
                                            left_out=left_out))
        thumb = thumbnail_png(planes[0], out_dir / f"{stem}-thumb.png", max_px=800)
        refs.append(ProductRef.for_path("png", thumb, role="thumbnail"))
        good = noise[np.isfinite(noise)]
        metrics: dict[str, Any] = {
            "groups": len(groups), "left_out": len(left_out), "npix_x": shape[1],
            "npix_y": shape[0],
            "median_noise_jy": float(np.median(good)) if good.size else None}
        if cfg.validator:
            refs += self._validate(ctx, cfg, groups, planes, noise, out_hdr, common,
                                   paths["image"], out_dir, stem, info.window_id, metrics)
        return ctx.with_output("mosaic", refs).with_metrics(self.name, **metrics)

    # -- parts ----------------------------------------------------------------------
    def _members(self, ctx: PipelineContext, info: Any) -> tuple[list[_Group], dict[str, str]]:
        """The window's groups to mosaic, read, and those left out (with why)."""
        cfg: MosaicConfig = self.config  # type: ignore[assignment]
        images = self.group_products(ctx, "images")
        val = self.group_products(ctx, "validation")
        groups, left_out = [], {}
        for gid in info.groups:
            v = val[gid][0] if isinstance(val[gid], list) else val[gid]
            verdict = v.meta.get("verdict")
            if verdict in cfg.leave_out:
                left_out[gid] = f"verdict {verdict}"
                continue
            roles = {r.meta.get("role"): r for r in (images[gid] if isinstance(
                images[gid], list) else [images[gid]])}
            if "image" not in roles or "pb" not in roles:
                left_out[gid] = "no image or pb image"
                continue
            sigma = ((v.meta.get("metrics") or {}).get("noise") or {}).get("image_rms_jy")
            if not sigma or not np.isfinite(sigma):
                raise InputError(f"group {gid}'s validation holds no image rms",
                                 stage=self.name, files=[v.path])
            groups.append(_Group(
                gid, roles["image"].path, roles["pb"].path,
                roles["residual"].path if "residual" in roles else None,
                float(sigma), verdict, v.meta.get("reference")))
        return groups, left_out

    def _validate(self, ctx: PipelineContext, cfg: MosaicConfig, groups: list[_Group],
                  planes: np.ndarray, noise: np.ndarray, out_hdr: dict[str, Any],
                  cards: dict[str, Any], image_path: Path, out_dir: Path, stem: str,
                  window_id: str, metrics: dict[str, Any]) -> list[ProductRef]:
        """Validate the mosaic's apparent form with the configured validator; write its
        new sources. Fills ``metrics``."""
        validator = resolve_stage(cfg.validator)  # type: ignore[arg-type]
        settings = self.validator_settings
        ref_path = cfg.reference_catalog or next((g.reference for g in groups
                                                  if g.reference), None)
        app, sens, sigma0 = apparent(planes, noise)
        header = {**out_hdr, **{k: (v[0] if isinstance(v, tuple) else v)
                                for k, v in cards.items()}, "BUNIT": "JY/BEAM",
                  "ORIGIN": str(image_path)}
        got = validator(app[0], header, sens, app[1] if len(app) > 1 else None,
                        out_dir / "validation", stem, reference_path=ref_path,
                        theoretical_rms=sigma0, settings=settings or {},
                        pb_source="mosaic sensitivity (lowest noise / noise)")
        m = got["metrics"]
        noise_m = m.get("noise") or {}
        metrics.update(verdict=got["verdict"], expected_rms_jy=sigma0,
                       rms_jy=noise_m.get("image_rms_jy"), noise_ratio=noise_m.get("ratio"),
                       flux_ratio=(m.get("flux_scale") or {}).get("median_ratio"),
                       n_sources=m.get("n_sources"))
        refs = [ProductRef.for_path("html", got["report"], role="validation",
                                    verdict=got["verdict"], metrics=m)]
        if ref_path and got.get("match_radius_deg"):
            new, unconfirmed = self._new_sources(ctx, cfg, got["sources"],
                                                 got["match_radius_deg"], window_id,
                                                 image_path, groups)
            for rows, name, role in ((new, NEW_SOURCES, "new_sources"),
                                     (unconfirmed, UNCONFIRMED, "unconfirmed_sources")):
                path = out_dir / f"{stem}-{name}"
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(NEW_SOURCE_COLUMNS)
                    w.writerows(rows)
                refs.append(ProductRef.for_path("csv", path, role=role, n=len(rows)))
            metrics["n_new_sources"] = len(new)
            metrics["n_unconfirmed_sources"] = len(unconfirmed)
        return refs

    def _new_sources(self, ctx: PipelineContext, cfg: MosaicConfig,
                     src: dict[str, np.ndarray], radius_deg: float, window_id: str,
                     image_path: Path, groups: list[_Group]
                     ) -> tuple[list[list[Any]], list[list[Any]]]:
        """Rows of the detections at ``new_source_snr`` or more that matched no reference
        source and lie near no earlier new source: those the window's groups confirm
        without their best one (``new_source_confirm_snr``) or cannot test, and the
        others."""
        cand = np.flatnonzero((np.asarray(src["snr"]) >= cfg.new_source_snr)
                              & ~np.asarray(src["matched"], bool))
        ra, dec = np.asarray(src["ra_deg"])[cand], np.asarray(src["dec_deg"])[cand]
        earlier = np.array([(float(r["ra_deg"]), float(r["dec_deg"]))
                            for r in _earlier_new_sources(self._glob(ctx, cfg), image_path,
                                                                window_id)]
                           ).reshape(-1, 2)
        keep = unmatched(ra, dec, earlier[:, 0], earlier[:, 1], radius_deg)
        cand, ra, dec = cand[keep], ra[keep], dec[keep]
        values, pb = _group_values(groups, ra, dec, cfg.pb_cut)
        _, loo, loo_expected = snr_without_best_group(values, pb,
                                                      np.array([g.sigma for g in groups]))
        names = source_names(ra, dec) if cand.size else []
        flux, err, snr = (np.asarray(src[k])[cand] for k in ("flux_jy", "flux_err_jy", "snr"))
        rows = [[n, f"{ra[i]:.6f}", f"{dec[i]:.6f}", f"{flux[i]:.6g}", f"{err[i]:.3g}",
                 f"{snr[i]:.1f}", window_id, str(image_path), f"{loo[i]:.1f}",
                 f"{loo_expected[i]:.1f}"]
                for i, n in enumerate(names)]
        # confirmed by the other groups, or not testable by them
        ok = (loo >= cfg.new_source_confirm_snr) | (loo_expected < cfg.new_source_confirm_snr)
        return [r for r, k in zip(rows, ok) if k], [r for r, k in zip(rows, ok) if not k]

    def _glob(self, ctx: PipelineContext, cfg: MosaicConfig) -> str:
        return str(self.output_root() / cfg.new_sources_glob)  # absolute stays absolute


class _Group:
    """One group: where its planes are (read when needed, one group at a time), its
    header, noise, verdict and reference catalog."""

    def __init__(self, gid: str, image: str, pb: str, residual: str | None, sigma: float,
                 verdict: str | None, reference: str | None) -> None:
        from astropy.io import fits

        self.gid = gid
        self.paths = {"image": image, "pb": pb, "residual": residual}
        try:
            self.header = fits.getheader(image)
        except Exception as exc:  # astropy raises several types for a bad file
            raise InputError(f"group {gid}: cannot read the image header", files=[image],
                             cause=exc) from exc
        self.sigma, self.verdict, self.reference = sigma, verdict, reference
        self.wcs = celestial_wcs(self.header)
        self.shape = (int(self.header["NAXIS2"]), int(self.header["NAXIS1"]))

    def plane(self, role: str) -> np.ndarray:
        """The group's ``role`` plane (image, pb, residual) as float32, checked against the
        image's shape."""
        path = self.paths[role]
        data = read_image_plane(path, dtype=np.float32)[0]
        if data.shape != self.shape:
            raise InputError(f"group {self.gid}: its {role} plane is {data.shape}, its image "
                             f"{self.shape}", files=[str(path)])
        return data


def _group_values(groups: list[_Group], ra: np.ndarray, dec: np.ndarray, pb_cut: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(n, g) each group image's value and primary beam at the positions' nearest pixels
    (NaN where the group does not cover a position above ``pb_cut``)."""
    values = np.full((ra.size, len(groups)), np.nan)
    pb = np.full((ra.size, len(groups)), np.nan)
    for j, g in enumerate(groups):
        if not ra.size:
            break
        x, y = (np.round(np.asarray(c, float)) for c in g.wcs.world_to_pixel_values(ra, dec))
        ok = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < g.shape[1]) & (y >= 0) \
            & (y < g.shape[0])
        idx, xi, yi = np.flatnonzero(ok), x[ok].astype(int), y[ok].astype(int)
        gpb = g.plane("pb")
        keep = gpb[yi, xi] >= pb_cut
        idx, xi, yi = idx[keep], xi[keep], yi[keep]
        values[idx, j], pb[idx, j] = g.plane("image")[yi, xi], gpb[yi, xi]
    return values, pb


def _earlier_new_sources(pattern: str, mine: Path, window_id: str) -> list[dict[str, str]]:
    """The rows of earlier mosaics' new-source files: not this mosaic's own, and not those
    of windows that start later (a ``--rerun`` of a night finds its later windows' files
    of the first run: their sources were new after this window, not before it). A row
    without a window (an external list) counts as earlier."""
    rows = []
    own = mine.name.removesuffix("-image.fits")
    start = window_id.partition("@")[2]
    for p in sorted(glob.glob(pattern)):
        if Path(p).name.startswith(own):
            continue
        with open(p, newline="") as fh:
            rows += [r for r in csv.DictReader(fh)
                     if not r.get("window") or r["window"].partition("@")[2] < start]
    return rows


def _edge_world(w: Any, nx: int, ny: int, n: int = 16) -> np.ndarray:
    """World coordinates (deg) of points along the image's edges: its footprint."""
    t = np.linspace(0, 1, n)
    xs = np.r_[t * (nx - 1), np.full(n, nx - 1), t * (nx - 1), np.zeros(n)]
    ys = np.r_[np.zeros(n), t * (ny - 1), np.full(n, ny - 1), t * (ny - 1)]
    ra, dec = w.pixel_to_world_values(xs, ys)
    return np.column_stack([ra, dec])


_UNIT = {"BMAJ": "FWHM, deg", "BMIN": "FWHM, deg", "BPA": "PA, deg, as an axis"}


def _provenance(groups: list[_Group], left_out: dict[str, str],
                window_id: str) -> dict[str, Any]:
    first = groups[0].header
    beams = [b for b in (Beam.from_header(g.header) for g in groups) if b is not None]
    # the position angle averaged as an axis: groups at +89.7 and -89.9 deg (one
    # orientation) once gave -49.8 deg, and every beam-matched flux of that mosaic came out
    # 10 % low (an unseen hour, dec +41.6, 3C119, seed 223)
    mean = Beam.mean(beams).header_cards() if beams else {}
    cards: dict[str, Any] = {
        "TELESCOP": first.get("TELESCOP", ""), "OBJECT": window_id,
        **{k: (v, f"mean of the groups' restoring beams ({_UNIT[k]})")
           for k, (v, _) in mean.items()},
        "RESTFRQ": (float(np.mean([header_frequency(g.header) or 1.4e9 for g in groups])),
                    "mean frequency of the groups (Hz)"),
        "NGROUPS": (len(groups), "groups in the mosaic"),
        "NLEFTOUT": (len(left_out), "groups of the window left out"),
        "PIPEVER": first.get("PIPEVER", ""), "MOSWIN": window_id,
    }
    for i, g in enumerate(groups, start=1):
        cards[f"GRP{i:03d}"] = (g.gid, f"verdict {g.verdict}, rms {g.sigma:.3g} Jy/beam")
        if g.header.get("CALTAB1"):
            cards[f"GCAL{i:03d}"] = str(g.header["CALTAB1"])[-68:]
    for i, (g, why) in enumerate(sorted(left_out.items()), start=1):
        cards[f"OUT{i:03d}"] = (g, why[:40])
    return cards
