"""realtime: ``run --watch`` on replayed nights: latency and sustained throughput beside the
telescope's rate (a group every 309 s: 11.65 groups per hour).

The service runs as ``python -m dsa110_pipeline.run --watch`` in its own process (2
single-thread dask workers), with its default watch settings (files landed after 5 s of
settled size, 2 s polls plus inotify, 120 s for late subbands). Files are dropped into its
input by :func:`dsa110_pipeline.simulate.replay.replay` (per-file jitter, out-of-order
arrival, 10 % of the files written in chunks over 10 s under their final name). Latency is
the service's own ``latency.jsonl``: a group's last file landed (its mtime) -> its last
stage finished. The simulated nights have the calibrator 3C454.3 in their first group and
their survey catalog beside the files: no stage sees the truth.

Scenarios:

1. demo scale (48 antennas, 16 x 8 channels, 24 integrations), 12 groups replayed at 10x
   real time: every group processed, latency p50 / p95 / max.
2. full scale (96 antennas, 16 x 48 channels), 3 groups replayed at 1x real time (16 min): latency
   p50 / p95 / max. Goal: p95 <= 120 s.
3. full scale, as fast as files can land: the same 3 groups dropped at once into a
   fresh service; sustained throughput = groups / (last group done - first file landed), as
   a multiple of the telescope's rate. Goal >= 2.5x (stretch 5x).
4. demo scale, 50 groups dropped at once: the service process's RSS (and the process
   tree's, workers included) when 10 and when 50 groups are done (the service takes a
   backlog in batches of ``watch.max_batch``, so the count passes 10 on the way), and the
   tree's highest RSS per count of groups done (the workers' RSS swings with the stage
   they run) and lowest (what they return to between stages), with the trends of lines
   through them from 10 to 50. Goal: the service and the tree's floor within 10 %.

``DSA110_REALTIME_SCENARIOS`` (comma-separated: demo, full, catchup, mem; default all)
runs only some of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from dsa110_pipeline.realtime import _percentile
from dsa110_pipeline.simulate.replay import replay
from perf.harness import row
from perf.suites.end_to_end import _simulate, _subbands

REPO = Path(__file__).resolve().parents[2]
TELESCOPE_GROUPS_PER_HOUR = 3600.0 / 309.0
GOAL_P95_S, GOAL_THROUGHPUT, STRETCH_THROUGHPUT, GOAL_RSS = 120.0, 2.5, 5.0, 0.10


def _service(inp: Path, out: Path, sets: list[str], stop_after: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--watch", "--input", str(inp),
           "--output", str(out), "--log-json", "--log-file", str(out / "watch.log"),
           "--set", "orchestrator.n_workers=2"]
    for s in sets:
        cmd += ["--set", s]
    if stop_after is not None:
        cmd += ["--stop-after", str(stop_after)]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(out / "stderr.txt", "w"),  # noqa: SIM115
                            start_new_session=True)


def _status(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "watch_status.json").read_text())
    except (OSError, ValueError):
        return {}


def _tree_rss(pid: int) -> tuple[float, float]:
    """(service RSS, service + children RSS) in GB."""
    p = psutil.Process(pid)
    own = p.memory_info().rss
    kids = 0
    for c in p.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that just exited
            kids += c.memory_info().rss
    return own / 1e9, (own + kids) / 1e9


def _latencies(out: Path) -> list[dict[str, Any]]:
    path = out / "latency.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def _stop(proc: subprocess.Popen, timeout: float = 120) -> int | None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _wait_done(proc: subprocess.Popen, out: Path, n: int, timeout: float,
               on_count: dict[int, Any] | None = None,
               series: dict[int, list[float]] | None = None) -> bool:
    """Wait until ``n`` groups are done (or the service died); ``on_count[k]`` is filled
    with the tree's RSS when k groups are done, and ``series[done]`` gets [service RSS at
    the first sample, lowest and highest tree RSS] over the samples (every 0.5 s) taken
    while ``done`` groups were done: the workers' RSS swings with the stage they run, so
    a single sample says little about growth."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        st = _status(out)
        done = st.get("groups_done", 0)
        finished = sum((st.get("groups") or {}).get(k, 0) for k in ("done", "quarantined"))
        if series is not None:
            with contextlib.suppress(psutil.Error):
                own, tree = _tree_rss(proc.pid)
                got = series.setdefault(done, [own, tree, tree])
                got[1], got[2] = min(got[1], tree), max(got[2], tree)
        if on_count is not None:
            for k in on_count:
                if on_count[k] is None and done >= k:
                    on_count[k] = (*_tree_rss(proc.pid), done)
        if done >= n or (finished >= n and not st.get("open_groups")):
            if on_count is not None:  # the last figure when the run ends (quarantines)
                last = max(on_count)
                if on_count[last] is None:
                    on_count[last] = (*_tree_rss(proc.pid), done)
            return True
        time.sleep(0.5)
    return False


def _replayed(src: Path, work: Path, name: str, n: int, speed: float, sets: list[str],
              timeout: float) -> tuple[list[dict[str, Any]], float, str | None]:
    """Replay ``src`` into a fresh service at ``speed``: (latencies, wall s, error)."""
    inp, out = work / f"{name}_in", work / f"{name}_out"
    inp.mkdir()
    proc = _service(inp, out, sets, None)
    t0 = time.time()
    feeder = threading.Thread(target=replay, args=(src, inp), kwargs=dict(
        speed=speed, jitter_s=2.0, slow_write_s=10.0, slow_fraction=0.1, seed=1))
    feeder.start()
    ok = _wait_done(proc, out, n, timeout)
    feeder.join()
    rc = _stop(proc)
    got = _latencies(out), time.time() - t0, _outcome(out, ok, rc)
    _clean(inp, out)
    return got


def _clean(*dirs: Path) -> None:
    """A scenario's data is gone once measured (a full-scale night is tens of GB)."""
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _caught_up(src: Path, work: Path, name: str, n: int, sets: list[str], timeout: float,
               rss_at: dict[int, Any] | None = None,
               series: dict[int, list[float]] | None = None,
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Every file already landed, then a fresh service: (latencies, error)."""
    inp, out = work / f"{name}_in", work / f"{name}_out"
    replay(src, inp, speed=1e9, jitter_s=0.0)
    proc = _service(inp, out, sets, None)
    ok = _wait_done(proc, out, n, timeout, rss_at, series)
    rc = _stop(proc)
    got = _latencies(out), _outcome(out, ok, rc)
    _clean(inp, out)
    return got


def _outcome(out: Path, ok: bool, rc: int | None) -> str | None:
    """None when every group was done and the service exited cleanly, else what went wrong
    (with the reasons of the groups that failed)."""
    st = _status(out)
    bad = {g: m for g, m in (st.get("waiting_or_failed") or {}).items()}
    quarantined = (st.get("groups") or {}).get("quarantined", 0)
    if ok and rc == 0 and not quarantined and not bad:
        return None
    return (f"service rc={rc}, groups {st.get('groups')}, late files "
            f"{len(st.get('late_files') or [])}; {bad or ''}{_quarantines(out)}")


def _quarantines(out: Path) -> str:
    """Why the service quarantined groups, from its JSON log."""
    why = []
    with contextlib.suppress(OSError):
        for line in (out / "watch.log").read_text().splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if "quarantined" in str(rec.get("event", "")):
                    why.append(f"{rec.get('group')}: {rec.get('reason')}")
    return ("; quarantined: " + " | ".join(why)) if why else ""


def _lat_row(scen: str, lats: list[dict[str, Any]], **extra: Any) -> dict:
    vals = [x["latency_s"] for x in lats if not x["redo"]]
    p95 = _percentile(vals, 95)
    return row(scen, "dsa110_pipeline.run --watch (2 workers)", None, None,
               groups=len(vals), latency_p50_s=_round(_percentile(vals, 50)),
               latency_p95_s=_round(p95), latency_max_s=_round(max(vals, default=None)),
               **extra)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def run(quick: bool = False) -> dict:
    demo = ({"ants": 24, "sb": 4, "ch": 8, "ints": 6, "sources": 20} if quick
            else {"ants": 48, "sb": 16, "ch": 8, "ints": 24, "sources": 40})
    full = ({"ants": 32, "sb": 4, "ch": 16, "ints": 6, "sources": 40} if quick
            else {"ants": 96, "sb": 16, "ch": 48, "ints": 24, "sources": 200})
    n_demo, n_full, n_mem = (4, 3, 12) if quick else (12, 3, 50)
    demo_sets = [_subbands(demo)] + (["imaging.npix=512"] if quick else [])
    full_base = [_subbands(full)] + (["imaging.npix=512"] if quick else [])
    full_sets = [*full_base, "orchestrator.stage_threads=2"]
    want = set(os.environ.get("DSA110_REALTIME_SCENARIOS", "demo,full,catchup,mem")
               .split(","))
    rows: list[dict] = []
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="perf-realtime-"))
    try:
        if "demo" in want:  # 1. demo scale at 10x real time
            _simulate(work / "demo", n_demo, demo)
            lats, wall, err = _replayed(work / "demo", work, "demo10x", n_demo, 10.0,
                                        demo_sets, timeout=n_demo * 31 + 600)
            rows.append(_lat_row(f"demo scale, {n_demo} groups replayed at 10x real time",
                                 lats, replay_wall_s=round(wall, 1)))
            notes += [f"demo 10x: {err}"] if err else []
        if want & {"full", "catchup"}:
            _simulate(work / "full", n_full, full)
        if "full" in want:  # 2. full scale at 1x real time
            speed = 20.0 if quick else 1.0
            lats, wall, err = _replayed(work / "full", work, "full1x", n_full, speed,
                                        full_sets, timeout=n_full * 309 / speed + 900)
            p95 = _percentile([x["latency_s"] for x in lats], 95)
            rows.append(_lat_row(
                f"full scale, {n_full} groups replayed at {speed:g}x real time", lats,
                replay_wall_s=round(wall, 1),
                goal=f"p95 <= {GOAL_P95_S:g} s: " + ("met" if p95 is not None
                                                     and p95 <= GOAL_P95_S else "not met")))
            notes += [f"full 1x: {err}"] if err else []
        if "catchup" in want:  # 3. full scale, as fast as files land
            for threads in (2, 1):
                sets = [*full_base, f"orchestrator.stage_threads={threads}"]
                lats, err = _caught_up(work / "full", work, f"catchup{threads}", n_full,
                                       sets, timeout=1800)
                if lats:
                    rows.append(_throughput_row(lats, threads))
                notes += [f"full catch-up, stage_threads={threads}: {err}"] if err else []
        if "mem" in want:  # 4. memory over a long run
            _simulate(work / "mem", n_mem, demo)
            at: dict[int, Any] = {4 if quick else 10: None, n_mem: None}
            series: dict[int, list[float]] = {}
            lats, err = _caught_up(work / "mem", work, "mem", n_mem, demo_sets,
                                   timeout=3600, rss_at=at, series=series)
            rows += _memory_rows(at, n_mem, series)
            notes.append("memory run, groups done: service GB, tree GB lowest-highest while "
                         "that many were done: " + ", ".join(
                             f"{d}: {a:.3f}, {b:.2f}-{c:.2f}"
                             for d, (a, b, c) in sorted(series.items()) if d))
            notes += [f"memory run: {err}"] if err else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes.append("latency: last file of a group landed (mtime) -> its last stage finished, "
                 "from the service's latency.jsonl; settle 5 s and 2 s polls included; "
                 "throughput: groups / (last group done - first file landed), service "
                 "start-up included")
    return {"suite": "realtime", "rows": rows, "notes": notes}


def _throughput_row(lats: list[dict[str, Any]], threads: int) -> dict:
    first = min(x["landed"] for x in lats)
    span = max(x["done"] for x in lats) - first
    per_hour = len(lats) / span * 3600.0
    ratio = per_hour / TELESCOPE_GROUPS_PER_HOUR
    return row(f"full scale, {len(lats)} groups landed at once",
               f"dsa110_pipeline.run --watch (2 workers, stage_threads={threads})", span, None,
               groups_per_hour=round(per_hour, 1),
               telescope_groups_per_hour=round(TELESCOPE_GROUPS_PER_HOUR, 2),
               x_telescope=round(ratio, 2),
               goal=f">= {GOAL_THROUGHPUT:g}x (stretch {STRETCH_THROUGHPUT:g}x): "
                    + ("met" if ratio >= GOAL_THROUGHPUT else "not met")
                    + (", stretch met" if ratio >= STRETCH_THROUGHPUT else ""))


def _trend(x: np.ndarray, y: np.ndarray, x0: float, x1: float) -> float:
    """Growth from ``x0`` to ``x1`` of a straight line fitted to ``y(x)``."""
    slope, icpt = np.polyfit(x, y, 1)
    return float((slope * x1 + icpt) / (slope * x0 + icpt) - 1.0)


def _memory_rows(at: dict[int, Any], n_mem: int,
                 series: dict[int, list[float]]) -> list[dict]:
    """The service's growth between its two samples, and the process tree's: lines fitted
    to its lowest and highest RSS per count of groups done, from the first sample's count
    to the last. The lowest is what the workers return to between stages, where a leak
    would show; the highest is what the stages running then need (the hour's mosaic, 2-3
    GB above it), so single samples swing with the stage they catch. Goal: the service's
    growth and the tree's floor trend within 10 %."""
    k0, k1 = sorted(at)
    if at[k0] is None or at[k1] is None:
        return []
    growth = at[k1][0] / at[k0][0] - 1.0
    d0, d1 = at[k0][2], at[k1][2]  # groups done when measured
    # counts seen by one sample only (the last) say nothing of a range
    pts = np.array([(d, v[1], v[2]) for d, v in sorted(series.items())
                    if d >= d0 and v[2] > v[1]])
    tree_growth = floor_growth = None
    if len(pts) >= 3:
        tree_growth = _trend(pts[:, 0], pts[:, 2], d0, d1)
        floor_growth = _trend(pts[:, 0], pts[:, 1], d0, d1)  # the lowest: between stages
    met = abs(growth) <= GOAL_RSS and floor_growth is not None \
        and abs(floor_growth) <= GOAL_RSS
    peak = max((v[2] for v in series.values()), default=at[k1][1])
    return [row(f"demo scale, {n_mem} groups landed at once",
                "dsa110_pipeline.run --watch (2 workers)", None, peak,
                **{f"service_rss_gb_after_{d0}": round(at[k0][0], 3),
                   f"service_rss_gb_after_{d1}": round(at[k1][0], 3),
                   f"tree_rss_gb_after_{d0}": round(at[k0][1], 2),
                   f"tree_rss_gb_after_{d1}": round(at[k1][1], 2)},
                service_growth_pct=round(100 * growth, 1),
                tree_peak_trend_pct=None if tree_growth is None
                else round(100 * tree_growth, 1),
                tree_floor_trend_pct=None if floor_growth is None
                else round(100 * floor_growth, 1),
                goal=f"service and tree floor within {100 * GOAL_RSS:g} %: "
                     + ("met" if met else "not met"))]
