"""Files landing in a directory: which have finished arriving.

A writer (the correlator, a copy, the replay tool) may take seconds to write a file under
its final name. A file counts as *landed* once its size and modification time have not
changed for ``settle_s`` (or, with a ``marker_suffix``, once ``<file><suffix>`` exists),
so a file still being written is never read. inotify (through ``watchdog``) wakes the
caller as soon as something changes; without it the caller polls.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .log import get_logger


@dataclass
class _Seen:
    size: int
    mtime: float
    since: float  # monotonic time the (size, mtime) pair was first seen


class FileWatcher:
    """Tracks the files of ``directory`` and says which have landed."""

    def __init__(self, directory: str | Path, *, settle_s: float = 5.0,
                 marker_suffix: str | None = None, suffixes: tuple[str, ...] = (".hdf5",),
                 use_inotify: bool = True) -> None:
        self.directory = Path(directory)
        self.settle_s = settle_s
        self.marker_suffix = marker_suffix
        self.suffixes = suffixes
        self._seen: dict[str, _Seen] = {}
        #: path -> wall-clock time it was found landed (its mtime: the last write)
        self.landed: dict[str, float] = {}
        self.changed = threading.Event()
        self._observer: Any = None
        if use_inotify:
            self._start_inotify()

    def _start_inotify(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling only
            return
        changed = self.changed

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                changed.set()

        try:
            obs = Observer()
            obs.schedule(_Wake(), str(self.directory), recursive=False)
            obs.daemon = True
            obs.start()
        except OSError as exc:  # out of inotify watches, a file system without it
            get_logger().warning("inotify unavailable, polling", reason=str(exc))
            return
        self._observer = obs

    @property
    def inotify(self) -> bool:
        return self._observer is not None

    def wait(self, timeout_s: float) -> bool:
        """Sleep until something in the directory changes (inotify) or ``timeout_s``."""
        woke = self.changed.wait(timeout_s)
        self.changed.clear()
        return woke

    def scan(self, now: float | None = None) -> list[Path]:
        """Files that have landed since the last scan (each reported once)."""
        now = time.monotonic() if now is None else now
        new: list[Path] = []
        present = set()
        with os.scandir(self.directory) as it:
            for entry in it:
                if not entry.name.endswith(self.suffixes) or not entry.is_file():
                    continue
                path = entry.path
                present.add(path)
                if path in self.landed:
                    continue
                st = entry.stat()
                prev = self._seen.get(path)
                if prev is None or (prev.size, prev.mtime) != (st.st_size, st.st_mtime):
                    self._seen[path] = _Seen(st.st_size, st.st_mtime, now)
                    if self.marker_suffix is None:
                        continue
                if self.marker_suffix is not None:
                    ready = os.path.exists(path + self.marker_suffix)
                else:
                    ready = st.st_size > 0 and now - self._seen[path].since >= self.settle_s
                if ready:
                    self.landed[path] = st.st_mtime
                    self._seen.pop(path, None)
                    new.append(Path(path))
        for gone in set(self._seen) - present:  # removed before landing
            del self._seen[gone]
        for gone in set(self.landed) - present:  # cleaned up: memory stays bounded
            del self.landed[gone]
        return sorted(new)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
