"""Validation stage: source finding (PyBDSF, or a built-in island finder), cross-match with
a reference catalog, QA metrics, ACCEPT/WARN/REJECT verdicts and an HTML report per group."""

from .config import Thresholds, ValidationConfig
from .night_summary import write_night_summary
from .stage import ValidationStage
from .validate import Outcome, validate_group
from .verdict import Verdict, VerdictResult

Config = ValidationConfig

__all__ = ["ValidationStage", "ValidationConfig", "Config", "Thresholds", "Verdict",
           "VerdictResult", "validate_group", "Outcome", "write_night_summary"]
