"""The live night (``--watch``) on toy stages: files landing, timeouts, late files,
waiting for tonight's calibration, running again after it, windows closing, draining."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.config import WatchConfig
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.night import GroupSpec, NightOrchestrator
from dsa110_pipeline.realtime import LiveNight, _percentile
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB
from dsa110_pipeline.watch import FileWatcher
from dsa110_pipeline.window import WindowStage

MJD0 = 61065.0 + 22 / 24  # 2026-01-25T22:00 UTC
STEP = 309.0 / 86400


def test_a_file_written_slowly_lands_only_once_settled(tmp_path):
    w = FileWatcher(tmp_path, settle_s=0.3, use_inotify=False)
    f = tmp_path / "a_sb00.hdf5"
    with open(f, "wb") as fh:
        for _ in range(4):  # written in chunks, 0.15 s apart: never settled meanwhile
            fh.write(b"x" * 100)
            fh.flush()
            assert w.scan() == []
            time.sleep(0.15)
    assert w.scan() == []  # first seen at its final size
    time.sleep(0.35)
    assert w.scan() == [f] and w.scan() == []  # reported once
    (tmp_path / "notes.txt").write_text("ignored")
    f.unlink()
    w.scan()
    assert w.landed == {}  # forgotten once gone


def test_a_completion_marker_lands_a_file_at_once(tmp_path):
    w = FileWatcher(tmp_path, marker_suffix=".done", use_inotify=False)
    f = tmp_path / "a_sb00.hdf5"
    f.write_bytes(b"x")
    assert w.scan() == [] and w.scan() == []
    (tmp_path / "a_sb00.hdf5.done").write_text("")
    assert w.scan() == [f]


def test_inotify_wakes_the_watcher(tmp_path):
    w = FileWatcher(tmp_path, settle_s=0.0)
    try:
        if not w.inotify:
            return  # a file system without inotify: polling is the fallback
        t0 = time.monotonic()
        threading.Timer(0.2, lambda: (tmp_path / "b_sb00.hdf5").write_bytes(b"y")).start()
        assert w.wait(5.0) and time.monotonic() - t0 < 2.0
    finally:
        w.close()


# -- a toy night -------------------------------------------------------------------------

def _toy_group(cal_index: int | None):
    """group(files): files g<k>_sb<j>.hdf5 make group k (two subbands); group
    ``cal_index`` is the calibrator, whose targets share its caltables."""

    def group(files):
        by: dict[int, list[Path]] = {}
        for f in files:
            by.setdefault(int(f.name[1:f.name.index("_")]), []).append(f)
        specs = []
        for k, fs in sorted(by.items()):
            sbs = {int(f.name[-7:-5]) for f in fs}
            gid = f"2026-01-25T22:{k * 5:02d}:00"
            specs.append(GroupSpec(
                gid, {"raw": [ProductRef.for_path("text", f) for f in sorted(fs)]},
                role="calibrator" if k == cal_index else "target",
                start_mjd=MJD0 + k * STEP, dec_deg=16.0,
                files=[(str(f), None, f.stat().st_size) for f in sorted(fs)],
                complete=sbs == {0, 1}, missing=[f"sb{j:02d}" for j in {0, 1} - sbs]))
        cal = next((s for s in specs if s.role == "calibrator"), None)
        for s in specs:
            if cal is not None and s is not cal:
                s.shared = {"caltables": f"{cal.group_id}/caltables"}
        return specs

    return group


def _write(ctx, name, text):
    out = Path(ctx.metadata["out_dir"]) / f"{ctx.group_id.replace(':', '')}.{name}"
    out.write_text(text)
    return out


def _calibrate(ctx):
    out = _write(ctx, "G", f"gains of {ctx.group_id}")
    return ctx.with_output("caltables", ProductRef.for_path("caltable", out))


def _apply(ctx):
    tables = ctx.get("caltables").path
    out = _write(ctx, "cal", tables)
    return ctx.with_output("calibrated", ProductRef.for_path("text", out, caltables=tables))


class HourLog(WindowStage):
    name = "hour_log"
    requires = ("calibrated",)
    produces = ("hour_log",)

    def execute(self, ctx):
        info = self.window(ctx)
        out = Path(ctx.metadata["out_dir"]) / f"{info.window_id.replace(':', '')}.json"
        out.write_text(json.dumps(list(info.groups)))
        return ctx.with_output("hour_log", ProductRef.for_path("json", out))


def _factory(slow_s: float = 0.0):
    def slow(fn):
        def run(ctx):
            time.sleep(slow_s)
            return fn(ctx)
        return run

    cal = FunctionStage(slow(_calibrate), name="calibrate", requires=("raw",),
                        produces=("caltables",))
    apply = FunctionStage(slow(_apply), name="apply", requires=("raw", "caltables"),
                          produces=("calibrated",))
    hour = HourLog()

    def factory(spec):
        return [cal, hour] if spec.role == "calibrator" else [apply, hour]

    return factory


class _Registry:
    """A toy calibration registry: the latest solutions, for anyone."""

    def __init__(self):
        self.latest = None

    def register(self, state, gid, product):
        self.latest = product

    def find(self, state, spec):
        return self.latest

    def redo(self, state, gid, product):
        out = []
        for g in state.groups("done"):
            for p in state.products(g["group_id"]):
                used = json.loads(p["meta"] or "{}").get("caltables")
                if p["key"] == "calibrated" and used != product.path:
                    out.append(g["group_id"])
        return out


def _night(tmp_path, cal_index, *, registry=None, slow_s=0.0, **watch):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    registry = registry or _Registry()
    cfg = SimpleNamespace(
        watch=WatchConfig(**{"settle_s": 0.0, "poll_s": 0.05, "late_timeout_s": 0.5,
                             "min_files": 1, "retry_s": 0.0, "inotify": False, **watch}),
        paths=SimpleNamespace(output_dir=str(out), input_dir=str(inp)))
    state = StateDB(tmp_path / "state.sqlite")
    orch = NightOrchestrator(state, output_dir=out, cache=ResultCache(out / ".cache"),
                             retry_backoff_s=0.0,
                             on_product={"caltables": registry.register},
                             find_product={"caltables": registry.find})
    live = LiveNight(cfg=cfg, state=state, orch=orch, factory=_factory(slow_s),
                     group=_toy_group(cal_index),
                     make_ctx=lambda: PipelineContext(metadata={"out_dir": str(out)}),
                     log=get_logger(), redo_after={"caltables": registry.redo})
    return live, inp, state, registry


def _land(inp, k, sbs=(0, 1)):
    for j in sbs:
        (inp / f"g{k}_sb{j:02d}.hdf5").write_text(f"{k}{j}")


def _steps(live, n=3, pause=0.0):
    for _ in range(n):
        live.step()
        time.sleep(pause)


def test_groups_run_as_they_land_and_report_their_latency(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=0)
    _land(inp, 0)
    _steps(live)
    assert state.group("2026-01-25T22:00:00")["status"] == "done"
    _land(inp, 1)
    _land(inp, 2, sbs=(0,))  # one subband still to come
    _steps(live)
    assert state.group("2026-01-25T22:05:00")["status"] == "done"
    assert state.group("2026-01-25T22:10:00") is None  # waits for its other subband
    _land(inp, 2, sbs=(1,))
    _steps(live)
    assert state.group("2026-01-25T22:10:00")["status"] == "done"
    lines = [json.loads(x) for x in (tmp_path / "out" / "latency.jsonl").read_text().split(
        "\n") if x]
    assert [x["group_id"][-5:] for x in lines] == ["00:00", "05:00", "10:00"]
    assert all(0 <= x["latency_s"] < 5 for x in lines)
    status = json.loads((tmp_path / "out" / "watch_status.json").read_text())
    assert status["groups_done"] == 3 and status["latency_p95_s"] is not None


def test_an_incomplete_group_proceeds_or_is_quarantined_after_the_timeout(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=0, late_timeout_s=0.3, min_files=1)
    _land(inp, 0)
    _land(inp, 1, sbs=(0,))
    _steps(live, 2)
    assert state.group("2026-01-25T22:05:00") is None  # still within the timeout
    time.sleep(0.35)
    _steps(live, 2)
    row = state.group("2026-01-25T22:05:00")
    assert row["status"] == "done"  # proceeded with one subband
    # its missing subband lands late: reported, recorded with the group, not processed
    _land(inp, 1, sbs=(1,))
    _steps(live, 2)
    late = json.loads((tmp_path / "out" / "watch_status.json").read_text())["late_files"]
    assert [Path(x["file"]).name for x in late] == ["g1_sb01.hdf5"]
    assert state.file_group(str(inp / "g1_sb01.hdf5"))["group_id"] == "2026-01-25T22:05:00"
    assert len(state.stage_runs("2026-01-25T22:05:00")) == 1
    # with partial: quarantine, an incomplete group is quarantined and says why
    live2, inp2, state2, _ = _night(tmp_path / "q", cal_index=0, late_timeout_s=0.2,
                                    partial="quarantine")
    _land(inp2, 0, sbs=(1,))
    _steps(live2, 4, pause=0.15)
    row = state2.group("2026-01-25T22:00:00")
    assert row["status"] == "quarantined" and "missing sb00" in row["message"]


def test_targets_before_the_calibrator_wait_then_use_tonights_solutions(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=2)
    _land(inp, 0)
    _land(inp, 1)
    _steps(live)
    assert {state.group(g)["status"] for g in ("2026-01-25T22:00:00",
                                                "2026-01-25T22:05:00")} == {"waiting"}
    assert state.group("2026-01-25T22:00:00")["failures"] == 0
    _land(inp, 2)
    _steps(live, 4)
    assert {g["status"] for g in state.groups()} == {"done"}
    used = (tmp_path / "out" / "2026-01-25T220000.cal").read_text()
    assert used.endswith("2026-01-25T221000.G")


def test_targets_done_with_an_earlier_solution_run_again_after_tonights(tmp_path):
    registry = _Registry()
    old = tmp_path / "last_night.G"
    old.write_text("old gains")
    registry.latest = ProductRef.for_path("caltable", old)
    live, inp, state, _ = _night(tmp_path, cal_index=2, registry=registry)
    _land(inp, 0)
    _steps(live)
    cal_file = tmp_path / "out" / "2026-01-25T220000.cal"
    assert cal_file.read_text() == str(old)  # the registry's earlier solution
    _land(inp, 1)
    _land(inp, 2)
    _steps(live, 5)
    assert cal_file.read_text().endswith("2026-01-25T221000.G")  # re-applied with tonight's
    redo = [json.loads(x) for x in (tmp_path / "out" / "latency.jsonl").read_text().split(
        "\n") if x and json.loads(x)["redo"]]
    assert [x["group_id"] for x in redo] == ["2026-01-25T22:00:00"]


def test_a_window_closes_once_no_group_can_join_it(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=0, late_timeout_s=0.0)
    for k in range(4):  # 22:00 .. 22:15
        _land(inp, k)
    _steps(live)
    assert state.windows() == []  # the 22h window may still get groups
    # groups of the next hour: 23:00 (k=12) .. 23:10
    for k in (12, 13, 14):
        _land(inp, k)
    _steps(live)
    (w,) = state.windows()
    assert w["window_id"] == "hour_log@2026-01-25T22:00:00" and w["status"] == "done"
    assert len(w["groups"]) == 3  # the calibrator makes no "calibrated": a named gap
    assert list(w["gaps"]) == ["2026-01-25T22:00:00"]


def test_sigterm_drains_running_work_and_leaves_the_rest_pending(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=0, slow_s=0.4)
    for k in range(3):
        _land(inp, k)
    live.step()  # lands the files
    threading.Timer(0.2, lambda: live.stop("SIGTERM")).start()
    live.step()
    statuses = {g["group_id"]: g["status"] for g in state.groups()}
    assert statuses["2026-01-25T22:00:00"] == "done"  # its stage was running: finished
    assert set(statuses.values()) <= {"done", "pending"} and "pending" in statuses.values()
    assert all(g["failures"] == 0 for g in state.groups())


def test_percentile():
    assert _percentile([], 95) is None
    assert _percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert _percentile(list(range(1, 101)), 95) == 95


def test_a_backlog_runs_in_batches_of_the_oldest_groups(tmp_path):
    live, inp, state, _ = _night(tmp_path, cal_index=0, max_batch=2)
    for k in range(6):
        _land(inp, k)
    live.step()  # sees the files
    live.step()  # they land; the two oldest groups run
    done = sorted(g["group_id"] for g in state.groups("done"))
    assert done == ["2026-01-25T22:00:00", "2026-01-25T22:05:00"] and live.backlog
    assert live.serve(max_groups=6) == 0  # the rest, batch after batch, without waiting
    assert len(state.groups("done")) == 6
