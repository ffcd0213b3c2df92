"""Full and read-only output disks, and what SIGKILLed runs leave in /dev/shm (issue 20).

The disks are real tmpfs mounts (root or CAP_SYS_ADMIN needed: skipped otherwise); the
nights are simulated UVH5 files run through ``python -m dsa110_pipeline.run``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dsa110_pipeline.run import main
from tests.test_end_to_end import SMALL, night_input, run_and_kill  # noqa: F401 - the night


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` (``mount -o options``); skips the test where mounting
    is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def _groups(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / "state.sqlite") as c:
        c.row_factory = sqlite3.Row
        return {r["group_id"]: dict(r) for r in c.execute("select * from groups")}


# -- a full output disk ----------------------------------------------------------------

@pytest.mark.parametrize("scratch_on_output", [False, True],
                         ids=["copy-to-full-output", "casacore-writes-on-full-disk"])
def test_full_output_disk_says_no_space_left(night_input, tmp_path, capsys,  # noqa: F811
                                             scratch_on_output) -> None:
    """A 12 MB output disk: the first MS does not fit. Copying it from /dev/shm fails with
    ENOSPC; writing it in place makes casacore abort its dask worker. Either way: one line
    "no space left on <output>", no group left running or quarantined, a manifest."""
    with tmpfs(tmp_path / "disk", "size=12m") as disk:
        out = disk / "out"
        extra = ["--set", f"paths.scratch_dir={disk / 'scratch'}"] if scratch_on_output else []
        t0 = time.perf_counter()
        rc = main(["--input", str(night_input), "--output", str(out), "--log-json",
                   *SMALL, *extra])
        wall = time.perf_counter() - t0
        line = _one_line_error(capsys)
        assert rc == 2, line
        assert "no space left on " in line, line
        where = line.split("no space left on ", 1)[1].split()[0]
        assert where.startswith(str(disk)), line
        groups = _groups(out)
        status = {k: (g["status"], g["failures"]) for k, g in groups.items()}
        assert groups and all(g["status"] == "failed" for g in groups.values()), status
        assert all(g["failures"] == 0 for g in groups.values()), status  # never quarantined
        manifest = json.loads((out / "manifest.json").read_text())
        assert set(manifest["groups"]) == set(groups)
        assert not list(out.glob("*.partial-*")) and not list(out.glob(".staging/dsa110-*"))
        assert wall < 150, f"no retries on a full disk, took {wall:.0f} s"


def test_emergency_manifest_from_the_state_db(tmp_path) -> None:
    """After a storage error the manifest is what the state DB knows; where even that does
    not fit, it says so in the log and raises nothing."""
    from dsa110_pipeline.config import load_config
    from dsa110_pipeline.log import get_logger
    from dsa110_pipeline.reports import _emergency_manifest
    from dsa110_pipeline.state import StateDB

    cfg = load_config()
    with StateDB(tmp_path / "state.sqlite") as state:
        state.upsert_group("g1", role="calibrator")
        state.upsert_group("g2", role="target")
        state.set_group_status("g1", "done")
        state.set_group_status("g2", "failed", "conversion: no space left on /x")
        _emergency_manifest(cfg, tmp_path, state, "run1", time.time() - 5, get_logger())
        m = json.loads((tmp_path / "manifest.json").read_text())
        assert m["aborted"] == "storage error"
        assert {g: v["status"] for g, v in m["groups"].items()} == {"g1": "done",
                                                                     "g2": "failed"}
        assert "no space left on /x" in (tmp_path / "manifest.md").read_text()
        with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
            _emergency_manifest(cfg, ro, state, "run1", time.time(), get_logger())
            assert not (ro / "manifest.json").exists()


# -- a read-only output ------------------------------------------------------------------

@pytest.mark.parametrize("sub", ["", "night1"], ids=["the-mount", "a-folder-inside"])
def test_read_only_output_mount_is_one_line(tmp_path, capsys, sub) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        out = ro / sub if sub else ro
        assert main(["--input", str(tmp_path), "--output", str(out), "--log-json"]) == 2
        line = _one_line_error(capsys)
        assert f"{out} is on a read-only file system" in line, line


# -- semaphores after SIGKILL --------------------------------------------------------------

def _stale_semaphores() -> set[str]:
    """This user's multiprocessing semaphores in /dev/shm that no live process maps."""
    from dsa110_pipeline.cluster import SEMAPHORE_PREFIXES, _mapped_shm_files

    mapped = _mapped_shm_files() or set()
    stale = set()
    for n in os.listdir("/dev/shm"):
        if n.startswith(SEMAPHORE_PREFIXES):
            try:
                st = os.stat(f"/dev/shm/{n}")
            except FileNotFoundError:
                continue
            if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) not in mapped:
                stale.add(n)
    return stale


def test_stale_semaphore_removed_live_one_kept(tmp_path) -> None:
    """A spawn-context lock of a SIGKILLed process (and its resource tracker) stays in
    /dev/shm; remove_stale_semaphores removes it, never one that a live process holds."""
    import multiprocessing as mp

    from dsa110_pipeline.cluster import remove_stale_semaphores

    live = mp.get_context("spawn").Lock()
    live_path = "/dev/shm/sem." + live._semlock.name.lstrip("/")
    code = ("import multiprocessing as mp, sys, time\n"
            "l = mp.get_context('spawn').Lock()\n"
            "print(l._semlock.name, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    name = proc.stdout.readline().strip()
    dead_path = "/dev/shm/sem." + name.lstrip("/")
    assert os.path.exists(dead_path)
    assert dead_path not in remove_stale_semaphores()  # its owner is alive
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)
    assert os.path.exists(dead_path), "the kill left no semaphore: nothing to test"
    removed = remove_stale_semaphores()
    assert dead_path in removed and not os.path.exists(dead_path)
    assert live_path not in removed and os.path.exists(live_path)
    del live


def test_sigkilled_run_leaves_no_semaphores_after_rerun(night_input, tmp_path) -> None:  # noqa: F811
    before = _stale_semaphores()
    out = tmp_path / "out"
    run_and_kill(night_input, out, after_stage_runs=1)
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--input", str(night_input),
           "--output", str(out), "--log-json", *SMALL]
    time.sleep(0.5)
    leaked = _stale_semaphores() - before
    assert leaked, "the SIGKILL left no semaphores: nothing to test"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    left = _stale_semaphores() & leaked
    assert not left, f"semaphores of the killed run still in /dev/shm: {sorted(left)}"


def test_a_root_with_less_room_than_a_stage_writes_counts_as_full(tmp_path):
    """A process that died copying a 68 MB MS onto a disk with 120 MB left died of the disk:
    the free space is measured against what the stage's inputs weigh."""
    from dsa110_pipeline.executors import full_root

    assert full_root([str(tmp_path)]) is None
    assert full_root([str(tmp_path)], need=10**18) == str(tmp_path)
