"""Tests of dsa110_pipeline.profiling: the numbers in a run's profile report."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dsa110_pipeline.profiling import (
    ProfileReport,
    RunProfiler,
    StageProfile,
    measure_call,
    rss_mb_now,
)

MB = 1024 * 1024


def _allocate_and_free(n_mb: int) -> float:
    a = np.ones(n_mb * MB // 8)  # touches every page
    s = float(a[::4096].sum())
    del a
    return s


def _line_profiled(n_mb: int) -> int:
    keep = np.ones(n_mb * MB // 8)  # ALLOCATION LINE
    return int(keep.size)


def _hot_function_for_cprofile(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@pytest.fixture
def profiler():
    prof = RunProfiler(interval_s=0.02)
    prof.start()
    yield prof
    prof.stop()


def test_allocating_stage_shows_its_peak_and_the_next_stage_does_not(profiler):
    baseline = rss_mb_now()  # a stage's peak counts this process's children too
    with profiler.stage("alloc") as sp:
        _allocate_and_free(200)
    # freed before the stage ended: only the high-water mark / samples can see it
    assert sp.peak_rss_mb >= baseline + 190
    with profiler.stage("after") as sp2:
        time.sleep(0.05)
    assert sp2.peak_rss_mb < baseline + 100
    rep = profiler.report()
    assert [s.name for s in rep.stages] == ["alloc", "after"]
    assert rep.peak_rss_mb >= baseline + 190


def test_sleep_stage_wall_and_cpu(profiler):
    with profiler.stage("sleep") as sp:
        time.sleep(0.25)
    assert sp.wall_s >= 0.25
    assert sp.cpu_user_s + sp.cpu_sys_s < 0.05
    assert sp.finished - sp.started == pytest.approx(sp.wall_s, abs=0.01)


def test_busy_stage_cpu_is_its_own_thread_only(profiler):
    stop = threading.Event()

    def spin_elsewhere():  # another thread burning CPU must not be charged
        while not stop.is_set():
            _hot_function_for_cprofile(1000)

    t = threading.Thread(target=spin_elsewhere)
    t.start()
    try:
        with profiler.stage("busy") as sp:
            t0 = time.thread_time()
            # work until this thread has had 0.05 s of CPU, however loaded the machine is
            # (a fixed amount of work got ~0 s of it beside a busy demo run)
            while time.thread_time() - t0 < 0.05:
                _hot_function_for_cprofile(50_000)
            own = time.thread_time() - t0
    finally:
        stop.set()
        t.join()
    assert sp.cpu_user_s + sp.cpu_sys_s == pytest.approx(own, abs=0.02)
    assert sp.cpu_user_s > 0.01


def test_file_writing_stage_shows_bytes_written_and_read(profiler, tmp_path):
    path = tmp_path / "blob.bin"
    payload = os.urandom(4 * MB)
    with profiler.stage("write") as sp, open(path, "wb") as f:
        for _ in range(5):
            f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    assert sp.write_chars >= 20 * MB
    if sys.platform == "linux" and not str(tmp_path).startswith("/dev/shm"):
        assert sp.write_bytes >= 20 * MB  # storage-layer bytes (not counted on tmpfs)
    with profiler.stage("read") as sp_r:
        assert len(path.read_bytes()) == 20 * MB
    assert sp_r.read_chars >= 20 * MB
    assert sp_r.write_chars < MB


def test_report_files_json_markdown_png(profiler, tmp_path):
    with profiler.stage("a"):
        _allocate_and_free(20)
    with profiler.stage("b"):
        time.sleep(0.05)
    profiler.mark_cache_hit("c")
    profiler.stop()
    rep = profiler.report()
    paths = rep.write(tmp_path / "out", stem="run1")
    assert {p.name for p in paths.values()} == {"run1.json", "run1.md", "run1.png"}
    assert sorted(os.listdir(tmp_path / "out")) == ["run1.json", "run1.md", "run1.png"]

    d = json.loads(paths["json"].read_text())
    assert [s["name"] for s in d["stages"]] == ["a", "b", "c"]
    assert d["summary"]["n_stages"] == 3 and d["summary"]["n_cache_hits"] == 1
    assert d["stages"][1]["wall_s"] >= 0.05
    assert len(d["rss_series"]["t_s"]) >= 3  # sampled at 50 Hz over >= 0.1 s
    assert d["rss_series"]["t_s"] == sorted(d["rss_series"]["t_s"])
    back = ProfileReport.from_dict(d)
    assert back.stages[1].wall_s == pytest.approx(rep.stages[1].wall_s)

    md = paths["md"].read_text()
    assert md.startswith("| stage | scope | start s | wall s |")
    rows = [line for line in md.splitlines() if line.startswith("| ") and "stage |" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["a", "b", "c"]
    assert rows[2].split("|")[10].strip() == "yes"  # cache-hit column

    import matplotlib.image as mpimg

    img = mpimg.imread(paths["png"])
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    assert float(img[..., :3].std()) > 0.01  # not a blank canvas


def test_cprofile_text_names_the_hot_function(profiler):
    with profiler.stage("hot", cprofile=True, cprofile_top=10) as sp:
        _hot_function_for_cprofile(200_000)
    assert sp.cprofile_text is not None
    assert "_hot_function_for_cprofile" in sp.cprofile_text
    assert "cumulative" in sp.cprofile_text


def test_memory_profile_has_line_numbers_and_the_allocation(profiler):
    result = profiler.call("mem", _line_profiled, 64, memory_profile=True)
    assert result == 64 * MB // 8
    sp = profiler.stages[-1]
    text = sp.memory_profile_text
    assert text is not None and "Line #" in text
    src, first = inspect.getsourcelines(_line_profiled)
    alloc_line = first + next(i for i, s in enumerate(src) if "ALLOCATION LINE" in s)
    row = next(line for line in text.splitlines() if line.split()[:1] == [str(alloc_line)])
    # columns: line, mem usage, MiB, increment, MiB, occurrences, source
    increment = float(row.split()[3])
    assert 55 <= increment <= 80


def test_memory_profile_without_target_is_an_error(profiler):
    with pytest.raises(ValueError, match="target"), profiler.stage("x", memory_profile=True):
        pass


def test_failing_stage_is_recorded_with_its_error(profiler):
    with pytest.raises(RuntimeError, match="boom"), profiler.stage("bad") as sp:
        time.sleep(0.02)
        raise RuntimeError("boom")
    assert sp.error == "RuntimeError: boom"
    assert sp.wall_s >= 0.02 and sp.finished >= sp.started
    assert profiler.stages[-1] is sp


def test_mark_cache_hit_flags_the_running_stage_or_adds_a_record(profiler):
    with profiler.stage("cached") as sp:
        profiler.mark_cache_hit("cached")
    profiler.mark_cache_hit("elsewhere")
    assert sp.cache_hit is True
    names = [(s.name, s.cache_hit, s.wall_s) for s in profiler.stages]
    assert names == [("cached", True, sp.wall_s), ("elsewhere", True, 0.0)]


def test_disabled_profiler_records_nothing():
    prof = RunProfiler(enabled=False)
    with prof:
        with prof.stage("x") as sp:
            pass
        prof.mark_cache_hit("y")
        prof.record(StageProfile("z"))
    assert sp.name == "x"
    rep = prof.report()
    assert rep.stages == [] and rep.rss_series == []


def test_concurrent_stages_from_threads_are_all_recorded(profiler):
    def work(k):
        for i in range(300):
            with profiler.stage(f"t{k}-{i}"):
                pass

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {s.name for s in profiler.stages}
    assert len(names) == 1200


def _child_allocates(n_mb: int, hold_s: float) -> int:
    code = (f"import numpy as np, time; a = np.ones({n_mb * MB // 8}); "
            f"time.sleep({hold_s}); t = time.process_time()\n"
            "while time.process_time() - t < 0.3: pass")
    return subprocess.run([sys.executable, "-c", code], check=True).returncode


def test_measure_call_counts_children_cpu_and_memory():
    baseline = rss_mb_now(children=False)
    rc, sp = measure_call("child", _child_allocates, 300, 0.8, interval_s=0.02)
    assert rc == 0
    assert sp.scope == "process"
    assert sp.cpu_user_s + sp.cpu_sys_s >= 0.25  # the child's busy loop, once waited for
    assert sp.peak_rss_mb >= baseline + 250  # the child's 300 MB array, sampled
    run = RunProfiler()
    run.record(sp)
    assert run.report().stages == [sp]


def test_measure_call_attaches_profile_to_exception():
    def fail():
        raise KeyError("k")

    with pytest.raises(KeyError) as ei:
        measure_call("f", fail)
    assert ei.value.stage_profile.error == "KeyError: 'k'"


def test_stage_profile_roundtrip():
    sp = StageProfile("x", wall_s=1.5, peak_rss_mb=3.0, cache_hit=True)
    assert StageProfile.from_dict(json.loads(json.dumps(sp.to_dict()))) == sp


def test_profilers_share_one_sampler_thread():
    a, b = RunProfiler(interval_s=0.02), RunProfiler(interval_s=0.02)
    with a, b:
        n = sum(1 for t in threading.enumerate() if t.name == "dsa110-rss-sampler")
        time.sleep(0.1)
    assert n == 1
    assert len(a.report().rss_series) >= 3 and len(b.report().rss_series) >= 3
    time.sleep(0.05)
    assert not any(t.name == "dsa110-rss-sampler" for t in threading.enumerate())


def test_report_written_path_is_complete(tmp_path):
    prof = RunProfiler()
    with prof, prof.stage("only"):
        pass
    paths = prof.report().write(Path(tmp_path))
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_measure_call_works_in_a_forked_child_of_a_sampling_process(profiler):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child(q):
        base = rss_mb_now(children=False)
        _, sp = measure_call("in-child", _allocate_and_free, 50, interval_s=0.01)
        q.put((sp.to_dict(), base))

    with profiler.stage("parent"):
        p = ctx.Process(target=child, args=(q,))
        p.start()
        got, child_base = q.get(timeout=60)
        p.join(30)
    assert p.exitcode == 0
    sp = StageProfile.from_dict(got)
    assert sp.name == "in-child" and sp.scope == "process"
    assert sp.peak_rss_mb >= child_base + 45
    profiler.record(sp)
    assert [s.name for s in profiler.stages] == ["parent", "in-child"]
