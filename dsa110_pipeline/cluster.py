"""The one dask client of a run: connected to a scheduler, or a LocalCluster of processes.

Only the runner/orchestrator creates it (lazily, on first use), and stages reach it
through ``ctx.client``. A LocalCluster has one thread per worker, memory limits and
no dashboard port unless asked for.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from .config import OrchestratorConfig


def worker_env(nthreads: int = 1) -> dict[str, str]:
    """Thread-count variables so numeric libraries do not oversubscribe a worker's cores
    (numba's parallel kernels included: without ``NUMBA_NUM_THREADS`` each worker would
    run them on every core of the machine)."""
    n = str(nthreads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "DUCC0_NUM_THREADS": n, "NUMBA_NUM_THREADS": n}


class ClientHandle:
    """Creates the dask client on first access and closes it (and its cluster) at the end."""

    def __init__(self, cfg: OrchestratorConfig | None = None) -> None:
        self.cfg = cfg or OrchestratorConfig()
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._client is not None

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client, self._cluster = make_client(self.cfg)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None

    def __enter__(self) -> ClientHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_client(cfg: OrchestratorConfig) -> tuple[Any, Any]:
    """(client, cluster-or-None) for the orchestrator config."""
    from distributed import Client

    if cfg.scheduler:
        return Client(cfg.scheduler, timeout="30s"), None
    import dask

    remove_stale_semaphores()  # what SIGKILLed runs' clusters left in /dev/shm

    n_workers = cfg.n_workers or os.cpu_count() or 1
    # dask's nanny sets MALLOC_TRIM_THRESHOLD_ in every worker, which also fixes glibc's
    # mmap threshold at 128 kB: every large temporary is then a fresh mmap, paid in page
    # faults (~6 % of an imaging stage). Stages hand memory back themselves
    # (profiling.release_free_memory), so the workers keep glibc's adaptive defaults.
    # The nannies hand the config in force here to their workers; the in-process
    # scheduler reads its periods when it starts.
    settings = {**cfg.dask_config,
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(settings):
        cluster = _local_cluster(cfg, n_workers)
    return Client(cluster), cluster


def _local_cluster(cfg: OrchestratorConfig, n_workers: int) -> Any:
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=cfg.threads_per_worker,
        processes=True,
        memory_limit=cfg.memory_limit,
        dashboard_address=":8787" if cfg.dashboard else None,
        # libraries size their thread pools from these at start-up: allow what a stage may use
        env=worker_env(max(cfg.threads_per_worker, cfg.stage_threads or 0)),
        resources={"memory_gb": worker_memory_gb(cfg.memory_limit, n_workers)},
        silence_logs=40,
    )


def worker_memory_gb(memory_limit: str, n_workers: int) -> float:
    """A worker's memory (GB) as a dask resource: stages ask for ``memory_gb`` so a
    worker runs only as many as fit."""
    import psutil
    from dask.utils import parse_bytes

    if str(memory_limit).lower() in ("auto", "0", "none"):
        total = psutil.virtual_memory().total / max(1, n_workers)
    else:
        total = parse_bytes(str(memory_limit))
    return round(total / 1e9, 2)


class WorkerClient:
    """The client of a stage that runs on a dask worker and fans out: the worker's own.

    On first use the stage's task secedes from the worker's thread pool, so that the tasks
    it submits can run on the thread it held (on a one-thread worker they could not start
    otherwise). It never rejoins: what is left of the stage after its fan-out is short, and
    rejoining would wait for a free thread.
    """

    def __init__(self) -> None:
        self._client: Any = None

    def get(self) -> Any:
        if self._client is None:
            from distributed import get_client, secede

            with contextlib.suppress(AttributeError, KeyError, ValueError):
                secede()  # fails outside a task's own thread: nothing to give back then
            self._client = get_client()
        return self._client


def _this_machine() -> set[str]:
    """The names and addresses under which workers on this machine may be registered."""
    import socket

    import psutil

    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    for addrs in psutil.net_if_addrs().values():
        names.update(a.address.split("%")[0] for a in addrs
                     if a.family in (socket.AF_INET, socket.AF_INET6))
    return names


def same_host_workers(client: Any) -> list[str] | None:
    """The workers on this machine, which see its local scratch (tmpfs) paths: None when
    that is every worker of the cluster (no restriction needed), else their addresses (an
    empty list when there is none). Tasks that write into what this process staged must
    run there."""
    from distributed.comm import get_address_host

    workers = list(client.scheduler_info().get("workers", {}))
    here = _this_machine()
    local = [a for a in workers if get_address_host(a) in here]
    return None if len(local) == len(workers) else local


#: Named POSIX semaphores of Python's multiprocessing (``sem.mp-*``) and loky
#: (``sem.loky-*``). With the spawn start method (dask's nannies) they are unlinked at exit
#: by the resource tracker; a SIGKILLed run kills the tracker too, and they stay.
SEMAPHORE_PREFIXES = ("sem.mp-", "sem.loky-")


def _mapped_shm_files() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of the /dev/shm files that live processes map (sem_open maps
    the semaphore's file; its creator maps it under a temporary name, since unlinked, so
    the inode is what identifies it), from /proc/*/maps; None when a Python process of this
    user could not be read (then nothing can be proven unused)."""
    uid = os.getuid()
    mapped: set[tuple[int, int, int]] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    if "/dev/shm/" not in line:
                        continue
                    # address perms offset dev inode path
                    _, _, _, dev, inode = line.split(None, 5)[:5]
                    major, minor = dev.split(":")
                    mapped.add((int(major, 16), int(minor, 16), int(inode)))
        except FileNotFoundError:  # gone meanwhile
            continue
        except (OSError, ValueError):
            # only Python processes open these semaphores: an unreadable one of this user
            # might hold one (a non-dumpable init or daemon need not stop the cleanup)
            try:
                owner = os.stat(f"/proc/{pid}").st_uid
                with open(f"/proc/{pid}/comm") as fh:
                    comm = fh.read()
            except OSError:
                continue
            if (owner == uid or uid == 0) and "python" in comm.lower():
                return None
    return mapped


def remove_stale_semaphores(shm: str = "/dev/shm") -> list[str]:
    """Remove this user's multiprocessing semaphores that no live process maps (those of
    killed runs); returns their paths. A semaphore a live process has open is mapped by
    it, so it is never removed; when a process's maps cannot be read, nothing is."""
    try:
        names = [n for n in os.listdir(shm) if n.startswith(SEMAPHORE_PREFIXES)]
    except OSError:
        return []
    if not names:
        return []
    mapped = _mapped_shm_files()
    if mapped is None:
        return []
    uid = os.getuid()
    removed = []
    for n in names:
        path = os.path.join(shm, n)
        try:
            st = os.stat(path)
            if st.st_uid != uid or (os.major(st.st_dev), os.minor(st.st_dev),
                                    st.st_ino) in mapped:
                continue
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed
