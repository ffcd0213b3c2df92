"""Calibration stage: flagging, calibrator selection, bandpass and gain solutions, apply.

Each algorithm is a pure numpy kernel in its own module: flagging (:mod:`.flag_samples`;
:mod:`.rfi` with :mod:`.sumthreshold`, :mod:`.rfi_background`, :mod:`.rfi_prefilter`,
:mod:`.rfi_antenna_model`, :mod:`.flag_grow` and the numba :mod:`.rfi_kernels`;
:mod:`.flag_antennas`; in sequence :mod:`.flagging`), :mod:`.selection`, :mod:`.model`,
the solve (:mod:`.normal_sums`, :mod:`.stefcal`, :mod:`.delays`, :mod:`.solve`; its
product :mod:`.gain_solution`), :mod:`.apply`, :mod:`.qa`; :mod:`.msio` and
:mod:`.caltable` do the I/O; :mod:`.sky` builds the field's sky model and
:mod:`.apply_ms` applies solutions to an MS; :mod:`.stage`
(:class:`CalibrationStage`) and :mod:`.apply_stage` (:class:`ApplyCalibrationStage`) wire
them.
"""

from __future__ import annotations

from .apply_ms import apply_caltables, apply_tables_to_ms
from .apply_stage import ApplyCalibrationStage, ApplyConfig
from .stage import CalibrationConfig, CalibrationStage

__all__ = ["CalibrationStage", "CalibrationConfig", "ApplyCalibrationStage", "ApplyConfig",
           "apply_caltables", "apply_tables_to_ms"]
