"""CASA's applycal with our B and G tables must give our CORRECTED_DATA.

Runs only where CASA (the ``casa`` extra: casatools, casatasks, casadata) is importable by
the Python in ``$DSA110_CASA_PYTHON`` (default: this interpreter). CASA runs in a
subprocess with an offline config (casadata's measures, no auto-update) in a temporary
HOME, so it never mixes with python-casacore in one process.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext
from perf.calibration_benchmark import casa_available
from stages.calibration import CalibrationStage

pytestmark = [pytest.mark.casa, pytest.mark.slow]

CASA_PYTHON = os.environ.get("DSA110_CASA_PYTHON", sys.executable)


@pytest.mark.skipif(not casa_available(CASA_PYTHON),
                    reason="CASA (casatasks, casadata) not installed")
def test_casa_applycal_reproduces_corrected_data(tmp_path):
    from casacore import tables

    from dsa110_pipeline.context import ProductRef
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    cfg = SimulationConfig(out_dir=tmp_path / "raw", n_antennas=12, n_subbands=1,
                           n_channels=16, n_sources=0, calibrator="3C454.3", seed=2,
                           jitter_s=0, nthreads=2, dead_antennas=1)
    g = simulate_observation(cfg).groups[0]
    ms = ConversionStage({"output_dir": str(tmp_path / "ms"), "expected_subbands": [0],
                          "scratch_dir": str(tmp_path / "scr")}).execute(PipelineContext(
        inputs={"subband_files": [ProductRef.for_path("uvh5", f) for f in g.files]})
    ).outputs["ms"]
    out = CalibrationStage({"output_dir": str(tmp_path / "cal"), "gain_solint_s": 60.0}
                           ).execute(PipelineContext(inputs={"ms": ms}))
    b, gt = (r.path for r in out.outputs["caltables"])
    casa_ms = tmp_path / "casa.ms"
    shutil.copytree(ms.path, casa_ms)
    home = tmp_path / "home"
    script = textwrap.dedent(f"""
        import os, casadata
        os.makedirs({str(home / '.casa')!r}, exist_ok=True)
        with open({str(home / '.casa' / 'config.py')!r}, 'w') as fh:
            fh.write('measurespath = %r\\nmeasures_auto_update = False\\n'
                     'data_auto_update = False\\nnologfile = True\\n' % casadata.datapath)
        from casatasks import applycal
        applycal(vis={str(casa_ms)!r}, gaintable=[{b!r}, {gt!r}],
                 interp=['nearest', 'linear'], calwt=[False, False], flagbackup=False,
                 applymode='calonly')
    """)
    env = {**os.environ, "HOME": str(home)}
    r = subprocess.run([CASA_PYTHON, "-c", script], capture_output=True, text=True,
                       timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    with tables.table(str(casa_ms), ack=False) as ta, \
            tables.table(out.outputs["ms_calibrated"].path, ack=False) as tb:
        ca, cb = ta.getcol("CORRECTED_DATA"), tb.getcol("CORRECTED_DATA")
        fb = tb.getcol("FLAG")
        cross = ta.getcol("ANTENNA1") != ta.getcol("ANTENNA2")
    ok = ~fb & cross[:, None, None]
    assert ok.mean() > 0.5
    np.testing.assert_allclose(ca[ok], cb[ok], rtol=1e-5, atol=1e-6)
