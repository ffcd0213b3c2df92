"""Runner: plans and runs a DAG of stages in-process, light and parallel.

Edges come from ``requires``/``produces``. Cycles and requirements that no stage
produces are rejected before anything runs. Ready stages are dispatched from a
queue to a thread pool; a stage that declares ``executor = "process"`` (CPU-bound
pure Python) or a ``timeout`` runs in a child process, which is killed when the
timeout expires. Work that must spread over cores or machines goes to the dask
client the runner hands to stages through ``ctx.client``.

The plan is :mod:`.plan`'s, where a stage runs is :mod:`.executors`', parameter sweeps are
:mod:`.sweeps`'; this module is the dispatch loop, retries, the cache and the records.
"""

from __future__ import annotations

import heapq
import os
import queue
import socket
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from . import __version__
from .cache import ResultCache, cache_key
from .context import PipelineContext, ProvenanceRecord
from .errors import (
    ConfigError,
    ContractError,
    InputError,
    PipelineError,
    PlanError,
    StorageError,
)
from .executors import (  # noqa: F401 - the runner's API, re-exported
    _STAGE_PRIORITY,
    Runtime,
    StageFailed,
    _input_files,
    _wrap_error,
    dask_resources,
    full_root,
    run_contract,
    run_in_child,
    run_on_dask,
    storage_roots,
    task_priority,
)
from .plan import Plan, build_plan, merge_contexts  # noqa: F401
from .slots import WorkerSlots, cluster_threads
from .stage import PipelineStage
from .sweeps import VariantStage, expand_sweep, variant_suffix  # noqa: F401

Status = Literal["pending", "ok", "cached", "failed", "skipped"]
_NEVER_RETRY = (InputError, ContractError, ConfigError, PlanError)


def _scalar_metrics(added: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The scalars of the metrics a stage added, flat when it reported under one name (its
    own), else keyed by name; None when it reported none."""
    new = {st: {k: v for k, v in m.items() if isinstance(v, (int, float, str, bool))}
           for st, m in added.items()}
    new = {st: m for st, m in new.items() if m}
    if not new:
        return None
    return next(iter(new.values())) if len(new) == 1 else new


@dataclass
class StageRecord:
    name: str
    status: Status = "pending"
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    error_type: str | None = None
    cache_key: str | None = None
    profile: dict[str, Any] | None = None
    #: The numbers the stage reported (its ``context.metrics`` entries, scalars only).
    metrics: dict[str, Any] | None = None

    @property
    def wall_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "attempts": self.attempts,
                "started": self.started, "finished": self.finished, "wall_s": self.wall_s,
                "error": self.error, "error_type": self.error_type,
                "cache_key": self.cache_key, "profile": self.profile, "metrics": self.metrics}


@dataclass
class RunResult:
    context: PipelineContext
    records: dict[str, StageRecord]
    plan: Plan
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.status in ("ok", "cached") for r in self.records.values())

    @property
    def failed(self) -> list[str]:
        return [n for n, r in self.records.items() if r.status == "failed"]

    def raise_for_failures(self) -> None:
        bad = [r for r in self.records.values() if r.status == "failed"]
        if bad:
            raise PipelineError("; ".join(r.error or r.name for r in bad),
                                stage=bad[0].name if len(bad) == 1 else None)


class Runner:
    """Plans and runs stages. Reusable: ``run`` may be called any number of times."""

    def __init__(self, stages: Sequence[PipelineStage], *, cache: ResultCache | None = None,
                 runtime: Runtime | None = None, max_workers: int | None = None,
                 profiler: Any = None, continue_on_failure: bool = True,
                 retry_backoff_s: float = 0.5, rerun: bool = False,
                 log_context: bool = True, memory_profile: Iterable[str] = (),
                 cprofile: Iterable[str] = (), cprofile_top: int = 25,
                 on_done: Any = None) -> None:
        self.stages = list(stages)
        self.cache = cache
        self.runtime = runtime
        # Threads wait on I/O or on GIL-releasing work; CPU-heavy work goes to dask.
        self.max_workers = max_workers or max(32, 4 * (os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None
        #: stage name -> its plan priority (see :attr:`Plan.priority`), set by :meth:`run`
        self._priority: dict[str, int] = {}
        #: dask stages wait here for a free worker thread of the runtime's cluster
        self._slots = WorkerSlots(
            lambda: cluster_threads(self.runtime.client) if self.runtime is not None else 0)
        self.profiler = profiler
        self.continue_on_failure = continue_on_failure
        self.retry_backoff_s = retry_backoff_s
        self.rerun = rerun
        self.log_context = log_context
        # Stage names ("*" for all) profiled line by line / under cProfile.
        self.memory_profile = frozenset(memory_profile)
        self.cprofile = frozenset(cprofile)
        self.cprofile_top = cprofile_top
        #: Called in the dispatching thread as on_done(stage, record, context or None)
        #: after each stage; the orchestrator records state there (one writer).
        self.on_done = on_done
        #: set by :meth:`stop_dispatch`
        self._stop_reason: str | None = None
        self._host = socket.gethostname()
        self._log = structlog.get_logger("dsa110.runner")

    def stop_dispatch(self, reason: str) -> None:
        """Start no more stages (a service draining on SIGTERM): stages running finish,
        those not started are skipped with ``reason`` (error type ``Stopped``). Safe to
        call from a signal handler or another thread."""
        self._stop_reason = reason

    def plan(self, ctx: PipelineContext | None = None) -> Plan:
        available = set(ctx.inputs) | set(ctx.outputs) if ctx is not None else set()
        return build_plan(self.stages, available)

    def run(self, ctx: PipelineContext | None = None) -> RunResult:
        ctx = ctx or PipelineContext()
        if self.runtime is not None and ctx.runtime is None:
            ctx = ctx.with_runtime(self.runtime)
        plan = self.plan(ctx)
        n = len(plan.stages)
        records = {s.name: StageRecord(s.name) for s in plan.stages}
        # A stage's context is dropped once every child holds its own copy, so
        # long chains stay linear in memory; what no later stage carries on
        # (frontier stages, inputs of failed stages) is kept for the final merge.
        results: list[PipelineContext | None] = [None] * n
        undispatched = [len(c) for c in plan.children]
        carried = [False] * n
        keep: list[PipelineContext] = []
        waiting = [len(p) for p in plan.parents]
        #: per stage: None while pending or running, else whether it produced its outputs
        outcome: list[bool | None] = [None] * n
        prio = plan.priority
        self._priority = {plan.stages[j].name: prio[j] for j in range(n)}
        # the ready stages, a heap: highest priority first; among equals, plan order (a
        # night's groups in time). A scan for the best made a 5,000-stage fan-out O(n^2).
        ready: list[tuple[int, int]] = []

        def make_ready(js: Iterable[int]) -> None:
            for j in js:
                heapq.heappush(ready, (-prio[j], j))

        make_ready(i for i in range(n) if waiting[i] == 0)
        done: queue.SimpleQueue = queue.SimpleQueue()
        in_flight = 0
        stop = False
        storage_stop: str | None = None
        t0 = time.perf_counter()
        # One dispatch loop; stages run in the pool, or inline when alone.
        while ready or in_flight:
            if self._stop_reason is not None:
                stop = True
            while ready and not stop:
                i = heapq.heappop(ready)[1]
                parents = plan.parents[i]
                stage_ctx = merge_contexts(ctx, [results[p] for p in parents
                                                 if results[p] is not None])
                for p in parents:
                    undispatched[p] -= 1
                    if undispatched[p] == 0:
                        results[p] = None
                stage = plan.stages[i]
                if not ready and not in_flight:
                    # Nothing else can run meanwhile: skip the thread hand-off.
                    self._job(stage, stage_ctx, records[stage.name], i, done)
                else:
                    self._get_pool().submit(self._job, stage, stage_ctx,
                                            records[stage.name], i, done)
                in_flight += 1
            if not in_flight:
                break
            i, out, given = done.get()
            in_flight -= 1
            if self.on_done is not None:
                st = plan.stages[i]
                self.on_done(st, records[st.name], out)
            outcome[i] = out is not None
            if out is not None:
                for p in plan.parents[i]:
                    carried[p] = True
                if plan.children[i]:
                    results[i] = out
                else:
                    keep.append(out)
                for c in plan.children[i]:
                    waiting[c] -= 1
                    if waiting[c] == 0:
                        make_ready([c])
            else:
                if plan.parents[i]:
                    keep.append(given)
                make_ready(self._skip_descendants(plan, i, records, waiting, outcome))
                rec_i = records[plan.stages[i].name]
                if rec_i.error_type == "StorageError" and not stop:
                    # a full disk fails every stage after it: start no more
                    stop = True
                    storage_stop = rec_i.error
                if not self.continue_on_failure:
                    stop = True
        if storage_stop is not None or self._stop_reason is not None:
            why, kind = ((storage_stop, "StorageError") if storage_stop is not None
                         else (self._stop_reason, "Stopped"))
            for r in records.values():
                if r.status == "pending":
                    r.status, r.error = "skipped", f"not started: {why}"
                    r.error_type = kind
        # Stages whose children never ran (stopped early) still count.
        keep.extend(r for i, r in enumerate(results) if r is not None and not carried[i])
        final = merge_contexts(ctx, keep) if keep else ctx
        return RunResult(final, records, plan, time.perf_counter() - t0)

    # -- internals ----------------------------------------------------------
    def _get_pool(self) -> ThreadPoolExecutor:
        """The runner's thread pool, created on first need and kept across runs."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_workers,
                                            thread_name_prefix="stage")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @staticmethod
    def _skip_descendants(plan: Plan, i: int, records: dict[str, StageRecord],
                          waiting: list[int], outcome: list[bool | None]) -> list[int]:
        """Mark what stage ``i``'s failure starves as skipped; return the stages that take
        partial inputs (:attr:`PipelineStage.partial_inputs`) and may now start: their
        producers have all finished and at least one of them succeeded."""
        todo = list(plan.children[i])
        failed = plan.stages[i].name
        freed: list[int] = []
        while todo:
            c = todo.pop()
            stage = plan.stages[c]
            rec = records[stage.name]
            if rec.status != "pending":
                continue
            if stage.partial_inputs:
                waiting[c] -= 1
                if waiting[c] > 0:
                    continue
                if any(outcome[p] for p in plan.parents[c]):
                    freed.append(c)
                    continue
            rec.status = "skipped"
            rec.error = f"upstream stage '{failed}' failed"
            outcome[c] = False
            todo.extend(plan.children[c])
        return freed

    def _job(self, stage: PipelineStage, ctx: PipelineContext, rec: StageRecord, i: int,
             done: queue.SimpleQueue) -> None:
        out: PipelineContext | None = None
        token = _STAGE_PRIORITY.set(self._priority.get(stage.name, 0))
        try:
            out = self._run_stage(stage, ctx, rec)
        except BaseException as exc:  # noqa: BLE001 - recorded, never lost
            err = _wrap_error(stage, exc, ctx, storage_roots(self.runtime))
            rec.status = "failed"
            rec.error = str(err)
            rec.error_type = type(err if isinstance(err, StorageError) else exc).__name__
            rec.finished = time.time()
            self._log.error("stage failed", stage=stage.name, run_id=ctx.run_id,
                            group_id=ctx.group_id, error=str(err))
        finally:
            _STAGE_PRIORITY.reset(token)
            done.put((i, out, ctx))

    def _run_stage(self, stage: PipelineStage, ctx: PipelineContext,
                   rec: StageRecord) -> PipelineContext:
        tokens = (structlog.contextvars.bind_contextvars(
            run_id=ctx.run_id, group_id=ctx.group_id, stage=stage.name)
            if self.log_context else None)
        try:
            return self._run_stage_inner(stage, ctx, rec)
        finally:
            if tokens is not None:
                structlog.contextvars.reset_contextvars(**tokens)

    def _run_stage_inner(self, stage: PipelineStage, ctx: PipelineContext,
                         rec: StageRecord) -> PipelineContext:
        variant = getattr(stage, "variant", None) or {}
        rec.started = time.time()
        key = None
        if self.cache is not None and stage.cacheable:
            key = cache_key(stage, ctx, variant=variant)
            rec.cache_key = key
            if not self.rerun:
                entry = self.cache.get(key)
                if entry is not None:
                    out = ctx.with_outputs(entry["outputs"]).with_metadata(**entry["metadata"])
                    for st, m in entry.get("metrics", {}).items():
                        out = out.with_metrics(st, **m)
                    rec.status, rec.attempts, rec.finished = "cached", 0, time.time()
                    if self.profiler is not None:
                        self.profiler.mark_cache_hit(stage.name)
                    return out.with_provenance(self._provenance(stage, ctx, rec, key, True,
                                                                variant))
        attempt = 0
        rec.attempts = 0
        while True:
            attempt += 1
            rec.attempts += 1
            try:
                out = self._attempt(stage, ctx, rec)
                break
            except BaseException as exc:
                retryable = (isinstance(exc, stage.transient)
                             and not isinstance(exc, _NEVER_RETRY))
                if not retryable or attempt > stage.retries:
                    raise
                delay = self.retry_backoff_s * 2 ** (attempt - 1)
                self._log.warning("transient failure, retrying", stage=stage.name,
                                  attempt=attempt, delay_s=delay, error=str(exc))
                time.sleep(delay)
        rec.finished = time.time()
        rec.status = "ok"
        added = {k: v for k, v in out.metrics.items() if ctx.metrics.get(k) != v}
        rec.metrics = _scalar_metrics(added)
        if key is not None:
            new_outputs = {k: v for k, v in out.outputs.items() if ctx.outputs.get(k) is not v}
            new_meta = {k: v for k, v in out.metadata.items()
                        if k not in ctx.metadata or ctx.metadata[k] != v}
            self.cache.put(key, new_outputs, new_meta, added)  # type: ignore[union-attr]
        return out.with_provenance(self._provenance(stage, ctx, rec, key, False, variant))

    def _attempt(self, stage: PipelineStage, ctx: PipelineContext,
                 rec: StageRecord) -> PipelineContext:
        client = (self.runtime.client if stage.executor == "dask" and self.runtime is not None
                  else None)
        if client is not None:
            priority = task_priority()
            with self._slots.hold(priority, self.runtime.stage_threads or 1):
                out, profile, lost = run_on_dask(client, stage, ctx, self.runtime,
                                                 priority=priority)
            if lost:
                rec.attempts += lost  # each worker that died under it was one attempt
                self._log.warning("dask worker lost mid-stage, stage rerun on another worker",
                                  stage=stage.name, workers_lost=lost,
                                  group=getattr(stage, "group_id", None) or ctx.group_id,
                                  attempts=rec.attempts)
            if self.profiler is not None and profile is not None:
                self.profiler.record(profile)
            return out
        isolated = stage.executor == "process" or stage.timeout is not None
        cm = nullcontext() if self.profiler is None else self._profile_block(stage)
        with cm:
            if isolated:
                return run_in_child(stage, ctx, stage.timeout)
            return run_contract(stage, ctx)

    def _profile_block(self, stage: PipelineStage) -> Any:
        def wanted(names: frozenset[str]) -> bool:
            return stage.name in names or "*" in names

        mem = wanted(self.memory_profile) and stage.executor == "thread" and not stage.timeout
        target = getattr(stage, "fn", None) or getattr(stage, "inner", stage).execute
        return self.profiler.stage(stage.name, memory_profile=mem,
                                   target=target if mem else None,
                                   cprofile=wanted(self.cprofile),
                                   cprofile_top=self.cprofile_top)

    def _provenance(self, stage: PipelineStage, ctx: PipelineContext, rec: StageRecord,
                    key: str | None, hit: bool, variant: dict[str, Any]) -> ProvenanceRecord:
        inputs = {}
        for k in stage.requires:
            if ctx.has(k):
                p = ctx.get(k)
                inputs[k] = ([r.checksum for r in p] if isinstance(p, list) else p.checksum)
        # Built from trusted values: skip validation on the hot path.
        return ProvenanceRecord.model_construct(
            stage=stage.name, stage_version=stage.version, cache_key=key, cache_hit=hit,
            config_hash=stage.config_hash(), input_checksums=inputs,
            pipeline_version=__version__, started=rec.started or 0.0,
            finished=rec.finished or 0.0, attempts=rec.attempts, host=self._host,
            variant=variant)


# -- parameter sweeps -------------------------------------------------------------

