"""Stages with ``executor = "dask"`` run as tasks on real dask worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.runner import Runner, Runtime
from dsa110_pipeline.stage import PipelineStage, StageConfig


class WhereConfig(StageConfig):
    out_dir: str
    die_once: bool = False
    fail: bool = False


class WhereStage(PipelineStage):
    """Writes the pid and thread allotment of the process that ran it."""

    name = "where"
    Config = WhereConfig
    produces = ("where",)
    executor = "dask"

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        if cfg.fail:
            raise InputError("this input is bad", stage=self.name, files=["bad.hdf5"])
        marker = Path(cfg.out_dir) / "died-once"
        if cfg.die_once and not marker.exists():
            marker.write_text("x")
            os._exit(9)  # the worker process dies mid-task
        path = Path(cfg.out_dir) / "where.txt"
        path.write_text(f"{os.getpid()} {getattr(ctx.runtime, 'nthreads', None)}")
        return ctx.with_output("where", ProductRef.for_path("text", path))


def _pid(i: int) -> int:
    return os.getpid()


class FanOutStage(PipelineStage):
    """On a worker, fans tasks out to that same worker through ``ctx.runtime.client``."""

    name = "fan"
    Config = WhereConfig
    produces = ("fan",)
    executor = "dask"

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        from distributed import get_worker

        from dsa110_pipeline.runner import task_priority

        client = ctx.runtime.client
        # pinned to this one-thread worker: they can run only on the thread this task left
        futs = client.map(_pid, range(3), pure=False, workers=[get_worker().address],
                          priority=task_priority())
        pids = client.gather(futs)
        path = Path(self.config.out_dir) / "fan.txt"
        path.write_text(" ".join(str(p) for p in [os.getpid(), task_priority(), *pids]))
        return ctx.with_output("fan", ProductRef.for_path("text", path))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from distributed import Client

    from tests.cluster import real_cluster

    with (real_cluster(2, workdir=tmp_path_factory.mktemp("cluster")) as (address, _),
          Client(address) as c):
        yield c


def _run(stage: PipelineStage, client) -> tuple[Runner, object]:
    runner = Runner([stage], runtime=Runtime(client_source=client), retry_backoff_s=0.1)
    return runner, runner.run(PipelineContext())


def test_dask_stage_runs_on_a_worker_with_its_thread_count(client, tmp_path):
    _, res = _run(WhereStage({"out_dir": str(tmp_path)}), client)
    assert res.ok, res.records
    pid, nthreads = (tmp_path / "where.txt").read_text().split()
    assert int(pid) != os.getpid()
    assert int(pid) in set(client.run(os.getpid).values())
    assert nthreads == "1"
    assert res.context.outputs["where"].path == str(tmp_path / "where.txt")


def test_a_stage_on_a_worker_fans_out_from_the_thread_it_held(client, tmp_path):
    runner, res = _run(FanOutStage({"out_dir": str(tmp_path)}), client)
    assert res.ok, res.records
    pid, prio, *tasks = (tmp_path / "fan.txt").read_text().split()
    assert int(pid) in set(client.run(os.getpid).values())
    # the stage's plan priority reached the worker, and its tasks ran beside it
    assert int(prio) == runner.plan().priority[0] > 0
    assert tasks == [pid] * 3


def test_bad_input_on_a_worker_comes_back_as_input_error(client, tmp_path):
    _, res = _run(WhereStage({"out_dir": str(tmp_path), "fail": True}), client)
    rec = res.records["where"]
    assert rec.status == "failed" and rec.error_type == "InputError"
    assert "bad.hdf5" in rec.error and rec.attempts == 1


def test_worker_killed_mid_stage_the_stage_reruns_elsewhere(client, tmp_path):
    stage = WhereStage({"out_dir": str(tmp_path), "die_once": True})
    stage.retries = 2
    _, res = _run(stage, client)
    assert res.ok, res.records
    assert (tmp_path / "died-once").exists()
    pid = int((tmp_path / "where.txt").read_text().split()[0])
    assert pid in set(client.run(os.getpid).values())


def test_without_a_client_a_dask_stage_runs_in_the_runner(tmp_path):
    runner = Runner([WhereStage({"out_dir": str(tmp_path)})])
    res = runner.run(PipelineContext().with_runtime(None))
    assert res.ok
    assert int((tmp_path / "where.txt").read_text().split()[0]) == os.getpid()


def test_local_cluster_workers_use_only_their_thread_allotment_and_default_malloc():
    """numba (and the others in ``worker_env``) see the orchestrator's thread count, not
    every core of the machine."""
    from dsa110_pipeline.cluster import make_client
    from dsa110_pipeline.config import OrchestratorConfig

    client, cluster = make_client(OrchestratorConfig(n_workers=1, threads_per_worker=1,
                                                     stage_threads=1))
    try:
        def threads() -> tuple[int, str | None]:
            import numba

            return numba.config.NUMBA_NUM_THREADS, os.environ.get("DUCC0_NUM_THREADS")

        assert set(client.run(threads).values()) == {(1, "1")}
        # dask's housekeeping runs at the config's periods in the workers and the scheduler
        import dask

        def periods() -> tuple[str, str]:
            return (dask.config.get("distributed.worker.profile.interval"),
                    dask.config.get("distributed.admin.tick.interval"))

        assert set(client.run(periods).values()) == {("100ms", "200ms")}
        assert cluster.scheduler._tick_interval == pytest.approx(0.2)
        # glibc keeps its adaptive mmap threshold: no trim threshold from the nanny
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            got = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            assert set(got.values()) == {None}
    finally:
        client.close()
        cluster.close()


class _Scheduler:
    """A client's view of a cluster with workers at the given addresses (no processes)."""

    def __init__(self, *workers: str) -> None:
        self.workers = workers

    def scheduler_info(self) -> dict:
        return {"workers": {a: {"nthreads": 1} for a in self.workers}}


def test_fan_out_stays_on_the_workers_that_see_this_machines_scratch():
    from dsa110_pipeline.cluster import same_host_workers

    here, there = "tcp://127.0.0.1:40001", "tcp://192.0.2.7:40001"  # TEST-NET: never local
    assert same_host_workers(_Scheduler(here, "tcp://127.0.0.1:40002")) is None  # all here
    assert same_host_workers(_Scheduler(here, there)) == [here]
    assert same_host_workers(_Scheduler(there)) == []
