"""The imaging stage's typed config (the ``imaging`` branch)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from dsa110_pipeline.stage import StageConfig

from .options import ImagingOptions

#: Keys that moved from ``imaging`` into its ``clean`` section, and their new names
_MOVED = {k: k for k in ("niter", "gain", "mgain", "auto_threshold", "auto_mask", "max_major",
                         "psf_patch", "multiscale", "scales", "image_domain_cycles",
                         "max_exact_cycles")} | {"threshold_jy": "threshold"}


class ImagingConfig(ImagingOptions, StageConfig):
    """Typed config of the imaging stage (the ``imaging`` branch): the kernel's settings
    (:class:`~stages.imaging.options.ImagingOptions`) and what the stage needs around them."""

    column: Literal["CORRECTED_DATA", "DATA"] = "CORRECTED_DATA"
    #: Image side in pixels; None: enough to cover ``fov_deg``.
    npix: int | None = Field(2048, ge=32, le=32768)
    fov_deg: float = Field(3.5, gt=0, le=90)
    #: Pixel size; None: a quarter of the synthesized beam (1 / (4 u_max)).
    cell_arcsec: float | None = Field(6.0, gt=0, le=3600)
    #: Threads for ducc0/FFTs/numba; None: the runtime's ``nthreads`` when it has one, else
    #: the CPUs this process may use.
    nthreads: int | None = Field(None, ge=1)
    #: Fixed restoring beam (BMAJ arcsec, BMIN arcsec, BPA deg E of N), as WSClean's
    #: -beam-shape; None: a Gaussian fitted to the PSF main lobe. Needed where the main lobe
    #: is a ridge (one snapshot of a one-dimensional array), which no Gaussian fits.
    restoring_beam: tuple[float, float, float] | None = None
    #: Meridian drift scan (DSA-110): average the primary beam over the beam centre's drift
    #: relative to the phase centre (the meridian at the mid-time); False: a pointed beam.
    pb_drift: bool = True
    #: Point-source catalog of the field (CSV/VOTable/FITS, e.g. NVSS with spectral
    #: indices), used with pb_drift: bright components take the spectral index of the
    #: catalog source they sit on, and catalog sources outside the image whose apparent
    #: flux exceeds ``outlier_min_jy`` are subtracted from the visibilities in every pass
    #: (CLEAN cannot model sources outside the image). None: the night's survey catalog
    #: (``paths.survey_catalog``), else neither.
    field_catalog: str | None = None
    memory_limit_gb: float = Field(16.0, gt=0)
    #: "auto": hold the visibilities in memory when they fit in the memory limit.
    in_memory: Literal["auto", "always", "never"] = "auto"
    rows_per_chunk: int | None = Field(None, ge=1)
    backend: Literal["ducc", "wsclean", "tclean"] = "ducc"
    wsclean_gridder: Literal["default", "wgridder"] = "default"
    output_dir: str | None = None
    #: File-name prefix; None: the MS name without ``.ms``.
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = sorted(k for k in data if k in _MOVED)
            if moved:
                raise ValueError("; ".join(f"imaging.{k} is now imaging.clean.{_MOVED[k]}"
                                           for k in moved))
        return data

    @field_validator("npix")
    @classmethod
    def _even(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"npix must be even, got {v}")
        return v

    @field_validator("restoring_beam")
    @classmethod
    def _beam(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and not (np.isfinite(v).all() and 0 < v[1] <= v[0]):
            raise ValueError(f"restoring_beam must be [bmaj_arcsec, bmin_arcsec, bpa_deg] "
                             f"with 0 < bmin <= bmaj, got {list(v)}")
        return v
