"""Where a stage runs: in the runner's thread (:func:`run_contract`), in a child process
(:func:`run_in_child`, killed on timeout) or as one task on a dask worker
(:func:`run_on_dask`); the :class:`Runtime` handed to stages, and how a failure is
wrapped (a full disk as a :class:`StorageError`)."""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing as mp
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import PipelineContext
from .errors import (
    ContractError,
    PipelineError,
    StageTimeout,
    StorageError,
    TransientError,
    is_no_space,
    no_space_error,
)
from .stage import PipelineStage


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


def full_root(roots: Iterable[str], need: int = FULL_BELOW_BYTES) -> str | None:
    """The first of ``roots`` whose file system has less than ``need`` bytes free, else
    None: a process that died writing (casacore aborts on a full disk) leaves it so, or
    nearly so once its partial output is gone."""
    import shutil

    for r in roots:
        p = os.path.abspath(r)
        while not os.path.exists(p) and os.path.dirname(p) != p:
            p = os.path.dirname(p)
        try:
            if shutil.disk_usage(p).free < max(need, FULL_BELOW_BYTES):
                return r
        except OSError:
            continue
    return None


def _input_bytes(stage: PipelineStage, ctx: PipelineContext | None) -> int:
    """What the stage's input files weigh (a directory, an MS, with all it holds)."""
    total = 0
    for f in _input_files(stage, ctx) if ctx is not None else []:
        if os.path.isdir(f):
            for root, _dirs, files in os.walk(f):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.path.getsize(os.path.join(root, name))
        else:
            with contextlib.suppress(OSError):
                total += os.path.getsize(f)
    return total


def _died_of_full_disk(stage: PipelineStage, runtime: Runtime | None, exc: BaseException,
                       what: str, ctx: PipelineContext | None = None) -> StorageError | None:
    """A :class:`StorageError` when the process running ``stage`` died and a storage root
    has less space than the stage's inputs weigh (a stage writes about that much; the
    death was the disk's, so retrying cannot help), else None."""
    where = full_root(storage_roots(runtime), need=_input_bytes(stage, ctx))
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
        full = _died_of_full_disk(stage, runtime, exc, "its dask workers died writing", ctx)
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
            full = _died_of_full_disk(stage, ctx.runtime, EOFError(), "its process died",
                                      ctx)
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

