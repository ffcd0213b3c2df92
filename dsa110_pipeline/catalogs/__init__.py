"""Catalogs shared by all stages: point-source catalogs, the VLA calibrator list and
flux-density standards. Angles are radians, fluxes Jy, frequencies Hz."""

from __future__ import annotations

from .flux_standards import PB2017, flux_density, is_flux_standard, spectral_index
from .known_sources import with_known_sources
from .sources import (
    DEFAULT_REF_FREQ_HZ,
    DEFAULT_SPECTRAL_INDEX,
    SURVEY_CATALOG,
    SourceCatalog,
    catalog_format,
    read_catalog,
)
from .vla import (
    BandInfo,
    VLACalibrator,
    builtin_calibrators,
    calibrators_in_strip,
    default_calibrator_path,
    find_calibrator,
    j2000_name,
    parse_vla_calibrators,
    read_vla_calibrators,
)

__all__ = [
    "PB2017", "flux_density", "is_flux_standard", "spectral_index",
    "DEFAULT_REF_FREQ_HZ", "DEFAULT_SPECTRAL_INDEX", "SURVEY_CATALOG", "SourceCatalog",
    "catalog_format", "read_catalog",
    "BandInfo", "VLACalibrator", "builtin_calibrators", "calibrators_in_strip",
    "default_calibrator_path", "find_calibrator", "j2000_name", "parse_vla_calibrators",
    "read_vla_calibrators", "with_known_sources",
]
