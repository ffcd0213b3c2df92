"""Atomic products: write under a hidden temporary name, rename into place when complete.

A reader never sees a partial product: either the final name is absent or it
holds the complete file or directory. Temporaries carry the writer's PID so that
the leftovers of a killed writer can be recognised and removed later.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

TMP_MARK = ".tmp-"


def temp_name(final: Path) -> Path:
    """Hidden sibling of ``final`` that names the writing process."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}-{os.urandom(3).hex()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def publish(tmp: Path, final: Path, *, overwrite: bool = True) -> Path:
    """Rename a finished temporary into place (same filesystem, atomic)."""
    final = Path(final)
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"product {final} already exists")
        if final.is_dir():
            # A directory cannot be replaced atomically: move the old one aside first.
            old = temp_name(final)
            os.rename(final, old)
            os.rename(tmp, final)
            _remove(old)
            return final
    os.replace(tmp, final)
    return final


@contextmanager
def atomic_path(final: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place on success.

    Works for files and directories (a Measurement Set). On an exception the
    temporary is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary of {final}")
        publish(tmp, final, overwrite=overwrite)
    except BaseException:
        _remove(tmp)
        raise


def write_text_atomic(final: str | Path, text: str) -> Path:
    """Write ``text`` to ``final`` through a temporary (``atomic_path``)."""
    with atomic_path(final) as tmp:
        tmp.write_text(text)
    return Path(final)


def _writer_pid(name: str) -> int | None:
    try:
        return int(name.split(TMP_MARK, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> float | None:
    """Start time of process ``pid``; None when there is none, or only a zombie (killed and
    not yet reaped by its parent: it writes nothing any more)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.Error, ProcessLookupError):
        return None


def writer_alive(pid: int | None, path: Path) -> bool:
    """Whether process ``pid`` may still be writing ``path``: it runs and started before
    ``path`` was last modified (a PID reused by a later process is not the writer)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    start = process_start(pid)
    try:
        return start is not None and start <= path.lstat().st_mtime + 1.0
    except OSError:
        return False


def clean_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove temporaries in ``directory`` whose writing process is gone."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for entry in d.iterdir():
        if not entry.name.startswith(".") or TMP_MARK not in entry.name:
            continue
        if writer_alive(_writer_pid(entry.name), entry):
            continue
        _remove(entry)
        removed.append(entry)
    return removed
