"""Typed, frozen config branch of the validation stage (``validation:`` in the YAML).

Angles are in arcseconds and thresholds are plain ratios because operators edit them;
everything is converted to SI (rad, Jy) where it is used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dsa110_pipeline.stage import StageConfig

#: (WARN limit, REJECT limit, whether a larger value is worse) of the verdict's limits.
_LIMIT_PAIRS = (("flux_scale_warn", "flux_scale_reject", True),
                ("astrometry_warn_arcsec", "astrometry_reject_arcsec", True),
                ("completeness_warn", "completeness_reject", False),
                ("noise_warn", "noise_reject", True),
                ("artefact_warn", "artefact_reject", True),
                ("reliability_warn", "reliability_reject", False))


class Thresholds(StageConfig):
    """WARN / REJECT limits of the verdict (issue 7 defaults)."""

    #: |flux ratio - 1| above which the flux scale is WARN / REJECT.
    flux_scale_warn: float = Field(0.10, gt=0)
    flux_scale_reject: float = Field(0.15, gt=0)
    #: Astrometric rms (arcsec, per axis, about zero so a shift counts) WARN / REJECT.
    astrometry_warn_arcsec: float = Field(2.5, gt=0)
    astrometry_reject_arcsec: float = Field(5.0, gt=0)
    #: Completeness (fraction) below which the verdict is WARN / REJECT.
    completeness_warn: float = Field(0.90, ge=0, le=1)
    completeness_reject: float = Field(0.70, ge=0, le=1)
    #: Image rms / theoretical radiometer noise above which WARN / REJECT.
    noise_warn: float = Field(1.5, gt=0)
    noise_reject: float = Field(2.0, gt=0)
    #: Fewest matched sources a flux-scale or astrometry verdict may rest on.
    min_matches: int = Field(3, ge=1)
    #: Reliability estimated from the image's sign (1 - negative / positive peaks at 5σ),
    #: and against the survey (``reference_complete_jy``), below which the verdict is
    #: WARN / REJECT: an image whose catalog would be this
    #: full of sidelobes and calibration errors is not science-ready. REJECT also needs the
    #: counts' 1σ-optimistic reliability below the limit (see ``verdict.decide``).
    reliability_warn: float = Field(0.90, ge=0, le=1)
    reliability_reject: float = Field(0.70, ge=0, le=1)
    #: Fewest positive peaks at 5σ the reliability verdict may rest on (below: reported,
    #: not judged).
    reliability_min_peaks: int = Field(5, ge=1)
    #: A reliability estimate below the limits is still ACCEPT where Gaussian noise gives
    #: at least this often as many negative 5σ peaks as the image holds (the image's beam
    #: and area set the noise's count): few sources share their image with its noise peaks.
    #: 0 judges the estimate alone.
    reliability_noise_p: float = Field(0.05, ge=0, le=1)
    #: Robust rms in the annulus 3-15 beams around the brightest sources over the rms far
    #: from them, above which WARN / REJECT: sidelobes of uncleaned flux or calibration
    #: errors around bright sources (a good image: about 1).
    artefact_warn: float = Field(2.0, gt=1)
    artefact_reject: float = Field(5.0, gt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        """Each REJECT limit at least as bad as its WARN limit."""
        for warn, reject, higher_is_worse in _LIMIT_PAIRS:
            w, r = getattr(self, warn), getattr(self, reject)
            if (r < w) if higher_is_worse else (r > w):
                raise ValueError(f"{reject} must be {'>=' if higher_is_worse else '<='} {warn}")
        return self


class ValidationConfig(StageConfig):
    """Config of :class:`stages.validation.ValidationStage`."""

    #: Reference catalog: an NVSS-format catalog file (CSV/VOTable/FITS, read with
    #: ``dsa110_pipeline.catalogs.read_catalog``). None: the night's survey catalog
    #: (``paths.survey_catalog``) if there is one, else the group is "not validated".
    reference_catalog: str | None = None
    #: Flux (Jy) above which the reference lists every source (NVSS: 99 % complete at about
    #: 3.5 mJy, Condon et al. 1998; the simulated survey is complete above 2.5 mJy). A
    #: detection above 5σ whose primary-beam corrected flux is above this by twice its
    #: error, and that the reference does not list, is an artefact or a transient: their
    #: fraction is the survey reliability gate (``thresholds.reliability_*``), which sees
    #: the positive-only artefacts the negative image cannot. 0: no such gate.
    reference_complete_jy: float = Field(0.0035, ge=0)
    #: Source finder: "islands" = the built-in island finder (the default, as in
    #: config/default.yaml: library use and pipeline runs find the same catalog, and it is
    #: tested bit-identical across calls, threads and processes); "bdsf" = PyBDSF; "auto" =
    #: PyBDSF when importable, else the island finder.
    finder: Literal["auto", "bdsf", "islands"] = "islands"
    #: Mean / rms maps PyBDSF finds sources against: "builtin" = the box-wise sigma-clipped
    #: maps of the island finder, handed to PyBDSF (its islands and Gaussian fits are
    #: unchanged; it starts no helper process, so it is safe in the runner's threads and in
    #: dask workers); "pybdsf" = PyBDSF's own maps (forks helper processes: main thread of
    #: a non-daemonic process only, and slower).
    bdsf_background: Literal["builtin", "pybdsf"] = "builtin"
    #: Peak threshold (S/N) of an island and the S/N to which islands grow.
    thresh_pix: float = Field(5.0, gt=0)
    thresh_isl: float = Field(3.0, gt=0)
    #: Built-in island finder: an island with more than 4 peaks or more than this many
    #: beam areas (CLEAN artefacts, sidelobe ridges, extended emission) is not fitted as a
    #: whole; its bright compact peaks get Gaussians fitted near them, the rest is
    #: measured by moments (``fit`` = "moments" in the source list).
    island_max_beams: float = Field(16.0, gt=0)
    #: Built-in island finder: islands whose brightest peak is below this S/N are fitted
    #: with Gaussians of the beam's shape (``fit`` = "point"): a size cannot be measured
    #: there and a free one biases the integrated flux up.
    point_fit_snr: float = Field(10.0, ge=0)
    #: Box size (beams) of the rms / mean maps; 0 = one global value.
    rms_box_beams: float = Field(30.0, ge=0)
    #: Match radius in units of the restoring beam's major axis FWHM.
    match_radius_beams: float = Field(1.0, gt=0)
    #: Only the image part where the primary beam is at least this is validated.
    pb_cut: float = Field(0.2, gt=0, le=1)
    #: Primary beam when no "pb" image is given: Airy model at the image frequency, or none.
    pb_model: Literal["airy", "none"] = "airy"
    #: Flux used for the flux scale: Gaussian-fit integrated flux, peak flux, or "auto":
    #: the integrated flux of sources resolved at 3σ (integrated − peak > 3× their combined
    #: error) and the peak flux of the others, which for a point source is the same quantity
    #: measured with less noise and without the upward bias of free-size fits at low S/N.
    flux_measure: Literal["auto", "integrated", "peak"] = "auto"
    #: Matches used for flux scale / astrometry must have at least this measured S/N.
    flux_snr_min: float = Field(10.0, gt=0)
    astrometry_snr_min: float = Field(20.0, gt=0)
    #: Reference sources whose expected apparent S/N is at least this count in the
    #: completeness that the verdict uses (2σ above the 5σ detection threshold so that
    #: noise alone does not decide whether a source is found). Reliability and the
    #: completeness curve are still reported from 5σ.
    completeness_snr: float = Field(7.0, gt=0)
    #: Bootstrap resamples of the flux-ratio interval, and their random seed.
    n_bootstrap: int = Field(2000, ge=100)
    seed: int = 12345
    #: Theoretical noise inputs; None = from the image's meta/header, then the
    #: pipeline context, then the instrument defaults (one full 16-subband file).
    bandwidth_hz: float | None = Field(None, gt=0)
    integration_time_s: float | None = Field(None, gt=0)
    flagged_fraction: float | None = Field(None, ge=0, lt=1)
    n_antennas: int | None = Field(None, ge=2)
    sefd_jy: float | None = Field(None, gt=0)
    #: Extra factor on the natural-weighting radiometer noise (robust/uniform weighting loss).
    weighting_noise_factor: float = Field(1.0, ge=1.0)
    #: Where reports go; None = <paths.output_dir>/validation, else beside the image.
    output_dir: str | None = None
    #: Longest side (pixels) of the report's image thumbnail.
    thumbnail_pixels: int = Field(600, ge=100)
    thresholds: Thresholds = Thresholds()


__all__ = ["Thresholds", "ValidationConfig"]
