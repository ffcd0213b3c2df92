"""Worker slots: the runner hands a stage to dask only when a worker thread is free for it.

dask places a resource-restricted task on a worker the moment it is submitted, and does
not move it while the task's duration is unknown. A stage submitted while every worker
is busy can therefore wait behind one worker's long stage while another worker falls
idle. The runner keeps such stages on its side instead, and releases them one per free
worker thread, highest priority first, so dask always finds a thread for what it gets.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import TransientError


def cluster_threads(client: Any) -> int:
    """Worker threads of the client's cluster now (0 while no worker has joined)."""
    workers = client.scheduler_info().get("workers", {})
    return sum(int(w.get("nthreads", 1) or 1) for w in workers.values())


class WorkerSlots:
    """At most ``capacity()`` holders at a time, granted in priority order (then FIFO).

    ``capacity`` is asked again whenever a waiter wakes, and at least every ``poll_s``,
    so workers that join or die change the count without a restart.
    """

    def __init__(self, capacity: Callable[[], int], poll_s: float = 1.0,
                 no_worker_timeout_s: float = 600.0) -> None:
        self._capacity = capacity
        self.poll_s = poll_s
        #: a cluster with no worker for this long (all died and none restarts) is an
        #: error, not a wait without end
        self.no_worker_timeout_s = no_worker_timeout_s
        self._cond = threading.Condition()
        self._waiting: list[tuple[int, int]] = []
        self._seq = itertools.count()
        self.busy = 0

    @contextmanager
    def hold(self, priority: int = 0, slots: int = 1) -> Iterator[None]:
        """Wait for ``slots`` free slots (a stage's threads; at most the whole capacity),
        a higher ``priority`` first, and hold them for the block."""
        ticket = (-int(priority), next(self._seq))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            empty_since: float | None = None
            try:
                while True:
                    if self._waiting[0] == ticket:
                        cap = self._capacity()
                        need = max(1, min(int(slots), cap))
                        if cap > 0 and self.busy + need <= cap:
                            break
                        now = time.monotonic()
                        empty_since = (empty_since or now) if cap == 0 else None
                        if empty_since is not None and \
                                now - empty_since > self.no_worker_timeout_s:
                            raise TransientError(
                                f"the dask cluster has had no worker for "
                                f"{self.no_worker_timeout_s:g} s (all died; none restarts)")
                    self._cond.wait(self.poll_s)
            except BaseException:
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                self._cond.notify_all()
                raise
            heapq.heappop(self._waiting)
            self.busy += need
            self._cond.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._cond:
                self.busy -= need
                self._cond.notify_all()
