"""A four-correlation MS (XX, XY, YX, YY) is calibrated on its parallel hands only
(issue 20, item 5): the XX/YY gains are those of the two-correlation MS holding the same
XX/YY data, and the cross hands are flagged (default) or kept as they are in DATA."""

import shutil

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from stages.calibration import CalibrationStage, msio
from stages.calibration.apply_ms import apply_tables_to_ms
from stages.calibration.caltable import read_caltable

pytestmark = pytest.mark.slow

XX, XY, YX, YY = 9, 10, 11, 12


@pytest.fixture(scope="module")
def two_pol(tmp_path_factory):
    """A small simulated calibrator group converted by the pipeline: XX, YY."""
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    root = tmp_path_factory.mktemp("cal_pol")
    cfg = SimulationConfig(out_dir=root / "raw", n_antennas=12, n_subbands=2, n_channels=16,
                           n_sources=0, calibrator="3C454.3", seed=4, jitter_s=0,
                           nthreads=2, dead_antennas=0)
    g = simulate_observation(cfg).groups[0]
    ctx = PipelineContext(inputs={"subband_files": [ProductRef.for_path("uvh5", f)
                                                    for f in g.files]})
    conv = ConversionStage({"output_dir": str(root / "ms"), "scratch_dir": str(root / "scr"),
                            "expected_subbands": [0, 1]})
    return root, conv.execute(ctx).outputs["ms"]


def _cross_hand(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XY and YX made from the parallel hands: not gain-like, easy to recognise."""
    rng = np.random.default_rng(0)
    noise = (rng.normal(size=data.shape[:2]) + 1j * rng.normal(size=data.shape[:2])) * 0.3
    xy = 0.05 * data[..., 0] - 0.02j * data[..., 1] + noise
    yx = np.conj(xy) + 0.1
    return xy.astype(data.dtype), yx.astype(data.dtype)


def four_pol_copy(src: str, dst) -> str:
    """A copy of a two-correlation MS with four correlations (XX, XY, YX, YY): parallel
    hands, weights and flags as in ``src``, cross hands from :func:`_cross_hand`."""
    from casacore import tables

    shutil.copytree(src, dst)
    with tables.table(str(dst), readonly=False, ack=False) as t:
        cols = {c: t.getcol(c) for c in ("DATA", "FLAG", "WEIGHT", "SIGMA")
                if c in t.colnames()}
        extra = [c for c in ("WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "CORRECTED_DATA",
                             "MODEL_DATA") if c in t.colnames()]
        descs = {c: t.getcoldesc(c) for c in cols}
        t.removecols(list(cols) + extra)
        d = cols["DATA"]
        xy, yx = _cross_hand(d)
        new = {"DATA": np.stack([d[..., 0], xy, yx, d[..., 1]], -1),
               "FLAG": cols["FLAG"][..., [0, 0, 1, 1]]}
        for c in ("WEIGHT", "SIGMA"):
            if c in cols:
                new[c] = cols[c][..., [0, 0, 1, 1]]
        for c, v in new.items():
            desc = dict(descs[c])
            desc["shape"] = list(v.shape[1:])
            desc["ndim"] = v.ndim - 1
            desc["option"] = 4  # fixed shape
            desc.pop("dataManagerGroup", None)
            desc["dataManagerType"] = "StandardStMan"
            t.addcols(tables.makecoldesc(c, desc))
            t.putcol(c, v)
    with tables.table(str(dst / "POLARIZATION"), readonly=False, ack=False) as tp:
        tp.removecols(["CORR_TYPE", "CORR_PRODUCT"])
        tp.addcols(tables.maketabdesc([
            tables.makearrcoldesc("CORR_TYPE", 0, ndim=1, shape=[4], valuetype="int"),
            tables.makearrcoldesc("CORR_PRODUCT", 0, ndim=2, shape=[4, 2],
                                  valuetype="int")]))
        tp.putcell("NUM_CORR", 0, 4)
        tp.putcell("CORR_TYPE", 0, np.array([XX, XY, YX, YY], np.int32))
        tp.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32))
    return str(dst)


def _calibrate(ms_path: str, out, **cfg):
    stage = CalibrationStage({"output_dir": str(out), **cfg})
    return stage.execute(PipelineContext(inputs={"ms": ProductRef.for_path("ms", ms_path)}))


def _cols(ms_path: str, *names):
    from casacore import tables

    with tables.table(ms_path, ack=False) as t:
        return [t.getcol(n) for n in names]


@pytest.fixture(scope="module")
def solved(two_pol):
    root, ms2 = two_pol
    ms4 = four_pol_copy(ms2.path, root / "four.ms")
    out2 = _calibrate(ms2.path, root / "cal2")
    out4 = _calibrate(ms4, root / "cal4")
    return ms2.path, ms4, out2, out4


def test_four_pol_ms_reads_its_correlations(solved):
    _, ms4, _, _ = solved
    meta = msio.read_ms_meta(ms4)
    assert meta.n_pol == 4 and meta.corr_types == (XX, XY, YX, YY)
    assert msio.split_hands(meta) == ((0, 3), (1, 2))


def test_parallel_hand_gains_equal_a_two_pol_solve(solved):
    _, _, out2, out4 = solved
    for r2, r4 in zip(out2.outputs["caltables"], out4.outputs["caltables"], strict=True):
        t2, t4 = read_caltable(r2.path), read_caltable(r4.path)
        assert t4.gains.shape == t2.gains.shape and t4.gains.shape[-1] == 2
        np.testing.assert_array_equal(t4.flags, t2.flags)
        np.testing.assert_allclose(t4.gains, t2.gains, rtol=1e-6, atol=1e-7)
    m2, m4 = out2.metrics["calibration"], out4.metrics["calibration"]
    assert m4["flagged_fraction"] == pytest.approx(m2["flagged_fraction"])
    assert m4["correlations"] == "XX,XY,YX,YY" and m4["solved_correlations"] == "XX,YY"
    assert m4["cross_hands"] == "flagged"
    assert m2["cross_hands"] == "none" and m2["solved_correlations"] == "XX,YY"


def test_cross_hands_flagged_parallel_hands_corrected_as_two_pol(solved):
    ms2, ms4, out2, out4 = solved
    c2, f2 = _cols(out2.outputs["ms_calibrated"].path, "CORRECTED_DATA", "FLAG")
    d4, c4, f4 = _cols(out4.outputs["ms_calibrated"].path, "DATA", "CORRECTED_DATA", "FLAG")
    (d4_in,) = _cols(ms4, "DATA")
    np.testing.assert_array_equal(d4, d4_in)  # DATA untouched
    np.testing.assert_array_equal(f4[..., [0, 3]], f2)
    np.testing.assert_allclose(c4[..., [0, 3]], c2, rtol=1e-5, atol=1e-6)
    assert f4[..., [1, 2]].all()  # documented: cross hands flagged


def test_cross_hands_kept_as_they_are(solved, tmp_path):
    _, ms4, out2, _ = solved
    out = _calibrate(ms4, tmp_path / "keep", cross_hands="keep")
    assert out.metrics["calibration"]["cross_hands"] == "kept uncalibrated"
    (c2,) = _cols(out2.outputs["ms_calibrated"].path, "CORRECTED_DATA")
    d, c, f = _cols(out.outputs["ms_calibrated"].path, "DATA", "CORRECTED_DATA", "FLAG")
    np.testing.assert_array_equal(c[..., [1, 2]], d[..., [1, 2]])  # uncalibrated, as in DATA
    np.testing.assert_allclose(c[..., [0, 3]], c2, rtol=1e-5, atol=1e-6)
    # a cross hand is flagged only where a parallel hand of the sample is
    np.testing.assert_array_equal(f[..., 1], f[..., 0] | f[..., 3])
    assert not f[..., 1].all()


def test_tables_apply_to_a_four_pol_target(solved, tmp_path):
    """apply_calibration on a four-correlation target with the tables of the solve."""
    _, ms4, out2, _ = solved
    b, g = (r.path for r in out2.outputs["caltables"])
    dst, _ = apply_tables_to_ms(ms4, b, g, tmp_path / "t_cal.ms", cross_hands="keep")
    (c2,) = _cols(out2.outputs["ms_calibrated"].path, "CORRECTED_DATA")
    d, c = _cols(str(dst), "DATA", "CORRECTED_DATA")
    np.testing.assert_array_equal(c[..., [1, 2]], d[..., [1, 2]])
    np.testing.assert_allclose(c[..., [0, 3]], c2, rtol=1e-5, atol=1e-6)


def test_unsupported_correlations_are_a_clear_error(solved, tmp_path):
    from casacore import tables

    _, ms4, _, _ = solved
    bad = tmp_path / "stokes.ms"
    shutil.copytree(ms4, bad)
    with tables.table(str(bad / "POLARIZATION"), readonly=False, ack=False) as tp:
        tp.putcell("CORR_TYPE", 0, np.array([1, 2, 3, 4], np.int32))  # I, Q, U, V
    with pytest.raises(InputError, match="not parallel hands"):
        msio.split_hands(msio.read_ms_meta(str(bad)))
