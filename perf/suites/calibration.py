"""perf suite `calibration`: ours (flag + solve + apply) vs CASA bandpass + gaincal + applycal.

The measurement lives beside the stage (:mod:`stages.calibration.benchmark`).
"""

from __future__ import annotations

from stages.calibration.benchmark import run

__all__ = ["run"]
