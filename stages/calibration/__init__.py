"""Calibration stage: flagging, calibrator selection, bandpass and gain solutions, apply.

Each algorithm is a pure numpy kernel in its own module (:mod:`.flagging`,
:mod:`.selection`, :mod:`.model`, :mod:`.stefcal`, :mod:`.solve`, :mod:`.apply`,
:mod:`.qa`); :mod:`.msio` and :mod:`.caltable` do the I/O; :mod:`.stage` wires them.
"""

from __future__ import annotations

from .stage import (
    ApplyCalibrationStage,
    ApplyConfig,
    CalibrationConfig,
    CalibrationStage,
    apply_caltables,
    apply_tables_to_ms,
)

__all__ = ["CalibrationStage", "CalibrationConfig", "ApplyCalibrationStage", "ApplyConfig",
           "apply_caltables", "apply_tables_to_ms"]
