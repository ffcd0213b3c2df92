"""apply_calibration's errors name apply_calibration, not calibration (issue 20)."""

from __future__ import annotations

import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError


def test_apply_errors_name_the_apply_stage(tmp_path) -> None:
    from dsa110_pipeline.simulate import SimulationConfig, simulate_observation
    from stages.calibration import ApplyCalibrationStage
    from stages.conversion import ConversionStage

    g = simulate_observation(SimulationConfig(
        out_dir=tmp_path / "raw", n_antennas=4, n_subbands=1, n_channels=4, n_integrations=2,
        n_sources=1, noise=False, rfi=False, seed=1, nthreads=1, jitter_s=0,
        dead_antennas=0)).groups[0]
    ms = ConversionStage({"output_dir": str(tmp_path / "ms"), "expected_subbands": [0],
                          "scratch_dir": str(tmp_path)}).execute(PipelineContext(
        inputs={"subband_files": [ProductRef.for_path("uvh5", f) for f in g.files]}
    )).outputs["ms"]
    tables = []
    for name in ("cal.B", "cal.G"):  # not calibration tables: an empty folder each
        (tmp_path / name).mkdir()
        tables.append(ProductRef(kind="caltable", path=str(tmp_path / name)))
    stage = ApplyCalibrationStage({"output_dir": str(tmp_path / "out")})
    with pytest.raises(InputError) as ei:
        stage.execute(PipelineContext(inputs={"ms": ms, "caltables": tables}))
    assert str(ei.value).startswith("stage 'apply_calibration': cannot read calibration "
                                    "table"), str(ei.value)
    assert ei.value.stage == "apply_calibration" and ei.value.files
