"""Memory of this process and its descendants: the resident set size now
(:func:`rss_mb_now`), the shared background sampler of its peaks (``/proc``, ``VmHWM``),
and handing freed memory back to the system (:func:`release_free_memory`, malloc_trim)."""

from __future__ import annotations

import bisect
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

_MB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# ---------------------------------------------------------------------------- data

class _Proc:
    """Fast readers of this process's RSS, high-water mark and I/O counters
    (Linux /proc via kept-open descriptors; psutil elsewhere)."""

    def __init__(self) -> None:
        self.linux = False
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            self._status = os.open("/proc/self/status", os.O_RDONLY)
            self._io: int | None
            try:
                self._io = os.open("/proc/self/io", os.O_RDONLY)
                os.pread(self._io, 512, 0)
            except OSError:
                self._io = None
            self.linux = True
        except OSError:
            import psutil

            self._ps = psutil.Process()
        self.pid = os.getpid()
        self.can_reset_hwm = self.linux and self._try_reset_hwm()

    def _try_reset_hwm(self) -> bool:
        try:
            self._clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY)
            os.write(self._clear_refs, b"5")
            return True
        except OSError:
            return False

    def rss(self) -> int:
        if self.linux:
            return int(os.pread(self._statm, 128, 0).split()[1]) * _PAGE
        return int(self._ps.memory_info().rss)

    def hwm(self) -> int:
        """Peak RSS since the last reset (or process start)."""
        if self.linux:
            txt = os.pread(self._status, 8192, 0)
            i = txt.find(b"VmHWM:")
            if i >= 0:
                return int(txt[i + 6:txt.index(b"kB", i)]) * 1024
        return self.rss()

    def reset_hwm(self) -> None:
        if self.can_reset_hwm:
            os.write(self._clear_refs, b"5")

    def io_raw(self) -> Any:
        """The process's I/O counters, unparsed (cheap); see :meth:`io_parse`."""
        if self.linux:
            return None if self._io is None else os.pread(self._io, 512, 0)
        try:
            return self._ps.io_counters()
        except Exception:  # not available on this platform
            return None

    @staticmethod
    def io_parse(raw: Any) -> tuple[int, int, int, int]:
        """(read_bytes, write_bytes, read_chars, write_chars) from :meth:`io_raw`."""
        if isinstance(raw, bytes):
            # rchar: N wchar: N syscr: N syscw: N read_bytes: N write_bytes: N
            # cancelled_write_bytes: N
            t = raw.split()
            return int(t[9]), int(t[11]) - int(t[13]), int(t[1]), int(t[3])
        return (raw.read_bytes, raw.write_bytes, getattr(raw, "read_chars", raw.read_bytes),
                getattr(raw, "write_chars", raw.write_bytes))


_PROC: _Proc | None = None
_PROC_PID = -1


def _proc() -> _Proc:
    global _PROC, _PROC_PID
    if _PROC is None or os.getpid() != _PROC_PID:  # a fork gets its own descriptors
        _PROC, _PROC_PID = _Proc(), os.getpid()
    return _PROC


def rss_mb_now(children: bool = True) -> float:
    """RSS of this process (plus its descendants) now, in MB."""
    total = _proc().rss()
    if children:
        import psutil

        for c in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += c.memory_info().rss
    return total / _MB


@functools.cache
def _libc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; no-op elsewhere).

    Freed arrays smaller than glibc's (adaptive, up to 32 MB) mmap threshold stay in the
    heap and count in RSS; stages call this between phases that free large temporaries.
    """
    trim = _libc_trim()
    if trim is not None:
        trim(0)


# ------------------------------------------------------------------------ sampler
class _Sampler:
    """The process-wide background RSS sampler, shared by all running profilers.

    Each tick records ``(unix_time, rss_bytes, peak_bytes)`` where rss is this process's
    RSS plus its descendants' and peak the process's high-water mark since the previous
    tick (then reset) plus the descendants' RSS. Descendants are re-listed every
    ``children_every`` ticks (a scan of ``/proc``); their RSS is read every tick.
    """

    max_samples = 400_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.rss: list[int] = []
        self.peak: list[int] = []
        self.users = 0
        self.interval = 0.1
        self.children_every = 10
        self.children_rss = 0
        self.last_time = 0.0
        #: a stage entry takes its own sample unless the last one is younger than this
        self.entry_gap_s = 0.002
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._children: list[Any] = []
        self._children_listed = 0.0

    # refcounted start/stop
    def acquire(self, interval: float) -> None:
        with self.lock:
            self.users += 1
            self.interval = min(self.interval, interval) if self.users > 1 else interval
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                                name="dsa110-rss-sampler", daemon=True)
                self._thread.start()
        self.tick()

    def release(self) -> None:
        self.tick()
        with self.lock:
            self.users = max(0, self.users - 1)
            if self.users:
                return
            stop, thread = self._stop, self._thread
            self._thread = None
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            with contextlib.suppress(Exception):  # never let the sampler kill a run
                self.tick()

    def _children_rss(self, now: float) -> int:
        import psutil

        if now - self._children_listed >= self.children_every * self.interval:
            self._children_listed = now
            try:
                self._children = psutil.Process().children(recursive=True)
            except psutil.Error:
                self._children = []
        total = 0
        alive = []
        for c in self._children:
            try:
                total += c.memory_info().rss
                alive.append(c)
            except psutil.Error:
                pass
        self._children = alive
        return total

    def tick(self, light: bool = False) -> tuple[float, int]:
        """Take one sample now and return ``(time, RSS)``. ``light`` (stage entry and
        exit) reuses the descendants' RSS of the last full tick."""
        proc = _proc()
        kids = self.children_rss if light else self._children_rss(time.time())
        with self.lock:
            now = time.time()
            rss = proc.rss()
            hwm = proc.hwm() if proc.can_reset_hwm else rss
            proc.reset_hwm()
            self.children_rss = kids
            peak = max(hwm, rss) + kids
            self.times.append(now)
            self.rss.append(rss + kids)
            self.peak.append(peak)
            self.last_time = now
            if len(self.times) > self.max_samples:
                self._compact()
        return now, rss + kids

    def _compact(self) -> None:
        """Halve the resolution, keeping each pair's later time and larger values."""
        t, r, p = self.times, self.rss, self.peak
        n = len(t) - (len(t) % 2)
        self.times = t[1:n:2] + t[n:]
        self.rss = [max(a, b) for a, b in zip(r[0:n:2], r[1:n:2])] + r[n:]
        self.peak = [max(a, b) for a, b in zip(p[0:n:2], p[1:n:2])] + p[n:]

    def entry(self) -> tuple[float, int]:
        """Start a stage's window: ``(window start time, RSS now)``. Takes a sample (which
        resets the high-water mark) unless the last one is younger than ``entry_gap_s``;
        then the window starts at that sample, at most ``entry_gap_s`` before the stage."""
        last = self.last_time
        if time.time() - last > self.entry_gap_s:
            return self.tick(light=True)
        return last, _proc().rss() + self.children_rss

    def exit_peak(self) -> int:
        """This process's peak since the last sample (not reset) plus descendants' RSS."""
        proc = _proc()
        hwm = proc.hwm() if proc.can_reset_hwm else 0
        return max(hwm, proc.rss()) + self.children_rss

    def window_peak(self, t_start: float, t_end: float) -> int:
        """Largest peak of the samples taken in ``(t_start, t_end]``."""
        with self.lock:
            i = bisect.bisect_right(self.times, t_start)
            j = bisect.bisect_right(self.times, t_end, lo=i)
            return max(self.peak[i:j], default=0)

    def series(self, t0: float, t1: float) -> list[tuple[float, int, int]]:
        with self.lock:
            i = bisect.bisect_left(self.times, t0)
            j = bisect.bisect_right(self.times, t1)
            out = list(zip(self.times[i:j], self.rss[i:j], self.peak[i:j]))
            if not self.users:  # nobody needs the history any more
                self.times, self.rss, self.peak = [], [], []
        return out


_SAMPLER = _Sampler()


def _after_fork_in_child() -> None:
    # the sampler thread does not survive a fork, and its lock may have been held
    global _SAMPLER
    _SAMPLER = _Sampler()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ----------------------------------------------------------------------- profiler
