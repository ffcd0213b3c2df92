"""The validation stage: wires config, FITS products, the finder, metrics and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from dsa110_pipeline import instrument
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.stage import PipelineStage, Resources

from .config import ValidationConfig
from .metrics.noise import theoretical_image_noise
from .report import timing_rows
from .validate import validate_group

_IMAGE_ROLES = ("image", "restored", "clean", "model+residual")


def _role(ref: ProductRef) -> str:
    return str(ref.meta.get("role", "")).lower()


def pick_images(refs: list[ProductRef]) -> dict[str, ProductRef]:
    """Map role → reference: image (restored), pb, pbcor, residual, psf, ..."""
    out: dict[str, ProductRef] = {}
    for ref in refs:
        role = _role(ref)
        if role in _IMAGE_ROLES:
            out.setdefault("image", ref)
        elif role:
            out.setdefault(role, ref)
    if "image" not in out:
        unroled = [r for r in refs if not _role(r)]
        if len(unroled) == 1:
            out["image"] = unroled[0]
    return out


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


class ValidationStage(PipelineStage):
    """Source finding, cross-match against a reference catalog, QA metrics, a verdict
    (ACCEPT / WARN / REJECT / NOT_VALIDATED) and an HTML report per group.

    requires ``images``: a list of FITS ProductRefs with ``meta['role']`` (image, residual,
    pbcor, pb, psf…). produces ``validation``: the HTML report, with the verdict, its reasons
    and the metrics in ``meta``. On REJECT, ``ctx.metadata['not_for_science']`` is True.
    """

    name = "validation"
    version = "3"  # 3: the beam in pixels from the sky (CAR); 2: no point above its island
    Config = ValidationConfig
    requires = ("images",)
    produces = ("validation",)
    resources: ClassVar[Resources] = Resources(cpu=1.0, memory_gb=2.0)
    executor = "thread"

    config: ValidationConfig

    # -- helpers ---------------------------------------------------------------
    def _framework(self, ctx: PipelineContext) -> Any:
        rt = ctx.runtime
        return getattr(rt, "config", None) if rt is not None else None

    def theoretical_rms(self, ctx: PipelineContext, image: ProductRef) -> tuple[float, dict]:
        """Radiometer-equation image noise and the inputs it came from (config, then the
        image's meta, then the context metadata, then the instrument defaults)."""
        c, m, md = self.config, image.meta, ctx.metadata
        fw = self._framework(ctx)
        fw_inst = getattr(fw, "instrument", None)
        if m.get("theoretical_rms_jy") is not None:
            return float(m["theoretical_rms_jy"]), {"source": "image meta theoretical_rms_jy"}
        inputs = {
            "sefd_jy": _first(c.sefd_jy, m.get("sefd_jy"), md.get("sefd_jy"),
                              getattr(fw_inst, "sefd_jy", None), instrument.SEFD),
            "n_antennas": _first(c.n_antennas, m.get("n_antennas"), md.get("n_antennas"),
                                 getattr(fw_inst, "n_antennas", None),
                                 instrument.N_ACTIVE_ANTENNAS),
            "bandwidth_hz": _first(c.bandwidth_hz, m.get("bandwidth_hz"),
                                   md.get("bandwidth_hz"),
                                   instrument.BAND_HIGH - instrument.BAND_LOW),
            "integration_time_s": _first(c.integration_time_s, m.get("integration_time_s"),
                                         md.get("integration_time_s"), instrument.FILE_DURATION),
            "flagged_fraction": _first(c.flagged_fraction, m.get("flagged_fraction"),
                                       md.get("flagged_fraction"), 0.0),
            "weighting_factor": _first(m.get("weighting_noise_factor"),
                                       c.weighting_noise_factor),
        }
        rms = theoretical_image_noise(float(inputs["sefd_jy"]), int(inputs["n_antennas"]),
                                      float(inputs["bandwidth_hz"]),
                                      float(inputs["integration_time_s"]),
                                      float(inputs["flagged_fraction"]),
                                      weighting_factor=float(inputs["weighting_factor"]))
        return rms, inputs

    def output_dir(self, ctx: PipelineContext, image: ProductRef) -> Path:
        if self.config.output_dir:
            return Path(self.config.output_dir)
        fw = self._framework(ctx)
        paths = getattr(fw, "paths", None)
        if paths is not None and getattr(paths, "output_dir", None):
            return Path(paths.output_dir) / "validation"
        return Path(image.path).resolve().parent / "validation"

    # -- contract --------------------------------------------------------------
    def validate(self, ctx: PipelineContext) -> None:
        super().validate(ctx)
        refs = ctx.get("images")
        refs = refs if isinstance(refs, list) else [refs]
        if "image" not in pick_images(refs):
            raise InputError("no restored image among 'images' (need one ProductRef with "
                             f"meta role in {_IMAGE_ROLES}); got roles "
                             f"{[_role(r) or '?' for r in refs]}", stage=self.name,
                             files=[r.path for r in refs])

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        refs = ctx.get("images")
        refs = refs if isinstance(refs, list) else [refs]
        roles = pick_images(refs)
        image = roles["image"]
        group = ctx.group_id or Path(image.path).stem
        reference = self.config.reference_catalog or ctx.metadata.get("survey_catalog")
        theo, theo_inputs = self.theoretical_rms(ctx, image)
        ncores = max(1, int(self.resources.cpu))
        try:
            out = validate_group(
                image.path, self.output_dir(ctx, image), group=group, cfg=self.config,
                reference_path=reference, theoretical_rms=theo,
                pb_path=roles["pb"].path if "pb" in roles else None,
                pbcor_path=roles["pbcor"].path if "pbcor" in roles else None,
                residual_path=roles["residual"].path if "residual" in roles else None,
                timing=timing_rows(ctx.metrics, ctx.provenance), ncores=ncores)
        except InputError as exc:
            if exc.stage is None:
                raise InputError(exc.detail, stage=self.name, files=exc.files,
                                 cause=exc.cause) from exc
            raise
        verdict = out.verdict.verdict.value
        out.metrics["noise_model"] = theo_inputs
        ref = ProductRef.for_path(
            "html", out.report, verdict=verdict,
            reasons=[r.to_dict() for r in out.verdict.reasons], metrics=out.metrics,
            metrics_json=str(out.metrics_json),
            sources_csv=str(out.sources_csv) if out.sources_csv else None,
            sources_fits=str(out.sources_fits) if out.sources_fits else None, group=group,
            reference=str(reference) if reference else None)
        summary = {"verdict": verdict,
                   "flux_ratio": (out.metrics.get("flux_scale") or {}).get("median_ratio"),
                   "astrometric_rms_arcsec": (out.metrics.get("astrometry") or {}).get(
                       "rms_arcsec"),
                   "completeness": (out.metrics.get("completeness") or {}).get("value"),
                   "noise_ratio": (out.metrics.get("noise") or {}).get("ratio"),
                   "n_sources": out.metrics.get("n_sources")}
        return (ctx.with_output("validation", ref)
                .with_metrics(self.name, **summary)
                .with_metadata(qa_verdict=verdict, not_for_science=verdict == "REJECT"))


__all__ = ["ValidationStage", "pick_images"]
