"""CalibrationStage: calibrator MS -> flags, bandpass (B) and gain (G) tables, corrected MS.

Wires I/O and the kernels: read the MS (:mod:`.msio`), choose or check the calibrator
(:mod:`.selection`), flag (:mod:`.flagging`), predict the calibrator's visibilities
(:mod:`.model`), solve (:mod:`.solve`), gate (:mod:`.qa`), write CASA tables
(:mod:`.caltable`) and a copy of the MS with CORRECTED_DATA (:mod:`.apply`). Products are
written under temporary names and renamed when complete; the input MS is never modified.
Registration in the state DB is the orchestrator's job: the "caltables" product carries
the transit time, validity window, declination strip and QA metrics in its ``meta``.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dsa110_pipeline import instrument
from dsa110_pipeline.atomic import atomic_path, publish, temp_name
from dsa110_pipeline.catalogs import (
    DEFAULT_REF_FREQ_HZ,
    DEFAULT_SPECTRAL_INDEX,
    find_calibrator,
    is_flux_standard,
    read_catalog,
    read_vla_calibrators,
    with_known_sources,
)
from dsa110_pipeline.catalogs.refine import FitLimits
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError, PipelineError
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.projection import radec_to_lmn
from dsa110_pipeline.stage import PipelineStage, Resources, StageConfig
from dsa110_pipeline.threads import set_numba_threads

from . import flagging, msio
from .apply import apply_gains, apply_gains_cube, combine_bg, interpolate_gains
from .caltable import CalTableContext, write_caltable
from .field_phase import FieldPhaseParams, refine_phases
from .field_refine import refine_channels, refine_field, refined_model
from .model import (
    apparent_spectra,
    model_visibilities,
    source_spectrum,
)
from .qa import QAThresholds, qa_gate
from .selection import SIDEREAL_RATE, select_calibrators
from .solve import SolveParams, solve_calibrator
from .stefcal import choose_refant

STAGE = "calibration"


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
    #: smoothing is not RFI (see flagging.RFIParams.model_tolerance); 0: thermal σ only.
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
    #: QA gate limits.
    qa_min_median_snr: float = 10.0
    qa_max_flagged_fraction: float = 0.3
    qa_max_bandpass_amp_scatter: float = 0.1
    qa_max_bandpass_phase_scatter_deg: float = 10.0
    qa_max_gain_amp_scatter: float = 0.2
    qa_max_gain_phase_scatter_deg: float = 30.0
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


def _location():
    from dsa110_pipeline.simulate.geometry import earth_location

    return earth_location(math.radians(instrument.SITE_LATITUDE_DEG),
                          math.radians(instrument.SITE_LONGITUDE_DEG), instrument.SITE_HEIGHT)


def _geometry(times_mjd_s: np.ndarray, ra: np.ndarray, dec: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LST (n_time,), apparent RA and Dec (n_time, n_src) of ICRS positions."""
    from dsa110_pipeline.simulate.geometry import apparent_coordinates, local_sidereal_time

    loc = _location()
    jd = np.asarray(times_mjd_s, float) / 86400.0 + 2400000.5
    lst = local_sidereal_time(jd, loc)
    app_ra, app_dec = apparent_coordinates(ra, dec, jd, lst, loc)
    return lst, app_ra, app_dec


def _refine_sky(meta: msio.MSMeta, cube: msio.VisCube, vis: np.ndarray, flags: np.ndarray,
                bandpass: Any, gains: Any, ra: np.ndarray, dec: np.ndarray,
                spectra: np.ndarray, pointing_dec: float, most: int, min_snr: float,
                threads: int | None, calibrator_first: bool = False,
                chans: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A sky model (ICRS ra, dec, intrinsic spectra) with its brightest ``most`` sources
    refined from ``vis`` corrected by ``bandpass``/``gains`` (``field_refine.py``); with
    ``calibrator_first`` source 0 is fitted as a nuisance but keeps its model. ``chans``:
    the MS channels that ``vis``, ``flags`` and ``bandpass`` hold (None: all). Returns the
    new model (over all channels) and how many sources changed."""
    pra, pdec = meta.phase_dir
    freqs = meta.freqs if chans is None else meta.freqs[chans]
    lst, app_ra, app_dec = _geometry(meta.times, ra, dec)
    app = apparent_spectra(spectra if chans is None else spectra[:, chans],
                           lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
    lm0 = radec_to_lmn(ra, dec, pra, pdec)
    bright = np.argsort(-app.mean(axis=(0, 2)), kind="stable")
    if calibrator_first:
        bright = np.concatenate([[0], bright[bright != 0][:most]])
    wanted = np.zeros(ra.size, bool)
    wanted[bright[:most + int(calibrator_first)]] = True
    fit, _ = refine_field(vis, flags, cube.ant1, cube.ant2, cube.uvw, meta.times, freqs,
                          bandpass, gains, np.broadcast_to(lm0, (meta.times.size,) + lm0.shape),
                          app, wanted, FitLimits(min_snr=min_snr), nthreads=threads or 1)
    return refined_model(ra, dec, spectra, lm0[:, :2], fit, meta.freqs, pra, pdec,
                         keep=[0] if calibrator_first else None)


def _separation(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Angular distance (rad) of (ra, dec) from (ra0, dec0)."""
    return np.arccos(np.clip(np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0)
                             * np.cos(ra - ra0), -1, 1))


def catalog_sources(catalog: str, ra0: float, dec0: float, radius: float, min_flux: float,
                    freqs: np.ndarray, exclude: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources of ``catalog`` within ``radius`` (rad) of (ra0, dec0) brighter than
    ``min_flux`` (Jy at their reference frequency), not within 1' of ``exclude``:
    ra, dec and spectra at ``freqs``."""
    cat = read_catalog(catalog).strip(dec0 - radius, dec0 + radius)
    cat = with_known_sources(cat)  # calibrators: the VLA list's positions, PB2017 fluxes
    keep = (_separation(cat.ra, cat.dec, ra0, dec0) <= radius) & (cat.flux_jy >= min_flux)
    if exclude is not None:
        keep &= _separation(cat.ra, cat.dec, *exclude) > math.radians(1 / 60)
    cat = cat.select(keep)
    return cat.ra, cat.dec, cat.flux_at(freqs)


def field_sources(catalog: str, times: np.ndarray, ra0: float, pointing_dec: float,
                  freqs: np.ndarray, radius: float, min_flux: float, sidelobe_radius: float,
                  exclude: tuple[float, float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A field model's sources: those within ``radius`` (rad) of (``ra0``, ``pointing_dec``)
    brighter than ``min_flux`` (Jy at their reference frequency), and those out to
    ``sidelobe_radius`` whose apparent flux through the drifting beam (mean over ``times``
    and ``freqs``) reaches ``min_flux``: a 33 Jy source 4 deg out, in the first sidelobe,
    is 0.55 Jy apparent, 7 % of a 7.5 Jy calibrator, and left out of the model it went
    into the gains (a cross of 5-10 sigma errors through 3C309.1 at dec +71.7; imaging
    README, session 15). ra, dec and intrinsic spectra, the inner sources first."""
    ra, dec, spec = catalog_sources(catalog, ra0, pointing_dec, sidelobe_radius, min_flux,
                                    freqs, exclude=exclude)
    inner = _separation(ra, dec, ra0, pointing_dec) <= radius
    keep = inner.copy()
    if (~inner).any():
        out = np.flatnonzero(~inner)
        lst, app_ra, app_dec = _geometry(times, ra[out], dec[out])
        app = apparent_spectra(spec[out], lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
        keep[out] = app.mean(axis=(0, 2)) >= min_flux
    order = np.concatenate([np.flatnonzero(inner), np.flatnonzero(keep & ~inner)])
    return ra[order], dec[order], spec[order]


def sky_model(meta: msio.MSMeta, cube: msio.VisCube, ra: np.ndarray, dec: np.ndarray,
              spectra: np.ndarray, pointing_dec: float, n_pol: int = 1,
              threads: int | None = None, chans: np.ndarray | None = None) -> np.ndarray:
    """Model visibilities (n_time, n_bl, n_chan, n_pol) of point sources (ICRS ra, dec;
    intrinsic ``spectra`` (n_src, n_chan)) seen through the drifting primary beam, on the
    MS channels ``chans`` (None: all)."""
    freqs = meta.freqs if chans is None else meta.freqs[chans]
    lst, app_ra, app_dec = _geometry(meta.times, ra, dec)
    app_flux = apparent_spectra(spectra if chans is None else spectra[:, chans],
                                lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
    pra, pdec = meta.phase_dir
    nt, nb = cube.vis.shape[:2]
    lmn = np.broadcast_to(radec_to_lmn(ra, dec, pra, pdec), (nt, ra.size, 3))
    m = model_visibilities(cube.uvw.reshape(nt * nb, 3), np.repeat(np.arange(nt), nb),
                           freqs, np.ascontiguousarray(lmn), app_flux,
                           nthreads=threads, dtype=np.complex64)
    m = m.reshape(nt, nb, freqs.size, 1)
    return np.broadcast_to(m, m.shape[:3] + (n_pol,)) if n_pol > 1 else m


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
    def _calibrator(self, meta: msio.MSMeta, pointing_dec: float, lst0: float):
        cfg = self.config
        t0, t1 = float(meta.times.min()), float(meta.times.max())
        f_mid = float(np.mean(meta.freqs))
        if cfg.calibrator:
            cal = find_calibrator(cfg.calibrator, cfg.calibrator_list)
            # apparent coordinates: the same frame as the LST and the pointing declination
            _, a_ra, a_dec = _geometry(np.array([t0]), np.array([cal.ra]), np.array([cal.dec]))
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
        cals = [c for c in read_vla_calibrators(cfg.calibrator_list) if c.flux_jy
                and abs(c.dec - pointing_dec) < strip]
        if not cals:
            raise InputError("no calibrator in the primary beam: none in the list within 5 deg"
                             " of the pointing declination", stage=STAGE, files=[meta.path])
        _, a_ra, a_dec = _geometry(np.array([t0]), np.array([c.ra for c in cals]),
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
        lst, app_ra, app_dec = _geometry(meta.times, np.array([pra]), np.array([pdec]))
        pointing_dec = float(np.mean(app_dec))
        cal, cand = self._calibrator(meta, pointing_dec, float(lst[0]))
        timings["geometry_s"] = time.perf_counter() - t

        # flags
        t = time.perf_counter()
        n_ant = meta.n_ant
        par, cross = msio.split_hands(meta)
        vis, flags, out_flags, fsum = flag_hands(
            cube, par, cross, cfg.cross_hands, n_ant, freqs=meta.freqs,
            rfi_freqs=tuple(cfg.rfi_frequencies_hz), rfi_channels=tuple(cfg.rfi_channels),
            rfi=flagging.RFIParams(threshold=cfg.rfi_threshold,
                                   model_tolerance=cfg.rfi_model_tolerance),
            detect_rfi=cfg.detect_rfi,
            min_good_fraction=cfg.min_antenna_good_fraction, nthreads=threads or 1)
        hands = _hands_metrics(meta, par, cross, cfg.cross_hands)
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
            src_ra, src_dec, spectra, refined = _refine_sky(
                meta, cube, vis_c, flags_c, first.bandpass, first.gains, src_ra, src_dec,
                spectra, pointing_dec, cfg.field_refine_max, cfg.field_refine_snr, threads,
                calibrator_first=True, chans=chans)
            timings["refine_s"] = time.perf_counter() - t
            del first, vis_c, flags_c
        sols = solve(vis, flags)
        qa = qa_gate(sols.bandpass, sols.gains, QAThresholds(
            min_median_snr=cfg.qa_min_median_snr,
            max_flagged_fraction=cfg.qa_max_flagged_fraction,
            max_bandpass_amp_scatter=cfg.qa_max_bandpass_amp_scatter,
            max_bandpass_phase_scatter_deg=cfg.qa_max_bandpass_phase_scatter_deg,
            max_gain_amp_scatter=cfg.qa_max_gain_amp_scatter,
            max_gain_phase_scatter_deg=cfg.qa_max_gain_phase_scatter_deg),
            antennas=np.unique(np.concatenate([cube.ant1, cube.ant2])))
        if not qa.passed and cfg.fail_on_qa:
            raise InputError(f"calibration solutions failed QA: {'; '.join(qa.reasons)}",
                             stage=STAGE, files=[meta.path])

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


def _hands_metrics(meta: msio.MSMeta, par: tuple[int, ...], cross: tuple[int, ...],
                   mode: str) -> dict[str, str]:
    names = msio.correlation_names(meta) or tuple(str(i) for i in range(meta.n_pol))
    return {"correlations": ",".join(names),
            "solved_correlations": ",".join(names[i] for i in par),
            "cross_hands": ("none" if not cross else
                            "flagged" if mode == "flag" else "kept uncalibrated")}


def flag_hands(cube: msio.VisCube, par: tuple[int, ...], cross: tuple[int, ...], mode: str,
               n_ant: int, **kw) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                          flagging.FlagSummary]:
    """:func:`flagging.flag_all` on the parallel hands of ``cube``; returns (parallel-hand
    visibilities, their flags, flags of all correlations for the calibrated MS, summary).

    Without cross hands the cube's own arrays are used (its flags as scratch). With them,
    the cross hands take no part in the flagging; in the output flags they are flagged
    where the data or either parallel hand of the sample is, and everywhere when ``mode``
    is "flag"."""
    if not cross:
        flags, fsum = flagging.flag_all(cube.vis, cube.flags, cube.ant1, cube.ant2, n_ant,
                                        inplace=True, **kw)
        cube.flags = flags  # the MS's own flags served as scratch
        return cube.vis, flags, flags, fsum
    idx = list(par)
    vis = np.ascontiguousarray(cube.vis[..., idx])
    flags, fsum = flagging.flag_all(vis, np.ascontiguousarray(cube.flags[..., idx]),
                                    cube.ant1, cube.ant2, n_ant, inplace=True, **kw)
    out = cube.flags
    out[..., idx] = flags
    any_par = flags.any(axis=-1)
    for k in cross:
        out[..., k] |= any_par
        if mode == "flag":
            out[..., k] = True
    return vis, flags, out, fsum


def _to_correlations(total: np.ndarray, tflags: np.ndarray, par: tuple[int, ...],
                     cross: tuple[int, ...], n_pol: int, mode: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Parallel-hand gains (…, n_par) laid out on all the MS's correlations: the cross
    hands get unit gains, flagged when ``mode`` is "flag"."""
    if not cross:
        return total, tflags
    t = np.ones(total.shape[:-1] + (n_pol,), total.dtype)
    f = np.zeros(t.shape, bool)
    t[..., list(par)] = total
    f[..., list(par)] = tflags
    f[..., list(cross)] = mode == "flag"
    return t, f


def apply_caltables(meta: msio.MSMeta, dst: str | Path, bandpass, gains, *,
                    flags: tuple[msio.VisCube, np.ndarray] | None = None,
                    chunk_rows: int = 20_000, nthreads: int | None = None,
                    copied: bool = False, cross_hands: str = "flag") -> Path:
    """Copy the MS of ``meta`` to ``dst`` with CORRECTED_DATA = DATA / (g_p conj(g_q)),
    g = G(t) B(ν), G interpolated in time. ``flags`` (cube, flags) adds the flagging result
    to FLAG; when that cube holds the visibilities of regularly ordered rows, they are
    corrected from memory, whole integrations at a time, and DATA is not read again
    (``copied``: ``dst`` is that copy already, made by :func:`msio.copy_ms`).
    Works for calibrator and target MSs alike. The tables hold the parallel hands: with
    four correlations the cross hands are flagged (``cross_hands`` "flag") or left as they
    are in DATA ("keep"), never divided by parallel-hand gains."""
    par, cross = msio.split_hands(meta)
    g_t, gf_t = interpolate_gains(gains.times, gains.gains, gains.flags, meta.times)
    bp = bandpass.gains[0]
    bpf = bandpass.flags[0]
    if bp.shape[1] != meta.freqs.size:
        raise InputError(f"bandpass has {bp.shape[1]} channels, MS {meta.freqs.size}",
                         stage=STAGE, files=[meta.path])
    if bp.shape[-1] != len(par):
        raise InputError(f"tables hold {bp.shape[-1]} polarisations, the MS "
                         f"{len(par)} parallel hands", stage=STAGE, files=[meta.path])
    total, tflags = combine_bg(bp, bpf, g_t, gf_t)
    total, tflags = _to_correlations(total, tflags, par, cross, meta.n_pol, cross_hands)
    if flags is not None and flags[0].vis is not None and flags[0].row_time is not None \
            and msio.regular_rows(flags[0].row_time, flags[0].row_bl, flags[0].vis.shape[1]):
        cube, fl = flags
        nt, nb, nc, npol = cube.vis.shape
        step = max(1, chunk_rows // nb)
        set_numba_threads(nthreads)

        def chunks():
            for t0 in range(0, nt, step):
                t1 = min(t0 + step, nt)
                corr, cf = apply_gains_cube(cube.vis[t0:t1], fl[t0:t1], cube.ant1, cube.ant2,
                                            np.arange(t0, t1), total, tflags)
                n = (t1 - t0) * nb
                yield t0 * nb, corr.reshape(n, nc, npol), cf.reshape(n, nc, npol)

        if not copied:
            msio.copy_ms(meta.path, dst)
        msio.write_corrected_rows(dst, chunks())
        return Path(dst)

    def correct(data, flag, time_, a1, a2):
        ti = np.searchsorted(meta.times, time_)
        return apply_gains(data, flag, a1, a2, ti, total, tflags)

    extra = None
    if flags is not None:
        cube, fl = flags
        n_ant = meta.n_ant
        lookup = {int(a) * n_ant + int(b): i for i, (a, b) in
                  enumerate(zip(cube.ant1, cube.ant2, strict=True))}

        def extra(time_, a1, a2):
            ti = np.searchsorted(meta.times, time_)
            bi = np.array([lookup[int(a) * n_ant + int(b)] for a, b in zip(a1, a2,
                                                                           strict=True)])
            return fl[ti, bi]

    return msio.write_corrected(meta.path, dst, correct, extra_flags=extra,
                                chunk_rows=chunk_rows)


def apply_tables_to_ms(ms_path: str | Path, bandpass_table: str | Path,
                       gain_table: str | Path, out_path: str | Path, *,
                       chunk_rows: int = 20_000, flag: FlagParams | None = None,
                       cross_hands: str = "flag", field: FieldModel | None = None,
                       threads: int | None = None) -> tuple[Path, dict]:
    """Apply a B and a G table (as written by this stage) to any MS (calibrator or target):
    a copy at ``out_path`` gets CORRECTED_DATA, written under a temporary name and renamed
    when complete. Gains are interpolated (nearest outside the solutions' span) in time.
    With ``field`` (and ``flag``), the target's phases are first refined on its field's
    catalog sources (``field_phase.py``). Returns (path, metrics)."""
    from .caltable import read_caltable

    meta = msio.read_ms_meta(ms_path)
    bp, g = read_caltable(bandpass_table), read_caltable(gain_table)
    if bp.kind != "B" or g.kind != "G":
        raise InputError(f"expected a B and a G table, got {bp.kind} and {g.kind}",
                         stage=STAGE, files=[str(bandpass_table), str(gain_table)])
    if bp.n_ant != meta.n_ant or g.n_ant != meta.n_ant:
        raise InputError(f"tables have {bp.n_ant}/{g.n_ant} antennas, the MS {meta.n_ant}",
                         stage=STAGE, files=[str(ms_path), str(bandpass_table)])
    if bp.freqs.shape != meta.freqs.shape or not np.allclose(bp.freqs, meta.freqs):
        raise InputError("bandpass channels differ from the MS channels", stage=STAGE,
                         files=[str(ms_path), str(bandpass_table)])
    flags = None
    metrics: dict[str, Any] = {}
    if flag is not None:
        # Targets get the calibrator's flagging too: zeros, NaNs, known RFI, SumThreshold.
        cube = msio.read_cube(meta)
        par, cross = msio.split_hands(meta)
        vis, pflags, fl, _ = flag_hands(
            cube, par, cross, cross_hands, meta.n_ant, freqs=meta.freqs,
            rfi_freqs=tuple(flag.rfi_frequencies_hz), rfi=flagging.RFIParams(
                threshold=flag.rfi_threshold), detect_rfi=flag.detect_rfi,
            min_good_fraction=flag.min_antenna_good_fraction)
        flags = (cube, fl)
        if field is not None:
            g, metrics = _field_phases(meta, cube, vis, pflags, bp, g, field, threads)
    final = Path(out_path)
    with atomic_path(final) as tmp:
        apply_caltables(meta, tmp, bp, g, chunk_rows=chunk_rows, flags=flags,
                        cross_hands=cross_hands)
    return final, metrics


@dataclass(frozen=True)
class FieldModel:
    """The catalog and selection of a target's field model, and how its phases are solved."""

    catalog: str
    radius_deg: float = 3.0
    min_flux_jy: float = 0.02
    #: beyond ``radius_deg`` and out to this, sources whose apparent flux reaches
    #: ``min_flux_jy`` (see ``field_sources``)
    sidelobe_radius_deg: float = 10.0
    solve: FieldPhaseParams = FieldPhaseParams()
    #: the brightest this many sources refined from the data after a first phase solve,
    #: which then runs again on them (0: off), where their S/N reaches ``refine_snr``
    refine_max: int = 20
    refine_snr: float = 20.0


def _field_phases(meta: msio.MSMeta, cube: msio.VisCube, vis: np.ndarray, flags: np.ndarray,
                  bp: Any, g: Any, field: FieldModel, threads: int | None) -> tuple[Any, dict]:
    """The target's gains with phases solved on its field model (the calibrator's where the
    field is too faint), and what was done."""
    pra, _ = meta.phase_dir
    _, _, app_dec = _geometry(meta.times, np.array([pra]), np.array([meta.phase_dir[1]]))
    pointing_dec = float(np.mean(app_dec))
    ra, dec, spectra = field_sources(field.catalog, meta.times, pra, pointing_dec, meta.freqs,
                                     math.radians(field.radius_deg), field.min_flux_jy,
                                     math.radians(field.sidelobe_radius_deg))
    out: dict[str, Any] = {"field_sources": int(ra.size)}
    if ra.size == 0:
        return g, {**out, "field_phase": "no catalog sources: calibrator gains"}
    model = sky_model(meta, cube, ra, dec, spectra, pointing_dec, threads=threads)
    apparent = float(np.abs(model[..., 0]).mean(axis=(0, 1)).mean())
    if apparent < field.solve.min_model_flux_jy:
        return g, {**out, "field_phase": f"field model {apparent:.3g} Jy is too faint: "
                                         "calibrator gains"}
    refant = choose_refant(flags, cube.ant1, cube.ant2, meta.n_ant)
    new, m = refine_phases(vis, model, flags, cube.ant1, cube.ant2, meta.n_ant, meta.times,
                           meta.freqs, bp, g, refant, field.solve,
                           positions=meta.antenna_positions)
    if field.refine_max > 0:
        # the survey's errors went into those phases: refine the model on the data they
        # calibrate, and solve once more on it
        ra, dec, spectra, n_ref = _refine_sky(meta, cube, vis, flags, bp, new, ra, dec, spectra,
                                              pointing_dec, field.refine_max, field.refine_snr,
                                              threads)
        out["field_sources_refined"] = n_ref
        if n_ref:
            del model
            model = sky_model(meta, cube, ra, dec, spectra, pointing_dec, threads=threads)
            new, m = refine_phases(vis, model, flags, cube.ant1, cube.ant2, meta.n_ant,
                                   meta.times, meta.freqs, bp, g, refant, field.solve,
                                   positions=meta.antenna_positions)
    return new, {**out, "field_phase": "refined", **m}


@dataclass(frozen=True)
class FlagParams:
    """Flagging of a target MS before the tables are applied."""

    rfi_frequencies_hz: tuple[float, ...] = instrument.KNOWN_RFI_FREQUENCIES
    detect_rfi: bool = True
    rfi_threshold: float = 6.0
    min_antenna_good_fraction: float = 0.05


class ApplyConfig(StageConfig):
    """Typed config of the apply stage (target groups)."""

    chunk_rows: int = Field(20_000, ge=1)
    #: Flag the target as the calibrator is flagged (known RFI, SumThreshold, dead antennas).
    flag: bool = True
    rfi_frequencies_hz: tuple[float, ...] = instrument.KNOWN_RFI_FREQUENCIES
    detect_rfi: bool = True
    rfi_threshold: float = Field(6.0, gt=0)
    min_antenna_good_fraction: float = Field(0.05, ge=0, le=1)
    #: Cross hands of a four-correlation MS: see CalibrationConfig.cross_hands.
    cross_hands: Literal["flag", "keep"] = "flag"
    #: Refine the target's antenna phases on its field (needs ``flag``): the catalog's
    #: sources within ``field_radius_deg`` brighter than ``field_min_flux_jy``, solved
    #: every ``field_phase_solint_s`` (None: once per group). The calibrator's phases are
    #: minutes to hours old by then (see field_phase.py).
    field_phase: bool = True
    #: Catalog of the field model; None: the night's survey catalog (paths.survey_catalog).
    field_catalog: str | None = None
    field_radius_deg: float = Field(3.0, gt=0)
    field_min_flux_jy: float = Field(0.02, ge=0)
    field_sidelobe_radius_deg: float = Field(10.0, gt=0)
    field_phase_solint_s: float | None = Field(60.0, gt=0)
    #: Antennas' relative amplitudes (flux scale kept) from the field too where a solution's
    #: S/N reaches this (~1/S/N error); None: phases only (see field_phase.py)
    field_amp_min_snr: float | None = Field(300.0, gt=0)
    #: The field solve may not shift the image (the catalog's positions are off by 1-7";
    #: the calibrator's astrometry stands): see FieldPhaseParams.keep_astrometry
    field_keep_astrometry: bool = True
    #: ... measured against the calibrator's phases carried forward at their own drift rate
    #: for up to this many seconds (see FieldPhaseParams.drift_extrapolation_s); 0: held
    field_drift_extrapolation_s: float = Field(1800.0, ge=0)
    #: The field model's brightest sources refined from the data after a first phase solve
    #: (see CalibrationConfig.field_refine_max); 0: off
    field_refine_max: int = Field(20, ge=0)
    field_refine_snr: float = Field(20.0, gt=0)
    #: Products directory; None: ``paths.output_dir`` of the run config, else ./products.
    output_dir: str | None = None


class ApplyCalibrationStage(PipelineStage):
    """Apply registered (or tonight's) B and G tables to a target MS: requires "ms" and
    "caltables" (the calibration stage's product), produces "ms_calibrated"."""

    name = "apply_calibration"
    version = "1"
    Config = ApplyConfig
    requires = ("ms", "caltables")
    produces = ("ms_calibrated",)
    resources = Resources(cpu=1.0, memory_gb=2.0, scratch_gb=2.0)
    executor = "thread"

    config: ApplyConfig

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        try:
            return self._apply(ctx)
        except PipelineError as exc:  # the shared helpers say 'calibration': say who failed
            if exc.stage == STAGE and self.name != STAGE:
                raise exc.with_stage(self.name) from exc
            raise

    def _apply(self, ctx: PipelineContext) -> PipelineContext:
        product = ctx.get("ms")
        ms_ref = product[0] if isinstance(product, list) else product
        tabs = ctx.get("caltables")
        refs = tabs if isinstance(tabs, list) else [tabs]
        by_kind: dict[str, str] = {}
        for r in refs:
            viscal = r.meta.get("viscal") or _viscal_of(r.path)
            by_kind[viscal] = r.path
        if "B Jones" not in by_kind or "G Jones" not in by_kind:
            raise InputError(f"caltables must hold a B and a G table, got {sorted(by_kind)}",
                             stage=self.name, files=[r.path for r in refs])
        out_dir = self.products_dir(ctx)
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / f"{Path(ms_ref.path).name.removesuffix('.ms')}_cal.ms"
        t = time.perf_counter()
        cfg = self.config
        flag = (FlagParams(rfi_frequencies_hz=cfg.rfi_frequencies_hz, detect_rfi=cfg.detect_rfi,
                           rfi_threshold=cfg.rfi_threshold,
                           min_antenna_good_fraction=cfg.min_antenna_good_fraction)
                if cfg.flag else None)
        catalog = cfg.field_catalog or ctx.metadata.get("survey_catalog")
        field = FieldModel(catalog, radius_deg=cfg.field_radius_deg,
                           min_flux_jy=cfg.field_min_flux_jy,
                           sidelobe_radius_deg=cfg.field_sidelobe_radius_deg,
                           refine_max=cfg.field_refine_max, refine_snr=cfg.field_refine_snr,
                           solve=FieldPhaseParams(solint_s=cfg.field_phase_solint_s,
                                                  amp_min_snr=cfg.field_amp_min_snr,
                                                  keep_astrometry=cfg.field_keep_astrometry,
                                                  drift_extrapolation_s=cfg
                                                  .field_drift_extrapolation_s)) \
            if cfg.field_phase and catalog else None
        threads = getattr(ctx.runtime, "nthreads", None) if ctx.runtime is not None else None
        _, extra = apply_tables_to_ms(ms_ref.path, by_kind["B Jones"], by_kind["G Jones"],
                                      final, chunk_rows=cfg.chunk_rows, flag=flag,
                                      cross_hands=cfg.cross_hands, field=field,
                                      threads=threads if isinstance(threads, int) else None)
        ref = ProductRef.for_path("ms", final, calibrated=True,
                                  caltables=[by_kind["B Jones"], by_kind["G Jones"]],
                                  field_phase=extra.get("field_phase"))
        return (ctx.with_output("ms_calibrated", ref)
                .with_metrics(self.name, apply_s=time.perf_counter() - t,
                              caltables=[by_kind["B Jones"], by_kind["G Jones"]], **extra))


def _viscal_of(path: str) -> str:
    from casacore import tables

    try:
        with tables.table(path, ack=False) as t:
            return str(t.getkeyword("VisCal"))
    except Exception as exc:  # casacore raises RuntimeError
        raise InputError("cannot read calibration table", stage=STAGE, files=[path],
                         cause=exc) from exc
