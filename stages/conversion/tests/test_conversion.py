"""ConversionStage end to end: equality with pyuvdata, real ATA data, bad inputs,
idempotence, a killed run, and (when installed) WSClean."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
from casacore import tables

from dsa110_pipeline.checksum import path_checksum
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.staging import STAGING_PREFIX
from stages.conversion import ConversionStage
from stages.conversion.ms_writer import COMPLETE_KEYWORD

from .synth import make_drift_group

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, memory_limit="2GiB")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def drift_group(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("drift")
    return make_drift_group(d, n_subbands=3, n_channels=8, n_times=4, n_ants=7,
                            nsample_pattern="random", name_jitter_s=40, seed=5)


def _ctx(files: list[Path], client=None, group_id: str | None = None) -> PipelineContext:
    refs = [ProductRef(kind="uvh5", path=str(f)) for f in files]
    ctx = PipelineContext(group_id=group_id, inputs={"subband_files": refs})
    if client is not None:
        ctx = ctx.with_runtime(types.SimpleNamespace(client=client))
    return ctx


def _stage(tmp: Path, **cfg) -> ConversionStage:
    cfg.setdefault("expected_subbands", (0, 1, 2))  # the reduced groups of these tests
    cfg.setdefault("output_dir", str(tmp / "products"))
    cfg.setdefault("scratch_dir", str(tmp / "shm"))
    (tmp / "shm").mkdir(parents=True, exist_ok=True)
    return ConversionStage(cfg)


def _run(stage: ConversionStage, ctx: PipelineContext) -> PipelineContext:
    stage.validate(ctx)
    out = stage.execute(ctx)
    stage.validate_outputs(out)
    return out


def _digest(files: list[Path]) -> dict[str, tuple[str, int]]:
    return {str(f): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
            for f in files}


def _pyuvdata_ms(files: list[Path], out: Path, phase_center: tuple[float, float] | None
                 ) -> Path:
    """The reference: pyuvdata read + (phase) + write_ms, ascending frequencies."""
    from pyuvdata import UVData

    uv = UVData.from_file([str(f) for f in files], file_type="uvh5")
    uv.reorder_freqs(channel_order="freq")
    if phase_center is not None:
        uv.phase(lon=phase_center[0], lat=phase_center[1], cat_name="ref")
    uv.write_ms(str(out))
    return out


def _col(ms: Path | str, col: str, sub: str = "") -> np.ndarray:
    with tables.table(f"{ms}/{sub}" if sub else str(ms), ack=False) as t:
        return t.getcol(col)


def _has_col(ms: Path | str, col: str) -> bool:
    with tables.table(str(ms), ack=False) as t:
        return col in t.colnames()


def assert_ms_equal(ours: Path, ref: Path) -> None:
    """Compare table by table (documented conventions: |CHAN_WIDTH|; SIGMA where WEIGHT>0;
    WEIGHT_SPECTRUM may be left out where it would equal WEIGHT in every channel)."""
    d_o, d_r = _col(ours, "DATA"), _col(ref, "DATA")
    assert d_o.shape == d_r.shape
    assert np.max(np.abs(d_o - d_r)) <= 1e-6 * np.max(np.abs(d_r))
    assert np.max(np.abs(_col(ours, "UVW") - _col(ref, "UVW"))) < 1e-3
    for col in ("FLAG", "ANTENNA1", "ANTENNA2", "TIME", "TIME_CENTROID", "INTERVAL",
                "EXPOSURE", "WEIGHT", "DATA_DESC_ID", "FIELD_ID"):
        np.testing.assert_array_equal(_col(ours, col), _col(ref, col), err_msg=col)
    w = _col(ours, "WEIGHT")
    ref_spectrum = _col(ref, "WEIGHT_SPECTRUM")
    if _has_col(ours, "WEIGHT_SPECTRUM"):
        np.testing.assert_array_equal(_col(ours, "WEIGHT_SPECTRUM"), ref_spectrum)
    else:
        # left out ("auto"): pyuvdata's WEIGHT_SPECTRUM is our WEIGHT in every channel
        np.testing.assert_array_equal(
            ref_spectrum, np.broadcast_to(w[:, None, :], ref_spectrum.shape))
    np.testing.assert_allclose(_col(ours, "SIGMA")[w > 0], _col(ref, "SIGMA")[w > 0],
                               rtol=1e-6)
    np.testing.assert_array_equal(_col(ours, "POSITION", "ANTENNA"),
                                  _col(ref, "POSITION", "ANTENNA"))
    np.testing.assert_array_equal(_col(ours, "NAME", "ANTENNA"), _col(ref, "NAME", "ANTENNA"))
    np.testing.assert_array_equal(_col(ours, "CHAN_FREQ", "SPECTRAL_WINDOW"),
                                  _col(ref, "CHAN_FREQ", "SPECTRAL_WINDOW"))
    np.testing.assert_array_equal(np.abs(_col(ours, "CHAN_WIDTH", "SPECTRAL_WINDOW")),
                                  np.abs(_col(ref, "CHAN_WIDTH", "SPECTRAL_WINDOW")))
    np.testing.assert_array_equal(_col(ours, "CORR_TYPE", "POLARIZATION"),
                                  _col(ref, "CORR_TYPE", "POLARIZATION"))
    np.testing.assert_allclose(_col(ours, "PHASE_DIR", "FIELD"), _col(ref, "PHASE_DIR", "FIELD"),
                               atol=1e-12)
    np.testing.assert_array_equal(_col(ours, "SPECTRAL_WINDOW_ID", "DATA_DESCRIPTION"),
                                  _col(ref, "SPECTRAL_WINDOW_ID", "DATA_DESCRIPTION"))


def _phase_center(ms: Path) -> tuple[float, float]:
    pd = _col(ms, "PHASE_DIR", "FIELD")[0, 0]
    return float(pd[0]), float(pd[1])


# --------------------------------------------------------------------------- conventions
def test_pyuvdata_ms_convention_is_conjugate(drift_group, tmp_path) -> None:
    """Empirical check of the convention we follow: MS DATA = conj(pyuvdata data),
    MS UVW = -(pyuvdata uvw)."""
    from pyuvdata import UVData

    uv = UVData.from_file(str(drift_group[0]), file_type="uvh5")
    uv.reorder_freqs(channel_order="freq")
    uv.phase(lon=1.0, lat=0.6, cat_name="x")
    ms = tmp_path / "conv.ms"
    uv.write_ms(str(ms))
    np.testing.assert_array_equal(_col(ms, "DATA"), np.conj(uv.data_array))
    np.testing.assert_allclose(_col(ms, "UVW"), -uv.uvw_array)


# --------------------------------------------------------------------------- equality
def test_drift_group_equals_pyuvdata(drift_group, client, tmp_path) -> None:
    stage = _stage(tmp_path, chunk_integrations=3)
    before = _digest(drift_group)
    out = _run(stage, _ctx(drift_group, client))
    ref = out.outputs["ms"]
    ms = Path(ref.path)
    assert ref.kind == "ms" and ms.is_dir() and ref.meta["nrows"] == 4 * 28
    assert _digest(drift_group) == before  # inputs untouched
    freqs = _col(ms, "CHAN_FREQ", "SPECTRAL_WINDOW")
    assert freqs.shape == (1, 24) and np.all(np.diff(freqs[0]) > 0)
    with tables.table(str(ms / "OBSERVATION"), ack=False) as t:
        assert t.getcol("TELESCOPE_NAME") == ["OVRO_MMA"]
        assert t.getkeyword("TELESCOPE_NAME_REAL") == "DSA-110"
    # phase centre: the meridian at the group midpoint (RA ~ LST at the midpoint)
    ra, dec = _phase_center(ms)
    reference = _pyuvdata_ms(drift_group, tmp_path / "ref.ms", (ra, dec))
    assert_ms_equal(ms, reference)
    with tables.table(str(ms), ack=False) as t:
        assert t.getkeyword(COMPLETE_KEYWORD) is True
        assert {"ANTENNA", "SPECTRAL_WINDOW", "POLARIZATION", "DATA_DESCRIPTION", "FIELD",
                "OBSERVATION", "FEED", "STATE", "SOURCE", "HISTORY", "POINTING"} <= set(
            t.getkeywords())
    # no staging directory left behind
    assert not any((tmp_path / "shm").iterdir())


def test_subbands_go_only_to_workers_that_see_the_staged_ms(drift_group, client,
                                                           tmp_path) -> None:
    from stages.conversion.stage import DaskRunner

    here = list(client.scheduler_info()["workers"])
    remote = "tcp://192.0.2.7:40001"  # TEST-NET: a worker on another machine

    class Cluster:  # the real client, reporting one more worker elsewhere
        def __getattr__(self, name):
            return getattr(client, name)

        def scheduler_info(self):
            info = client.scheduler_info()
            return {**info, "workers": {**info["workers"], remote: {"nthreads": 1}}}

    runner = ConversionStage._runner(_ctx(drift_group, Cluster()))
    assert isinstance(runner, DaskRunner) and sorted(runner.workers) == sorted(here)
    out = _run(_stage(tmp_path), _ctx(drift_group, Cluster()))
    assert out.metrics["conversion"]["nrows"] > 0
    # no worker on this machine: the subbands are written here, one after the other
    assert ConversionStage._runner(
        _ctx(drift_group, types.SimpleNamespace(
            scheduler_info=lambda: {"workers": {remote: {}}}))) is None


def test_phase_center_is_meridian_at_midpoint(drift_group, tmp_path) -> None:
    from astropy.time import Time

    from dsa110_pipeline.coordinates import earth_location, local_sidereal_time
    from stages.conversion.reader import read_header

    out = _run(_stage(tmp_path, pointing_dec_deg=50.0), _ctx(drift_group))
    ra, dec = _phase_center(Path(out.outputs["ms"].path))
    h = read_header(drift_group[0])
    loc = earth_location(np.radians(h.latitude_deg), np.radians(h.longitude_deg), h.altitude_m)
    tmid = 0.5 * (h.time_array.min() + h.time_array.max())
    lst = local_sidereal_time(np.array([tmid]), loc)[0]
    # ICRS vs apparent differ by precession (~0.2 deg since J2000), not more
    assert abs((ra - lst + np.pi) % (2 * np.pi) - np.pi) < np.deg2rad(0.5)
    assert abs(dec - np.deg2rad(50.0)) < np.deg2rad(0.5)
    assert Time(tmid, format="jd").isot.startswith("2026-01-25T12:00")


def test_ata_pair_equals_pyuvdata(shared_data, client, tmp_path) -> None:
    files = sorted((shared_data / "real" / "ata_3c286").glob("*.uvh5"))
    out = _run(_stage(tmp_path), _ctx(files, client))
    ms = Path(out.outputs["ms"].path)
    freqs = _col(ms, "CHAN_FREQ", "SPECTRAL_WINDOW")
    assert freqs.shape == (1, 32) and np.all(np.diff(freqs[0]) > 0)
    assert freqs[0, 0] == 1252.0e6 and freqs[0, -1] == 1267.5e6
    assert_ms_equal(ms, _ata_reference(files, tmp_path / "ata_ref.ms"))
    with tables.table(str(ms / "OBSERVATION"), ack=False) as t:
        assert t.getcol("TELESCOPE_NAME") == ["ATA"]
    # the ATA files hold impossible values: said, not silently kept
    meta = out.outputs["ms"].meta
    assert meta["unrecorded_nsamples"] == [f.name for f in files]
    assert meta["flagged_absurd_amplitudes"] == 1160  # |V| > 1e6 x median, as above


def _ata_reference(files: list[Path], out: Path) -> Path:
    """pyuvdata's MS of the ATA pair with the conversion's documented corrections: the
    nsamples every sample holds (-1.2e12, never recorded) become 1, and |V| above 1e6 x
    the file's median |V| (up to 4e37) are flagged."""
    from pyuvdata import UVData

    uvs = []
    for f in files:
        uv = UVData.from_file(str(f), file_type="uvh5")
        amp = np.abs(uv.data_array)
        uv.flag_array |= amp > 1e6 * np.median(amp[~uv.flag_array])
        assert np.unique(uv.nsample_array).size == 1 and uv.nsample_array.flat[0] < 0
        uv.nsample_array[:] = 1.0
        uvs.append(uv)
    uv = uvs[0].fast_concat(uvs[1:], axis="freq")
    uv.reorder_freqs(channel_order="freq")
    uv.write_ms(str(out))
    return out


def test_spw_per_subband(drift_group, tmp_path) -> None:
    one = Path(_run(_stage(tmp_path / "a"), _ctx(drift_group)).outputs["ms"].path)
    many = Path(_run(_stage(tmp_path / "b", spw_per_subband=True),
                     _ctx(drift_group)).outputs["ms"].path)
    d1, dn = _col(one, "DATA"), _col(many, "DATA")
    ddid = _col(many, "DATA_DESC_ID")
    assert dn.shape == (3 * 112, 8, 2) and sorted(set(ddid.tolist())) == [0, 1, 2]
    for s in range(3):
        np.testing.assert_array_equal(dn[ddid == s], d1[:, 8 * s:8 * (s + 1)])
    f = _col(many, "CHAN_FREQ", "SPECTRAL_WINDOW")
    np.testing.assert_array_equal(f.ravel(), _col(one, "CHAN_FREQ", "SPECTRAL_WINDOW")[0])


def test_weight_spectrum_kept_where_nsamples_vary(drift_group, tmp_path) -> None:
    """auto: the drift group's random nsamples keep WEIGHT_SPECTRUM (checked against
    pyuvdata in test_drift_group_equals_pyuvdata)."""
    out = _run(_stage(tmp_path), _ctx(drift_group))
    assert out.outputs["ms"].meta["weight_spectrum"] is True
    assert _has_col(out.outputs["ms"].path, "WEIGHT_SPECTRUM")


@pytest.mark.parametrize("change", ["channel", "subband"])
def test_auto_weight_spectrum_rebuilds_when_later_rows_vary(change, tmp_path) -> None:
    """nsamples uniform in the probed first integration but not later: in one row over
    channels, or between subbands. auto must end with WEIGHT_SPECTRUM, equal to pyuvdata."""
    from stages.conversion import convert

    files = make_drift_group(tmp_path / "in", n_subbands=3, n_channels=8, n_times=4,
                             n_ants=7, nsample_pattern="uniform", seed=8)
    with h5py.File(files[1], "r+") as f:
        ns = f["Data/nsamples"][()]
        if change == "channel":
            ns[80, 2] = 3.0  # one channel of a row in the last integration
        else:
            ns[60:] = 2.0  # from the third integration on, this subband differs
        f["Data/nsamples"][...] = ns
    assert convert.weights_channel_uniform(  # the probe misses
        convert.plan_conversion(files, expected_subbands=(0, 1, 2)))
    out = _run(_stage(tmp_path), _ctx(files))
    ms = Path(out.outputs["ms"].path)
    assert out.outputs["ms"].meta["weight_spectrum"] is True and _has_col(ms, "WEIGHT_SPECTRUM")
    assert_ms_equal(ms, _pyuvdata_ms(files, tmp_path / "ref.ms", _phase_center(ms)))
    assert not any((tmp_path / "shm").iterdir())


def test_casacore_writers_equal_direct_tile_writes(drift_group, tmp_path) -> None:
    """The fallback (workers writing through casacore under table locks) and the direct
    tile writes give the same MS."""
    from stages.conversion import convert

    plan = convert.plan_conversion(drift_group, chunk_integrations=3, expected_subbands=(0, 1, 2))
    made = {}
    for direct in (True, False):
        work = tmp_path / f"w{direct}"
        work.mkdir()
        rep = convert.build_ms(plan, work / "x.ms", work, direct_tiles=direct,
                               write_weight_spectrum=True)
        assert rep.direct_tiles is direct
        made[direct] = work / "x.ms"
    for col in ("DATA", "FLAG", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA", "FLAG_ROW", "UVW"):
        np.testing.assert_array_equal(_col(made[True], col), _col(made[False], col),
                                      err_msg=col)


# --------------------------------------------------------------------------- bad inputs
def _corrupt(kind: str, files: list[Path], d: Path) -> list[Path]:
    """A copy of the group with one problem; returns the files to convert."""
    d.mkdir(parents=True)
    copies = [Path(shutil.copy(f, d / f.name)) for f in files]
    victim = copies[1]
    if kind == "missing_subband":
        victim.unlink()
        return [copies[0], copies[2]]
    if kind == "truncated":
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size - 2000)
    elif kind == "corrupt_header":
        with h5py.File(victim, "r+") as f:
            del f["Header/freq_array"]
            f["Header/freq_array"] = np.array([b"garbage"])
    elif kind in ("integration_count", "antennas"):
        other = make_drift_group(d / "other", n_subbands=3, n_channels=8,
                                 n_times=3 if kind == "integration_count" else 4,
                                 n_ants=7 if kind == "integration_count" else 6, seed=5)
        shutil.copy(other[1], victim)
    elif kind == "nan":
        with h5py.File(victim, "r+") as f:
            v = f["Data/visdata"][()]
            v[100, 3, 1] = np.nan + 0j
            del f["Data/visdata"]
            f["Data/visdata"] = v
    return copies


BAD = {
    "missing_subband": "incomplete group: missing sb01",
    "truncated": "truncated or corrupt",
    "corrupt_header": "freq_array",
    "integration_count": "disagree on the integration count",
    "antennas": "integration count|antennas",
    "nan": "NaN/Inf values",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_gives_clear_error_and_no_partial_ms(kind, drift_group, client,
                                                       tmp_path) -> None:
    files = _corrupt(kind, drift_group, tmp_path / "in")
    before = _digest(files)
    stage = _stage(tmp_path)
    with pytest.raises(InputError, match=BAD[kind]) as ei:
        _run(stage, _ctx(files, client))
    culprit = str(tmp_path / "in" / drift_group[1].name)
    assert any(culprit == f or (kind == "missing_subband") for f in ei.value.files), \
        ei.value.files
    products = tmp_path / "products"
    assert not products.exists() or not any(p.name.endswith(".ms") or ".partial-" in p.name
                                            for p in products.iterdir())
    assert not any((tmp_path / "shm").iterdir())  # staging released
    assert _digest(files) == before  # inputs untouched


def test_partial_group_allowed_flags_missing_band(drift_group, tmp_path) -> None:
    files = [drift_group[0], drift_group[2]]
    out = _run(_stage(tmp_path, allow_partial=True), _ctx(files))
    ms = Path(out.outputs["ms"].path)
    assert out.outputs["ms"].meta["missing_subbands"] == ["sb01"]
    freqs = _col(ms, "CHAN_FREQ", "SPECTRAL_WINDOW")[0]
    assert freqs.size == 24 and np.allclose(np.diff(freqs), np.diff(freqs)[0])
    flags, data = _col(ms, "FLAG"), _col(ms, "DATA")
    assert flags[:, 8:16].all() and not np.any(data[:, 8:16])
    full = Path(_run(_stage(tmp_path / "full"), _ctx(drift_group)).outputs["ms"].path)
    np.testing.assert_array_equal(data[:, :8], _col(full, "DATA")[:, :8])
    np.testing.assert_array_equal(data[:, 16:], _col(full, "DATA")[:, 16:])


# --------------------------------------------------------------------------- idempotence
def test_rerun_does_nothing(drift_group, tmp_path) -> None:
    stage = _stage(tmp_path)
    first = _run(stage, _ctx(drift_group))
    ms = Path(first.outputs["ms"].path)
    stamp = {p: p.stat().st_mtime_ns for p in ms.rglob("*")}
    second = _run(stage, _ctx(drift_group))
    assert second.metrics["conversion"]["reused"] is True
    assert second.outputs["ms"].checksum == first.outputs["ms"].checksum
    assert {p: p.stat().st_mtime_ns for p in ms.rglob("*")} == stamp
    good = _col(ms, "DATA")
    # a damaged MS under the final name is not taken for a complete one: changed content
    with tables.table(str(ms), readonly=False, ack=False) as t:
        t.putcell("DATA", 5, np.zeros((24, 2), np.complex64))
    third = _run(stage, _ctx(drift_group))
    assert third.metrics["conversion"]["reused"] is False
    np.testing.assert_array_equal(_col(ms, "DATA"), good)
    # ... or an MS not marked complete (the sidecar checksum updated to match)
    with tables.table(str(ms), readonly=False, ack=False) as t:
        t.putkeyword(COMPLETE_KEYWORD, False)
    sidecar = ms.with_name(ms.name + ".json")
    meta = json.loads(sidecar.read_text())
    meta["checksum"] = path_checksum(ms)
    sidecar.write_text(json.dumps(meta))
    fourth = _run(stage, _ctx(drift_group))
    assert fourth.metrics["conversion"]["reused"] is False


_KILL_SCRIPT = r"""
import sys, time, types
from pathlib import Path
from stages.conversion import tiles
cls, name = tiles.TileWriter, "write"
orig = getattr(cls, name)
def slow_write(self, *a, **k):
    orig(self, *a, **k)
    Path(sys.argv[3]).touch()
    time.sleep(60)
setattr(cls, name, slow_write)
from dsa110_pipeline.context import PipelineContext, ProductRef
from stages.conversion import ConversionStage
files = sys.argv[4:]
ctx = PipelineContext(inputs={"subband_files": [ProductRef(kind="uvh5", path=f) for f in files]})
ConversionStage({"output_dir": sys.argv[1], "scratch_dir": sys.argv[2],
                 "expected_subbands": [0, 1, 2]}).execute(ctx)
"""


def test_killed_mid_write_then_rerun_is_correct(drift_group, tmp_path) -> None:
    products, shm, flag = tmp_path / "products", tmp_path / "shm", tmp_path / "writing"
    shm.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(products), str(shm),
                             str(flag), *map(str, drift_group)], cwd=REPO)
    deadline = time.time() + 120
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert flag.exists(), "the conversion never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = [p for p in shm.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert stale  # the killed run left its staging directory
    assert not products.exists() or not any(p.suffix == ".ms" for p in products.iterdir())
    out = _run(_stage(tmp_path), _ctx(drift_group))
    ms = Path(out.outputs["ms"].path)
    assert not any(p.exists() for p in stale)  # cleaned at the next start
    good = Path(_run(_stage(tmp_path / "clean"), _ctx(drift_group)).outputs["ms"].path)
    np.testing.assert_array_equal(_col(ms, "DATA"), _col(good, "DATA"))
    np.testing.assert_array_equal(_col(ms, "WEIGHT"), _col(good, "WEIGHT"))


# --------------------------------------------------------------------------- simulator
def _simulate(out: Path, **kw):
    sim = pytest.importorskip("dsa110_pipeline.simulate")
    cfg = dict(out_dir=out, n_antennas=8, n_subbands=2, n_channels=8, n_integrations=4,
               n_sources=3, noise=False, rfi=False, seed=1)
    cfg.update(kw)
    return sim.simulate_observation(sim.SimulationConfig(**cfg))


def _pyuvdata_ms_sim(files: list[Path], out: Path, phase_center: tuple[float, float]) -> Path:
    """pyuvdata reference for simulated files (float32 uvw: read one by one, then concat)."""
    from pyuvdata import UVData

    from dsa110_pipeline.simulate import PYUVDATA_READ_KWARGS

    uvs = [UVData.from_file(str(f), **PYUVDATA_READ_KWARGS) for f in files]
    for u in uvs:
        u.uvw_array = u.uvw_array.astype(np.float64)
    uv = uvs[0].fast_concat(uvs[1:], axis="freq", run_check=False) if len(uvs) > 1 else uvs[0]
    uv.reorder_freqs(channel_order="freq")
    uv.phase(lon=phase_center[0], lat=phase_center[1], cat_name="ref")
    uv.write_ms(str(out), run_check=False)
    return out


def test_simulated_group_equals_pyuvdata(client, tmp_path) -> None:
    res = _simulate(tmp_path / "sim")
    files = res.groups[0].files
    before = _digest(files)
    out = _run(_stage(tmp_path, expected_subbands=(0, 1)), _ctx(files, client))
    ms = Path(out.outputs["ms"].path)
    ra, dec = _phase_center(ms)
    assert abs(dec - np.deg2rad(res.config.dec_deg)) < np.deg2rad(0.5)  # pointing dec
    assert_ms_equal(ms, _pyuvdata_ms_sim(files, tmp_path / "ref.ms", (ra, dec)))
    assert _digest(files) == before
    # DSA-110 nsamples are the same in every channel: auto leaves WEIGHT_SPECTRUM out
    assert out.outputs["ms"].meta["weight_spectrum"] is False
    assert not _has_col(ms, "WEIGHT_SPECTRUM")


@pytest.mark.wsclean
def test_wsclean_images_brightest_source_at_right_pixel(tmp_path) -> None:
    if shutil.which("wsclean") is None:
        pytest.skip("wsclean is not installed (apt-get install -y wsclean)")
    from astropy.io import fits
    from astropy.wcs import WCS

    res = _simulate(tmp_path / "sim", n_antennas=96, dead_antennas=0, gains=False,
                    bandpass=False, seed=3)
    truth = json.loads(Path(res.groups[0].truth_json).read_text())
    src = max(truth["sources"], key=lambda s: s["apparent_flux_jy_mid"])
    out = _run(_stage(tmp_path, expected_subbands=(0, 1)), _ctx(res.groups[0].files))
    ms = Path(out.outputs["ms"].path)
    name = tmp_path / "img"
    cmd = ["wsclean", "-quiet", "-niter", "0", "-size", "360", "360", "-scale", "2arcmin",
           "-maxuv-l", "400", "-pol", "xx", "-no-update-model-required", "-name", str(name),
           str(ms)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    with fits.open(f"{name}-dirty.fits") as hdul:
        img = hdul[0].data[0, 0]
        wcs = WCS(hdul[0].header).celestial
    py, px = np.unravel_index(np.argmax(img), img.shape)
    sx, sy = wcs.world_to_pixel_values(src["ra_deg"], src["dec_deg"])
    print("wsclean peak", (px, py), "source", (sx, sy), src["apparent_flux_jy_mid"])
    assert abs(px - sx) <= 1.0 and abs(py - sy) <= 1.0, ((px, py), (sx, sy), src)


def test_subband_writer_stops_waiting_when_the_ms_creator_is_killed(tmp_path):
    """A subband task buffering for an MS whose creating process died (a killed worker)
    gives up at once instead of holding its worker's thread until the timeout."""
    import json
    import socket
    import subprocess
    import sys

    from dsa110_pipeline.errors import InputError
    from dsa110_pipeline.staging import MARKER_NAME, STAGING_PREFIX
    from stages.conversion.ready import LocalReady
    from stages.conversion.sinks import LazyRegionSink

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    lease = tmp_path / f"{STAGING_PREFIX}{proc.pid}-abc"
    (lease / "work").mkdir(parents=True)
    (lease / MARKER_NAME).write_text(json.dumps({"host": socket.gethostname(),
                                                 "pid": proc.pid, "started": 1.0}))
    sink = LazyRegionSink(str(lease / "g.ms"), LocalReady(), limit=1 << 20,
                          work_dir=str(lease / "work"), timeout_s=600.0)
    sink.write(0, 0, np.zeros((2, 4, 2), np.complex64), np.zeros((2, 4, 2), bool), None)
    with pytest.raises(InputError, match="its creator was killed"):
        sink.close()


def _await_layouts(ready):
    """A task: what a subband worker does before writing (wait, then read the layouts)."""
    import time

    t0 = time.monotonic()
    while not ready.wait(0.5):
        pass
    return ready.layouts(), time.monotonic() - t0


def test_ready_signal_crosses_the_cluster_without_files(client, tmp_path) -> None:
    """The creator's signal reaches a task already waiting on a worker, with the layouts
    it was set with; before that a task sees it unset; released, it is gone."""
    import time

    from stages.conversion.ready import DaskReady

    ready = DaskReady(client)
    assert client.submit(lambda r: r.wait(0), ready, pure=False).result() is False
    fut = client.submit(_await_layouts, ready, pure=False)
    time.sleep(1.0)
    assert not fut.done()  # it waits on the scheduler
    layouts = {"DATA": {"path": str(tmp_path / "table.f1_TSM0"), "rows": [4, 8]}}
    ready.set(layouts)
    got, waited = fut.result(timeout=30)
    assert got == layouts and waited > 0.2
    ready.release()
    assert client.submit(lambda r: r.wait(0), ready, pure=False).result() is False
