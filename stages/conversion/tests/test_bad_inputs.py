"""Issue 20: honest errors on broken inputs written by the simulator, then broken.

Each test copies a tiny simulated night (4 antennas, 2 subbands of 4 channels, 6
integrations: groups 77 s apart, more than the names' jitter) and breaks the copy the
way the bad-input battery did.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from casacore import tables

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.log import configure_logging
from stages.conversion import ConversionStage
from stages.conversion.night import discover_night

from .test_conversion import _digest


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> list[list[Path]]:
    """Two simulated groups of subbands sb00 and sb01 (files per group, sb order)."""
    from dsa110_pipeline.simulate import SimulationConfig, simulate_observation

    out = tmp_path_factory.mktemp("night")
    res = simulate_observation(SimulationConfig(
        out_dir=out, n_groups=2, n_antennas=4, n_subbands=2, n_channels=4, n_integrations=6,
        n_sources=1, noise=False, rfi=False, seed=1, nthreads=1, jitter_s=0,
        dead_antennas=0))
    return [list(g.files) for g in res.groups]


def _copy_night(night: list[list[Path]], dst: Path) -> list[list[Path]]:
    dst.mkdir(parents=True)
    return [[Path(shutil.copy(f, dst / f.name)) for f in g] for g in night]


def _convert(files: list[Path], tmp: Path, **cfg) -> PipelineContext:
    cfg.setdefault("output_dir", str(tmp / "products"))
    cfg.setdefault("scratch_dir", str(tmp / "shm"))
    (tmp / "shm").mkdir(parents=True, exist_ok=True)
    ctx = PipelineContext(inputs={"subband_files": [ProductRef(kind="uvh5", path=str(f))
                                                    for f in files]})
    return ConversionStage(cfg).execute(ctx)


def _spec_files(spec) -> list[Path]:
    return [Path(r.path) for r in spec.inputs["subband_files"]]


def _logged(fn, *args, **kwargs):
    """(result of fn(*args, **kwargs), JSON log records it wrote)."""
    buf = io.StringIO()
    configure_logging(json_lines=True, stream=buf)
    try:
        out = fn(*args, **kwargs)
    finally:
        configure_logging()
    return out, [json.loads(line) for line in buf.getvalue().splitlines()]


# ------------------------------------------------------------------ missing edge subband
def test_missing_edge_subband_is_an_input_error_by_default(night, tmp_path) -> None:
    files = night[0]
    before = _digest(files)
    # a DSA-110 group has 16 subbands: by default the edges are as required as the middle
    with pytest.raises(InputError, match="incomplete group: missing sb02, sb03, .*sb15"):
        _convert(files, tmp_path / "a")
    # sb00 (an edge) missing from a reduced observation of sb00..sb01
    with pytest.raises(InputError, match=r"incomplete group: missing sb00 \(set "
                                         "conversion.allow_partial"):
        _convert(files[1:], tmp_path / "b", expected_subbands=[0, 1])
    assert not (tmp_path / "b" / "products").exists() or not list(
        (tmp_path / "b" / "products").glob("*.ms"))
    assert _digest(files) == before


def test_allow_partial_keeps_the_band_with_the_edge_flagged(night, tmp_path) -> None:
    out = _convert(night[0][1:], tmp_path, expected_subbands=[0, 1], allow_partial=True)
    ref = out.outputs["ms"]
    assert ref.meta["missing_subbands"] == ["sb00"]
    with tables.table(ref.path, ack=False) as t:
        flags = t.getcol("FLAG")
    with tables.table(f"{ref.path}/SPECTRAL_WINDOW", ack=False) as t:
        freqs = t.getcol("CHAN_FREQ")[0]
    # sb00 is the highest subband: the upper half of the ascending band is flagged
    assert freqs.size == 8 and flags[:, 4:].all() and not flags[:, :4].all()


# ------------------------------------------------------------------ discovery of a night
@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles"])
def test_unreadable_file_joins_its_group_in_any_timezone(night, tmp_path, monkeypatch,
                                                         tz) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        files = _copy_night(night[:1], tmp_path / "in")[0]
        victim = files[1]
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size // 3)
        # its name is a minute early, as the correlator's names may be
        early = victim.with_name("2026-01-25T21:59:00_sb01.hdf5")
        victim.rename(early)
        specs = discover_night(tmp_path / "in")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert len(specs) == 1, [s.group_id for s in specs]
    assert early in _spec_files(specs[0])
    with pytest.raises(InputError, match="truncated or corrupt") as ei:
        _convert(_spec_files(specs[0]), tmp_path, expected_subbands=[0, 1])
    assert str(early) in ei.value.files


def test_absurd_timestamp_fails_only_its_group(night, tmp_path) -> None:
    groups = _copy_night(night, tmp_path / "in")
    victim = groups[1][0]
    with h5py.File(victim, "r+") as f:
        f["Header/time_array"][...] = 1e20
    specs = discover_night(tmp_path / "in")  # no ErfaError: the night goes on
    assert len(specs) == 2
    by_file = {f: s for s in specs for f in _spec_files(s)}
    assert set(_spec_files(by_file[victim])) == set(groups[1])
    with pytest.raises(InputError, match="time_array holds 1e\\+20, not a plausible Julian "
                                         "date") as ei:
        _convert(_spec_files(by_file[victim]), tmp_path / "bad", expected_subbands=[0, 1])
    assert ei.value.files == (str(victim),)
    good = next(s for s in specs if s is not by_file[victim])
    out = _convert(_spec_files(good), tmp_path / "good", expected_subbands=[0, 1])
    assert Path(out.outputs["ms"].path).is_dir()


@pytest.mark.parametrize("same_data", [True, False])
def test_duplicate_subband_names_both_files_and_refuses_the_group(night, tmp_path,
                                                                  same_data) -> None:
    groups = _copy_night(night, tmp_path / "in")
    dup = tmp_path / "in" / "2026-01-25T22:00:09_sb01.hdf5"
    shutil.copy(groups[0][1] if same_data else groups[1][1], dup)
    if not same_data:  # another group's sb01, with this group's times
        with h5py.File(dup, "r+") as f, h5py.File(groups[0][1], "r") as g:
            f["Header/time_array"][...] = g["Header/time_array"][()]
    specs, logs = _logged(discover_night, tmp_path / "in")
    spec = next(s for s in specs if groups[0][0] in _spec_files(s))
    assert dup in _spec_files(spec)  # not dropped silently
    assert any(r["event"] == "duplicate subband files" for r in logs)
    with pytest.raises(InputError, match="two files for subband sb01") as ei:
        _convert(_spec_files(spec), tmp_path, expected_subbands=[0, 1])
    assert set(ei.value.files) == {str(groups[0][1]), str(dup)}


def test_ignored_files_and_dangling_symlinks_are_reported(night, tmp_path) -> None:
    _copy_night(night[:1], tmp_path / "in")
    (tmp_path / "in" / "2026-01-25 22:00:00_sb02.hdf5").write_bytes(b"x")  # bad name
    (tmp_path / "in" / "2026-01-25T22:00:00_sb03.hdf5").symlink_to(tmp_path / "gone.hdf5")
    (tmp_path / "in" / "notes.txt").write_text("not data")
    specs, logs = _logged(discover_night, tmp_path / "in")
    assert len(specs) == 1
    ignored = {Path(r["file"]).name: r["reason"] for r in logs
               if r["event"] == "input file ignored"}
    assert set(ignored) == {"2026-01-25 22:00:00_sb02.hdf5", "2026-01-25T22:00:00_sb03.hdf5"}
    assert "name is not" in ignored["2026-01-25 22:00:00_sb02.hdf5"]
    assert "dangling symlink" in ignored["2026-01-25T22:00:00_sb03.hdf5"]


def test_inputs_untouched_by_discovery(night, tmp_path) -> None:
    files = _copy_night(night, tmp_path / "in")
    before = _digest([f for g in files for f in g])
    discover_night(tmp_path / "in")
    assert _digest([f for g in files for f in g]) == before
    assert np.all([f.is_file() for g in files for f in g])


# ------------------------------------------------------------------ impossible values
def _ms(path: str, col: str, sub: str = "") -> np.ndarray:
    with tables.table(f"{path}/{sub}" if sub else path, ack=False) as t:
        return t.getcol(col)


def test_impossible_weights_and_amplitudes_are_flagged_and_counted(night, tmp_path) -> None:
    files = _copy_night(night[:1], tmp_path / "in")[0]
    with h5py.File(files[0], "r+") as f:  # sb00: the upper half of the ascending band
        ns = f["Data/nsamples"][()]
        fl = f["Data/flags"][()]
        fl[:] = False
        ns[2, ..., 1, 0], ns[3, ..., 2, 1], ns[4, ..., 0, 0] = -1.0, 0.0, -3.0
        f["Data/nsamples"][...] = ns
        f["Data/flags"][...] = fl
        vis = f["Data/visdata"][()]
        vis[5, ..., 3, 1] = 4e37
        f["Data/visdata"][...] = vis
    before = _digest(files)
    out, logs = _logged(_convert, files, tmp_path, expected_subbands=[0, 1])
    meta = out.outputs["ms"].meta
    assert meta["flagged_bad_nsamples"] == 3 and meta["flagged_absurd_amplitudes"] == 1
    events = {r["event"]: r for r in logs}
    assert events["samples with nsamples <= 0 flagged (weight 0)"]["count"] == 3
    assert events["samples with absurd amplitudes flagged"]["count"] == 1
    assert events["samples with absurd amplitudes flagged"]["file"] == str(files[0])
    path = out.outputs["ms"].path
    flags, data = _ms(path, "FLAG"), _ms(path, "DATA")
    assert np.all(_ms(path, "WEIGHT") >= 0) and np.all(np.isfinite(_ms(path, "SIGMA")))
    assert np.max(np.abs(data[~flags])) < 1e6
    # file channel c of sb00 (descending, 4 channels) is MS channel 4 + 3 - c
    for row, c, p in ((2, 1, 0), (3, 2, 1), (4, 0, 0), (5, 3, 1)):
        assert flags[row, 7 - c, p], (row, c, p)
    assert _digest(files) == before


def test_all_zero_subband_is_flagged_and_logged_as_dead(night, tmp_path) -> None:
    files = _copy_night(night[:1], tmp_path / "in")[0]
    with h5py.File(files[1], "r+") as f:
        f["Data/visdata"][...] = 0
    out, logs = _logged(_convert, files, tmp_path, expected_subbands=[0, 1])
    assert out.outputs["ms"].meta["dead_subbands"] == [files[1].name]
    dead = [r for r in logs if r["event"].startswith("dead subband")]
    assert [r["file"] for r in dead] == [str(files[1])]
    flags = _ms(out.outputs["ms"].path, "FLAG")
    assert flags[:, :4].all() and not flags[:, 4:].all()  # sb01 is the lower half


def test_freq_order_disagreeing_with_neighbours_is_an_input_error(night, tmp_path) -> None:
    files = _copy_night(night[:1], tmp_path / "in")[0]
    with h5py.File(files[1], "r+") as f:
        f["Header/freq_array"][...] = f["Header/freq_array"][()][..., ::-1]
    with pytest.raises(InputError, match="freq_array is ascending but .*sb00.hdf5's is "
                                         "descending") as ei:
        _convert(files, tmp_path, expected_subbands=[0, 1])
    assert ei.value.files == (str(files[1]),)


def test_staging_honours_the_runs_scratch_dir(night, tmp_path) -> None:
    """paths.scratch_dir reaches the stage as Runtime.scratch_root (was: always /dev/shm)."""
    from dsa110_pipeline.runner import Runtime

    scratch = tmp_path / "run_scratch"
    scratch.mkdir()
    ctx = PipelineContext(inputs={"subband_files": [ProductRef(kind="uvh5", path=str(f))
                                                    for f in night[0]]})
    ctx = ctx.with_runtime(Runtime(scratch_root=str(scratch)))
    out = ConversionStage({"output_dir": str(tmp_path / "products"),
                           "expected_subbands": [0, 1]}).execute(ctx)
    m = out.metrics["conversion"]
    assert m["scratch_root"] == str(scratch) and m["staged_on_tmpfs"] is True
    assert not list(scratch.iterdir())  # the lease was released


def test_ms_named_after_a_hostile_telescope_name_stays_in_the_output(night, tmp_path) -> None:
    files = _copy_night(night[:1], tmp_path / "in")[0]
    for f in files:
        with h5py.File(f, "r+") as h:
            del h["Header/telescope_name"]
            h["Header/telescope_name"] = np.bytes_("../escaped/DSA")
    out = _convert(files, tmp_path / "run", expected_subbands=[0, 1])
    ms = Path(out.outputs["ms"].path).resolve()
    products = (tmp_path / "run" / "products").resolve()
    assert ms.parent == products, ms
    assert ms.name.startswith("_escaped_DSA_2026-01-25T22")
    assert not (tmp_path / "run" / "escaped").exists()
