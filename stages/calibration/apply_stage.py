"""ApplyCalibrationStage: a target group's MS and the caltables it was given (tonight's
calibrator, or the registry's nearest valid solutions) -> a calibrated copy of the MS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from dsa110_pipeline import instrument
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError, PipelineError
from dsa110_pipeline.stage import PipelineStage, Resources, StageConfig

from .apply_ms import FlagParams, apply_tables_to_ms
from .field_phase import FieldPhaseParams
from .msio import STAGE
from .sky import FieldModel


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
                              caltables=[by_kind["B Jones"], by_kind["G Jones"]],
                              # a calibrator group whose own solve failed QA says so
                              **{k: ctx.metadata[k] for k in ("role_fallback",)
                                 if ctx.metadata.get(k)}, **extra))


def _viscal_of(path: str) -> str:
    from casacore import tables

    try:
        with tables.table(path, ack=False) as t:
            return str(t.getkeyword("VisCal"))
    except Exception as exc:  # casacore raises RuntimeError
        raise InputError("cannot read calibration table", stage=STAGE, files=[path],
                         cause=exc) from exc
