"""The framework suite's scenarios written with stardag (run in its throw-away venv).

Usage: ``python stardag_scenarios.py SCENARIO '{"param": value}'``; prints one JSON line.
Every build writes its targets into a fresh temporary target root (set through
STARDAG_TARGET_ROOTS__DEFAULT before stardag is imported), and HOME points at a temporary
folder so nothing is left in the user's home.

I/O-bound tasks are written as ``async def`` tasks awaiting ``asyncio.sleep``: stardag
runs a function task that has both sync and async entry points on its event loop, so a
blocking ``time.sleep`` would serialise the build (the ``three_sync`` scenario shows it).
"""

# No ``from __future__ import annotations`` here: stardag reads the annotations at run time.
import asyncio
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid

_TMP = tempfile.mkdtemp(prefix="perf-stardag-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ["HOME"] = _TMP
os.environ["STARDAG_TARGET_ROOTS__DEFAULT"] = os.path.join(_TMP, "roots")
os.environ.setdefault("STARDAG_NO_REGISTRY", "1")

import numpy as np  # noqa: E402
import stardag as sd  # noqa: E402

# ---------------------------------------------------------------- tasks


@sd.task
async def io_leaf(i: int, salt: str, delay: float) -> int:
    await asyncio.sleep(delay)
    return i


@sd.task
def sync_leaf(i: int, salt: str, delay: float) -> int:
    time.sleep(delay)
    return i


@sd.task
async def io_node(a: sd.Depends[int], b: sd.Depends[int], delay: float) -> int:
    await asyncio.sleep(delay)
    return a + b


class FanIn(sd.Task[int]):
    n: int
    salt: str
    delay: float

    def requires(self):
        return [io_leaf(i=i, salt=self.salt, delay=self.delay) for i in range(self.n)]

    async def run_aio(self):
        await asyncio.sleep(self.delay)
        self._save(sum(t.load() for t in self.requires()))


@sd.task
def trivial(x: int, salt: str) -> int:
    return x + 1


def _array(seed: int) -> np.ndarray:
    # 64 MB of float64, same recipe as our side
    return np.cumsum(np.random.default_rng(seed).standard_normal(8 * 1024 * 1024))


@sd.task
def array64(seed: int, salt: str) -> np.ndarray:
    return _array(seed)


@sd.task
def root_task(salt: str) -> int:
    return 1


@sd.task
def fan_leaf(root: sd.Depends[int], i: int) -> int:
    return root + i


@sd.task
def chain_start(salt: str) -> int:
    return 0


@sd.task
def chain_link(prev: sd.Depends[int], i: int) -> int:
    return prev + 1


class ChainReq(sd.Task[int]):
    """A chain link that names its predecessor in ``requires()`` instead of a field."""

    i: int
    salt: str

    def requires(self):
        return ChainReq(i=self.i - 1, salt=self.salt) if self.i > 0 else None

    def run(self):
        self._save(self.requires().load() + 1 if self.i > 0 else 0)


def _salt() -> str:
    return uuid.uuid4().hex


def _build(tasks) -> float:
    t0 = time.perf_counter()
    sd.build(tasks)
    return time.perf_counter() - t0


# ------------------------------------------------------------ scenarios


def cache_trivial(reps: int = 20) -> dict:
    cold, warm = [], []
    for _ in range(reps):
        salt = _salt()
        cold.append(_build(trivial(x=1, salt=salt)))
        warm.append(_build(trivial(x=1, salt=salt)))
    return {"cold_s": float(np.median(cold)), "warm_s": float(np.median(warm))}


def cache_array(reps: int = 3) -> dict:
    direct, cold, warm, warm_load = [], [], [], []
    for k in range(reps):
        t0 = time.perf_counter()
        _array(k)
        direct.append(time.perf_counter() - t0)
        salt = _salt()
        cold.append(_build(array64(seed=k, salt=salt)))
        t = array64(seed=k, salt=salt)
        warm.append(_build(t))
        t0 = time.perf_counter()
        sd.build(array64(seed=k, salt=salt))
        arr = array64(seed=k, salt=salt).target().load()
        warm_load.append(time.perf_counter() - t0)
        assert arr.nbytes == 64 * 1024 * 1024
    return {"direct_s": float(np.median(direct)), "cold_s": float(np.median(cold)),
            "warm_s": float(np.median(warm)), "warm_load_s": float(np.median(warm_load))}


def parallel_sleep(n: int = 8, delay: float = 0.01, reps: int = 5) -> dict:
    par, ser = [], []
    for _ in range(reps):
        salt = _salt()
        par.append(_build([io_leaf(i=i, salt=salt, delay=delay) for i in range(n)]))
        salt = _salt()
        t0 = time.perf_counter()
        sd.build_sequential([io_leaf(i=i, salt=salt, delay=delay) for i in range(n)])
        ser.append(time.perf_counter() - t0)
    return {"parallel_s": float(np.median(par)), "serial_s": float(np.median(ser))}


def overhead(reps: int = 20, work: int = 2_000_000) -> dict:
    data = np.random.default_rng(0).standard_normal(work)

    @sd.task
    def work_task(k: int, salt: str) -> float:
        return float(data.sum()) + k

    direct, framed = [], []
    for k in range(reps):
        t0 = time.perf_counter()
        float(data.sum()) + k
        direct.append(time.perf_counter() - t0)
        framed.append(_build(work_task(k=k, salt=_salt())))
    return {"direct_s": float(np.median(direct)), "framework_s": float(np.median(framed))}


def three(delay: float = 0.2, sync: bool = False) -> dict:
    salt = _salt()
    leaf = sync_leaf if sync else io_leaf
    return {"wall_s": _build([leaf(i=i, salt=salt, delay=delay) for i in range(3)])}


def tree(depth: int = 4, delay: float = 0.1) -> dict:
    salt = _salt()

    def make(d: int, idx: int):
        if d == 1:
            return io_leaf(i=idx, salt=salt, delay=delay)
        return io_node(a=make(d - 1, 2 * idx), b=make(d - 1, 2 * idx + 1), delay=delay)

    root = make(depth, 0)
    wall = _build(root)
    assert root.target().load() == sum(range(2 ** (depth - 1)))
    return {"wall_s": wall, "n_tasks": 2**depth - 1}


def fanin(n_leaves: int = 32, delay: float = 0.1) -> dict:
    t = FanIn(n=n_leaves, salt=_salt(), delay=delay)
    wall = _build(t)
    assert t.target().load() == sum(range(n_leaves))
    return {"wall_s": wall, "n_tasks": n_leaves + 1}


def fanout(n: int = 5000) -> dict:
    salt = _salt()
    t0 = time.perf_counter()
    root = root_task(salt=salt)
    leaves = [fan_leaf(root=root, i=i) for i in range(n)]
    t_def = time.perf_counter() - t0
    run = _build(leaves)
    return {"wall_s": t_def + run, "define_s": t_def, "build_s": run, "n_tasks": n + 1}


def chain(n: int = 10000, style: str = "depends") -> dict:
    salt = _salt()
    t0 = time.perf_counter()
    if style == "depends":
        t = chain_start(salt=salt)
        for i in range(n - 1):
            t = chain_link(prev=t, i=i)
    else:
        t = ChainReq(i=n - 1, salt=salt)
    t_def = time.perf_counter() - t0
    run = _build(t)
    assert t.target().load() == n - 1
    return {"wall_s": t_def + run, "define_s": t_def, "build_s": run, "n_tasks": n}


SCENARIOS = {f.__name__: f for f in (cache_trivial, cache_array, parallel_sleep, overhead, three,
                                     tree, fanin, fanout, chain)}


def main() -> int:
    name = sys.argv[1]
    params = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        out = SCENARIOS[name](**params)
        out["ok"] = True
    except BaseException as exc:  # report, do not crash without a word
        tb = traceback.format_exc().strip().splitlines()
        out = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
               "where": tb[-3:] if len(tb) > 3 else tb}
    out["version"] = sd.__version__
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
