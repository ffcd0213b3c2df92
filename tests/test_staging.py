"""Tests of dsa110_pipeline.staging: scratch leases, stale cleanup, atomic moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsa110_pipeline import staging
from dsa110_pipeline.staging import (
    MARKER_NAME,
    PARTIAL_INFIX,
    STAGING_PREFIX,
    atomic_move,
    cleanup_stale,
    lease_scratch,
)


def _dead_pid() -> int:
    """The PID of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lease_on_root_when_room(tmp_path: Path) -> None:
    root = tmp_path / "shm"
    root.mkdir()
    with lease_scratch(1000, root=root, fallback_dir=tmp_path / "out") as lease:
        assert lease.on_scratch_root
        assert lease.path.parent == root
        assert lease.path.name.startswith(STAGING_PREFIX)
        marker = json.loads((lease.path / MARKER_NAME).read_text())
        assert marker["pid"] == os.getpid()
        (lease.path / "x").write_bytes(b"123")
        path = lease.path
    assert not path.exists()


def test_lease_falls_back_beside_output_when_root_too_small(tmp_path: Path,
                                                             monkeypatch) -> None:
    root = tmp_path / "shm"
    root.mkdir()
    real_free = staging.free_bytes
    monkeypatch.setattr(staging, "free_bytes",
                        lambda p: 1500 if Path(p) == root else real_free(p))
    # 1000 B needs 2000 B free on the root: it has 1500, so the lease goes beside the output
    with lease_scratch(1000, root=root, fallback_dir=tmp_path / "out") as lease:
        assert not lease.on_scratch_root
        assert lease.path.parent == tmp_path / "out" / staging.FALLBACK_DIRNAME
    with lease_scratch(700, root=root, fallback_dir=tmp_path / "out") as lease:
        assert lease.on_scratch_root


def test_lease_missing_root_falls_back(tmp_path: Path) -> None:
    with lease_scratch(10, root=tmp_path / "nope", fallback_dir=tmp_path / "out") as lease:
        assert not lease.on_scratch_root and lease.path.is_dir()


def test_lease_released_on_failure(tmp_path: Path) -> None:
    seen = {}
    with pytest.raises(RuntimeError, match="boom"), \
            lease_scratch(10, root=tmp_path, fallback_dir=tmp_path / "o") as lease:
        seen["path"] = lease.path
        (lease.path / "partial.ms").mkdir()
        raise RuntimeError("boom")
    assert not seen["path"].exists()


def test_stale_dirs_of_dead_process_cleaned_live_kept(tmp_path: Path) -> None:
    root = tmp_path / "shm"
    root.mkdir()
    dead = root / f"{STAGING_PREFIX}{_dead_pid()}-abc"
    dead.mkdir()
    (dead / "big.ms").mkdir()
    (dead / MARKER_NAME).write_text(json.dumps({"host": staging.socket.gethostname(),
                                                "pid": _dead_pid(), "started": 1.0}))
    # a live process: this one
    live = lease_scratch(10, root=root, fallback_dir=tmp_path / "o", clean_stale=False)
    # a PID reused by another process (start time differs) counts as dead
    reused = root / f"{STAGING_PREFIX}reused"
    reused.mkdir()
    (reused / MARKER_NAME).write_text(json.dumps({"host": staging.socket.gethostname(),
                                                  "pid": os.getpid(), "started": 12345.0}))
    # someone else's directory without our prefix is never touched
    other = root / "not-ours"
    other.mkdir()
    removed = cleanup_stale(root)
    assert set(removed) == {dead, reused}
    assert live.path.exists() and other.exists()
    live.release()


def test_a_marker_read_half_written_leaves_a_young_directory_alone(tmp_path: Path) -> None:
    """Another process sweeping while a lease writes its marker reads an empty or partial
    file: a directory under a minute old is its owner's still (a sweep of a concurrent
    worker removed a live conversion's staging directory this way); an old one with an
    unreadable marker is stale. Markers are written whole (temp file, rename)."""
    root = tmp_path / "shm"
    root.mkdir()
    young = root / f"{STAGING_PREFIX}young"
    young.mkdir()
    (young / MARKER_NAME).write_text('{"host": "')
    old = root / f"{STAGING_PREFIX}old"
    old.mkdir()
    (old / MARKER_NAME).write_text("")
    past = time.time() - 120
    os.utime(old, (past, past))
    assert cleanup_stale(root) == [old]
    assert young.exists()
    lease = lease_scratch(10, root=root, fallback_dir=tmp_path / "o", clean_stale=False)
    assert [p.name for p in lease.path.iterdir()] == [MARKER_NAME]  # no temp file left
    lease.release()


def test_next_lease_cleans_stale_from_killed_run(tmp_path: Path) -> None:
    root = tmp_path / "shm"
    root.mkdir()
    code = (
        "import os, sys\n"
        "from dsa110_pipeline.staging import lease_scratch\n"
        f"lease = lease_scratch(10, root={str(root)!r}, fallback_dir={str(tmp_path)!r})\n"
        "(lease.path / 'half.ms').mkdir()\n"
        "print(lease.path, flush=True)\n"
        "os._exit(9)\n"  # killed: no release
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    left = Path(out.stdout.strip())
    assert left.exists(), out.stderr
    with lease_scratch(10, root=root, fallback_dir=tmp_path) as lease:
        assert not left.exists()
        assert lease.path.exists()


def test_atomic_move_file_same_fs(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    dst = tmp_path / "out" / "b.bin"
    assert atomic_move(src, dst) == dst
    assert dst.read_bytes() == b"abc" and not src.exists()
    src.write_bytes(b"new")
    with pytest.raises(FileExistsError):
        atomic_move(src, dst)
    atomic_move(src, dst, overwrite=True)
    assert dst.read_bytes() == b"new"


def _make_tree(d: Path, tag: bytes) -> None:
    (d / "sub").mkdir(parents=True)
    (d / "table.f0").write_bytes(tag * 100)
    (d / "sub" / "table.dat").write_bytes(tag)


def test_atomic_move_directory_same_fs_and_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "x.ms"
    _make_tree(src, b"1")
    dst = tmp_path / "prod" / "x.ms"
    atomic_move(src, dst)
    assert (dst / "sub" / "table.dat").read_bytes() == b"1"
    _make_tree(src, b"2")
    with pytest.raises(FileExistsError):
        atomic_move(src, dst)
    atomic_move(src, dst, overwrite=True)
    assert (dst / "sub" / "table.dat").read_bytes() == b"2"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["x.ms"]


def test_atomic_move_directory_across_filesystems(tmp_path: Path) -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    with lease_scratch(1000, root="/dev/shm", fallback_dir=tmp_path) as lease:
        if os.stat(lease.path).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and the test folder share a filesystem")
        src = lease.path / "y.ms"
        _make_tree(src, b"7")
        dst = tmp_path / "prod" / "y.ms"
        atomic_move(src, dst, fsync=True)
        assert (dst / "table.f0").read_bytes() == b"7" * 100
        assert not src.exists()
        assert sorted(p.name for p in dst.parent.iterdir()) == ["y.ms"]


def test_atomic_move_cross_fs_failure_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "z.ms"
    _make_tree(src, b"3")
    dst = tmp_path / "prod" / "z.ms"
    monkeypatch.setattr(staging, "_same_filesystem", lambda a, b: False)

    def broken_swap(tmp: Path, d: Path, *, overwrite: bool) -> None:
        assert tmp.name.startswith(".z.ms" + PARTIAL_INFIX)
        assert (tmp / "sub" / "table.dat").read_bytes() == b"3"
        raise OSError("disk full")

    monkeypatch.setattr(staging, "_swap_into_place", broken_swap)
    with pytest.raises(OSError, match="disk full"):
        atomic_move(src, dst)
    assert list(dst.parent.iterdir()) == []
    assert src.exists()  # the source is only removed after success


def test_cleanup_stale_removes_dead_partials(tmp_path: Path) -> None:
    dead_partial = tmp_path / f".p.ms{PARTIAL_INFIX}{_dead_pid()}-abcd"
    dead_partial.mkdir()
    live_partial = tmp_path / f".q.ms{PARTIAL_INFIX}{os.getpid()}-abcd"
    live_partial.mkdir()
    complete = tmp_path / "p.ms"
    complete.mkdir()
    assert cleanup_stale(tmp_path) == [dead_partial]
    assert live_partial.exists() and complete.exists()


def test_negative_estimate_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="estimate_bytes"):
        lease_scratch(-1, root=tmp_path, fallback_dir=tmp_path)


def test_atomic_move_copy_failure_says_where_and_why(tmp_path: Path, monkeypatch) -> None:
    import errno

    src = tmp_path / "w.ms"
    _make_tree(src, b"5")
    dst = tmp_path / "prod" / "w.ms"
    monkeypatch.setattr(staging, "_same_filesystem", lambda a, b: False)
    real_copy = staging.shutil.copyfile

    def full_disk(a, b, *args, **kwargs):  # the destination fills up mid-copy
        if str(a).endswith("table.dat"):
            raise OSError(errno.ENOSPC, "No space left on device", str(b))
        return real_copy(a, b, *args, **kwargs)

    monkeypatch.setattr(staging.shutil, "copyfile", full_disk)
    with pytest.raises(OSError) as info:
        atomic_move(src, dst)
    assert info.value.errno == errno.ENOSPC
    assert str(src) in str(info.value) and "No space left on device" in str(info.value)
    assert "[(" not in str(info.value)  # one line, not copytree's list of tuples
    assert list(dst.parent.iterdir()) == [] and src.exists()


def test_abandoned_only_inside_a_dead_owners_staging_dir(tmp_path: Path) -> None:
    live = lease_scratch(10, root=tmp_path, fallback_dir=tmp_path / "o", clean_stale=False)
    dead = tmp_path / f"{STAGING_PREFIX}{_dead_pid()}-abc"
    (dead / "work").mkdir(parents=True)
    (dead / MARKER_NAME).write_text(json.dumps({"host": staging.socket.gethostname(),
                                                "pid": _dead_pid(), "started": 1.0}))
    assert staging.abandoned(dead / "work" / "ms.ready")
    assert staging.abandoned(dead)
    assert not staging.abandoned(live.path / "work" / "ms.ready")
    assert not staging.abandoned(tmp_path / "elsewhere" / "ms.ready")
    live.release()


def test_cleanup_waits_for_a_child_that_is_still_exiting(tmp_path: Path) -> None:
    """A worker of a cluster that was just stopped may still be exiting when the run's last
    sweep looks: with ``wait_s`` its staging directory goes once it has exited; another
    process's live directory is kept and not waited for."""
    import time

    root = tmp_path / "shm"
    root.mkdir()
    code = (
        "import time\n"
        "from dsa110_pipeline.staging import lease_scratch\n"
        f"lease = lease_scratch(10, root={str(root)!r}, fallback_dir={str(tmp_path)!r})\n"
        "print(lease.path, flush=True)\n"
        "time.sleep(1.5)\n"
        "import os; os._exit(9)\n"  # exits without releasing
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    left = Path(child.stdout.readline().strip())
    assert left.exists()
    assert cleanup_stale(root) == []  # its owner still runs
    t0 = time.monotonic()
    removed = cleanup_stale(root, wait_s=20.0)
    child.wait()
    assert removed == [left] and not left.exists()
    assert time.monotonic() - t0 < 10.0  # done once the child had gone, not at the limit
    # a live directory of a process that is not our child: kept, no waiting
    other = root / f"{STAGING_PREFIX}1-x"
    other.mkdir()
    (other / MARKER_NAME).write_text(json.dumps({"host": staging.socket.gethostname(),
                                                 "pid": 1, "started": None}))
    t0 = time.monotonic()
    assert cleanup_stale(root, wait_s=5.0) == [] and other.exists()
    assert time.monotonic() - t0 < 1.0
