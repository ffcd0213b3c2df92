import os

import numpy as np
import pytest

from dsa110_pipeline.errors import InputError
from stages.calibration.caltable import CalTableContext, read_caltable, write_caltable
from stages.calibration.solve import SolveParams, solve_calibrator
from stages.calibration.tests import _synth

MAIN_COLUMNS = {"TIME", "FIELD_ID", "SPECTRAL_WINDOW_ID", "ANTENNA1", "ANTENNA2", "INTERVAL",
                "SCAN_NUMBER", "OBSERVATION_ID", "CPARAM", "PARAMERR", "FLAG", "SNR", "WEIGHT"}


@pytest.fixture(scope="module")
def solutions():
    s = _synth.make(n_ant=6, n_time=6, n_chan=16, sigma=0.1, gain_drift=0.1)
    sol = solve_calibrator(s.vis, s.model, s.flags, s.ant1, s.ant2, s.n_ant, s.times,
                           s.freqs, SolveParams(gain_solint=30))
    ctx = CalTableContext(
        ms_name="cal.ms", antenna_names=tuple(f"DSA-{i:03d}" for i in range(6)),
        antenna_positions=np.array([-2409150.0, -4478573.0, 3838617.0]) + np.arange(18.0)
        .reshape(6, 3), spw_freqs=s.freqs, spw_widths=np.full(16, 976562.5),
        field_name="3C454.3", field_dir=(5.99, 0.28))
    return sol, ctx


@pytest.mark.parametrize("kind", ["B", "G"])
def test_roundtrip_and_schema(tmp_path, solutions, kind):
    from casacore import tables

    sol, ctx = solutions
    so = sol.bandpass if kind == "B" else sol.gains
    p = write_caltable(tmp_path / f"x.{kind}", so, ctx, history="unit test")
    moved = tmp_path / f"moved.{kind}"
    os.rename(p, moved)  # subtables are referenced relative to the table
    back = read_caltable(moved)
    assert back.kind == kind and back.refant == so.refant
    np.testing.assert_allclose(back.gains, so.gains, atol=1e-6)
    np.testing.assert_array_equal(back.flags, so.flags)
    np.testing.assert_allclose(back.times, so.times)
    np.testing.assert_allclose(back.freqs, so.freqs)
    with tables.table(str(moved), ack=False) as t:
        assert set(t.colnames()) >= MAIN_COLUMNS
        assert t.info()["type"] == "Calibration"
        assert t.info()["subType"] == f"{kind} Jones"
        kw = t.getkeywords()
        assert kw["ParType"] == "Complex" and kw["VisCal"] == f"{kind} Jones"
        assert kw["MSName"] == "cal.ms"
        n_chan = 16 if kind == "B" else 1
        assert t.getcell("CPARAM", 0).shape == (n_chan, 2)
        assert t.nrows() == so.gains.shape[0] * 6
        assert (t.getcol("ANTENNA2") == so.refant).all()
        for sub in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "HISTORY", "OBSERVATION"):
            assert sub in kw
            with tables.table(kw[sub].replace("Table: ", ""), ack=False) as st:
                assert st.nrows() >= (0 if sub == "HISTORY" else 1)
    with tables.table(str(moved / "SPECTRAL_WINDOW"), ack=False) as st:
        assert st.getcell("NUM_CHAN", 0) == (16 if kind == "B" else 1)
    with tables.table(str(moved / "ANTENNA"), ack=False) as st:
        assert list(st.getcol("NAME")) == list(ctx.antenna_names)


def test_no_partial_table_left_on_error(tmp_path, solutions):
    sol, ctx = solutions
    bad = CalTableContext(ms_name="x", antenna_names=("a",), antenna_positions=np.zeros((1, 3)),
                          spw_freqs=ctx.spw_freqs, spw_widths=ctx.spw_widths)
    with pytest.raises(ValueError):
        write_caltable(tmp_path / "bad.B", sol.bandpass, bad)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_non_caltable_names_it(tmp_path):
    with pytest.raises(InputError, match="nothing"):
        read_caltable(tmp_path / "nothing")
