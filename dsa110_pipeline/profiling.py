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

import contextlib
import cProfile
import io
import os
import platform
import pstats
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

__all__ = ["ProfileReport", "RunProfiler", "StageProfile", "measure_call", "release_free_memory",
           "rss_mb_now"]

from .memory import _MB, _SAMPLER, _proc, release_free_memory, rss_mb_now  # noqa: F401
from .profile_report import ProfileReport, StageProfile, _downsample  # noqa: F401

Scope = Literal["thread", "process"]
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


# ---------------------------------------------------------------------------- data

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


