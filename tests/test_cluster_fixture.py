import os
import signal

from distributed import Client

from tests.cluster import real_cluster


def _pid(_: int) -> int:
    return os.getpid()


def test_real_scheduler_and_workers_run_tasks(tmp_path):
    with real_cluster(2, workdir=tmp_path) as (address, workers), Client(address) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        pids = set(c.gather(c.map(_pid, range(20), pure=False)))
        assert pids and os.getpid() not in pids


def _slow_square(x: int) -> int:
    import time

    time.sleep(0.5)
    return x * x


def test_killed_worker_task_reruns_elsewhere(tmp_path):
    with real_cluster(2, workdir=tmp_path) as (address, workers), Client(address) as c:
        futs = c.map(_slow_square, range(8), pure=False)
        import time

        time.sleep(0.7)
        os.killpg(workers[0].pid, signal.SIGKILL)  # a worker dies mid-task
        assert c.gather(futs) == [x * x for x in range(8)]
