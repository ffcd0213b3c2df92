"""The runner's worker slots: dask gets a stage only when a worker thread is free for it."""

from __future__ import annotations

import threading
import time

import pytest

from dsa110_pipeline.slots import WorkerSlots


def _hold_in_thread(slots: WorkerSlots, priority: int, order: list[int],
                    release: threading.Event) -> threading.Thread:
    def run() -> None:
        with slots.hold(priority):
            order.append(priority)
            release.wait(10)

    t = threading.Thread(target=run)
    t.start()
    return t


def _wait_until(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_waiters_are_granted_free_slots_highest_priority_first():
    slots = WorkerSlots(lambda: 1, poll_s=0.05)
    order: list[int] = []
    first, rest = threading.Event(), threading.Event()
    holder = _hold_in_thread(slots, 0, order, first)
    _wait_until(lambda: order == [0])
    waiters = []
    for k, p in enumerate((1, 5, 3), start=1):  # in this order, while the slot is held
        waiters.append(_hold_in_thread(slots, p, order, rest))
        _wait_until(lambda k=k: len(slots._waiting) == k)
    assert order == [0] and slots.busy == 1
    first.set()
    rest.set()
    for t in [holder, *waiters]:
        t.join(10)
    assert order == [0, 5, 3, 1]
    assert slots.busy == 0


def test_capacity_is_read_again_while_waiting():
    capacity = {"n": 0}  # no worker has joined yet
    slots = WorkerSlots(lambda: capacity["n"], poll_s=0.02)
    order: list[int] = []
    done = threading.Event()
    done.set()
    t = _hold_in_thread(slots, 2, order, done)
    time.sleep(0.1)
    assert order == []
    capacity["n"] = 2  # a worker joins
    t.join(5)
    assert order == [2]


def test_holders_never_exceed_the_capacity():
    slots = WorkerSlots(lambda: 2, poll_s=0.05)
    peak, lock, now = [0], threading.Lock(), [0]

    def work() -> None:
        with slots.hold(0):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.02)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and slots.busy == 0


def test_a_waiter_that_fails_leaves_the_line():
    calls = {"n": 0}

    def capacity() -> int:
        calls["n"] += 1
        raise ConnectionError("scheduler gone")

    slots = WorkerSlots(capacity)
    with pytest.raises(ConnectionError), slots.hold(1):
        pass
    assert slots._waiting == [] and slots.busy == 0
    assert calls["n"] == 1


def test_a_stage_with_more_threads_holds_as_many_slots():
    # stage_threads=2 on two one-thread workers: one such stage at a time
    slots = WorkerSlots(lambda: 2, poll_s=0.05)
    order: list[int] = []
    release = threading.Event()

    def run(priority: int) -> None:
        with slots.hold(priority, slots=2):
            order.append(priority)
            release.wait(10)

    first = threading.Thread(target=run, args=(2,))
    first.start()
    _wait_until(lambda: order == [2])
    second = threading.Thread(target=run, args=(1,))
    second.start()
    _wait_until(lambda: len(slots._waiting) == 1)
    assert order == [2] and slots.busy == 2
    release.set()
    first.join(10)
    second.join(10)
    assert order == [2, 1] and slots.busy == 0
    # more threads than the cluster has: the whole cluster, not a wait forever
    with slots.hold(0, slots=8):
        assert slots.busy == 2


def test_a_cluster_without_workers_is_an_error_after_the_timeout():
    import pytest

    from dsa110_pipeline.errors import TransientError
    from dsa110_pipeline.slots import WorkerSlots

    slots = WorkerSlots(lambda: 0, poll_s=0.01, no_worker_timeout_s=0.1)
    with pytest.raises(TransientError, match="no worker"), slots.hold():
        pass
