"""CalibrationStage: calibrator MS -> flags, bandpass (B) and gain (G) tables, corrected MS.

Wires I/O and the kernels: read the MS (:mod:`.msio`), choose or check the calibrator
(:mod:`.selection`), flag (:mod:`.flagging`), predict the calibrator's and the field's
visibilities (:mod:`.sky`, :mod:`.model`), solve (:mod:`.solve`), gate (:mod:`.qa`), write
CASA tables (:mod:`.caltable`) and a copy of the MS with CORRECTED_DATA
(:mod:`.apply_ms`). The target groups' stage is :mod:`.apply_stage`. Products are
written under temporary names and renamed when complete; the input MS is never modified.
Registration in the state DB is the orchestrator's job: the "caltables" product carries
the transit time, validity window, declination strip and QA metrics in its ``meta``.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dsa110_pipeline import instrument
from dsa110_pipeline.atomic import publish, temp_name
from dsa110_pipeline.catalogs import (
    DEFAULT_REF_FREQ_HZ,
    DEFAULT_SPECTRAL_INDEX,
    find_calibrator,
    is_flux_standard,
    read_vla_calibrators,
)
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError, RoleUnfit
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.stage import PipelineStage, Resources, StageConfig

from . import msio
from .apply_ms import apply_caltables, flag_hands, hands_metrics
from .caltable import CalTableContext, write_caltable
from .field_refine import refine_channels
from .model import (
    source_spectrum,
)
from .msio import STAGE
from .qa import QAThresholds, qa_gate
from .rfi import RFIParams
from .selection import SIDEREAL_RATE, select_calibrators
from .sky import field_sources, geometry, in_tonights_sky, refine_sky, sky_model
from .solve import SolveParams, solve_calibrator


class CalibrationConfig(StageConfig):
    """Typed config of the calibration stage (the ``calibration`` branch)."""

    #: Calibrator name or alias (3C454.3, J2253+1608); None: the best one in the beam.
    calibrator: str | None = None
    #: VLA calibrator list; None: $DSA110_VLA_CALIBRATORS, ../shared/data, else built-in.
    calibrator_list: str | None = None
    #: Least primary-beam power at transit for a usable calibrator.
    min_beam: float = Field(0.5, gt=0, le=1)
    #: Least beam-weighted L-band flux (Jy) for automatic selection.
    min_calibrator_flux_jy: float = Field(1.0, ge=0)
    #: Automatic selection takes a listed calibrator only where the night's survey catalog
    #: (``paths.survey_catalog``; not ``field_catalog``, which may list a few sources only)
    #: has sources within this radius (arcsec) adding up to ``survey_min_fraction`` of its
    #: listed flux, or covers no sky near it (:mod:`.survey_check`); None: no check.
    survey_check_arcsec: float | None = Field(60.0, gt=0)
    survey_min_fraction: float = Field(0.25, ge=0)
    #: Allowed distance (s) of the transit outside the observation when a name is given.
    transit_margin_s: float = Field(600.0, ge=0)
    #: Point-source catalog (CSV/VOTable/FITS) of field sources added to the model; None:
    #: the night's survey catalog (``paths.survey_catalog``), if any.
    field_catalog: str | None = None
    #: Field sources brighter than this (Jy at their reference frequency) are modelled. A
    #: source left out of the model is absorbed into the gains: on DSA-110's regular arms it
    #: comes back as ghosts where the arms cannot tell it from the calibrator, at the
    #: calibrator's column and row (0.1 Jy left out a 0.077 Jy source 30' north of a 10 Jy
    #: calibrator: a 12 sigma ghost at the calibrator's RA, the source's declination, in a
    #: full-scale image).
    field_min_flux_jy: float = Field(0.02, ge=0)
    #: ... within this distance (deg) of the pointing at the middle of the observation.
    field_radius_deg: float = Field(3.0, gt=0)
    #: ... and beyond it, out to this distance (deg), sources whose apparent flux (through the
    #: primary beam's sidelobes as they drift) reaches ``field_min_flux_jy``.
    field_sidelobe_radius_deg: float = Field(10.0, gt=0)
    #: The brightest this many field sources whose S/N is at least ``field_refine_snr`` have
    #: their flux, spectral index and position refined from the data calibrated by a first
    #: solution, and the gains are solved again with them (``field_refine.py``: a survey's
    #: errors, absorbed into the gains, make ghosts); 0: one solve on the catalog's model.
    field_refine_max: int = Field(20, ge=0)
    field_refine_snr: float = Field(20.0, gt=0)
    #: Known RFI frequencies (Hz), flagged in every integration.
    rfi_frequencies_hz: tuple[float, ...] = instrument.KNOWN_RFI_FREQUENCIES
    #: Channel indices flagged in every integration.
    rfi_channels: tuple[int, ...] = ()
    #: SumThreshold RFI detection.
    detect_rfi: bool = True
    rfi_threshold: float = Field(6.0, gt=0)
    #: SumThreshold noise floor as a fraction of the smooth amplitude (added in quadrature
    #: to the thermal σ): on a bright calibrator, gain structure finer than the background
    #: smoothing is not RFI (see rfi.RFIParams.model_tolerance); 0: thermal σ only.
    rfi_model_tolerance: float = Field(0.03, ge=0, le=1)
    #: Antennas with a smaller unflagged fraction are flagged whole.
    min_antenna_good_fraction: float = Field(0.05, ge=0, le=1)
    #: Cross hands (XY, YX or RL, LR) of a four-correlation MS: gains are solved and applied
    #: on the parallel hands only. "flag": the cross hands are flagged in the calibrated MS
    #: (CORRECTED_DATA 0 there); "keep": CORRECTED_DATA holds them as they are in DATA
    #: (uncalibrated), flagged only where the data or a parallel hand of the sample are.
    cross_hands: Literal["flag", "keep"] = "flag"
    #: Gain solution interval (s); None: one solution over the whole transit.
    gain_solint_s: float | None = Field(60.0, gt=0)
    min_snr: float = Field(3.0, ge=0)
    #: Reference antenna (name or index); None: the one with most unflagged data.
    refant: str | int | None = None
    solve_delay: bool = False
    #: QA gate limits (``calibration.qa.min_median_snr``, ...), handed to the gate as they are.
    qa: QAThresholds = QAThresholds()
    #: Raise (nothing written, nothing registered) when the QA gate fails.
    fail_on_qa: bool = True
    #: Validity of the solutions around the transit (s) and declination half-width (deg).
    valid_before_s: float = Field(12 * 3600.0, ge=0)
    valid_after_s: float = Field(12 * 3600.0, ge=0)
    dec_halfwidth_deg: float = Field(1.5, gt=0)
    #: Write a copy of the MS with CORRECTED_DATA ("ms_calibrated").
    write_corrected: bool = True
    chunk_rows: int = Field(20_000, ge=1)
    #: Products directory; None: ``paths.output_dir`` of the run config, else ./products.
    output_dir: str | None = None
    #: Threads for flagging blocks and the numba DFT (None: 1 for flagging, numba's
    #: default for the DFT). Set from the worker's resources.
    nthreads: int | None = Field(None, ge=1)


class _BackgroundCopy:
    """:func:`msio.copy_ms` of an MS to a temporary beside ``final``, in a thread;
    :meth:`publish` renames it into place, :meth:`discard` removes what was not published."""

    def __init__(self, src: str | Path, final: Path) -> None:
        self.final = final
        self.tmp = temp_name(final)
        self._error: BaseException | None = None
        self._published = False
        self._thread = threading.Thread(target=self._copy, args=(src,), daemon=True,
                                        name="calibration-copy")
        self._thread.start()

    def _copy(self, src: str | Path) -> None:
        try:
            msio.copy_ms(src, self.tmp)
        except BaseException as exc:  # re-raised by wait()
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise InputError("cannot copy the MS for CORRECTED_DATA", stage=STAGE,
                             files=[str(self.final)], cause=self._error) from self._error

    def publish(self) -> Path:
        publish(self.tmp, self.final)
        self._published = True
        return self.final

    def discard(self) -> None:
        self._thread.join()
        if not self._published:
            shutil.rmtree(self.tmp, ignore_errors=True)


class CalibrationStage(PipelineStage):
    """Solve bandpass and gains on a calibrator MS and apply them."""

    name = "calibration"
    version = "1"
    Config = CalibrationConfig
    requires = ("ms",)
    produces = ("caltables", "ms_calibrated")
    resources = Resources(cpu=2.0, memory_gb=8.0, scratch_gb=2.0)
    executor = "thread"

    config: CalibrationConfig


    # -- calibrator ---------------------------------------------------------------------
    def _calibrator(self, meta: msio.MSMeta, pointing_dec: float, lst0: float,
                    survey: str | None = None):
        """The calibrator (list entry) and its transit: the configured one, else the best
        in the beam that the night's ``survey`` catalog confirms."""
        cfg = self.config
        t0, t1 = float(meta.times.min()), float(meta.times.max())
        f_mid = float(np.mean(meta.freqs))
        if cfg.calibrator:
            cal = find_calibrator(cfg.calibrator, cfg.calibrator_list)
            # apparent coordinates: the same frame as the LST and the pointing declination
            _, a_ra, a_dec = geometry(np.array([t0]), np.array([cal.ra]), np.array([cal.dec]))
            sel = select_calibrators([cal.name], a_ra[0], a_dec[0], [cal.flux_jy or 1e-9],
                                     t_start=t0 - cfg.transit_margin_s,
                                     t_end=t1 + cfg.transit_margin_s,
                                     lst_start=lst0 - cfg.transit_margin_s * SIDEREAL_RATE,
                                     pointing_dec=pointing_dec, freq_hz=f_mid,
                                     min_beam=cfg.min_beam, min_weighted_flux_jy=0.0)
            if not sel.found:
                raise InputError(f"calibrator {cfg.calibrator} is not usable in this MS: "
                                 f"{sel.reason}", stage=STAGE, files=[meta.path])
            return cal, sel.best
        strip = math.radians(5.0)  # generous: precession and the beam are both smaller
        listed = [c for c in read_vla_calibrators(cfg.calibrator_list) if c.flux_jy
                  and abs(c.dec - pointing_dec) < strip]
        cals = in_tonights_sky(listed, survey, cfg.survey_check_arcsec, cfg.survey_min_fraction)
        if not cals:
            why = ("none in the list within 5 deg of the pointing declination" if not listed
                   else f"the survey catalog confirms none of the {len(listed)} listed within "
                        "5 deg of the pointing declination")
            raise InputError(f"no calibrator in the primary beam: {why}", stage=STAGE,
                             files=[meta.path])
        _, a_ra, a_dec = geometry(np.array([t0]), np.array([c.ra for c in cals]),
                                   np.array([c.dec for c in cals]))
        sel = select_calibrators([c.name for c in cals], a_ra[0], a_dec[0],
                                 [c.flux_jy for c in cals],
                                 t_start=t0, t_end=t1, lst_start=lst0,
                                 pointing_dec=pointing_dec, freq_hz=f_mid,
                                 min_beam=cfg.min_beam,
                                 min_weighted_flux_jy=cfg.min_calibrator_flux_jy)
        if not sel.found:
            raise InputError(f"no calibrator in the primary beam: {sel.reason}", stage=STAGE,
                             files=[meta.path])
        return next(c for c in cals if c.name == sel.best.name), sel.best

    def _field_sources(self, catalog: str, cal, times: np.ndarray, ra0: float, dec0: float,
                       freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Catalog sources of the field model (not the calibrator itself): ra, dec, spectra."""
        cfg = self.config
        return field_sources(catalog, times, ra0, dec0, freqs,
                             math.radians(cfg.field_radius_deg), cfg.field_min_flux_jy,
                             math.radians(cfg.field_sidelobe_radius_deg),
                             exclude=(cal.ra, cal.dec))

    # -- contract -----------------------------------------------------------------------
    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        product = ctx.get("ms")
        ref = product[0] if isinstance(product, list) else product
        copy = None
        if cfg.write_corrected:
            # the copy that gets CORRECTED_DATA is made (I/O) while the solutions are
            # computed (CPU); published only when complete, removed otherwise
            final = self.products_dir(ctx) / \
                f"{Path(ref.path).name.removesuffix('.ms')}_cal.ms"
            final.parent.mkdir(parents=True, exist_ok=True)
            copy = _BackgroundCopy(ref.path, final)
        try:
            return self._run(ctx, ref, copy)
        finally:
            if copy is not None:
                copy.discard()

    def _run(self, ctx: PipelineContext, ref: ProductRef, copy: _BackgroundCopy | None
             ) -> PipelineContext:
        cfg = self.config
        # threads: the config, else the runner's allotment (a dask worker's stage threads)
        threads = cfg.nthreads or getattr(ctx.runtime, "nthreads", None)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        meta = msio.read_ms_meta(ref.path)
        cube = msio.read_cube(meta)
        timings["read_s"] = time.perf_counter() - t

        # geometry: LST, the pointing (apparent declination of the meridian phase centre)
        t = time.perf_counter()
        pra, pdec = meta.phase_dir
        lst, app_ra, app_dec = geometry(meta.times, np.array([pra]), np.array([pdec]))
        pointing_dec = float(np.mean(app_dec))
        cal, cand = self._calibrator(meta, pointing_dec, float(lst[0]),
                                     ctx.metadata.get("survey_catalog"))
        timings["geometry_s"] = time.perf_counter() - t

        # flags
        t = time.perf_counter()
        n_ant = meta.n_ant
        par, cross = msio.split_hands(meta)
        vis, flags, out_flags, fsum = flag_hands(
            cube, par, cross, cfg.cross_hands, n_ant, freqs=meta.freqs,
            rfi_freqs=tuple(cfg.rfi_frequencies_hz), rfi_channels=tuple(cfg.rfi_channels),
            rfi=RFIParams(threshold=cfg.rfi_threshold, model_tolerance=cfg.rfi_model_tolerance),
            detect_rfi=cfg.detect_rfi,
            min_good_fraction=cfg.min_antenna_good_fraction, nthreads=threads or 1)
        hands = hands_metrics(meta, par, cross, cfg.cross_hands)
        if cross:
            get_logger(stage=STAGE).info(
                "four correlations: gains solved and applied on the parallel hands only",
                ms=meta.path, **hands)
        timings["flag_s"] = time.perf_counter() - t
        if fsum.total >= 0.999:
            raise InputError("all data are flagged", stage=STAGE, files=[meta.path])

        # model
        t = time.perf_counter()
        spec = source_spectrum(cal.alt_name if cal.alt_name and is_flux_standard(cal.alt_name)
                               else cal.name, meta.freqs, cal.flux_jy, DEFAULT_SPECTRAL_INDEX,
                               DEFAULT_REF_FREQ_HZ)
        src_ra, src_dec, spectra = np.array([cal.ra]), np.array([cal.dec]), spec[None]
        catalog = cfg.field_catalog or ctx.metadata.get("survey_catalog")
        if catalog:
            f_ra, f_dec, f_spec = self._field_sources(catalog, cal, meta.times, pra,
                                                      pointing_dec, meta.freqs)
            src_ra = np.concatenate([src_ra, f_ra])
            src_dec = np.concatenate([src_dec, f_dec])
            spectra = np.concatenate([spectra, f_spec])
        timings["model_s"] = time.perf_counter() - t

        def make_model(chans: np.ndarray | None = None) -> np.ndarray:
            """The model cube (nt, nb, nchan, 1) on ``chans`` (None: all): made when the
            solver needs it, so that it can drop it once its normal-equation sums are taken
            (0.7 GB at full scale)."""
            t_m = time.perf_counter()
            m = sky_model(meta, cube, src_ra, src_dec, spectra, pointing_dec, threads=threads,
                          chans=chans)
            timings["model_s"] += time.perf_counter() - t_m
            return m

        # solve
        refant = cfg.refant
        if isinstance(refant, str):
            if refant not in meta.antenna_names:
                raise InputError(f"reference antenna {refant!r} is not in the MS", stage=STAGE,
                                 files=[meta.path])
            refant = meta.antenna_names.index(refant)
        solve_params = SolveParams(gain_solint=cfg.gain_solint_s, min_snr=cfg.min_snr,
                                   refant=refant, solve_delay=cfg.solve_delay)
        timings["solve_s"] = timings["refine_s"] = 0.0

        def solve(v: np.ndarray, f: np.ndarray, chans: np.ndarray | None = None):
            """Bandpass and gains from ``v``/``f``: the cube, or its channels ``chans``."""
            t_s, model_s = time.perf_counter(), timings["model_s"]
            nu = meta.freqs if chans is None else meta.freqs[chans]
            out = solve_calibrator(v, lambda: make_model(chans), f, cube.ant1, cube.ant2,
                                   n_ant, meta.times, nu, solve_params)
            timings["solve_s"] += time.perf_counter() - t_s - (timings["model_s"] - model_s)
            return out

        refined = 0
        if cfg.field_refine_max > 0 and src_ra.size > 1:
            # the field model refined from the data calibrated by a first solution on the
            # refinement's channels only (all it needs); the calibrator, source 0, keeps its
            # model: the flux scale
            chans = refine_channels(meta.freqs.size)
            vis_c, flags_c = (np.ascontiguousarray(a[:, :, chans]) for a in (vis, flags))
            first = solve(vis_c, flags_c, chans)
            t = time.perf_counter()
            src_ra, src_dec, spectra, refined = refine_sky(
                meta, cube, vis_c, flags_c, first.bandpass, first.gains, src_ra, src_dec,
                spectra, pointing_dec, cfg.field_refine_max, cfg.field_refine_snr, threads,
                calibrator_first=True, chans=chans)
            timings["refine_s"] = time.perf_counter() - t
            del first, vis_c, flags_c
        sols = solve(vis, flags)
        qa = qa_gate(sols.bandpass, sols.gains, cfg.qa,
                     antennas=np.unique(np.concatenate([cube.ant1, cube.ant2])))
        if not qa.passed and cfg.fail_on_qa:
            # the group cannot calibrate the night; its data may still be a target's
            # (pipeline.role_fallback)
            raise RoleUnfit(f"calibrator {cal.name}: solutions failed QA: "
                            f"{'; '.join(qa.reasons)}", stage=STAGE, files=[meta.path])

        # write tables
        t = time.perf_counter()
        out_dir = self.products_dir(ctx)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(meta.path).name.removesuffix(".ms")
        tctx = CalTableContext(ms_name=Path(meta.path).name, antenna_names=meta.antenna_names,
                               antenna_positions=meta.antenna_positions,
                               spw_freqs=meta.freqs, spw_widths=meta.widths,
                               field_name=cal.alt_name or cal.name,
                               field_dir=(cal.ra, cal.dec))
        history = (f"{STAGE} v{self.version}: calibrator {cal.name}, refant "
                   f"{meta.antenna_names[sols.refant]}, gain solint {cfg.gain_solint_s}")
        b_path = write_caltable(out_dir / f"{stem}.B", sols.bandpass, tctx, history=history)
        g_path = write_caltable(out_dir / f"{stem}.G", sols.gains, tctx, history=history)
        transit = float(cand.transit_time)
        reg = {"calibrator": cal.name, "calibrator_alias": cal.alt_name,
               "transit_mjd": transit / 86400.0,
               "valid_start_mjd": (transit - cfg.valid_before_s) / 86400.0,
               "valid_end_mjd": (transit + cfg.valid_after_s) / 86400.0,
               "dec_deg": math.degrees(pointing_dec),
               "dec_halfwidth_deg": cfg.dec_halfwidth_deg,
               "refant": meta.antenna_names[sols.refant], "qa_passed": qa.passed,
               "qa": qa.metrics, "qa_reasons": list(qa.reasons)}
        tables_refs = [ProductRef.for_path("caltable", b_path, viscal="B Jones", **reg),
                       ProductRef.for_path("caltable", g_path, viscal="G Jones", **reg)]
        timings["write_tables_s"] = time.perf_counter() - t

        outputs: dict[str, Any] = {"caltables": tables_refs}
        if copy is not None:
            t = time.perf_counter()
            copy.wait()
            timings["copy_wait_s"] = time.perf_counter() - t
            apply_caltables(meta, copy.tmp, sols.bandpass, sols.gains,
                            flags=(cube, out_flags), chunk_rows=cfg.chunk_rows,
                            nthreads=threads, copied=True, cross_hands=cfg.cross_hands)
            final = copy.publish()
            outputs["ms_calibrated"] = ProductRef.for_path("ms", final, calibrated=True,
                                                           caltables=[str(b_path), str(g_path)])
            timings["apply_s"] = time.perf_counter() - t
        return (ctx.with_outputs(outputs)
                .with_metrics(self.name, calibrator=cal.name, refant=reg["refant"],
                              flagged_fraction=fsum.total,
                              dead_antennas=[meta.antenna_names[i] for i in fsum.dead_antennas],
                              qa_passed=qa.passed, field_model_sources=int(src_ra.size) - 1,
                              field_sources_refined=refined,
                              **hands, **{f"qa_{k}": v for k, v in
                                                               qa.metrics.items()},
                              **timings))


