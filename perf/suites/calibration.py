"""perf suite `calibration`: ours (flag + solve + apply) vs CASA bandpass + gaincal + applycal.

The measurement is :mod:`perf.calibration_benchmark` (it reads the truth: never in stages/).
"""

from __future__ import annotations

from perf.calibration_benchmark import run

__all__ = ["run"]
