"""The framework suite's scenarios written with tracekit (run in its throw-away venv).

Usage: ``python tracekit_scenarios.py SCENARIO '{"param": value}'``; prints one JSON line.

tracekit offers two ways to run stages: ``tracekit.pipeline.ParallelPipeline`` (a
scikit-learn-like list of trace transformers, sold as running independent stages in
parallel) and ``tracekit.workflow.dag.WorkflowDAG`` (tasks with ``depends_on``, run level by
level, each level in a fresh thread pool). Both are measured where they apply. tracekit
has no result cache.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np
import tracekit
from tracekit.core.types import TraceMetadata, WaveformTrace
from tracekit.pipeline.base import TraceTransformer
from tracekit.pipeline.parallel import ParallelPipeline
from tracekit.workflow.dag import WorkflowDAG


class SleepStage(TraceTransformer):
    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay

    def transform(self, trace: WaveformTrace) -> WaveformTrace:
        time.sleep(self.delay)
        return trace


def _sleeper(delay: float):
    def fn(state):
        time.sleep(delay)
        return None

    return fn


def _noop(state):
    return None


def unsupported(**_: object) -> dict:
    return {"ok": False, "unsupported": True, "error": "tracekit has no result cache"}


def parallel_sleep(n: int = 8, delay: float = 0.01, reps: int = 5) -> dict:
    par, ser = [], []
    for _ in range(reps):
        for parallel, sink in ((True, par), (False, ser)):
            dag = WorkflowDAG()
            for i in range(n):
                dag.add_task(f"t{i}", _sleeper(delay))
            t0 = time.perf_counter()
            dag.execute(parallel=parallel, max_workers=n)
            sink.append(time.perf_counter() - t0)
    return {"parallel_s": float(np.median(par)), "serial_s": float(np.median(ser))}


def overhead(reps: int = 20, work: int = 2_000_000) -> dict:
    data = np.random.default_rng(0).standard_normal(work)
    direct, framed = [], []
    for k in range(reps):
        t0 = time.perf_counter()
        float(data.sum()) + k
        direct.append(time.perf_counter() - t0)
        dag = WorkflowDAG()
        dag.add_task("work", lambda state, k=k: float(data.sum()) + k)
        t0 = time.perf_counter()
        dag.execute()
        framed.append(time.perf_counter() - t0)
    return {"direct_s": float(np.median(direct)), "framework_s": float(np.median(framed))}


def three(delay: float = 0.2, api: str = "pipeline") -> dict:
    if api == "pipeline":
        pipe = ParallelPipeline([(f"s{i}", SleepStage(delay)) for i in range(3)],
                                executor_type="thread", max_workers=3)
        trace = WaveformTrace(data=np.zeros(16), metadata=TraceMetadata(sample_rate=1e6))
        t0 = time.perf_counter()
        pipe.transform(trace)
        return {"wall_s": time.perf_counter() - t0,
                "generations": len(pipe.get_execution_order())}
    dag = WorkflowDAG()
    for i in range(3):
        dag.add_task(f"s{i}", _sleeper(delay))
    t0 = time.perf_counter()
    dag.execute(parallel=True)
    return {"wall_s": time.perf_counter() - t0}


def tree(depth: int = 4, delay: float = 0.1) -> dict:
    dag = WorkflowDAG()
    level = [f"l{i}" for i in range(2 ** (depth - 1))]
    for name in level:
        dag.add_task(name, _sleeper(delay))
    k = 0
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[0::2], level[1::2]):
            name = f"n{k}"
            k += 1
            dag.add_task(name, _sleeper(delay), depends_on=[a, b])
            nxt.append(name)
        level = nxt
    t0 = time.perf_counter()
    dag.execute(parallel=True)
    return {"wall_s": time.perf_counter() - t0, "n_tasks": len(dag.tasks)}


def fanin(n_leaves: int = 32, delay: float = 0.1) -> dict:
    dag = WorkflowDAG()
    for i in range(n_leaves):
        dag.add_task(f"l{i}", _sleeper(delay))
    dag.add_task("root", _sleeper(delay), depends_on=[f"l{i}" for i in range(n_leaves)])
    t0 = time.perf_counter()
    dag.execute(parallel=True)
    return {"wall_s": time.perf_counter() - t0, "n_tasks": len(dag.tasks)}


def fanout(n: int = 5000) -> dict:
    t0 = time.perf_counter()
    dag = WorkflowDAG()
    dag.add_task("root", _noop)
    for i in range(n):
        dag.add_task(f"leaf{i}", _noop, depends_on=["root"])
    t_def = time.perf_counter() - t0
    t1 = time.perf_counter()
    dag.execute(parallel=True)
    t_run = time.perf_counter() - t1
    return {"wall_s": t_def + t_run, "define_s": t_def, "execute_s": t_run, "n_tasks": n + 1}


def chain(n: int = 10000) -> dict:
    t0 = time.perf_counter()
    dag = WorkflowDAG()
    dag.add_task("t0", _noop)
    for i in range(1, n):
        dag.add_task(f"t{i}", _noop, depends_on=[f"t{i - 1}"])
    t_def = time.perf_counter() - t0
    t1 = time.perf_counter()
    dag.execute(parallel=True)
    t_run = time.perf_counter() - t1
    return {"wall_s": t_def + t_run, "define_s": t_def, "execute_s": t_run, "n_tasks": n}


SCENARIOS = {"cache_trivial": unsupported, "cache_array": unsupported,
             **{f.__name__: f for f in (parallel_sleep, overhead, three, tree, fanin, fanout,
                                        chain)}}


def main() -> int:
    name = sys.argv[1]
    params = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        out = SCENARIOS[name](**params)
        out.setdefault("ok", True)
    except BaseException as exc:  # report, do not crash without a word
        tb = traceback.format_exc().strip().splitlines()
        out = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
               "where": tb[-3:] if len(tb) > 3 else tb}
    out["version"] = getattr(tracekit, "__version__", None)
    print(json.dumps(out))
    return 0 if out["ok"] or out.get("unsupported") else 1


if __name__ == "__main__":
    sys.exit(main())
