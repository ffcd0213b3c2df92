"""The imaging kernel's settings with the pipeline's defaults: one typed section that the
``imaging`` config branch extends (:class:`~stages.imaging.config.ImagingConfig`) and that
:func:`~stages.imaging.imager.make_images` takes as it is (``ImagingParams.opts``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dsa110_pipeline.instrument import ARCSEC

from .clean import CleanParams


class ImagingOptions(BaseModel):
    """Weighting, gridding accuracy, deconvolution and the drift-scan sky model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weighting: Literal["natural", "uniform", "briggs"] = "briggs"
    robust: float = Field(0.0, ge=-5, le=5)
    uv_min_lambda: float = Field(0.0, ge=0)
    uv_max_lambda: float | None = Field(None, gt=0)
    taper_arcsec: float | None = Field(None, gt=0)
    #: Deconvolution (``imaging.clean.niter``, ``imaging.clean.auto_mask``, ...), handed to
    #: CLEAN as it is: see :class:`stages.imaging.clean.CleanParams`.
    clean: CleanParams = CleanParams()
    #: ducc0 accuracy (relative L2 error of each gridding and prediction). 1e-3 suffices:
    #: sources above ``point_snr`` are predicted by a direct sum, so what is gridded is faint.
    #: Measured on a full-scale group (dec +30.5): the residual's rms and peak as with 1e-4
    #: (0.262 and 1.12 mJy), 24 s less imaging on one thread (a kernel of 4 pixels, not 5).
    epsilon: float = Field(1e-3, gt=1e-5, lt=0.1)
    do_wgridding: bool = True
    #: PSF side / image side: 2 makes the minor cycle exact at any offset (4x the PSF cost
    #: and memory); 1 relies on Clark's rule for offsets beyond the PSF. Deep CLEAN of the
    #: end-to-end test (natural weighting, 2.6 deg field) diverges with 1 or without
    #: ``psf_wgridding``.
    psf_oversize: Literal[1, 2] = 2
    #: w-gridding for the PSF (the response to a source at the phase centre; 5x the cost).
    psf_wgridding: bool = True
    #: Major cycles before the last, and the PSF, grid every ``approx_stride``-th channel
    #: only (1: all); CLEAN stops only on a residual from all channels, and cycles after it
    #: use all. Fewer where the subset would alias a source at the phase centre into the
    #: image (``channel_subset``): 10 at full scale, 1 (all) with the demo's 1.46 MHz
    #: channels.
    approx_stride: int = Field(16, ge=1)
    #: ducc0 accuracy of those approximate major cycles (never finer than ``epsilon``).
    approx_epsilon: float = Field(1e-3, gt=1e-5, lt=0.1)
    pb_cut: float = Field(0.1, gt=0, le=1)
    #: With pb_drift: the major cycles predict up to this many of the brightest model
    #: components with the beam as it moves during the scan (time and frequency), so they
    #: leave no sidelobe stripes in the residual; 0: a static beam.
    drift_components: int = Field(100, ge=0)
    #: Apparent (time-mean) flux floor of those outliers. A full-scale group's thermal rms is
    #: about 0.26 mJy and an outlier's far sidelobes a few per cent of it: at 20 mJy the
    #: unsubtracted outliers left a noise-free image 0.31x thermal rms of stripes (3.5x at
    #: worst); at 1 mJy, 0.09x. With noise and the survey, 3 mJy and 1 mJy gave the same
    #: figures, 20 mJy a quarter more 5-sigma peaks (see the imaging README).
    outlier_min_jy: float = Field(0.003, ge=0)
    #: With pb_drift: outliers whose S/N in the residual is at least this have their flux,
    #: spectral index, drift through the beam and position refined from the visibilities before
    #: CLEAN starts (a survey's 3 % flux and 1-7" position errors leave sidelobe
    #: stripes from a bright one), the brightest ``outlier_fit_max`` of them; 0: off.
    outlier_fit_snr: float = Field(20.0, ge=0)
    outlier_fit_max: int = Field(10, ge=0)
    #: With pb_drift: sources brighter than this many times the thermal noise get their
    #: spectral index measured from the data in each major cycle (a survey catalog has
    #: none, and a wrong index leaves chromatic sidelobes); 0: catalog indices only.
    spectral_fit_snr: float = Field(50.0, ge=0)
    #: With pb_drift: compact sources brighter than this many times the thermal noise are
    #: modelled as point sources at their sub-pixel position (exact prediction and
    #: restoration); on the grid such a source grows rings of +/- components that restore
    #: as false sources around it. 0: off.
    point_snr: float = Field(30.0, ge=0)
    #: Point sources brighter than this many times the thermal noise have their position
    #: refined in every exact major cycle from the dipole their position error leaves in
    #: the residual (``points.refine_positions``): the Högbom centroid is good to ~2e-3
    #: pixel, which at a 20 Jy calibrator leaves ±15 sigma false peaks beside it. 0: off.
    point_refine_snr: float = Field(100.0, ge=0)
    #: Pixels CLEANed beyond every side of the image and cropped from the products: a source
    #: just outside the image that the catalog lacks (a transient, a survey's missing entry)
    #: is deconvolved there instead of leaving its sidelobes across the image. 0: off.
    #: Measured on two unseen demo-scale groups with such a source 121 and 23 px east of the
    #: image (scored by perf against the simulated sky): 5-sigma reliability 0.904 -> 0.992
    #: and 0.838 -> 0.989, rms/thermal 1.045 -> 1.010 and 1.029 -> 1.006, for 13-20 % more
    #: imaging time; 256 px bought nothing more (imaging README, session 23).
    guard_px: int = Field(128, ge=0)

    @property
    def taper_fwhm(self) -> float | None:
        """The uv taper's FWHM in the image plane (rad), or None."""
        return self.taper_arcsec * ARCSEC if self.taper_arcsec else None
