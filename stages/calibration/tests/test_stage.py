"""End to end on a small simulated calibrator group: simulator -> conversion -> calibration,
checked against the simulator's truth (gains, bandpasses, RFI mask)."""

import glob
import math

import numpy as np
import pytest

from dsa110_pipeline.checksum import path_checksum
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.projection import radec_to_lmn
from stages.calibration import CalibrationStage
from stages.calibration.apply import interpolate_gains
from stages.calibration.caltable import read_caltable
from stages.calibration.model import model_visibilities

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    root = tmp_path_factory.mktemp("cal_e2e")
    cfg = SimulationConfig(out_dir=root / "raw", n_antennas=20, n_subbands=2, n_channels=16,
                           n_sources=0, calibrator="3C454.3", seed=3, jitter_s=0,
                           nthreads=2, dead_antennas=1, rfi_frequencies_hz=(1480e6, 1490e6))
    res = simulate_observation(cfg)
    g = res.groups[0]
    ctx = PipelineContext(inputs={"subband_files": [ProductRef.for_path("uvh5", f)
                                                    for f in g.files]})
    conv = ConversionStage({"output_dir": str(root / "ms"), "scratch_dir": str(root / "scr"),
                            "expected_subbands": [0, 1]})
    ms = conv.execute(ctx).outputs["ms"]
    return root, ms, np.load(g.truth_npz)


@pytest.fixture(scope="module")
def calibrated(group):
    root, ms, truth = group
    before = path_checksum(ms.path)
    stage = CalibrationStage({"output_dir": str(root / "cal")})
    out = stage.execute(PipelineContext(inputs={"ms": ms}))
    stage.validate_outputs(out)
    assert path_checksum(ms.path) == before  # input never modified
    return out


def _truth_total(truth, freqs_ms):
    """True per-antenna gain g(t, ν) in the MS convention (conjugate of pyuvdata's),
    indexed by MS antenna (= antenna number), channels ascending."""
    nums = truth["antenna_numbers"]
    f_sim = truth["freq_array"].ravel()
    order = np.argsort(f_sim)
    assert np.allclose(f_sim[order], freqs_ms)
    g = np.conj(truth["gains"])[:, :, None, :] * np.conj(truth["bandpass"][:, order])[None]
    out = np.zeros((g.shape[0], int(nums.max()) + 1) + g.shape[2:], complex)
    out[:, nums] = g
    good = np.zeros(out.shape[1], bool)
    good[nums] = truth["antenna_active"] & ~truth["antenna_dead"]
    return out, good


def test_recovers_injected_gains_and_bandpass(calibrated, group):
    _, ms, truth = group
    m = calibrated.metrics["calibration"]
    assert m["calibrator"] == "J2253+1608" and m["qa_passed"]
    b_ref, g_ref = calibrated.outputs["caltables"]
    assert b_ref.meta["viscal"] == "B Jones" and g_ref.meta["viscal"] == "G Jones"
    assert abs(b_ref.meta["dec_deg"] - 16.15) < 0.01
    assert b_ref.meta["valid_start_mjd"] < b_ref.meta["transit_mjd"] < b_ref.meta[
        "valid_end_mjd"]
    B, G = read_caltable(b_ref.path), read_caltable(g_ref.path)
    from casacore import tables

    with tables.table(ms.path, ack=False) as t:
        times = np.unique(t.getcol("TIME"))
    truth_g, good_ant = _truth_total(truth, B.freqs)
    gt, gf = interpolate_gains(G.times, G.gains, G.flags, times)
    sol = gt * B.gains[0][None]
    ref = B.refant
    assert good_ant[ref]

    def refd(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return x * np.conj(x[:, ref:ref + 1]) / np.abs(x[:, ref:ref + 1])

    with np.errstate(invalid="ignore", divide="ignore"):  # absent antennas are 0
        r = refd(sol) / refd(truth_g)
    use = good_ant.copy()
    use[ref] = False
    snr = np.broadcast_to(B.snr[0][None], sol.shape)
    sel = (~(gf | B.flags[0][None]) & (snr >= 50))[:, use]
    rr = r[:, use][sel]
    assert sel.mean() > 0.8
    assert np.sqrt(np.mean((np.abs(rr) - 1) ** 2)) < 0.01
    assert np.degrees(np.sqrt(np.mean(np.angle(rr) ** 2))) < 1.0
    # the dead antenna is flagged whole
    dead = np.flatnonzero(np.isin(np.arange(sol.shape[1]), truth["antenna_numbers"][
        truth["antenna_dead"]]))
    assert B.flags[0, dead].all()
    assert len(m["dead_antennas"]) == 1


def test_rfi_flagged_and_corrected_data_match_model(calibrated, group):
    from casacore import tables

    _, ms, truth = group
    cal_ms = calibrated.outputs["ms_calibrated"].path
    with tables.table(cal_ms, ack=False) as t:
        flag = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        time = t.getcol("TIME")
        corr = t.getcol("CORRECTED_DATA")
    times = np.unique(time)
    ti = np.searchsorted(times, time)
    order = np.argsort(truth["freq_array"].ravel())
    rfi = np.broadcast_to(truth["rfi_mask"][:, order][ti][:, :, None], flag.shape)
    dead = set(truth["antenna_numbers"][truth["antenna_dead"]].tolist())
    rows = (a1 != a2) & ~np.isin(a1, list(dead)) & ~np.isin(a2, list(dead))
    f, r = flag[rows], rfi[rows]
    assert r.sum() > 1000
    assert f[r].mean() >= 0.95
    assert f[~r].mean() <= 0.02
    # corrected = calibrator model (truth: apparent spectrum, ICRS offset from the phase
    # centre; the exact DFT of the MS uvw) + noise
    with tables.table(cal_ms, ack=False) as t:
        uvw = t.getcol("UVW")
    with tables.table(cal_ms + "/FIELD", ack=False) as t:
        ra0, dec0 = t.getcell("PHASE_DIR", 0)[0]
    k = int(np.flatnonzero(truth["source_name"] == "J2253+1608")[0])
    app = (truth["source_flux"][k] * truth["source_beam"][k])[:, order]  # (n_t, n_chan)
    lmn = radec_to_lmn(truth["source_ra"][k:k + 1], truth["source_dec"][k:k + 1], ra0, dec0)
    freqs = np.sort(truth["freq_array"].ravel())
    model = model_visibilities(uvw[rows], ti[rows], freqs,
                               np.repeat(lmn[None], len(times), axis=0),
                               app[:, None, :].astype(float))
    c = corr[rows]
    good = ~f
    resid = (c - model[:, :, None])[good]
    sigma = float(truth["noise_rms_jy"])
    assert abs(resid.real.mean()) < 0.01 * float(app.mean())
    assert abs(resid.imag.mean()) < 0.01 * float(app.mean())
    assert np.std(resid.real) == pytest.approx(sigma, rel=0.1)
    assert np.std(resid.imag) == pytest.approx(sigma, rel=0.1)


def test_auto_selection_and_caltables_readable(calibrated):
    from casacore import tables

    for ref in calibrated.outputs["caltables"]:
        with tables.table(ref.path, ack=False) as t:
            assert t.info()["type"] == "Calibration"
            assert t.getkeyword("MSName").endswith(".ms")


def test_calibrator_not_in_beam_is_a_clear_error(group):
    root, ms, _ = group
    stage = CalibrationStage({"output_dir": str(root / "bad"), "calibrator": "3C286"})
    with pytest.raises(InputError, match="3C286.*not usable"):
        stage.execute(PipelineContext(inputs={"ms": ms}))
    assert not (root / "bad").exists() or not any((root / "bad").iterdir())


def test_failed_qa_writes_nothing(group):
    """Solutions failing QA: nothing written, and a ``RoleUnfit`` naming the calibrator, so
    that the night runs the group again as a target (``pipeline.role_fallback``)."""
    from dsa110_pipeline.errors import RoleUnfit

    root, ms, _ = group
    stage = CalibrationStage({"output_dir": str(root / "qa"), "qa": {"min_median_snr": 1e9}})
    with pytest.raises(RoleUnfit, match="calibrator .*: solutions failed QA"):
        stage.execute(PipelineContext(inputs={"ms": ms}))
    assert not glob.glob(str(root / "qa" / "*"))


def test_config_is_typed():
    with pytest.raises(ValueError):
        CalibrationStage({"min_beam": 2.0})
    with pytest.raises(ValueError):
        CalibrationStage({"no_such_key": 1})
    assert math.isclose(CalibrationStage().config.min_beam, 0.5)


def test_field_sources_from_catalog_enter_the_model(tmp_path):
    """Field sources left out of the model bias the gains; modelled from a catalog they
    do not."""
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    cat = tmp_path / "field.csv"
    rows = [(343.49 + dra, 16.148 + ddec, s) for dra, ddec, s in
            ((0.8, 0.3, 3.0), (-0.6, -0.5, 2.5), (0.3, -0.9, 2.0), (-1.1, 0.6, 2.0))]
    cat.write_text("name,ra_deg,dec_deg,flux_jy\n" + "".join(
        f"F{i},{ra},{dec},{s}\n" for i, (ra, dec, s) in enumerate(rows)))
    cfg = SimulationConfig(out_dir=tmp_path / "raw", n_antennas=16, n_subbands=1,
                           n_channels=16, catalog=cat, calibrator="3C454.3", seed=4,
                           jitter_s=0, nthreads=2, dead_antennas=0, rfi=False)
    g = simulate_observation(cfg).groups[0]
    ms = ConversionStage({"output_dir": str(tmp_path / "ms"), "expected_subbands": [0],
                          "scratch_dir": str(tmp_path / "scr")}).execute(PipelineContext(
        inputs={"subband_files": [ProductRef.for_path("uvh5", f) for f in g.files]})
    ).outputs["ms"]
    truth = np.load(g.truth_npz)
    errors = {}
    for label, extra in (("without", {}), ("with", {"field_catalog": str(cat)})):
        out = CalibrationStage({"output_dir": str(tmp_path / label), **extra}).execute(
            PipelineContext(inputs={"ms": ms}))
        B = read_caltable(out.outputs["caltables"][0].path)
        G = read_caltable(out.outputs["caltables"][1].path)
        truth_g, good = _truth_total(truth, B.freqs)
        sol = G.gains[:1] * B.gains[0][None]
        t0 = np.argmin(np.abs(np.unique(truth["time_array"]) - truth["time_array"][0]))
        ref = B.refant
        with np.errstate(invalid="ignore", divide="ignore"):  # absent antennas are 0
            r = (sol[0] * np.conj(sol[0, ref:ref + 1]) / np.abs(sol[0, ref:ref + 1])) / (
                truth_g[t0] * np.conj(truth_g[t0, ref:ref + 1])
                / np.abs(truth_g[t0, ref:ref + 1]))
        use = good.copy()
        use[ref] = False
        errors[label] = float(np.sqrt(np.mean((np.abs(r[use]) - 1) ** 2)))
    assert errors["with"] < 0.5 * errors["without"], errors
    assert errors["with"] < 0.02


def test_apply_tables_to_another_ms(calibrated, group, tmp_path):
    """The tables applied to an MS from the outside give the stage's own CORRECTED_DATA."""
    from casacore import tables

    from stages.calibration import apply_tables_to_ms

    _, ms, _ = group
    b, g = (r.path for r in calibrated.outputs["caltables"])
    out, _ = apply_tables_to_ms(ms.path, b, g, tmp_path / "target_cal.ms")
    with tables.table(str(out), ack=False) as t1, \
            tables.table(calibrated.outputs["ms_calibrated"].path, ack=False) as t2:
        c1, c2 = t1.getcol("CORRECTED_DATA"), t2.getcol("CORRECTED_DATA")
        f2 = t2.getcol("FLAG")
    ok = ~f2 & (c1 != 0)
    np.testing.assert_allclose(c1[ok], c2[ok], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="expected a B and a G"):
        apply_tables_to_ms(ms.path, g, b, tmp_path / "x.ms")


def test_apply_stage_for_target_groups(calibrated, group, tmp_path):
    """A target group applies tables from the registry (references without meta)."""
    from casacore import tables

    from stages.calibration import ApplyCalibrationStage

    _, ms, _ = group
    bare = [ProductRef.for_path("caltable", r.path) for r in calibrated.outputs["caltables"]]
    stage = ApplyCalibrationStage({"output_dir": str(tmp_path)})
    out = stage.execute(PipelineContext(inputs={"ms": ms, "caltables": bare[::-1]}))
    stage.validate_outputs(out)
    with tables.table(out.outputs["ms_calibrated"].path, ack=False) as t1, \
            tables.table(calibrated.outputs["ms_calibrated"].path, ack=False) as t2:
        c1, c2, f2 = t1.getcol("CORRECTED_DATA"), t2.getcol("CORRECTED_DATA"), t2.getcol("FLAG")
    ok = ~f2 & (c1 != 0)
    np.testing.assert_allclose(c1[ok], c2[ok], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="B and a G"):
        stage.execute(PipelineContext(inputs={"ms": ms, "caltables": bare[:1]}))
