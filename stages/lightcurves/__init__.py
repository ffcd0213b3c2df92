"""Light curves across groups and nights: a store, variability statistics, candidates
(:mod:`.variability`, the kernels; :mod:`.store`, the SQLite store; :mod:`.stage`, the
window stage)."""

from .stage import LightCurveConfig, LightCurveStage

__all__ = ["LightCurveStage", "LightCurveConfig"]
