"""Simulator of DSA-110 observation groups (16 UVH5 subband files) with known truth.

Library API::

    from dsa110_pipeline.simulate import SimulationConfig, simulate_observation
    res = simulate_observation(SimulationConfig(out_dir=Path("sim"), n_sources=200))
    res.groups[0].files, res.groups[0].truth_json, res.groups[0].truth_npz

The direct-Fourier-sum kernel is :func:`dsa110_pipeline.dft.predict_visibilities` (the science
core's, shared with calibration and imaging).
Command line: ``python -m dsa110_pipeline.simulate --help``.
"""

from ..dft import predict_visibilities, predict_visibilities_drift
from .config import SimulationConfig
from .observation import GroupFiles, SimulationResult, simulate_observation
from .survey import survey_view, write_survey_catalog
from .truth import read_truth, truth_catalog
from .uvh5_writer import PYUVDATA_READ_KWARGS

__all__ = ["SimulationConfig", "SimulationResult", "GroupFiles", "simulate_observation",
           "predict_visibilities", "predict_visibilities_drift", "read_truth",
           "truth_catalog", "survey_view", "write_survey_catalog",
           "PYUVDATA_READ_KWARGS"]
