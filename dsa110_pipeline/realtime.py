"""A live night (``python -m dsa110_pipeline.run --watch``): groups processed as their files
land, by the same stages, state DB, cache and resume as a batch night.

Each pass of the loop:

1. finds the files that have landed (:class:`~dsa110_pipeline.watch.FileWatcher`: size and
   mtime settled, or a completion marker; inotify wakes it, polling otherwise);
2. groups the landed files of groups not finished yet (the ``discover`` hook on those
   files only) and gives them roles (``assign_roles``);
3. offers a group once it is complete, or once ``late_timeout_s`` has passed since its
   first file landed: then it proceeds flagged partial (``min_files`` or more) or is
   quarantined, as ``watch.partial`` says. A file landing for a group already finished is
   a late file: reported (log, status file, state DB), never silently dropped;
4. runs the offered groups with the :class:`~dsa110_pipeline.night.NightOrchestrator`
   (a group needing solutions that nothing gives yet waits, no failure counted), then
   the windows that can no longer get groups;
5. after a group makes a product with a ``pipeline.redo_after`` hook (tonight's
   calibration solutions), runs the groups the hook names again (targets calibrated with
   an earlier night's solutions);
6. records each group's latency (last file landed -> last stage finished) in
   ``latency.jsonl`` and writes the status file.

SIGTERM (or SIGINT) drains: running stages finish, no new one starts, and the groups not
finished go back to pending; a restart (also after SIGKILL) resumes from the state DB.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import instrument
from .atomic import write_text_atomic
from .context import PipelineContext
from .memory import release_free_memory
from .night import GroupSpec, NightOrchestrator, StageFactory
from .runner import StageRecord
from .state import StateDB
from .watch import FileWatcher

#: Group states after which a group takes no more files.
FINISHED = ("done", "quarantined")
_DAY = 86400.0


@dataclass
class Latency:
    """One group's latency: its last file landed -> its last stage finished (UTC s)."""

    group_id: str
    landed: float
    done: float
    n_files: int
    partial: bool = False
    redo: bool = False

    @property
    def latency_s(self) -> float:
        return self.done - self.landed

    def to_dict(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "landed": self.landed, "done": self.done,
                "latency_s": self.latency_s, "n_files": self.n_files,
                "partial": self.partial, "redo": self.redo}


@dataclass
class _Open:
    """What the loop knows of a group not finished yet."""

    start_mjd: float | None = None
    offered: float = -math.inf  # wall time it was last offered to the orchestrator
    redo: bool = False


@dataclass
class LiveNight:
    """The live-night loop; ``run.py`` builds its parts (see the module docstring)."""

    cfg: Any
    state: StateDB
    orch: NightOrchestrator
    factory: StageFactory
    #: (files) -> the groups those files make, roles assigned
    group: Callable[[Sequence[Path]], list[GroupSpec]]
    make_ctx: Callable[[], PipelineContext]
    log: Any
    #: product key -> hook naming groups to run again after a group made that product
    redo_after: dict[str, Callable[..., list[str]]] = field(default_factory=dict)
    #: called after each batch with the state DB (the night summary)
    after_batch: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        w = self.cfg.watch
        out = Path(self.cfg.paths.output_dir)
        self.status_path = Path(w.status_file) if w.status_file else out / "watch_status.json"
        self.latency_path = out / "latency.jsonl"
        self.watcher = FileWatcher(self.cfg.paths.input_dir, settle_s=w.settle_s,
                                   marker_suffix=w.marker_suffix, use_inotify=w.inotify)
        self.pending: set[str] = set()  # landed files of groups not finished
        self.open: dict[str, _Open] = {}
        self.late: deque[dict[str, Any]] = deque(maxlen=200)
        self.latencies: deque[Latency] = deque(maxlen=500)
        self.in_flight: list[str] = []
        self.stopping: str | None = None
        self.backlog = False  # more groups ready than one batch takes
        self.last_landing = time.time()
        self.started = time.time()
        self.windows_closed = -math.inf
        self.n_done = 0
        self._finished: dict[str, float] = {  # finished group -> its start MJD
            g["group_id"]: g["start_mjd"] for g in self.state.groups()
            if g["status"] in FINISHED and g["start_mjd"] is not None}
        self._last_finish: dict[str, float] = {}
        self._made: list[tuple[str, str, Any]] = []
        prev = self.orch.on_stage_done

        def stage_done(gid: str, name: str, rec: StageRecord) -> None:
            if rec.finished is not None:
                self._last_finish[gid] = rec.finished
            if prev is not None:
                prev(gid, name, rec)

        self.orch.on_stage_done = stage_done
        for k in self.redo_after:  # see what groups make, for the redo hooks
            hook = self.orch.on_product.get(k)
            self.orch.on_product[k] = self._noting(k, hook)

    def _noting(self, k: str, hook: Any) -> Callable[[StateDB, str, Any], None]:
        def note(state: StateDB, gid: str, product: Any) -> None:
            if hook is not None:
                hook(state, gid, product)
            self._made.append((gid, k, product))

        return note

    # -- the loop ---------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Drain: finish what runs, start nothing new, exit (signal-safe)."""
        self.stopping = reason
        self.orch.stop(reason)
        self.watcher.changed.set()

    def serve(self, *, max_groups: int | None = None) -> int:
        """Run until stopped (or, for replays, until the state DB holds ``max_groups``
        finished groups, done or quarantined, and nothing is open). Returns the exit code."""
        handlers = {s: signal.signal(s, lambda n, _f: self.stop(signal.Signals(n).name))
                    for s in (signal.SIGTERM, signal.SIGINT)}
        self.log.info("watching", input_dir=str(self.watcher.directory),
                      inotify=self.watcher.inotify, status=str(self.status_path))
        try:
            while self.stopping is None:
                self.step()
                if max_groups is not None and not self.open and sum(
                        len(self.state.groups(s)) for s in FINISHED) >= max_groups:
                    break
                if not self.backlog:
                    self.watcher.wait(self.cfg.watch.poll_s)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            self.watcher.close()
            self.write_status("stopped")
        self.log.info("stopped", reason=self.stopping or "done", groups_done=self.n_done)
        return 0

    def step(self, now: float | None = None) -> None:
        """One pass: take landed files, offer what is ready, run it, record."""
        now = time.time() if now is None else now
        for path in self.watcher.scan():
            self._landed(str(path))
        idle = now - self.last_landing >= self.cfg.watch.idle_close_s
        ready = self._ready(now, idle)
        closing = math.inf if idle else self._closing()
        if ready or closing > self.windows_closed:
            self._run(ready, closing, idle)
            self.windows_closed = max(self.windows_closed, closing)
        self.write_status("watching")

    def _landed(self, path: str) -> None:
        self.last_landing = time.time()
        row = self.state.file_group(path)
        if row is not None and row["status"] in FINISHED:
            return  # a finished group's file, seen again after a restart
        self.pending.add(path)

    def _ready(self, now: float, idle: bool) -> list[GroupSpec]:
        """The groups to offer now; quarantines groups incomplete past the timeout and
        reports late files."""
        self.backlog = False
        if not self.pending:
            return []
        w = self.cfg.watch
        ready = []
        for spec in self.group(sorted(Path(p) for p in self.pending)):
            files = [f for f, *_ in spec.files]
            late_for = self._late_for(spec)
            if late_for is not None:
                self._report_late(late_for, spec, files)
                continue
            entry = self.open.setdefault(spec.group_id, _Open())
            entry.start_mjd = spec.start_mjd
            row = self.state.group(spec.group_id) or {}
            if not spec.complete:
                first = min(self.watcher.landed.get(f, now) for f in files)
                if now - first < w.late_timeout_s and not idle:
                    continue
                if w.partial == "quarantine" or len(files) < w.min_files:
                    self._quarantine_incomplete(spec, files, now - first)
                    continue
                spec.metadata["allow_partial"] = True
                if row.get("status") is None:
                    self.log.warning("group incomplete after the timeout: proceeds",
                                     group=spec.group_id, files=len(files),
                                     missing=spec.missing)
            retry = row.get("status") in ("failed", "waiting")
            if retry and now - entry.offered < w.retry_s and not idle:
                continue
            ready.append(spec)
        # a backlog (a restart, a night caught up) goes in batches of the oldest groups:
        # the status, latencies and a SIGTERM's drain stay timely
        ready.sort(key=lambda s: s.start_mjd if s.start_mjd is not None else math.inf)
        self.backlog = len(ready) > w.max_batch
        ready = ready[:w.max_batch]
        for spec in ready:
            self.open[spec.group_id].offered = now
        return ready

    def _late_for(self, spec: GroupSpec) -> str | None:
        """The finished group this group's files belong to (they came too late), if any."""
        if spec.start_mjd is None or spec.group_id in self.open:
            return None
        tol = instrument.FILENAME_JITTER / _DAY
        near = [(abs(m - spec.start_mjd), g) for g, m in self._finished.items()
                if abs(m - spec.start_mjd) <= tol]
        return min(near)[1] if near else None

    def _report_late(self, gid: str, spec: GroupSpec, files: list[str]) -> None:
        self.log.error("file landed after its group was finished: not processed",
                       group=gid, files=files)
        self.state.upsert_group(gid, files=spec.files)  # recorded with its group
        for f in files:
            self.late.append({"file": f, "group_id": gid, "time": time.time()})
            self.pending.discard(f)

    def _quarantine_incomplete(self, spec: GroupSpec, files: list[str], age: float) -> None:
        message = (f"incomplete {age:.0f} s after its first file landed: "
                   f"{len(files)} file(s), missing {', '.join(spec.missing) or '?'} "
                   f"(watch.partial={self.cfg.watch.partial}, min_files="
                   f"{self.cfg.watch.min_files})")
        self.state.upsert_group(spec.group_id, start_mjd=spec.start_mjd, dec_deg=spec.dec_deg,
                                role=spec.role, files=spec.files)
        self.state.set_group_status(spec.group_id, "quarantined", message, failed=True)
        self.log.error("group quarantined", group=spec.group_id, reason=message)
        self._close(spec.group_id, spec.start_mjd, files)

    def _close(self, gid: str, start_mjd: float | None, files: Sequence[str]) -> None:
        self.open.pop(gid, None)
        if start_mjd is not None:
            self._finished[gid] = start_mjd
        self.pending.difference_update(files)

    def _closing(self) -> float:
        """Windows ending before this MJD get no more groups: every group starting before
        it has landed (groups land in time order, within the jitter and the timeout) and
        none of them is still open."""
        starts = list(self._finished.values())
        if not starts:
            return -math.inf
        margin = (2 * instrument.FILENAME_JITTER + self.cfg.watch.late_timeout_s) / _DAY
        closing = max(starts) - margin
        open_starts = [e.start_mjd for e in self.open.values() if e.start_mjd is not None]
        return min([closing, *open_starts])

    def _run(self, ready: list[GroupSpec], closing: float, idle: bool) -> None:
        self.in_flight = [s.group_id for s in ready]
        self.write_status("processing")
        self._made.clear()
        self._last_finish.clear()
        res = self.orch.run(ready, self.factory, self.make_ctx(),
                            windows_closed_before=closing, defer_unplannable=not idle)
        self.in_flight = []
        landed = self.watcher.landed
        for spec in ready:
            files = [f for f, *_ in spec.files]
            status = res.status.get(spec.group_id)
            if status not in FINISHED:
                continue
            entry = self.open.get(spec.group_id) or _Open()
            self._close(spec.group_id, spec.start_mjd, files)
            if status == "done" and spec.group_id in self._last_finish:
                self.n_done += 1
                lat = Latency(spec.group_id, max(landed.get(f, math.nan) for f in files),
                              self._last_finish[spec.group_id], len(files),
                              partial=bool(spec.metadata.get("allow_partial")),
                              redo=entry.redo)
                self.latencies.append(lat)
                with open(self.latency_path, "a") as fh:
                    fh.write(json.dumps(lat.to_dict()) + "\n")
                self.log.info("group done", group=spec.group_id,
                              latency_s=round(lat.latency_s, 1), redo=entry.redo)
        self._redo()
        if self.after_batch is not None:
            self.after_batch()
        # window stages and the summary run here, in threads: glibc keeps what their
        # large temporaries freed (a mosaic: ~180 MB a window), so RSS would ratchet up
        # by each window's high-water mark; hand it back after every batch
        gc.collect()
        release_free_memory()

    def _redo(self) -> None:
        """Groups to run again after tonight's products (see ``pipeline.redo_after``)."""
        if not self.cfg.watch.redo:
            return
        made, self._made = self._made, []
        for gid, k, product in made:
            for other in self.redo_after[k](self.state, gid, product):
                row = self.state.group(other) or {}
                self.state.set_group_status(other, "pending", f"run again after {gid}'s {k}")
                self._finished.pop(other, None)
                self.open[other] = _Open(start_mjd=row.get("start_mjd"), redo=True)
                files = [r["path"] for r in self.state.query(
                    "SELECT path FROM files WHERE group_id=?", (other,))]
                self.pending.update(f for f in files if os.path.exists(f))
                self.log.info("group runs again", group=other, after=gid, product=k,
                              was=row.get("status"))
        # a new product may be what a waiting group needs: offer it at once
        if made:
            for entry in self.open.values():
                entry.offered = -math.inf

    # -- status -----------------------------------------------------------------------
    def write_status(self, state: str) -> None:
        lats = [x.latency_s for x in self.latencies if not x.redo]
        waiting = {g["group_id"]: g["message"] for g in self.state.query(
            "SELECT group_id, message FROM groups WHERE status IN ('waiting', 'failed')")}
        doc = {"pid": os.getpid(), "state": state, "updated": time.time(),
               "started": self.started, "input_dir": str(self.watcher.directory),
               "in_flight": self.in_flight, "open_groups": sorted(self.open),
               "groups": {r["status"]: r["n"] for r in self.state.query(
                   "SELECT status, count(*) AS n FROM groups GROUP BY status")},
               "waiting_or_failed": waiting, "groups_done": self.n_done,
               "files_pending": len(self.pending), "late_files": list(self.late),
               "last_latencies": [x.to_dict() for x in list(self.latencies)[-20:]],
               "latency_p50_s": _percentile(lats, 50), "latency_p95_s": _percentile(lats, 95)}
        write_text_atomic(self.status_path, json.dumps(doc, indent=1))


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))])
