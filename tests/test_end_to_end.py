"""A small simulated night through `python -m dsa110_pipeline.run`, end to end.

Scale is reduced (24 antennas, 4 subbands, 12 integrations, 512² images) so that a night
takes well under a minute; the full-scale run is the perf suite's job.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dsa110_pipeline.run import main

SMALL = ["--set", "demo.n_antennas=24", "--set", "demo.n_subbands=4",
         "--set", "conversion.expected_subbands=[0,1,2,3]",
         "--set", "demo.n_integrations=12", "--set", "demo.n_sources=20",
         "--set", "imaging.npix=512", "--set", "imaging.clean.niter=300",
         "--set", "orchestrator.n_workers=2", "--set", "orchestrator.retry_backoff_s=0.2"]


@pytest.fixture(scope="module")
def night_input(tmp_path_factory) -> Path:
    """The demo night's subband files, simulated once for the module."""
    from dsa110_pipeline.config import load_config
    from dsa110_pipeline.simulate.demo import simulate_demo_night

    cfg = load_config(overrides=[a for a in SMALL if a != "--set" and a.startswith("demo.")])
    root = tmp_path_factory.mktemp("night")
    incoming = simulate_demo_night(root / "incoming", cfg)
    # the truth leaves the input: a night must run on its survey catalog alone
    judges = root / "judges"
    judges.mkdir()
    for p in incoming.glob("*_truth*"):
        p.rename(judges / p.name)
    assert (incoming / "survey_catalog.csv").is_file()
    return incoming


def _copy_input(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _groups(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / "state.sqlite") as c:
        c.row_factory = sqlite3.Row
        return {r["group_id"]: dict(r) for r in c.execute("select * from groups")}


def _products(out: Path) -> list[dict]:
    with sqlite3.connect(out / "state.sqlite") as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute("select * from products")]


def _check_db_agrees_with_disk(out: Path) -> None:
    prods = _products(out)
    assert prods, "no products recorded"
    for p in prods:
        assert Path(p["path"]).exists(), f"recorded product missing on disk: {p['path']}"
    keys = [(p["group_id"], p["key"], p["path"]) for p in prods]
    assert len(keys) == len(set(keys))
    recorded = {Path(p["path"]).resolve() for p in prods}
    for ms in out.glob("*.ms"):
        assert ms.resolve() in recorded, f"MS on disk but not in the state DB: {ms}"
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, f"partial products left: {leftovers}"


def run_and_kill(inp: Path, out: Path, after_stage_runs: int) -> int:
    """Start a night in a process group and SIGKILL the whole group (the run, its dask
    workers and their trackers) once the state DB holds ``after_stage_runs`` stage runs;
    returns how many it held."""
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--input", str(inp),
           "--output", str(out), "--log-json", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = out / "state.sqlite"
    deadline = time.time() + 240
    n = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            with sqlite3.connect(db) as c:
                n = c.execute("select count(*) from stage_runs").fetchone()[0]
        except sqlite3.Error:
            continue
        if n >= after_stage_runs:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return n


def _run(inp: Path, out: Path, *extra: str) -> int:
    return main(["--input", str(inp), "--output", str(out), "--log-json", *SMALL, *extra])


def test_night_end_to_end(night_input, tmp_path):
    out = tmp_path / "out"
    rc = _run(night_input, out)
    groups = _groups(out)
    assert len(groups) == 3 and rc == 0
    roles = sorted(g["role"] for g in groups.values())
    assert roles == ["calibrator", "target", "target"]
    assert all(g["status"] == "done" for g in groups.values())
    by_group: dict[str, set] = {}
    for p in _products(out):
        by_group.setdefault(p["group_id"], set()).add(p["key"])
    for gid, g in groups.items():
        keys = by_group[gid]
        assert {"ms", "ms_calibrated", "images", "validation", "photometry"} <= keys
        if g["role"] == "calibrator":
            assert "caltables" in keys
    with sqlite3.connect(out / "state.sqlite") as c:
        verdicts = dict(c.execute("select group_id, verdict from verdicts").fetchall())
        cal = c.execute("select calibrator from calibrations").fetchall()
    assert set(verdicts) == set(groups)
    with sqlite3.connect(out / "state.sqlite") as c:
        wins = sorted(c.execute("select window_id, status from windows").fetchall())
    assert wins == [("lightcurves@2026-01-25T00:00:00", "done"),
                    ("mosaic@2026-01-25T22:00:00", "done")]
    assert (out / "lightcurves.sqlite").exists()
    assert cal == [("J2253+1608",)]
    import json

    for mj in (out / "validation").glob("*_metrics.json"):
        assert Path(json.loads(mj.read_text())["reference"]).name == "survey_catalog.csv"
    for name in ("manifest.json", "manifest.md", "night_summary.html", "profile.png",
                 "dask-report.html"):
        assert (out / name).exists(), name
    _check_db_agrees_with_disk(out)
    # A second run does nothing: every group is finished.
    t0 = time.perf_counter()
    assert _run(night_input, out) == 0
    assert time.perf_counter() - t0 < 60
    runs = sqlite3.connect(out / "state.sqlite").execute(
        "select count(*) from stage_runs").fetchone()[0]
    assert runs == 17  # 3 groups x 5 stages, the night's light curves, the hour's mosaic


def test_corrupt_subband_quarantines_only_its_group(night_input, tmp_path):
    inp = _copy_input(night_input, tmp_path / "in")
    victim = sorted(inp.glob("*_sb02.hdf5"))[-1]  # a target group's subband
    with open(victim, "r+b") as fh:
        fh.truncate(victim.stat().st_size // 3)
    out = tmp_path / "out"
    rc = _run(inp, out)
    groups = _groups(out)
    bad = [g for g in groups.values() if g["status"] == "quarantined"]
    assert rc == 1 and len(bad) == 1
    assert victim.name in bad[0]["message"]
    assert sum(g["status"] == "done" for g in groups.values()) == 2
    qdir = out / "quarantine" / bad[0]["group_id"].replace(":", "")
    assert (qdir / "errors.json").exists()
    _check_db_agrees_with_disk(out)


def test_sigkill_mid_night_then_rerun_completes(night_input, tmp_path):
    out = tmp_path / "out"
    killed_after = run_and_kill(night_input, out, after_stage_runs=3)
    assert 3 <= killed_after < 12, "the run was not killed mid-night"
    assert _run(night_input, out) == 0
    assert all(g["status"] == "done" for g in _groups(out).values())
    _check_db_agrees_with_disk(out)


def _ms_data(path: str) -> np.ndarray:
    from casacore.tables import table

    with table(path, ack=False) as t:
        return t.getcol("DATA")


def _fits(path: str) -> np.ndarray:
    from astropy.io import fits

    return fits.getdata(path)


def _product_map(out: Path) -> dict[tuple[str, str], str]:
    return {(p["group_id"], Path(p["path"]).name): p["path"] for p in _products(out)}


def test_real_cluster_gives_the_same_products(night_input, tmp_path):
    from tests.cluster import real_cluster

    local = tmp_path / "local"
    assert _run(night_input, local) == 0
    remote = tmp_path / "remote"
    with real_cluster(2, workdir=tmp_path) as (address, workers):
        assert _run(night_input, remote, "--scheduler", address) == 0
    a, b = _product_map(local), _product_map(remote)
    assert set(a) == set(b)
    for k, pa in a.items():
        if pa.endswith(".ms"):
            np.testing.assert_array_equal(_ms_data(pa), _ms_data(b[k]))
        elif pa.endswith("-image.fits"):
            np.testing.assert_allclose(_fits(pa), _fits(b[k]), rtol=0, atol=1e-6)


def _staging_of(pgid: int) -> bool:
    """Whether a process of process group ``pgid`` holds a staging directory in /dev/shm."""
    for d in Path("/dev/shm").glob("dsa110-staging-*"):
        try:
            if os.getpgid(int(d.name.split("-")[2])) == pgid:
                return True
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            continue
    return False


def test_worker_killed_mid_task_night_completes(night_input, tmp_path):
    """A worker killed under a stage: dask reruns the stage elsewhere, the night completes,
    and the rerun is logged (stage and group) and counted in the stage's attempts."""
    import json

    from tests.cluster import real_cluster

    out = tmp_path / "out"
    with real_cluster(2, workdir=tmp_path) as (address, workers):
        cmd = [sys.executable, "-X", "faulthandler", "-m", "dsa110_pipeline.run",
               "--input", str(night_input), "--output", str(out), "--log-json",
               "--scheduler", address, *SMALL]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # Kill worker 0 as soon as it converts a group (its staging directory appears).
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if _staging_of(workers[0].pid):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the night ended before worker 0 converted a group"
            os.killpg(workers[0].pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack to stderr
            _, err = proc.communicate()
            logs = "".join(f"\n--- {p.name}\n" + p.read_text()[-3000:]
                           for p in sorted(tmp_path.glob("*.log")))
            pytest.fail("the night hung after the worker was killed; the run's threads:\n"
                        + err.decode()[-6000:] + logs)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.decode()[-2000:]
    assert all(g["status"] == "done" for g in _groups(out).values())
    _check_db_agrees_with_disk(out)
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    lost = [r for r in logs if r["event"].startswith("dask worker lost mid-stage")]
    assert len(lost) == 1 and lost[0]["level"] == "warning", lost
    stage, group = lost[0]["stage"], lost[0]["group"]
    assert stage == f"{group}/conversion" and lost[0]["workers_lost"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    recs = {r["name"]: r for r in manifest["groups"][group]["records"]}
    assert recs["conversion"]["attempts"] == 2
    with sqlite3.connect(out / "state.sqlite") as c:
        attempts = c.execute("select attempts from stage_runs where group_id=? and "
                             "stage='conversion'", (group,)).fetchall()
    assert attempts == [(2,)]


TOY_STAGE = '''
"""A toy window stage: the night's verdicts in one JSON file."""
import json
from pathlib import Path

from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.window import WindowStage


class NightLog(WindowStage):
    name = "night_log"
    requires = ("validation",)
    produces = ("night_log",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        info = self.window(ctx)
        verdicts = {g: ref.meta["verdict"]
                    for g, ref in self.group_products(ctx, "validation").items()}
        final = self.products_dir(ctx, "windows") / (info.window_id.replace(":", "") + ".json")
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(final) as tmp:
            tmp.write_text(json.dumps({"verdicts": verdicts, "gaps": info.gaps}))
        return ctx.with_output("night_log", ProductRef.for_path("json", final))
'''

TOY_CONFIG = """
pipeline:
  stages:
    night_log: toy_night_log:NightLog
  roles:
    calibrator: [conversion, calibration, imaging, validation, photometry, lightcurves,
                 mosaic, night_log]
    target: [conversion, apply_calibration, imaging, validation, photometry, lightcurves,
             mosaic, night_log]
  windows:
    night_log: night
"""


def test_a_toy_window_stage_is_a_folder_and_config_lines(night_input, tmp_path, monkeypatch,
                                                          capsys):
    """The stage guide's walk-through: a window stage added with no framework edit runs once
    for the night, after every group, names the quarantined group as a gap, and is rerun
    alone with --only-stage."""
    pkg = tmp_path / "site" / "toy_night_log"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(TOY_STAGE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    config = tmp_path / "toy.yaml"
    config.write_text(TOY_CONFIG)
    inp = _copy_input(night_input, tmp_path / "in")
    victim = sorted(inp.glob("*_sb02.hdf5"))[-1]  # the last target group's subband
    with open(victim, "r+b") as fh:
        fh.truncate(victim.stat().st_size // 3)
    out = tmp_path / "out"
    assert _run(inp, out, "--config", str(config), "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "windows: 3" in dry and "night_log@2026-01-25T00:00:00" in dry
    assert _run(inp, out, "--config", str(config)) == 1  # the quarantined group
    groups = _groups(out)
    bad = next(g for g, r in groups.items() if r["status"] == "quarantined")
    with sqlite3.connect(out / "state.sqlite") as c:
        c.row_factory = sqlite3.Row
        (win,) = [dict(r) for r in c.execute("select * from windows where stage='night_log'")]
        runs = c.execute("select group_id, stage from stage_runs where stage='night_log'"
                         ).fetchall()
    assert win["status"] == "done" and len(runs) == 1
    import json

    log = json.loads(next((out / "windows").glob("*.json")).read_text())
    assert set(log["verdicts"]) == set(groups) - {bad}
    with sqlite3.connect(out / "state.sqlite") as c:
        assert log["verdicts"] == dict(c.execute("select group_id, verdict from verdicts"))
    gaps = json.loads(win["gaps"])
    assert list(log["gaps"]) == [bad] and list(gaps) == [bad]
    assert victim.name in gaps[bad]  # the state DB says why
    manifest = json.loads((out / "manifest.json").read_text())
    assert win["window_id"] in [w["window_id"] for w in manifest["windows"]]
    # the window alone, again: group stages do not run and the groups keep their states
    assert _run(inp, out, "--config", str(config), "--rerun", "--only-stage", "night_log") == 1
    with sqlite3.connect(out / "state.sqlite") as c:
        n = c.execute("select stage, count(*) from stage_runs group by stage").fetchall()
    assert dict(n)["night_log"] == 2 and dict(n)["imaging"] == 2
    assert _groups(out)[bad]["status"] == "quarantined"
    _check_db_agrees_with_disk(out)
