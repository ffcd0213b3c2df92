"""Scratch leasing (tmpfs staging) and atomic placement of finished products.

A stage builds a product in a *staging directory* leased with a size estimate:
under the scratch root (``/dev/shm`` by default) when that has at least
``factor`` × the estimate free, otherwise beside the output (same filesystem,
so the final rename is atomic). A lease is always released (context manager),
also on failure. Every staging directory holds a marker naming the owning process
(host, PID, process start time); :func:`cleanup_stale` removes the directories of
processes that no longer exist, so a killed run leaves nothing behind for long.

:func:`atomic_move` puts a finished file or directory into place: ``os.replace`` /
``os.rename`` on one filesystem; across filesystems the product is first copied to a
hidden temporary name in the destination directory and then renamed, so a reader
never sees a partial product under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from types import TracebackType

from .atomic import process_start

#: Default scratch root (tmpfs).
DEFAULT_SCRATCH_ROOT = "/dev/shm"
#: Name prefix of staging directories.
STAGING_PREFIX = "dsa110-staging-"
#: Marker file inside each staging directory.
MARKER_NAME = ".dsa110-staging.json"
#: Infix of temporary names used while copying a product into its destination directory.
PARTIAL_INFIX = ".partial-"
#: Name of the fallback staging folder beside the output.
FALLBACK_DIRNAME = ".staging"


def _owner_alive(host: str, pid: int, started: float | None) -> bool:
    """Whether the process that wrote a marker still runs (unknown host: assume alive)."""
    if host != socket.gethostname():
        return True
    start = process_start(pid)
    if start is None:
        return False
    # a reused PID belongs to a process started after the marker's owner
    return started is None or abs(start - started) < 1.0


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing ancestor)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


class ScratchLease:
    """A leased staging directory; released (deleted) by :meth:`release` or on context exit."""

    def __init__(self, path: Path, *, on_tmpfs_root: bool, estimate_bytes: int) -> None:
        self.path = path
        self.on_scratch_root = on_tmpfs_root
        self.estimate_bytes = estimate_bytes
        self.released = False

    def release(self) -> None:
        """Delete the staging directory and everything in it (idempotent)."""
        if not self.released:
            shutil.rmtree(self.path, ignore_errors=True)
            self.released = True

    def __enter__(self) -> ScratchLease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        where = "scratch root" if self.on_scratch_root else "beside output"
        return f"<ScratchLease {self.path} ({where}, est. {self.estimate_bytes} B)>"


def _write_marker(directory: Path) -> None:
    pid = os.getpid()
    marker = {"host": socket.gethostname(), "pid": pid, "started": process_start(pid),
              "created": time.time()}
    # whole or not at all: a sweep by another process reads it at any moment, and a
    # half-written marker must not make a live directory look abandoned
    tmp = directory / f"{MARKER_NAME}.{pid}.tmp"
    tmp.write_text(json.dumps(marker))
    os.replace(tmp, directory / MARKER_NAME)


def _owner(directory: Path) -> tuple[str, int, float | None]:
    """(host, PID, process start) from a staging directory's marker; raises
    FileNotFoundError without one, ValueError/KeyError/TypeError for a bad one."""
    info = json.loads((directory / MARKER_NAME).read_text())
    return str(info["host"]), int(info["pid"]), info.get("started")


def _is_stale(directory: Path) -> bool:
    try:
        return not _owner_alive(*_owner(directory))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        # no marker, or one that does not read (its writer was killed writing it): stale
        # once older than a minute, so a directory just made is never taken from its owner
        try:
            return time.time() - directory.stat().st_mtime > 60.0
        except FileNotFoundError:
            return False


def abandoned(path: str | Path) -> bool:
    """Whether ``path`` lies in a staging directory whose owning process is gone (its
    writer was killed); False outside any staging directory."""
    for d in (Path(path), *Path(path).parents):
        if d.name.startswith(STAGING_PREFIX):
            return _is_stale(d)
    return False


def cleanup_stale(root: str | Path, *, wait_s: float = 0.0) -> list[Path]:
    """Remove staging directories under ``root`` whose owning process is gone.

    Also removes ``*.partial-<pid>-*`` leftovers of :func:`atomic_move` whose PID is
    dead. With ``wait_s``, staging directories owned by this process's own children (the
    workers of a cluster that was just stopped, which may take a moment to exit) are
    looked at again until they are gone or ``wait_s`` has passed. Returns the removed
    paths.
    """
    deadline = time.monotonic() + wait_s
    removed = _cleanup_once(Path(root))
    while time.monotonic() < deadline and _owned_by_children(Path(root)):
        time.sleep(0.2)
        removed += _cleanup_once(Path(root))
    return removed


def _owned_by_children(root: Path) -> bool:
    """Whether a staging directory under ``root`` belongs to a child of this process."""
    import psutil

    try:
        kids = {p.pid for p in psutil.Process().children(recursive=True)}
        entries = [e for e in root.iterdir() if e.name.startswith(STAGING_PREFIX)]
    except (OSError, psutil.Error):
        return False
    for e in entries:
        try:
            if _owner(e)[1] in kids:
                return True
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return False


def _cleanup_once(r: Path) -> list[Path]:
    removed: list[Path] = []
    if not r.is_dir():
        return removed
    for entry in r.iterdir():
        try:
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir() and _is_stale(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif PARTIAL_INFIX in entry.name and _partial_is_stale(entry.name):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
        except OSError:
            continue
    return removed


def _partial_is_stale(name: str) -> bool:
    tail = name.rsplit(PARTIAL_INFIX, 1)[-1]
    pid_text = tail.split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    return process_start(int(pid_text)) is None


def lease_scratch(estimate_bytes: int, *, root: str | Path | None = DEFAULT_SCRATCH_ROOT,
                  fallback_dir: str | Path, factor: float = 2.0,
                  clean_stale: bool = True) -> ScratchLease:
    """Lease a staging directory for a product of about ``estimate_bytes``.

    Uses ``root`` (tmpfs) when it exists and has ≥ ``factor`` × the estimate free;
    otherwise ``<fallback_dir>/.staging`` (put it beside the output so that the final
    move is a rename). Stale staging directories of dead processes are removed from
    both places first. Use the result as a context manager so it is always released.
    """
    if estimate_bytes < 0:
        raise ValueError(f"estimate_bytes must be >= 0, got {estimate_bytes}")
    fallback_root = Path(fallback_dir) / FALLBACK_DIRNAME
    candidates: list[tuple[Path, bool]] = []
    if root is not None and Path(root).is_dir() and os.access(root, os.W_OK):
        candidates.append((Path(root), True))
    candidates.append((fallback_root, False))
    for base, _ in candidates:
        if clean_stale:
            cleanup_stale(base)
    chosen, on_root = candidates[-1]
    for base, is_root in candidates[:-1]:
        if free_bytes(base) >= factor * estimate_bytes:
            chosen, on_root = base, is_root
            break
    chosen.mkdir(parents=True, exist_ok=True)
    path = chosen / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    try:
        _write_marker(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return ScratchLease(path, on_tmpfs_root=on_root, estimate_bytes=estimate_bytes)


def _same_filesystem(a: Path, b_dir: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b_dir).st_dev


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap_into_place(tmp: Path, dst: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` (same directory as ``dst``) to ``dst`` atomically."""
    if tmp.is_dir() and not tmp.is_symlink():
        if dst.exists():
            if not overwrite:
                raise FileExistsError(f"cannot move product into place: {dst} exists")
            # a non-empty directory cannot be replaced by rename: move it aside first
            aside = dst.with_name(f".{dst.name}{PARTIAL_INFIX}{os.getpid()}-old-"
                                  f"{uuid.uuid4().hex[:8]}")
            os.rename(dst, aside)
            try:
                os.rename(tmp, dst)
            except BaseException:
                os.rename(aside, dst)
                raise
            _remove(aside)
        else:
            os.rename(tmp, dst)
    else:
        if dst.exists() and not overwrite:
            raise FileExistsError(f"cannot move product into place: {dst} exists")
        os.replace(tmp, dst)


def atomic_move(src: str | Path, dst: str | Path, *, overwrite: bool = False,
                fsync: bool = False) -> Path:
    """Move a finished file or directory ``src`` to ``dst`` so ``dst`` appears complete.

    On one filesystem it is a rename. Across filesystems ``src`` is copied to a hidden
    ``.<name>.partial-<pid>-<rand>`` in the destination directory, flushed, renamed to
    ``dst`` and then ``src`` is removed. A failure leaves no partial under ``dst``.
    ``fsync=True`` flushes the copy to disk before the rename (crash durability).
    """
    s, d = Path(src), Path(dst)
    if not s.exists():
        raise FileNotFoundError(f"cannot move {s}: it does not exist")
    d.parent.mkdir(parents=True, exist_ok=True)
    if d.exists() and not overwrite:
        raise FileExistsError(f"cannot move product into place: {d} exists")
    if _same_filesystem(s, d.parent):
        _swap_into_place(s, d, overwrite=overwrite)
        return d
    tmp = d.with_name(f".{d.name}{PARTIAL_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            if s.is_dir():
                shutil.copytree(s, tmp, copy_function=shutil.copyfile)
            else:
                shutil.copyfile(s, tmp)
        except (shutil.Error, OSError) as exc:
            raise OSError(_copy_failure(exc), f"cannot copy {s} to {d.parent}: "
                          f"{_copy_reason(exc)}") from exc
        if fsync:
            _fsync_tree(tmp)
        _swap_into_place(tmp, d, overwrite=overwrite)
    except BaseException:
        _remove(tmp)
        raise
    _remove(s)
    return d


def _copy_reason(exc: BaseException) -> str:
    """One line for a failed copy: shutil.copytree gathers (src, dst, why) per file."""
    errors = exc.args[0] if isinstance(exc, shutil.Error) and exc.args else None
    if isinstance(errors, list) and errors and len(errors[0]) == 3:
        return str(errors[0][2]) + (f" (and {len(errors) - 1} more)" if len(errors) > 1
                                    else "")
    return str(exc)


def _copy_failure(exc: BaseException) -> int:
    """The errno of a failed copy (ENOSPC for a full disk), else EIO."""
    import errno

    if isinstance(exc, OSError) and not isinstance(exc, shutil.Error) and exc.errno:
        return exc.errno
    return errno.ENOSPC if "No space left" in _copy_reason(exc) else errno.EIO


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["ScratchLease", "lease_scratch", "cleanup_stale", "atomic_move", "free_bytes",
           "DEFAULT_SCRATCH_ROOT", "STAGING_PREFIX", "MARKER_NAME", "PARTIAL_INFIX"]
