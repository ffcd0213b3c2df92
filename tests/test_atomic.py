import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from dsa110_pipeline.atomic import atomic_path, clean_stale_temporaries, write_text_atomic

WRITER = """
import sys, time
from dsa110_pipeline.atomic import atomic_path
final = sys.argv[1]
with atomic_path(final) as tmp:
    tmp.mkdir()
    with open(tmp / "table.f0", "wb") as fh:
        for _ in range(10_000):
            fh.write(b"x" * 65536)
            fh.flush()
            print("writing", flush=True)
            time.sleep(0.01)
"""


def test_kill_during_write_leaves_no_visible_product(tmp_path):
    final = tmp_path / "obs.ms"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not final.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".obs.ms.tmp-")]
    assert len(leftovers) == 1  # the partial write is hidden under a temporary name
    removed = clean_stale_temporaries(tmp_path)
    assert removed == leftovers and not leftovers[0].exists()


def test_success_renames_into_place(tmp_path):
    final = tmp_path / "a.txt"
    with atomic_path(final) as tmp:
        tmp.write_text("done")
        assert not final.exists()
    assert final.read_text() == "done"
    assert list(tmp_path.iterdir()) == [final]


def test_failure_keeps_old_product_and_removes_temporary(tmp_path):
    final = tmp_path / "a.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_directory_product_replaces_old_one(tmp_path):
    final = tmp_path / "x.ms"
    final.mkdir()
    (final / "old").write_text("1")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert [p.name for p in final.iterdir()] == ["new"]


def test_live_writers_temporaries_are_kept(tmp_path):
    live = tmp_path / f".a.txt.tmp-{os.getppid()}-abc"
    live.write_text("busy")
    assert clean_stale_temporaries(tmp_path) == []
    assert live.exists()


def test_temporaries_of_zombie_or_reused_pids_are_removed(tmp_path):
    # a killed writer not yet reaped (zombie) writes nothing: its temporary is stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and psutil.Process(dead.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    zombie = tmp_path / f".a.ms.tmp-{dead.pid}-abc"
    zombie.mkdir()
    # a live process that started after the temporary was last written reused the PID
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    reused = tmp_path / f".b.ms.tmp-{later.pid}-def"
    reused.write_text("old")
    os.utime(reused, (time.time() - 3600, time.time() - 3600))
    try:
        removed = clean_stale_temporaries(tmp_path)
    finally:
        later.kill()
        later.wait()
        dead.wait()
    assert sorted(removed) == sorted([zombie, reused])
    assert not zombie.exists() and not reused.exists()


def test_text_written_atomically_replaces_and_leaves_nothing_else(tmp_path):
    final = tmp_path / "sub" / "report.md"
    assert write_text_atomic(final, "first") == final
    write_text_atomic(final, "second")
    assert final.read_text() == "second"
    assert sorted(p.name for p in final.parent.iterdir()) == ["report.md"]
