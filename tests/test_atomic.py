import os
import signal
import subprocess
import sys
import time

import pytest

from dsa110_pipeline.atomic import atomic_path, clean_stale_temporaries

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
