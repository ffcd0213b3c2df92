"""Forced photometry: beam-fit fluxes of every group image at the survey catalog's positions
(:mod:`.forced`, the kernel; :mod:`.stage`, the stage)."""

from .stage import PhotometryConfig, PhotometryStage

__all__ = ["PhotometryStage", "PhotometryConfig"]
