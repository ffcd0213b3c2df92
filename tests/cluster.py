"""A real dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "distributed.cli.dask_scheduler"]


@contextmanager
def real_cluster(n_workers: int = 2, *, memory_limit: str = "3GiB",
                 workdir: Path | None = None) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Start a scheduler and ``n_workers`` single-threaded workers; yield (address, workers)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    # Workers import the same code as the client (the repository, as on a real cluster).
    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
           "PYTHONPATH": path}
    logs = workdir or Path("/tmp")
    procs: list[subprocess.Popen] = []
    sched_log = open(logs / "scheduler.log", "w")  # noqa: SIM115
    procs.append(subprocess.Popen(
        [*_dask_cmd(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], env=env, stdout=sched_log, stderr=subprocess.STDOUT,
        start_new_session=True))
    workers = []
    try:
        _wait_for_port(port, 30)
        for i in range(n_workers):
            log = open(logs / f"worker{i}.log", "w")  # noqa: SIM115
            w = subprocess.Popen(
                [*_dask_cmd(), "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--memory-limit", memory_limit, "--no-dashboard", "--name", f"w{i}",
                 "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            procs.append(w)
            workers.append(w)
        _wait_for_workers(address, n_workers, 60)
        yield address, workers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _wait_for_port(port: int, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"dask scheduler did not open port {port}")


def _wait_for_workers(address: str, n: int, timeout: float) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(n, timeout=timeout)
