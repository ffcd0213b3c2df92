"""Validation metrics: each a pure function on numpy arrays in a module of its own."""

from .astrometry import Astrometry, astrometric_offsets
from .beam import beam_summary
from .completeness import BinnedFraction, binned_fraction, fraction_above
from .dynamic_range import dynamic_range
from .flux_scale import FluxScale, flux_scale
from .noise import NoiseStats, image_noise, theoretical_image_noise

__all__ = ["Astrometry", "astrometric_offsets", "beam_summary", "BinnedFraction",
           "binned_fraction", "fraction_above", "dynamic_range", "FluxScale", "flux_scale",
           "NoiseStats", "image_noise", "theoretical_image_noise"]
