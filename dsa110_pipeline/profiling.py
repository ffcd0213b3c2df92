"""Per-stage profiling and memory reports for one pipeline run.

What is measured for each stage (a :class:`StageProfile`):

- ``wall_s``: wall-clock time; ``started``/``finished``: Unix timestamps.
- ``cpu_user_s`` / ``cpu_sys_s``: CPU time of the executing thread
  (``getrusage(RUSAGE_THREAD)``) for ``scope="thread"`` stages; of the whole process plus
  its waited-for children (``RUSAGE_SELF`` + ``RUSAGE_CHILDREN``) for ``scope="process"``
  stages, i.e. stages measured inside a worker with :func:`measure_call`. CPU spent by helper
  threads (ducc0 ``nthreads``, BLAS) of a thread-scope stage is not attributed to it.
- ``peak_rss_mb``: the largest resident set size of this process plus all its descendants
  seen while the stage ran. One background sampler thread per process (shared, reference
  counted, so concurrent runs do not disturb each other) samples the RSS every ``interval_s``.
  On Linux it also reads the kernel's high-water mark (``VmHWM``) and resets it after each
  sample (``/proc/self/clear_refs``), so even a short spike between two samples is caught.
  Stage entry takes a sample too (unless one is younger than 2 ms: then the window starts
  there), and so does the exit of a stage longer than 2 ms, so a stage is not charged with
  its predecessor's peak. The peak is of the whole process, so stages that run at the same
  time see each other's memory. Descendants (dask workers, subprocesses) are listed every
  ten sampling periods (1 s by default: listing scans ``/proc``); one that lives shorter
  may be missed.
- ``read_bytes`` / ``write_bytes``: bytes the process made the storage layer read/write
  during the stage (``/proc/self/io``; tmpfs I/O does not count there), and
  ``read_chars`` / ``write_chars``: bytes passed through ``read()``/``write()`` calls
  (tmpfs and pipes included). Both are process-wide deltas.
- ``cache_hit``: the runner marks a stage whose result came from the cache.
- Optional per stage: ``cprofile_text`` (the cProfile top-N of the executing thread,
  sorted by cumulative time) and ``memory_profile_text`` (memory_profiler's line-by-line
  memory report of the stage's *target* function).

Usage by a runner::

    profiler = RunProfiler(enabled=cfg.profiling.enabled)
    with profiler:                                   # start() ... stop()
        with profiler.stage("imaging", cprofile=True) as sp:
            ctx = stage.execute(ctx)
        # line-by-line memory needs the function whose lines are profiled:
        ctx = profiler.call("calibration", stage.execute, ctx, memory_profile=True,
                            target=getattr(stage, "fn", None))
        profiler.mark_cache_hit("conversion")
    profiler.report().write(out_dir)                 # profile.json, profile.md, profile.png

For a stage executed in another process (a dask worker), run it through
:func:`measure_call` there and hand the returned profile to :meth:`RunProfiler.record`.
A disabled profiler costs about a microsecond per stage.
"""

from __future__ import annotations

import bisect
import contextlib
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["ProfileReport", "RunProfiler", "StageProfile", "measure_call", "release_free_memory",
           "rss_mb_now"]

Scope = Literal["thread", "process"]
_MB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


# ---------------------------------------------------------------------------- data
@dataclass(slots=True)
class StageProfile:
    """What one stage cost. JSON-able through :meth:`to_dict`."""

    name: str
    started: float = 0.0
    finished: float = 0.0
    wall_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    peak_rss_mb: float | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_chars: int | None = None
    write_chars: int | None = None
    cache_hit: bool = False
    scope: str = "thread"
    memory_profile_text: str | None = None
    cprofile_text: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageProfile:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ProfileReport:
    """The profile of one run: stage profiles, the RSS time series and a summary."""

    stages: list[StageProfile]
    #: ``(unix_time, rss_mb, peak_mb)`` samples: RSS at the sample, and the highest RSS
    #: since the previous sample (kernel high-water mark where available).
    rss_series: list[tuple[float, float, float]]
    started: float
    finished: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_rss_mb(self) -> float | None:
        vals = [p for _, _, p in self.rss_series]
        vals += [s.peak_rss_mb for s in self.stages if s.peak_rss_mb is not None]
        return max(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": max(0.0, self.finished - self.started),
            "n_stages": len(self.stages),
            "n_cache_hits": sum(1 for s in self.stages if s.cache_hit),
            "n_errors": sum(1 for s in self.stages if s.error),
            "stage_wall_s": sum(s.wall_s for s in self.stages),
            "cpu_user_s": sum(s.cpu_user_s for s in self.stages),
            "cpu_sys_s": sum(s.cpu_sys_s for s in self.stages),
            "peak_rss_mb": self.peak_rss_mb,
            "read_bytes": sum(s.read_bytes or 0 for s in self.stages),
            "write_bytes": sum(s.write_bytes or 0 for s in self.stages),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "started": self.started,
            "finished": self.finished,
            "summary": self.summary(),
            "stages": [s.to_dict() for s in self.stages],
            "rss_series": {
                "t_s": [round(t - self.started, 4) for t, _, _ in self.rss_series],
                "rss_mb": [round(r, 2) for _, r, _ in self.rss_series],
                "peak_mb": [round(p, 2) for _, _, p in self.rss_series],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileReport:
        t0 = d["started"]
        s = d["rss_series"]
        series = [(t0 + t, r, p) for t, r, p in zip(s["t_s"], s["rss_mb"], s["peak_mb"])]
        return cls(stages=[StageProfile.from_dict(x) for x in d["stages"]],
                   rss_series=series, started=t0, finished=d["finished"],
                   meta=d.get("meta", {}))

    def to_markdown(self) -> str:
        """A markdown table, one row per stage, followed by the summary and the
        optional cProfile / memory_profiler texts."""
        head = ("| stage | scope | start s | wall s | CPU user s | CPU sys s | peak RSS MB "
                "| read MB | written MB | cache hit | error |")
        lines = [head, _md_rule(head)]
        for s in self.stages:
            lines.append(
                f"| {s.name} | {s.scope} | {s.started - self.started:.3f} | {s.wall_s:.4f} "
                f"| {s.cpu_user_s:.3f} | {s.cpu_sys_s:.3f} | {_fmt(s.peak_rss_mb, '.1f')} "
                f"| {_fmt_mb(s.read_bytes)} | {_fmt_mb(s.write_bytes)} "
                f"| {'yes' if s.cache_hit else ''} | {_md_escape(s.error or '')} |")
        sm = self.summary()
        lines += ["", f"Run wall {sm['wall_s']:.3f} s; {sm['n_stages']} stage(s), "
                  f"{sm['n_cache_hits']} cache hit(s), {sm['n_errors']} error(s); "
                  f"peak RSS {_fmt(sm['peak_rss_mb'], '.1f')} MB (process and children)."]
        for s in self.stages:
            if s.cprofile_text:
                lines += ["", f"### cProfile: {s.name}", "", "```", s.cprofile_text.rstrip(),
                          "```"]
            if s.memory_profile_text:
                lines += ["", f"### Line-by-line memory: {s.name}", "", "```",
                          s.memory_profile_text.rstrip(), "```"]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path, *, max_stages: int = 60) -> Path:
        """RSS over time (top) and a stage timeline (bottom); stage starts and ends are
        marked on the RSS plot. With more than ``max_stages`` stages only the longest
        are drawn (the title says so)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(11, 6.5), layout="constrained")
        ax, axg = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        t0 = self.started
        if self.rss_series:
            ts = [t - t0 for t, _, _ in self.rss_series]
            ax.plot(ts, [r for _, r, _ in self.rss_series], lw=1.2, label="RSS (sampled)")
            ax.plot(ts, [p for _, _, p in self.rss_series], lw=0.8, alpha=0.7,
                    label="peak since previous sample")
        shown = sorted(self.stages, key=lambda s: s.wall_s, reverse=True)[:max_stages]
        shown.sort(key=lambda s: s.started)
        cmap = matplotlib.colormaps["tab10"]
        for i, s in enumerate(shown):
            c = cmap(i % 10)
            a, b = s.started - t0, s.finished - t0
            ax.axvline(a, color=c, lw=0.8, ls="-")
            ax.axvline(b, color=c, lw=0.8, ls="--")
            hatch = "//" if s.cache_hit else None
            axg.broken_barh([(a, max(b - a, 1e-6))], (i - 0.4, 0.8), facecolors=c,
                            hatch=hatch, edgecolor="k" if s.error else c)
        axg.set_yticks(range(len(shown)))
        axg.set_yticklabels([s.name for s in shown], fontsize=7 if len(shown) > 20 else 9)
        axg.invert_yaxis()
        axg.set_xlabel("time since run start (s)")
        ax.set_ylabel("RSS, process + children (MB)")
        title = f"RSS and stage boundaries (start —, end - -); {len(self.stages)} stage(s)"
        if len(shown) < len(self.stages):
            title += f", the {len(shown)} longest shown"
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.savefig(path, dpi=110)
        return path

    def write(self, out_dir: str | Path, stem: str = "profile") -> dict[str, Path]:
        """Write ``stem.json``, ``stem.md`` and ``stem.png`` into ``out_dir`` (each written
        under a temporary name, then renamed). Returns the paths by suffix."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md",
                 "png": out / f"{stem}.png"}
        from .atomic import atomic_path, write_text_atomic

        write_text_atomic(paths["json"], json.dumps(self.to_dict(), indent=1))
        write_text_atomic(paths["md"], self.to_markdown())
        with atomic_path(paths["png"]) as tmp:
            self.plot(tmp.with_name(tmp.name + ".png"))  # matplotlib picks the format by suffix
            tmp.with_name(tmp.name + ".png").rename(tmp)
        return paths


# ------------------------------------------------------------------- /proc readers
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
class _NullStage:
    """The context manager of a disabled profiler: yields a bare StageProfile."""

    __slots__ = ("profile",)

    def __init__(self, name: str) -> None:
        self.profile = StageProfile(name)

    def __enter__(self) -> StageProfile:
        return self.profile

    def __exit__(self, *exc: object) -> None:
        return None


class _StageTimer:
    __slots__ = ("prof", "p", "scope", "cprofile", "cprofile_top", "memory_targets",
                 "_t0", "_ts0", "_ru0", "_ruc0", "_io0", "_cp", "_lp")

    def __init__(self, prof: RunProfiler, name: str, scope: Scope, cprofile: bool,
                 cprofile_top: int, memory_targets: Sequence[Callable[..., Any]] | None) -> None:
        self.prof = prof
        self.p = StageProfile(name, scope=scope)
        self.scope = scope
        self.cprofile = cprofile
        self.cprofile_top = cprofile_top
        self.memory_targets = memory_targets
        self._cp: cProfile.Profile | None = None
        self._lp: Any = None

    def __enter__(self) -> StageProfile:
        p = self.p
        proc = _proc()
        self.prof._open(p)
        self._io0 = proc.io_raw()
        if self.scope == "process":
            self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
            self._ruc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        else:
            self._ru0 = resource.getrusage(_RUSAGE_THREAD)
        if self.prof._sampling:
            # a sample at entry closes the previous sampling interval, so the stage's
            # window starts here (the high-water mark is reset)
            self._ts0, peak0 = _SAMPLER.entry()
        else:
            self._ts0, peak0 = 0.0, proc.rss() + _SAMPLER.children_rss
        p.peak_rss_mb = peak0 / _MB
        if self.memory_targets:
            from memory_profiler import LineProfiler

            self._lp = LineProfiler(backend="psutil")
            for fn in self.memory_targets:
                self._lp.add_function(getattr(fn, "__func__", fn))
            self._lp.enable_by_count()
        if self.cprofile:
            self._cp = cProfile.Profile()
            self._cp.enable()
        p.started = time.time()
        self._t0 = time.perf_counter()
        return p

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        t1 = time.perf_counter()
        p = self.p
        try:
            if self._cp is not None:
                self._cp.disable()
            if self._lp is not None:
                self._lp.disable_by_count()
            p.finished = time.time()
            p.wall_s = t1 - self._t0
            if self.scope == "process":
                ru = resource.getrusage(resource.RUSAGE_SELF)
                ruc = resource.getrusage(resource.RUSAGE_CHILDREN)
                p.cpu_user_s = (ru.ru_utime - self._ru0.ru_utime
                                + ruc.ru_utime - self._ruc0.ru_utime)
                p.cpu_sys_s = (ru.ru_stime - self._ru0.ru_stime
                               + ruc.ru_stime - self._ruc0.ru_stime)
            else:
                ru = resource.getrusage(_RUSAGE_THREAD)
                p.cpu_user_s = ru.ru_utime - self._ru0.ru_utime
                p.cpu_sys_s = ru.ru_stime - self._ru0.ru_stime
            proc = _proc()
            raw1 = proc.io_raw()
            if raw1 is not None and self._io0 is not None:
                io0, io1 = proc.io_parse(self._io0), proc.io_parse(raw1)
                p.read_bytes = io1[0] - io0[0]
                p.write_bytes = max(0, io1[1] - io0[1])
                p.read_chars = io1[2] - io0[2]
                p.write_chars = io1[3] - io0[3]
            entry = int((p.peak_rss_mb or 0.0) * _MB)
            if self.prof._sampling:
                if p.wall_s > _SAMPLER.entry_gap_s:
                    # a sample at exit closes the window (cheap next to the stage)
                    t_end, _ = _SAMPLER.tick(light=True)
                    peak = max(entry, _SAMPLER.window_peak(self._ts0, t_end))
                elif p.wall_s > 5e-4:
                    peak = max(entry, _SAMPLER.exit_peak(),
                               _SAMPLER.window_peak(self._ts0, p.finished))
                else:  # too short to fault in more than a few MB: RSS now will do
                    peak = max(entry, proc.rss() + _SAMPLER.children_rss,
                               _SAMPLER.window_peak(self._ts0, p.finished))
            else:  # not started: only the entry and exit samples
                peak = max(entry, proc.rss() + _SAMPLER.children_rss)
            p.peak_rss_mb = peak / _MB
            if exc is not None:
                p.error = f"{type(exc).__name__}: {exc}"
            if self._cp is not None:
                p.cprofile_text = _cprofile_text(self._cp, self.cprofile_top)
            if self._lp is not None:
                p.memory_profile_text = _memory_profile_text(self._lp)
        finally:
            self.prof._close(p)
        return None


class RunProfiler:
    """Profiles the stages of one run. See the module docstring.

    ``enabled=False`` makes every method a near no-op (about a microsecond per stage).
    ``interval_s`` is the RSS sampling period.
    """

    def __init__(self, *, enabled: bool = True, interval_s: float = 0.1) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.enabled = enabled
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._profiles: list[StageProfile] = []
        self._running: dict[str, StageProfile] = {}
        self._sampling = False
        self._started: float | None = None
        self._finished: float | None = None
        self._series: list[tuple[float, int, int]] = []

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start sampling (idempotent)."""
        if not self.enabled or self._sampling:
            return
        self._started = time.time()
        self._finished = None
        self._sampling = True
        _SAMPLER.acquire(self.interval_s)

    def stop(self) -> None:
        """Stop sampling (idempotent). The report stays available."""
        if not self._sampling:
            return
        self._sampling = False
        _SAMPLER.release()
        self._finished = time.time()
        self._series = _SAMPLER.series(self._started or 0.0, self._finished)

    def __enter__(self) -> RunProfiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- measuring --------------------------------------------------------------
    def stage(self, name: str, *, memory_profile: bool = False,
              target: Callable[..., Any] | Iterable[Callable[..., Any]] | None = None,
              cprofile: bool = False, cprofile_top: int = 25,
              scope: Scope = "thread") -> _StageTimer | _NullStage:
        """Context manager measuring the block as stage ``name``; yields its
        :class:`StageProfile`, filled in on exit (also when the block raises).

        ``cprofile=True`` profiles the executing thread with cProfile (top
        ``cprofile_top`` functions by cumulative time). ``memory_profile=True`` records
        memory_profiler's line-by-line report for ``target`` (one function or several),
        the function(s) whose lines are of interest, called inside the block.
        ``scope="process"`` charges the CPU of the whole process and its children
        (use when the whole process is the stage's, e.g. in a worker).
        """
        if not self.enabled:
            return _NullStage(name)
        targets: list[Callable[..., Any]] | None = None
        if memory_profile:
            if target is None:
                raise ValueError(f"stage '{name}': memory_profile=True needs target=, the "
                                 "function whose lines are profiled")
            targets = [target] if callable(target) else list(target)
        return _StageTimer(self, name, scope, cprofile, cprofile_top, targets)

    def call(self, name: str, fn: Callable[..., Any], *args: Any,
             memory_profile: bool = False, cprofile: bool = False, cprofile_top: int = 25,
             target: Callable[..., Any] | Iterable[Callable[..., Any]] | None = None,
             scope: Scope = "thread", **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as stage ``name`` and return its result. The
        line-by-line memory profile covers ``target`` if given, else ``fn``."""
        with self.stage(name, memory_profile=memory_profile,
                        target=target if target is not None else fn, cprofile=cprofile,
                        cprofile_top=cprofile_top, scope=scope):
            return fn(*args, **kwargs)

    def record(self, profile: StageProfile) -> None:
        """Add a profile measured elsewhere (e.g. by :func:`measure_call` in a worker)."""
        if self.enabled:
            with self._lock:
                self._profiles.append(profile)

    def mark_cache_hit(self, name: str) -> None:
        """Mark stage ``name`` as served from the cache: the stage of that name being
        measured right now if there is one, else a new zero-length record."""
        if not self.enabled:
            return
        with self._lock:
            p = self._running.get(name)
            if p is not None:
                p.cache_hit = True
                return
            now = time.time()
            self._profiles.append(StageProfile(name, started=now, finished=now,
                                               cache_hit=True))

    def _open(self, p: StageProfile) -> None:
        with self._lock:
            self._running[p.name] = p

    def _close(self, p: StageProfile) -> None:
        with self._lock:
            if self._running.get(p.name) is p:
                del self._running[p.name]
            self._profiles.append(p)

    # -- output -------------------------------------------------------------------
    @property
    def stages(self) -> list[StageProfile]:
        with self._lock:
            return list(self._profiles)

    def report(self, max_points: int = 5000) -> ProfileReport:
        """The report so far (call after :meth:`stop` for the full RSS series)."""
        profiles = sorted(self.stages, key=lambda s: s.started)
        now = time.time()
        t0 = self._started if self._started is not None else (
            profiles[0].started if profiles else now)
        t1 = self._finished if self._finished is not None else now
        raw = _SAMPLER.series(t0, t1) if self._sampling else self._series
        series = _downsample([(t, r / _MB, p / _MB) for t, r, p in raw], max_points)
        meta = {"host": socket.gethostname(), "pid": os.getpid(),
                "python": platform.python_version(), "cpu_count": os.cpu_count(),
                "interval_s": self.interval_s, "enabled": self.enabled,
                "hwm_reset": _proc().can_reset_hwm}
        return ProfileReport(stages=profiles, rss_series=series, started=t0, finished=t1,
                             meta=meta)


# -------------------------------------------------------------- worker-side helper
def measure_call(name: str, fn: Callable[..., Any], *args: Any, memory_profile: bool = False,
                 cprofile: bool = False, cprofile_top: int = 25,
                 target: Callable[..., Any] | None = None, interval_s: float = 0.1,
                 **kwargs: Any) -> tuple[Any, StageProfile]:
    """Run ``fn(*args, **kwargs)`` in this (worker) process as a process-scope stage and
    return ``(result, profile)``; the caller passes the profile to
    :meth:`RunProfiler.record`. If ``fn`` raises, the exception propagates and carries the
    profile as ``exc.stage_profile``."""
    prof = RunProfiler(interval_s=interval_s)
    with prof:
        try:
            result = prof.call(name, fn, *args, memory_profile=memory_profile,
                               cprofile=cprofile, cprofile_top=cprofile_top, target=target,
                               scope="process", **kwargs)
        except BaseException as exc:
            prof.stop()
            with contextlib.suppress(AttributeError, IndexError):
                exc.stage_profile = prof.stages[-1]  # type: ignore[attr-defined]
            raise
    return result, prof.stages[-1]


# ---------------------------------------------------------------------- helpers
def _cprofile_text(cp: cProfile.Profile, top: int) -> str:
    buf = io.StringIO()
    try:
        st = pstats.Stats(cp, stream=buf)
    except TypeError:  # nothing was recorded
        return "(no calls recorded)\n"
    st.strip_dirs().sort_stats("cumulative").print_stats(top)
    return buf.getvalue().strip("\n") + "\n"


def _memory_profile_text(lp: Any) -> str:
    from memory_profiler import show_results

    buf = io.StringIO()
    show_results(lp, stream=buf)
    text = buf.getvalue()
    return text if text.strip() else "(the target function was not called)\n"


def _downsample(series: list[tuple[float, float, float]], n: int
                ) -> list[tuple[float, float, float]]:
    if len(series) <= n or n <= 0:
        return series
    step = -(-len(series) // n)
    out = []
    for i in range(0, len(series), step):
        chunk = series[i:i + step]
        out.append((chunk[-1][0], max(c[1] for c in chunk), max(c[2] for c in chunk)))
    return out


def _md_rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")[:200]


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _fmt_mb(v: int | None) -> str:
    return "" if v is None else f"{v / _MB:.2f}"

