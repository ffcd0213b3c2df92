"""``run --watch`` on a replayed simulated night with the real stages: files written slowly
and out of order, a subband landing after its group's timeout, SIGTERM, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dsa110_pipeline.simulate.replay import replay

N_GROUPS = 4
SMALL = ["--set", "conversion.expected_subbands=[0,1,2,3]", "--set", "imaging.npix=512",
         "--set", "imaging.clean.niter=300", "--set", "orchestrator.n_workers=2",
         "--set", "orchestrator.retry_backoff_s=0.2", "--set", "watch.settle_s=1.5",
         "--set", "watch.poll_s=0.5", "--set", "watch.min_files=3"]


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    from dsa110_pipeline.config import load_config
    from dsa110_pipeline.simulate.demo import simulate_demo_night

    cfg = load_config(overrides=["demo.n_antennas=24", "demo.n_subbands=4",
                                 "demo.n_integrations=12", "demo.n_sources=20",
                                 f"demo.n_groups={N_GROUPS}"])
    return simulate_demo_night(tmp_path_factory.mktemp("sim") / "night", cfg)


def _service(inp: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--watch", "--input", str(inp),
           "--output", str(out), "--log-json", "--log-file", str(out.parent / "watch.log"),
           *SMALL, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _status(out: Path) -> dict:
    try:
        return json.loads((out / "watch_status.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _groups(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / "state.sqlite") as c:
        c.row_factory = sqlite3.Row
        return {r["group_id"]: dict(r) for r in c.execute("select * from groups")}


def test_replayed_night_with_slow_writes_and_a_late_subband(night, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    # a subband of the second group, a target (name order is group order: the filename
    # jitter is far below the cadence). The service looks at the files between batches,
    # so a file is late only once a look has seen its group's timeout pass: it lands
    # long after the timeout (a file that lands while a batch runs past the timeout still
    # joins its group on time, which is right)
    late = sorted(night.glob("*_sb??.hdf5"))[5].name
    proc = _service(inp, out, "--set", "watch.late_timeout_s=8")
    try:
        _wait(lambda: _status(out).get("state") == "watching", 60, "the service up")
        replay(night, inp, speed=40, jitter_s=1.0, slow_write_s=3.0, slow_fraction=0.3,
               late=[late], late_s=45.0, seed=3)
        _wait(lambda: _status(out).get("groups_done") == N_GROUPS and not
              _status(out).get("open_groups"), 120, "every group done")
        _wait(lambda: late in {Path(x["file"]).name for x in _status(out).get(
            "late_files", [])}, 20, f"{late} reported late")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, proc.stderr.read().decode()[-2000:]
    status = _status(out)
    assert status["state"] == "stopped"
    groups = _groups(out)
    assert len(groups) == N_GROUPS and {g["status"] for g in groups.values()} == {"done"}
    late_files = {Path(x["file"]).name: x["group_id"] for x in status["late_files"]}
    assert late in late_files
    lat = [json.loads(x) for x in (out / "latency.jsonl").read_text().splitlines()]
    assert sorted(x["group_id"] for x in lat) == sorted(groups)
    # the group whose subband came late proceeded partial (on a loaded machine a slow
    # writer may make another group late too: every late file's group is a partial one)
    partial = {x["group_id"] for x in lat if x["partial"]}
    assert set(late_files.values()) <= partial and late_files[late] in partial
    assert all(0 < x["latency_s"] < 60 for x in lat)
    with sqlite3.connect(out / "state.sqlite") as c:
        assert c.execute("select count(*) from verdicts").fetchone()[0] == N_GROUPS


def test_sigkill_mid_night_then_restart_loses_and_duplicates_nothing(night, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    proc = _service(inp, out)
    feeder = threading.Thread(target=replay, args=(night, inp), kwargs={"speed": 60})
    feeder.start()

    def stage_runs() -> int:
        try:
            with sqlite3.connect(out / "state.sqlite") as c:
                return c.execute("select count(*) from stage_runs").fetchone()[0]
        except sqlite3.Error:
            return 0

    _wait(lambda: stage_runs() >= 5, 120, "the night under way")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    feeder.join()
    killed_at = stage_runs()
    assert killed_at < 5 * N_GROUPS, "the night finished before the kill"
    again = _service(inp, out, "--stop-after", str(N_GROUPS))
    assert again.wait(180) == 0, again.stderr.read().decode()[-2000:]
    groups = _groups(out)
    assert len(groups) == N_GROUPS and {g["status"] for g in groups.values()} == {"done"}
    with sqlite3.connect(out / "state.sqlite") as c:
        prods = c.execute("select group_id, key, path from products").fetchall()
        ok = c.execute("select group_id, stage, count(*) from stage_runs where status in "
                       "('ok', 'cached') group by group_id, stage").fetchall()
    assert len(prods) == len(set(prods)) and all(Path(p).exists() for *_, p in prods)
    assert {(g, s) for g, s, _ in ok} == {(g, s) for g in groups for s in (
        ("conversion", "calibration", "imaging", "validation", "photometry")
        if groups[g]["role"] == "calibrator" else
        ("conversion", "apply_calibration", "imaging", "validation", "photometry"))}
    lat = [json.loads(x)["group_id"] for x in (out / "latency.jsonl").read_text().splitlines()]
    assert len(lat) == len(set(lat))  # no group reported twice
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
