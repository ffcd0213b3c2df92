"""Mosaics: a window's group images in one linear mosaic (:mod:`.combine`, :mod:`.grid`,
the kernels; :mod:`.stage`, the window stage)."""

from .stage import MosaicConfig, MosaicStage

__all__ = ["MosaicStage", "MosaicConfig"]
