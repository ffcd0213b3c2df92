"""Runner: plans and runs a DAG of stages in-process, light and parallel.

Edges come from ``requires``/``produces``. Cycles and requirements that no stage
produces are rejected before anything runs. Ready stages are dispatched from a
queue to a thread pool; a stage that declares ``executor = "process"`` (CPU-bound
pure Python) or a ``timeout`` runs in a child process, which is killed when the
timeout expires. Work that must spread over cores or machines goes to the dask
client the runner hands to stages through ``ctx.client``.
"""

from __future__ import annotations

import contextvars
import multiprocessing as mp
import os
import pickle
import queue
import socket
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Literal

import structlog

from . import __version__
from .cache import ResultCache, cache_key
from .context import PipelineContext, Product, ProvenanceRecord
from .errors import (
    ConfigError,
    ContractError,
    InputError,
    PipelineError,
    PlanError,
    StageTimeout,
    StorageError,
    TransientError,
    is_no_space,
    no_space_error,
)
from .mapped import MappedStage
from .slots import WorkerSlots, cluster_threads
from .stage import PipelineStage

Status = Literal["pending", "ok", "cached", "failed", "skipped"]
_NEVER_RETRY = (InputError, ContractError, ConfigError, PlanError)


class StageFailed(PipelineError):
    """A stage raised an exception that was not already a :class:`PipelineError`."""


@dataclass
class Runtime:
    """What the runner hands to stages beside the context (never serialised).

    ``client`` may be a dask client or a zero-argument callable that creates one
    on first use (see :class:`dsa110_pipeline.cluster.ClientHandle`), so runs
    that never fan out never start a cluster.
    """

    client_source: Any = None
    scratch_root: str | None = None
    config: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: Threads a stage may use (set on dask workers from the worker's thread count).
    nthreads: int | None = None

    def for_worker(self, nthreads: int | None, client_source: Any = None) -> Runtime:
        """What a stage sees on a dask worker: the worker's thread count, and a client only
        through ``client_source`` (see :class:`~dsa110_pipeline.cluster.WorkerClient`)."""
        return Runtime(client_source=client_source, scratch_root=self.scratch_root,
                       config=self.config, extras=dict(self.extras), nthreads=nthreads)

    @property
    def stage_threads(self) -> int | None:
        """``orchestrator.stage_threads`` of the run's config (None: the worker's threads)."""
        return getattr(getattr(self.config, "orchestrator", None), "stage_threads", None)

    @property
    def client(self) -> Any:
        src = self.client_source
        if src is None:
            return None
        getter = getattr(src, "get", None)
        return getter() if callable(getter) and not hasattr(src, "submit") else src


#: The plan priority of the stage running in this thread (see :attr:`Plan.priority`).
_STAGE_PRIORITY: contextvars.ContextVar[int] = contextvars.ContextVar("dsa110_stage_priority",
                                                                      default=0)


def task_priority() -> int:
    """dask priority for the tasks the running stage fans out (``client.map(...,
    priority=task_priority())``): its plan priority, so that a night's calibrator group is
    converted before the targets that wait for its solutions."""
    return _STAGE_PRIORITY.get()


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
class Plan:
    """A validated DAG: stages, their parents and a topological order."""

    stages: list[PipelineStage]
    parents: list[list[int]]
    children: list[list[int]]
    order: list[int]

    @property
    def depth(self) -> list[int]:
        """Per stage, the most stages on a path from it to the end, itself included: its
        priority. The stage heading the longest chain runs first (a night's calibration
        before the targets' imaging, a group's imaging before another's validation), so
        the chain that decides the wall time is never kept waiting."""
        depth = [1] * len(self.stages)
        for i in reversed(self.order):
            if self.children[i]:
                depth[i] = 1 + max(depth[c] for c in self.children[i])
        return depth

    @property
    def priority(self) -> list[int]:
        """Per stage, its dispatch priority: its :attr:`depth`, then (among equal depths)
        how many stages wait on it, directly or not. A night's calibration and a target's
        conversion head chains of the same depth, but every target waits on the
        calibration, so it goes first."""
        below: list[set[int]] = [set() for _ in self.stages]
        for i in reversed(self.order):
            for c in self.children[i]:
                below[i].add(c)
                below[i] |= below[c]
        scale = len(self.stages) + 1
        return [d * scale + len(b) for d, b in zip(self.depth, below, strict=True)]

    def describe(self) -> str:
        lines = [f"plan: {len(self.stages)} stage(s)"]
        for i in self.order:
            s = self.stages[i]
            after = ", ".join(self.stages[p].name for p in self.parents[i]) or "-"
            lines.append(f"  {s.name:<28} after: {after:<30} requires: {list(s.requires)} "
                         f"produces: {list(s.produces)} [{s.executor}]")
        return "\n".join(lines)


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


def build_plan(stages: Sequence[PipelineStage], available: Iterable[str] = ()) -> Plan:
    """Derive edges from requires/produces; reject duplicates, missing producers and cycles."""
    stages = list(stages)
    names: dict[str, int] = {}
    producer: dict[str, int] = {}
    for i, s in enumerate(stages):
        if s.name in names:
            raise PlanError(f"two stages are called '{s.name}'")
        names[s.name] = i
        for key in s.produces:
            if key in producer:
                raise PlanError(f"'{key}' is produced by both '{stages[producer[key]].name}' "
                                f"and '{s.name}'")
            producer[key] = i
    have = set(available)
    parents: list[list[int]] = []
    for i, s in enumerate(stages):
        ps: list[int] = []
        for key in s.requires:
            if key in producer:
                if producer[key] == i:
                    raise PlanError(f"stage '{s.name}' requires its own output '{key}'")
                if producer[key] not in ps:
                    ps.append(producer[key])
            elif key not in have:
                raise PlanError(f"stage '{s.name}' requires '{key}', which no stage produces "
                                f"and the initial context does not hold", stage=s.name)
        parents.append(ps)
    children: list[list[int]] = [[] for _ in stages]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    # Kahn's algorithm; what is left over lies on a cycle.
    indeg = [len(p) for p in parents]
    ready = deque(i for i, d in enumerate(indeg) if d == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for c in children[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if len(order) != len(stages):
        stuck = [i for i, d in enumerate(indeg) if d > 0]
        raise PlanError("dependency cycle among stages: " + _cycle_text(stuck, parents, stages))
    return Plan(stages, parents, children, order)


def _cycle_text(stuck: list[int], parents: list[list[int]], stages: list[PipelineStage]) -> str:
    stuck_set = set(stuck)
    path: list[int] = []
    node = stuck[0]
    while node not in path:
        path.append(node)
        node = next(p for p in parents[node] if p in stuck_set)
    cycle = path[path.index(node):] + [node]
    return " <- ".join(stages[i].name for i in cycle)


def merge_contexts(base: PipelineContext, parents: Sequence[PipelineContext]) -> PipelineContext:
    """The input context of a stage: the base plus everything its parents produced."""
    if not parents:
        return base
    if len(parents) == 1:
        return parents[0]
    outputs: dict[str, Product] = {}
    metadata: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, float]] = set()
    provenance: list[ProvenanceRecord] = []
    for p in parents:
        outputs.update(p.outputs)
        metadata.update(p.metadata)
        metrics.update(p.metrics)
        for rec in p.provenance:
            ident = (rec.stage, rec.started)
            if ident not in seen:
                seen.add(ident)
                provenance.append(rec)
    return parents[0]._derive(outputs=outputs, metadata=metadata, metrics=metrics,
                              provenance=tuple(provenance))


def _input_files(stage: PipelineStage, ctx: PipelineContext) -> list[str]:
    files: list[str] = []
    for key in stage.requires:
        if ctx.has(key):
            p = ctx.get(key)
            files.extend(r.path for r in (p if isinstance(p, list) else [p]))
    return files


def storage_roots(runtime: Runtime | None) -> list[str]:
    """Where a stage writes: the run's output directory, then its scratch root (/dev/shm
    when none is set)."""
    paths = getattr(getattr(runtime, "config", None), "paths", None)
    out = getattr(paths, "output_dir", None)
    scratch = getattr(runtime, "scratch_root", None) or "/dev/shm"
    return [str(r) for r in (out, scratch) if r]


#: Free space (bytes) below which a storage root counts as full.
FULL_BELOW_BYTES = 1 << 20


def full_root(roots: Iterable[str]) -> str | None:
    """The first of ``roots`` whose file system has (almost) no space left, else None: a
    process that died writing (casacore aborts on a full disk) leaves it so."""
    import shutil

    for r in roots:
        p = os.path.abspath(r)
        while not os.path.exists(p) and os.path.dirname(p) != p:
            p = os.path.dirname(p)
        try:
            if shutil.disk_usage(p).free < FULL_BELOW_BYTES:
                return r
        except OSError:
            continue
    return None


def _died_of_full_disk(stage: PipelineStage, runtime: Runtime | None, exc: BaseException,
                       what: str) -> StorageError | None:
    """A :class:`StorageError` when the process running ``stage`` died and a storage root
    is full (the death was the disk's, so retrying cannot help), else None."""
    where = full_root(storage_roots(runtime))
    if where is None:
        return None
    return StorageError(f"no space left on {where} ({what})", stage=stage.name, cause=exc)


def _wrap_error(stage: PipelineStage, exc: BaseException, ctx: PipelineContext,
                roots: Sequence[str] = ()) -> PipelineError:
    if not isinstance(exc, StorageError) and is_no_space(exc):
        err = no_space_error(exc, roots, stage=stage.name)
        err.__cause__ = exc
        return err
    if isinstance(exc, PipelineError):
        if exc.stage is None:
            new = type(exc)(exc.detail, stage=stage.name,
                            files=exc.files or _input_files(stage, ctx), cause=exc.cause)
            new.__cause__ = exc
            return new
        return exc
    err = StageFailed(f"{type(exc).__name__}: {exc}", stage=stage.name,
                      files=_input_files(stage, ctx), cause=exc)
    err.__cause__ = exc
    return err


def run_contract(stage: PipelineStage, ctx: PipelineContext) -> PipelineContext:
    """validate → execute → validate_outputs, with cleanup always."""
    try:
        stage.validate(ctx)
        out = stage.execute(ctx)
        if not isinstance(out, PipelineContext):
            raise ContractError(f"execute() must return a PipelineContext, not "
                                f"{type(out).__name__}", stage=stage.name)
        stage.validate_outputs(out)
        return out
    finally:
        stage.cleanup(ctx)


# -- dask execution (heavy per-group stages) -------------------------------------

def _dask_main(name: str, stage_blob: bytes, ctx_json: str, runtime_blob: bytes,
               priority: int = 0) -> tuple[str, Any, Any]:
    """On a dask worker: the stage contract, measured; errors come back pickled. A stage
    that fans out gets the worker's client (:class:`~dsa110_pipeline.cluster.WorkerClient`),
    and its tasks inherit the stage's ``priority``. The measurement starts before the
    stage is unpickled: loading its code on a fresh worker is part of its time there."""
    from distributed import get_worker

    from .cluster import WorkerClient
    from .profiling import measure_call

    nthreads_worker = get_worker().state.nthreads

    def call() -> PipelineContext:
        stage = pickle.loads(stage_blob)
        runtime: Runtime = pickle.loads(runtime_blob)
        runtime = runtime.for_worker(runtime.stage_threads or nthreads_worker, WorkerClient())
        ctx = PipelineContext.from_json(ctx_json).with_runtime(runtime)
        if stage.timeout:
            return run_in_child(stage, ctx, stage.timeout)
        return run_contract(stage, ctx)

    token = _STAGE_PRIORITY.set(priority)
    try:
        out, profile = measure_call(name, call)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the runner
        try:
            return "error", pickle.dumps(exc), None
        except Exception:  # unpicklable exception
            return "error", pickle.dumps(StageFailed(f"{type(exc).__name__}: {exc}",
                                                     stage=name)), None
    finally:
        _STAGE_PRIORITY.reset(token)
    return "ok", out.to_json(), profile


def dask_resources(client: Any, need: Any) -> dict[str, float] | None:
    """``{"memory_gb": n}`` when every worker advertises a ``memory_gb`` resource (the
    runner's LocalCluster does; ``dask worker --resources memory_gb=N`` on a cluster),
    so a worker runs only as many stages as its memory holds; else None."""
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - no scheduler info: schedule without resources
        return None
    have = [(w.get("resources") or {}).get("memory_gb") for w in workers.values()]
    if not have or any(h is None for h in have):
        return None
    # never ask for more than the largest worker has: the task would wait forever
    return {"memory_gb": min(float(getattr(need, "memory_gb", 0.0) or 0.0), max(have))}


def _lost_workers(client: Any, key: str) -> int:
    """How many workers died while running task ``key`` (the scheduler's count of
    "suspicious" deaths, before dask reran it elsewhere); 0 when it cannot be asked."""
    def count(dask_scheduler: Any) -> int:  # runs on the scheduler (pickled by value)
        ts = dask_scheduler.tasks.get(key)
        return int(getattr(ts, "suspicious", 0) or 0) if ts is not None else 0

    try:
        return int(client.run_on_scheduler(count))
    except Exception:  # noqa: BLE001 - only a count for the record
        return 0


def run_on_dask(client: Any, stage: PipelineStage, ctx: PipelineContext,
                runtime: Runtime, priority: int = 0) -> tuple[PipelineContext, Any, int]:
    """Run the stage contract as one task on a dask worker and return (context, profile,
    lost): ``lost`` counts the workers that died under the task before it finished (dask
    itself reschedules such a task; each death is one more attempt of the stage).
    Of the tasks waiting for a worker, dask starts those of highest ``priority`` first.

    A task that dask gives up on (its workers kept dying) is a :class:`TransientError` (the
    runner retries), or a :class:`StorageError` when a storage root is full."""
    try:
        blob = pickle.dumps(stage)
        rt_blob = pickle.dumps(runtime.for_worker(None))
    except Exception as exc:
        raise ContractError("a dask stage (and the runtime config) must be picklable",
                            stage=stage.name, cause=exc) from exc
    task_key = f"stage-{stage.name}-{os.urandom(6).hex()}"
    fut = client.submit(_dask_main, stage.name, blob, ctx.to_json(), rt_blob, priority,
                        pure=False, key=task_key,
                        resources=dask_resources(client, stage.resources), priority=priority)
    lost = 0
    try:
        status, payload, profile = fut.result()
        lost = _lost_workers(client, task_key)  # asked before release forgets the task
    except (PipelineError, KeyboardInterrupt):
        raise
    except Exception as exc:  # KilledWorker, lost connection, cancelled
        full = _died_of_full_disk(stage, runtime, exc, "its dask workers died writing")
        if full is not None:
            raise full from exc
        raise TransientError(f"the dask task failed: {type(exc).__name__}: {exc}",
                             stage=stage.name, cause=exc) from exc
    finally:
        fut.release()
    if status == "error":
        raise pickle.loads(payload)
    return PipelineContext.from_json(payload), profile, lost


# -- child-process execution (process stages and timeouts) ---------------------

def _child_main(conn: Any, stage_blob: bytes, ctx_json: str) -> None:
    try:
        stage = pickle.loads(stage_blob)
        out = run_contract(stage, PipelineContext.from_json(ctx_json))
        conn.send(("ok", out.to_json()))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            conn.send(("error", pickle.dumps(exc)))
        except Exception:  # unpicklable exception
            conn.send(("error", pickle.dumps(StageFailed(f"{type(exc).__name__}: {exc}"))))
    finally:
        conn.close()


def _fork_context() -> Any:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def run_in_child(stage: PipelineStage, ctx: PipelineContext,
                 timeout: float | None) -> PipelineContext:
    """Run the contract in a child process; kill it when ``timeout`` expires."""
    mpc = _fork_context()
    try:
        blob = pickle.dumps(stage)
    except Exception as exc:
        raise ContractError("a process stage must be picklable", stage=stage.name,
                            cause=exc) from exc
    recv, send = mpc.Pipe(duplex=False)
    # Not daemonic: a stage may start processes of its own (PyBDSF does). The runner
    # always joins or kills the child itself.
    proc = mpc.Process(target=_child_main, args=(send, blob, ctx.to_json()), daemon=False)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise StageTimeout(f"exceeded its timeout of {timeout:g} s and was stopped",
                               stage=stage.name)
        try:
            status, payload = recv.recv()
        except EOFError:
            proc.join(5)
            full = _died_of_full_disk(stage, ctx.runtime, EOFError(), "its process died")
            if full is not None:
                raise full from None
            raise StageFailed(f"worker process died (exit code {proc.exitcode})",
                              stage=stage.name) from None
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(2)
            if proc.is_alive():
                proc.kill()
        proc.join()
        recv.close()
    if status == "ok":
        out = PipelineContext.from_json(payload)
        return out.with_runtime(ctx.runtime)
    raise pickle.loads(payload)


# -- the runner -----------------------------------------------------------------

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
        ready = deque(i for i in range(n) if waiting[i] == 0)
        done: queue.SimpleQueue = queue.SimpleQueue()
        in_flight = 0
        stop = False
        storage_stop: str | None = None
        t0 = time.perf_counter()
        # One dispatch loop; stages run in the pool, or inline when alone.
        prio = plan.priority
        self._priority = {plan.stages[j].name: prio[j] for j in range(n)}
        while ready or in_flight:
            if self._stop_reason is not None:
                stop = True
            while ready and not stop:
                # highest priority first; among equals, plan order (a night's groups in time)
                i = max(ready, key=lambda j: (prio[j], -j))
                ready.remove(i)
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
                        ready.append(c)
            else:
                if plan.parents[i]:
                    keep.append(given)
                ready.extend(self._skip_descendants(plan, i, records, waiting, outcome))
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

class VariantStage(MappedStage):
    """One point of a parameter sweep: the wrapped stage with some config values replaced.

    It is named ``name[key=value,...]``; its products get the same suffix so
    variants coexist in one plan, and ``ctx.metadata["variant_tag"]`` tells the
    wrapped stage to keep its file names apart (see :func:`variant_suffix`).
    """

    def __init__(self, inner: PipelineStage, variant: dict[str, Any]) -> None:
        self.tag = ",".join(f"{k}={v}" for k, v in variant.items())
        self.variant = dict(variant)
        clone = object.__new__(type(inner))
        clone.__dict__.update(inner.__dict__)
        clone.config = type(inner.config)(**{**inner.config.model_dump(), **variant})
        super().__init__(clone, name=f"{inner.name}[{self.tag}]",
                         inputs={k: k for k in inner.requires},
                         outputs={k: f"{k}[{self.tag}]" for k in inner.produces},
                         metadata={"variant_tag": self.tag})


def variant_suffix(ctx: PipelineContext) -> str:
    """A file-name-safe suffix for a sweep variant ("" outside sweeps)."""
    tag = ctx.metadata.get("variant_tag")
    if not tag:
        return ""
    return "_" + "".join(c if c.isalnum() or c in "-." else "_" for c in tag)


def expand_sweep(stage: PipelineStage, grid: dict[str, list[Any]]) -> list[PipelineStage]:
    """Variants of ``stage`` over the product of ``grid`` (config key -> values)."""
    if not grid:
        return [stage]
    keys = sorted(grid)
    known = stage.config.model_dump()
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ConfigError(f"sweep over unknown config key(s) {unknown} of stage '{stage.name}'")
    return [VariantStage(stage, dict(zip(keys, values)))
            for values in product(*(grid[k] for k in keys))]
