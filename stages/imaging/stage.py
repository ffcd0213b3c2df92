"""ImagingStage: a Measurement Set -> restored, residual, model, PSF, PB and PB-corrected FITS.

The stage wires config, I/O and kernels: it reads the MS metadata and checks every input
(empty or fully flagged MS, impossible cell or image size, memory) before any heavy work,
then images with the ducc0 kernels of this package (or an external WSClean), and writes the
FITS products atomically with provenance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline import __version__ as PIPELINE_VERSION
from dsa110_pipeline.catalogs import read_catalog, with_known_sources
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import ConfigError, InputError
from dsa110_pipeline.instrument import (
    ARCSEC,
    DISH_DIAMETER,
    SEFD,
    SPEED_OF_LIGHT,
    radiometer_noise,
)
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.robust import robust_rms
from dsa110_pipeline.stage import PipelineStage, Resources

from .beam import Beam, BeamFitError
from .config import ImagingConfig
from .drift_beam import SkySources, sources_about
from .fits_writer import ImageGeometry, build_header, mjd_seconds_to_isot, write_fits
from .imager import ImagingParams, ImagingResult, make_images
from .ms_reader import MSChunkSource, MSInfo, read_ms_info, scan_usable
from .pointing import beam_centre_track
from .primary_beam import drift_pointings, pb_correct, pb_image
from .telescope import TelescopeInfo, pb_header_cards, read_telescope

ROLES = ("image", "residual", "model", "psf", "pb", "pbcor")
#: Bytes per image pixel the ducc0 imager needs at its peak (images, accumulators, the
#: oversampled uv grid of the double-size PSF and the zero-padded FFTs).
_BYTES_PER_PIXEL = 400
#: Bytes per visibility held in memory (vis, weight, imaging weight, mask, a prediction).
_BYTES_PER_VIS = 30


class ImagingPlan:
    """The checked numbers of one imaging run, decided before any heavy work."""

    def __init__(self, *, npix: int, cell: float, nthreads: int, in_memory: bool,
                 rows_per_chunk: int, uv_max_m: float, image_bytes: int, vis_bytes: int) -> None:
        self.npix, self.cell, self.nthreads = npix, cell, nthreads
        self.in_memory, self.rows_per_chunk = in_memory, rows_per_chunk
        self.uv_max_m, self.image_bytes, self.vis_bytes = uv_max_m, image_bytes, vis_bytes

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class ImagingStage(PipelineStage):
    """Image one Measurement Set (Stokes I, multi-frequency synthesis)."""

    name = "imaging"
    version = "3"  # 2: the guard band (session 23); 3: close pairs as two points
    Config = ImagingConfig
    requires = ("ms",)
    produces = ("images",)
    resources = Resources(cpu=2.0, memory_gb=4.0)
    executor = "thread"

    config: ImagingConfig

    # -- planning (cheap; every check happens here) ---------------------------------------
    def plan(self, info: MSInfo, nthreads_hint: int | None = None) -> ImagingPlan:
        """Check the MS and the config against each other; raise before heavy work.

        Threads: ``config.nthreads``, else ``nthreads_hint`` (the runner's allotment),
        else every CPU this process may use.
        """
        cfg = self.config
        usable, uv_max_m = scan_usable(info)
        if usable == 0:
            raise InputError(f"every visibility of {info.column} is flagged (or the MS holds "
                             "only autocorrelations)", stage=self.name, files=[info.path])
        fmax = float(info.freqs.max())
        uv_max_l = uv_max_m * fmax / SPEED_OF_LIGHT
        if cfg.uv_max_lambda is not None:
            uv_max_l = min(uv_max_l, cfg.uv_max_lambda)
        if cfg.uv_min_lambda and cfg.uv_min_lambda >= uv_max_l:
            raise ConfigError(f"uv_min_lambda {cfg.uv_min_lambda:g} excludes every baseline "
                              f"(longest {uv_max_l:.0f} lambda)", stage=self.name)
        cell = cfg.cell_arcsec * ARCSEC if cfg.cell_arcsec else 1.0 / (4.0 * uv_max_l)
        nyquist = 1.0 / (2.0 * uv_max_l)
        if cell > nyquist:
            raise ConfigError(f"cell {cell / ARCSEC:.3g} arcsec undersamples the longest "
                              f"baseline ({uv_max_l:.0f} lambda): it must be below "
                              f"{nyquist / ARCSEC:.3g} arcsec (set uv_max_lambda to cut "
                              "long baselines)", stage=self.name, files=[info.path])
        npix = cfg.npix or int(np.ceil(np.radians(cfg.fov_deg) / cell / 32.0) * 32)
        wide = npix + 2 * cfg.guard_px  # the field CLEAN works on
        if wide * cell / 2 >= 0.9:
            raise ConfigError(f"the image ({wide} x {cell / ARCSEC:.3g} arcsec with its guard "
                              "band) reaches beyond the horizon of the phase centre",
                              stage=self.name)
        beam_est = 1.0 / uv_max_l
        if npix * cell < 4 * beam_est:
            raise ConfigError(f"the image ({npix} x {cell / ARCSEC:.3g} arcsec) is smaller "
                              f"than 4 synthesized beams (~{beam_est / ARCSEC:.3g} arcsec): "
                              "the cell or npix is nonsense", stage=self.name)
        limit = int(cfg.memory_limit_gb * 2**30)
        image_bytes = _BYTES_PER_PIXEL * wide * wide
        if image_bytes > limit:
            raise ConfigError(f"a {wide}x{wide} image needs about {image_bytes / 2**30:.1f} GiB, "
                              f"more than the memory limit {cfg.memory_limit_gb:g} GiB",
                              stage=self.name)
        vis_bytes = _BYTES_PER_VIS * info.nvis + 24 * info.nrow
        fits_in_memory = image_bytes + vis_bytes <= limit
        if cfg.in_memory == "always" and not fits_in_memory:
            raise ConfigError(f"the visibilities need about {vis_bytes / 2**30:.1f} GiB in "
                              f"memory, beyond the limit {cfg.memory_limit_gb:g} GiB; use "
                              "in_memory='auto'", stage=self.name, files=[info.path])
        in_memory = cfg.in_memory == "always" or (cfg.in_memory == "auto" and fits_in_memory)
        per_row = max(1, _BYTES_PER_VIS * info.nvis // info.nrow)
        rows = cfg.rows_per_chunk or max(1, min(info.nrow, (limit - image_bytes) // 4 // per_row))
        nthreads = cfg.nthreads or nthreads_hint or _available_cpus()
        return ImagingPlan(npix=npix, cell=float(cell), nthreads=nthreads, in_memory=in_memory,
                           rows_per_chunk=int(rows), uv_max_m=uv_max_m, image_bytes=image_bytes,
                           vis_bytes=vis_bytes)

    def pb_pointings(self, info: MSInfo, tel: TelescopeInfo | None = None
                     ) -> tuple[tuple[float, float], ...]:
        """Beam-centre offsets (l, m) over which the pb image averages the beam: the
        pointing track (``pointing_track``) where the array's position is known."""
        if not self.config.pb_drift:
            return ((0.0, 0.0),)
        track = self.pointing_track(info, tel)
        pts = track[1] if track is not None else drift_pointings(info.time_start,
                                                                  info.time_end, info.dec)
        return tuple((float(a), float(b)) for a, b in pts)

    def pointing_track(self, info: MSInfo, tel: TelescopeInfo | None
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """The beam centre's (l, m) at nine times across the observation (None without the
        array's position: the beam then drifts along the phase centre's declination)."""
        if tel is None or tel.position is None:
            return None
        t = np.linspace(info.time_start, info.time_end, 9)
        return t, beam_centre_track(t, info.ra, info.dec, tel.position)

    def sky_sources(self, info: MSInfo, catalog: str | None = None) -> SkySources | None:
        """The field catalog's sources within 10 deg of the phase centre, or None."""
        catalog = self.config.field_catalog or catalog
        if not catalog:
            return None
        radius = np.radians(10.0)
        # the declination strip first: the cross-match with the VLA list costs per source
        cat = with_known_sources(read_catalog(catalog).strip(max(info.dec - radius, -np.pi / 2),
                                                              min(info.dec + radius, np.pi / 2)))
        return sources_about(cat.ra, cat.dec, cat.flux_jy, cat.spectral_index,
                             cat.ref_freq_hz, info.ra, info.dec, radius)

    def fixed_beam(self) -> Beam | None:
        """The configured restoring beam, or None (fit the PSF)."""
        rb = self.config.restoring_beam
        return Beam.from_arcsec(*rb) if rb is not None else None

    def imaging_params(self, plan: ImagingPlan, info: MSInfo | None = None,
                       telescope: TelescopeInfo | None = None,
                       catalog: str | None = None) -> ImagingParams:
        """Kernel parameters; ``telescope`` gives the PB dish (None: DSA-110's); ``catalog``
        the night's survey catalog (when the config names no field catalog)."""
        cfg = self.config
        diameter = telescope.dish_diameter if telescope is not None else DISH_DIAMETER
        drift = info is not None and cfg.pb_drift
        return ImagingParams(npix_x=plan.npix, npix_y=plan.npix, cell=plan.cell,
                             opts=cfg.model_copy(update={"clean": cfg.clean.model_copy(
                                 update={"nthreads": plan.nthreads})}),
                             nthreads=plan.nthreads,
                             pb_pointings=self.pb_pointings(info, telescope) if info
                             else ((0.0, 0.0),),
                             drift_track=(0.5 * (info.time_start + info.time_end), info.dec)
                             if drift else None,
                             pointing_track=self.pointing_track(info, telescope) if drift
                             else None,
                             sky=self.sky_sources(info, catalog) if drift else None,
                             beam=self.fixed_beam(), dish_diameter=diameter)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _calibration_ids(ctx: PipelineContext, ms_ref: ProductRef) -> list[str]:
        ids: list[str] = []
        for key in ("caltables", "calibration_tables", "caltable"):
            if ctx.has(key):
                prod = ctx.get(key)
                for ref in prod if isinstance(prod, list) else [prod]:
                    tag = Path(ref.path).name
                    ids.append(f"{tag}:{ref.checksum[:12]}" if ref.checksum else tag)
        for tab in ms_ref.meta.get("calibration_tables", []) or []:
            ids.append(str(tab))
        return ids

    # -- contract ---------------------------------------------------------------------------
    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        product = ctx.get("ms")
        refs = product if isinstance(product, list) else [product]
        if len(refs) != 1:
            raise InputError(f"imaging takes one Measurement Set, got {len(refs)}",
                             stage=self.name, files=[r.path for r in refs])
        ms_ref = refs[0]
        if ms_ref.kind != "ms":
            raise InputError(f"input of kind '{ms_ref.kind}' is not a Measurement Set",
                             stage=self.name, files=[ms_ref.path])
        t0 = time.perf_counter()
        try:
            info = read_ms_info(ms_ref.path, cfg.column)
        except InputError as exc:
            raise InputError(exc.detail, stage=self.name, files=exc.files,
                             cause=exc.cause) from exc
        try:
            tel = read_telescope(info.path, info.telescope)
        except InputError as exc:
            raise InputError(exc.detail, stage=self.name, files=exc.files,
                             cause=exc.cause) from exc
        if tel.dish_diameter is None:
            get_logger(stage=self.name).warning("no primary-beam model: no pb/pbcor images",
                                                ms=info.path, telescope=tel.name,
                                                reason=tel.note)
        hint = getattr(ctx.runtime, "nthreads", None) if ctx.runtime is not None else None
        plan = self.plan(info, hint if isinstance(hint, int) and hint > 0 else None)
        if cfg.backend == "tclean":
            try:
                import casatasks  # noqa: F401
            except ImportError as exc:
                raise ConfigError("backend 'tclean' needs casatasks (the 'casa' extra)",
                                  stage=self.name, cause=exc) from exc
            raise ConfigError("backend 'tclean' is not implemented yet", stage=self.name)
        out_dir = self.products_dir(ctx, "images")
        prefix = cfg.name or Path(info.path).name.removesuffix(".ms")
        t_plan = time.perf_counter() - t0
        if cfg.backend == "wsclean":
            result, extra = self._run_wsclean(info, plan, out_dir, prefix, tel)
        else:
            result, extra = self._run_ducc(info, plan, tel, ctx.metadata.get("survey_catalog"))
        t_image = time.perf_counter() - t0 - t_plan
        geom = ImageGeometry(ra=info.ra, dec=info.dec, cell=plan.cell, npix_x=plan.npix,
                             npix_y=plan.npix, freq_ref=result.freq_ref,
                             bandwidth=result.bandwidth, radesys=info.radesys)
        provenance = {"PIPEVER": PIPELINE_VERSION, "STAGEVER": self.version,
                      "CFGHASH": self.config_hash(), "MSNAME": Path(info.path).name,
                      "DATACOL": info.column, "IMBACKND": cfg.backend}
        cal_ids = self._calibration_ids(ctx, ms_ref)
        theo = _theoretical_rms(info, extra.get("expected_rms_jy"), ctx)
        out: list[ProductRef] = []
        for role in (r for r in ROLES if getattr(result, r) is not None):
            hdr = build_header(geom, role=role, telescope=tel.name,
                               beam=result.beam if role in ("image", "pbcor", "residual",
                                                            "model", "psf") else None,
                               date_obs=mjd_seconds_to_isot(info.time_start),
                               object_name=info.field_name, provenance=provenance,
                               calibration_tables=cal_ids)
            hdr.update(pb_header_cards(tel))
            hdr["HISTORY"] = (f"dsa110_pipeline imaging ({cfg.backend}): {cfg.weighting} "
                              f"robust {cfg.robust:g}, niter {cfg.clean.niter}, gain "
                              f"{cfg.clean.gain:g}, mgain {cfg.clean.mgain:g}, "
                              f"cell {plan.cell / ARCSEC:.4g} arcsec")
            path = write_fits(out_dir / f"{prefix}-{role}.fits", getattr(result, role), hdr)
            out.append(ProductRef.for_path("fits", path, role=role, ms=info.path,
                                           backend=cfg.backend, theoretical_rms_jy=theo))
        rms = robust_rms(result.residual)
        metrics = dict(backend=cfg.backend, npix=plan.npix, cell_arcsec=plan.cell / ARCSEC,
                       in_memory=plan.in_memory, nthreads=plan.nthreads,
                       bmaj_arcsec=result.beam.bmaj / ARCSEC,
                       bmin_arcsec=result.beam.bmin / ARCSEC, bpa_deg=result.beam.bpa,
                       restoring_beam="fixed" if cfg.restoring_beam else "fitted",
                       telescope=tel.name, dish_diameter_m=tel.dish_diameter,
                       pb_note=tel.note or None,
                       residual_rms_jy=rms, peak_jy=float(np.nanmax(result.image)),
                       theoretical_rms_jy=theo,
                       plan_s=t_plan, image_s=t_image, total_s=time.perf_counter() - t0, **extra)
        return ctx.with_output("images", out).with_metrics(self.name, **metrics)

    # -- backends ---------------------------------------------------------------------------
    def _run_ducc(self, info: MSInfo, plan: ImagingPlan,
                  tel: TelescopeInfo, catalog: str | None = None
                  ) -> tuple[ImagingResult, dict]:
        source = MSChunkSource(info, rows_per_chunk=plan.rows_per_chunk)
        t0 = time.perf_counter()
        data: Any = source.load() if plan.in_memory else source
        t_read = time.perf_counter() - t0
        try:
            result = make_images(data, self.imaging_params(plan, info, tel, catalog),
                                 consume=True)
            del data
        except BeamFitError as exc:
            raise InputError(f"cannot fit a restoring beam to the PSF: {exc}; set "
                             "imaging.restoring_beam: [bmaj_arcsec, bmin_arcsec, bpa_deg]",
                             stage=self.name, files=[info.path]) from exc
        except ValueError as exc:
            if "flagged" in str(exc):
                raise InputError(str(exc), stage=self.name, files=[info.path]) from exc
            raise
        extra = {"read_s": t_read, "n_iter": result.clean.n_iter,
                 "n_major": result.clean.n_major,
                 "n_approx_major": result.clean.n_approx_cycles,
                 "stop_reason": result.clean.stop_reason,
                 "spectral_fits": result.spectral.get("fits", 0),
                 "spectral_sources": result.spectral.get("sources", 0),
                 "point_sources": result.spectral.get("points", 0),
                 "point_refinements": result.spectral.get("refined", 0),
                 "outliers_subtracted": result.spectral.get("outlier_sources", 0),
                 "outliers_refined": result.spectral.get("outlier_fitted", 0),
                 "expected_rms_jy": result.expected_rms,
                 **{f"{k}_s": v for k, v in result.timings.items()}}
        return result, extra

    def _run_wsclean(self, info: MSInfo, plan: ImagingPlan, out_dir: Path,
                     prefix: str, tel: TelescopeInfo) -> tuple[ImagingResult, dict]:
        from astropy.io import fits

        cfg = self.config
        exe = shutil.which("wsclean")
        if exe is None:
            raise ConfigError("backend 'wsclean' chosen but no wsclean executable is on PATH",
                              stage=self.name)
        work = out_dir / f".{prefix}-wsclean-{os.getpid()}"
        work.mkdir(parents=True, exist_ok=True)
        name = work / prefix
        cl = cfg.clean
        cmd = [exe, "-name", str(name), "-size", str(plan.npix), str(plan.npix),
               "-scale", f"{plan.cell / ARCSEC:.6g}asec", "-niter",
               str(cl.niter), "-gain", str(cl.gain), "-mgain", str(cl.mgain),
               "-data-column", cfg.column, "-j", str(plan.nthreads),
               "-no-update-model-required", "-weight", cfg.weighting]
        if cfg.weighting == "briggs":
            cmd.append(str(cfg.robust))
        if cl.threshold:
            cmd += ["-threshold", str(cl.threshold)]
        if cl.auto_threshold:
            cmd += ["-auto-threshold", str(cl.auto_threshold)]
        if cl.auto_mask:
            cmd += ["-auto-mask", str(cl.auto_mask)]
        if cfg.uv_min_lambda:
            cmd += ["-minuv-l", str(cfg.uv_min_lambda)]
        if cfg.uv_max_lambda:
            cmd += ["-maxuv-l", str(cfg.uv_max_lambda)]
        if cfg.taper_arcsec:
            cmd += ["-taper-gaussian", f"{cfg.taper_arcsec}asec"]
        if cl.multiscale:
            cmd += ["-multiscale", "-multiscale-scales",
                    ",".join(str(int(s)) for s in cl.scales)]
        if cfg.restoring_beam:
            cmd += ["-beam-shape", *(f"{x:g}" for x in cfg.restoring_beam)]
        if cfg.wsclean_gridder == "wgridder":
            cmd += ["-use-wgridder", "-wgridder-accuracy", str(cfg.epsilon)]
        cmd.append(info.path)
        log = out_dir / f"{prefix}-wsclean.log"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
            if proc.returncode != 0:
                raise InputError(f"wsclean failed with exit code {proc.returncode}: "
                                 f"{proc.stderr.strip()[-500:]}", stage=self.name,
                                 files=[info.path, str(log)])
            arrays = {}
            for role, suffix in (("image", "image"), ("residual", "residual"),
                                 ("model", "model"), ("psf", "psf")):
                with fits.open(f"{name}-{suffix}.fits") as hdul:
                    arrays[role] = np.asarray(hdul[0].data[0, 0], dtype=np.float32)
                    if role == "image":
                        h = hdul[0].header
                        beam = Beam.from_header(h)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        freqs = info.freqs
        pb = None if tel.dish_diameter is None else pb_image(
            plan.npix, plan.npix, plan.cell, freqs, diameter=tel.dish_diameter,
            pointing_lm=np.array(self.pb_pointings(info, tel)))
        bandwidth = float(np.ptp(freqs) + (np.median(np.diff(freqs)) if len(freqs) > 1 else 0))
        from .clean import CleanResult

        result = ImagingResult(image=arrays["image"], residual=arrays["residual"],
                               model=arrays["model"], psf=arrays["psf"], pb=pb,
                               pbcor=None if pb is None else pb_correct(arrays["image"], pb,
                                                                        cfg.pb_cut),
                               beam=beam,
                               freq_ref=float(freqs.mean()), bandwidth=bandwidth,
                               weight_sum=float("nan"), expected_rms=float("nan"),
                               clean=CleanResult(arrays["model"], arrays["residual"], -1, -1,
                                                 "wsclean", float("nan")))
        return result, {"wsclean_s": time.perf_counter() - t0, "wsclean_log": str(log)}


def _theoretical_rms(info: MSInfo, expected_rms: float | None,
                     ctx: PipelineContext) -> float | None:
    """Thermal image noise (Jy/beam): the radiometer noise of one visibility sample times
    the imager's weight-propagated factor (valid for WEIGHT = number of samples)."""
    if expected_rms is None or not np.isfinite(expected_rms) or info.nchan_total < 2:
        return None
    from casacore.tables import table

    with table(info.path, ack=False) as t:
        tint = float(t.getcell("INTERVAL", 0))
    chan_width = float(np.median(np.abs(np.diff(info.freqs))))
    # the framework's typed config, as the runtime carries it (to dask workers too)
    run_cfg = getattr(ctx.runtime, "config", None) if ctx.runtime is not None else None
    sefd = float(getattr(getattr(run_cfg, "instrument", None), "sefd_jy", None) or SEFD)
    if tint <= 0 or chan_width <= 0:
        return None
    return float(expected_rms * radiometer_noise(sefd, chan_width, tint))
