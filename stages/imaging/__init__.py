"""Imaging stage: ducc0 w-gridding, weighting, CLEAN, restoration, PB, FITS products."""

from .stage import ImagingConfig, ImagingPlan, ImagingStage

__all__ = ["ImagingStage", "ImagingConfig", "ImagingPlan"]
