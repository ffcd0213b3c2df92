"""A live progress line for a night: groups × stages done, on the terminal.

On a TTY it redraws one line; elsewhere it prints one line per finished stage.
It is silent when disabled (``--log-json``).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None,
                 width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.failed = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, group: str, stage: str, record: Any) -> None:
        with self._lock:
            self.done += 1
            status = getattr(record, "status", "ok")
            if status == "failed":
                self.failed += 1
            if not self.enabled:
                return
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            wall = getattr(record, "wall_s", None)
            took = f" {wall:.1f}s" if wall is not None else ""
            line = (f"[{bar}] {self.done}/{self.total} stages, {self.failed} failed, "
                    f"{time.perf_counter() - self.t0:.0f}s | {group} {stage} {status}{took}")
            if self._tty:
                self.stream.write("\r\033[K" + line)
                if self.done >= self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
