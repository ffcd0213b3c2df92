"""Window stages: one run per window of groups, on the groups that succeeded, resumable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.night import GroupSpec, NightOrchestrator
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB
from dsa110_pipeline.window import WindowStage, plan_windows, window_length

MJD = 61065.0  # 2026-01-25T00:00:00 UTC
RUNS: list[tuple[str, tuple[str, ...], dict[str, str]]] = []


class HourCount(WindowStage):
    """Writes the window's groups and the sum of their numbers: a toy hourly product."""

    name = "hour_count"
    requires = ("number",)
    produces = ("count",)
    fail = False

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        info = self.window(ctx)
        if self.fail:
            raise RuntimeError("the toy window stage broke")
        numbers = {g: int(Path(ref.path).read_text())
                   for g, ref in self.group_products(ctx, "number").items()}
        RUNS.append((info.window_id, info.groups, info.gaps))
        out = Path(ctx.metadata["out_dir"]) / f"{info.window_id.replace(':', '')}.json"
        out.write_text(json.dumps({"groups": list(info.groups), "sum": sum(numbers.values()),
                                   "gaps": info.gaps}))
        return ctx.with_output("count", ProductRef.for_path("json", out))


def _number(fail: set[str]) -> FunctionStage:
    def fn(ctx: PipelineContext) -> PipelineContext:
        if ctx.group_id in fail:
            raise InputError("truncated HDF5 file", files=[f"{ctx.group_id}_sb03.hdf5"])
        i = int(Path(ctx.get("raw").path).read_text())
        out = Path(ctx.metadata["out_dir"]) / f"{ctx.group_id.replace(':', '')}.num"
        out.write_text(str(10 * i))
        return ctx.with_output("number", ProductRef.for_path("text", out))

    return FunctionStage(fn, name="number", requires=("raw",), produces=("number",))


def _factory(fail: set[str] | None = None, window: HourCount | None = None):
    number, count = _number(fail or set()), window or HourCount()

    def factory(spec: GroupSpec):
        return [number, count]

    return factory


def _specs(tmp_path: Path, minutes=(0, 5, 10, 65)) -> list[GroupSpec]:
    """Groups at 22:MM UTC (and one in the next hour)."""
    specs = []
    for i, m in enumerate(minutes):
        raw = tmp_path / f"raw{i}.txt"
        raw.write_text(str(i + 1))
        start = MJD + (22 * 60 + m) / 1440.0
        gid = f"2026-01-25T{22 + m // 60:02d}:{m % 60:02d}:00"
        specs.append(GroupSpec(gid, {"raw": ProductRef.for_path("text", raw)},
                               start_mjd=start, dec_deg=16.0))
    return specs


def _run(tmp_path, db, specs, factory, rerun=False):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    orch = NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".cache"),
                             retry_backoff_s=0.0, rerun=rerun)
    return orch.run(specs, factory, PipelineContext(metadata={"out_dir": str(out)}))


def _product(db: StateDB, wid: str) -> dict:
    (row,) = db.products(wid)
    return json.loads(Path(row["path"]).read_text())


def test_windows_are_cut_on_the_utc_hour():
    stage = HourCount()
    members = [(f"g{m}", MJD + (22 * 60 + m) / 1440.0, stage) for m in (0, 5, 59, 60, 65)]
    members.append(("undated", None, stage))
    plans = plan_windows(members)
    got = {p.window_id: p.members for p, _ in plans}
    assert got == {"hour_count@2026-01-25T22:00:00": ("g0", "g5", "g59"),
                   "hour_count@2026-01-25T23:00:00": ("g60", "g65"),
                   "hour_count@undated": ("undated",)}
    assert window_length("night") == 86400.0 and window_length(600) == 600.0
    with pytest.raises(ValueError, match="neither seconds"):
        window_length("fortnight")


def test_one_run_per_window_on_every_group(tmp_path):
    RUNS.clear()
    with StateDB(tmp_path / "state.sqlite") as db:
        res = _run(tmp_path, db, _specs(tmp_path), _factory())
        assert res.ok and set(res.status.values()) == {"done"}
        assert res.windows == {"hour_count@2026-01-25T22:00:00": "done",
                               "hour_count@2026-01-25T23:00:00": "done"}
        assert sorted((w, g) for w, g, _ in RUNS) == [
            ("hour_count@2026-01-25T22:00:00",
             ("2026-01-25T22:00:00", "2026-01-25T22:05:00", "2026-01-25T22:10:00")),
            ("hour_count@2026-01-25T23:00:00", ("2026-01-25T23:05:00",))]
        assert _product(db, "hour_count@2026-01-25T22:00:00")["sum"] == 10 + 20 + 30
        row = db.window("hour_count@2026-01-25T22:00:00")
        assert row["status"] == "done" and len(row["groups"]) == 3 and row["gaps"] == {}
        assert [r["stage"] for r in db.stage_runs("hour_count@2026-01-25T23:00:00")] == [
            "hour_count"]
        # resumed: nothing runs again
        RUNS.clear()
        again = _run(tmp_path, db, _specs(tmp_path), _factory())
        assert again.windows == {} and RUNS == []


def test_a_failed_group_is_a_named_gap_and_the_window_still_runs(tmp_path):
    RUNS.clear()
    specs = _specs(tmp_path)
    bad = specs[1].group_id
    with StateDB(tmp_path / "state.sqlite") as db:
        res = _run(tmp_path, db, specs, _factory(fail={bad}))
        assert res.status[bad] == "quarantined"
        wid = "hour_count@2026-01-25T22:00:00"
        assert res.windows[wid] == "done"
        made = _product(db, wid)
        assert made["groups"] == [specs[0].group_id, specs[2].group_id]
        assert made["sum"] == 10 + 30
        assert list(made["gaps"]) == [bad]
        row = db.window(wid)
        assert list(row["gaps"]) == [bad]
        # the next run knows the group is quarantined: the window is current, not rerun
        RUNS.clear()
        again = _run(tmp_path, db, _specs(tmp_path), _factory(fail={bad}))
        assert again.windows == {} and RUNS == []
        # a rerun of the night says why the group is missing: its quarantine message
        again = _run(tmp_path, db, _specs(tmp_path), _factory(fail={bad}), rerun=True)
        assert "truncated HDF5" in db.window(wid)["gaps"][bad]


def test_every_group_failing_skips_the_window(tmp_path):
    specs = _specs(tmp_path, minutes=(0, 5))
    with StateDB(tmp_path / "state.sqlite") as db:
        res = _run(tmp_path, db, specs, _factory(fail={s.group_id for s in specs}))
        (wid,) = res.windows
        assert res.windows[wid] == "skipped" and not res.ok
        assert set(db.window(wid)["gaps"]) == {s.group_id for s in specs}


def test_window_reruns_alone_when_its_product_is_gone_or_it_failed(tmp_path):
    RUNS.clear()
    specs = _specs(tmp_path)
    wid = "hour_count@2026-01-25T22:00:00"
    with StateDB(tmp_path / "state.sqlite") as db:
        broken = HourCount()
        broken.fail = True
        res = _run(tmp_path, db, specs, _factory(window=broken))
        assert res.windows[wid] == "failed" and "broke" in db.window(wid)["message"]
        assert all(s == "done" for s in res.status.values())
        # the next run: groups are done, only the failed windows run, on recorded products
        res = _run(tmp_path, db, _specs(tmp_path), _factory())
        assert set(res.status.values()) == {"skipped"}
        assert res.windows == {wid: "done", "hour_count@2026-01-25T23:00:00": "done"}
        assert _product(db, wid)["sum"] == 60
        os.remove(db.products(wid)[0]["path"])
        RUNS.clear()
        res = _run(tmp_path, db, _specs(tmp_path), _factory())
        assert res.windows == {wid: "done"} and [w for w, *_ in RUNS] == [wid]


def test_a_later_group_reopens_its_window(tmp_path):
    """Groups run in two batches (--start/--end): the window ends up holding all three."""
    specs = _specs(tmp_path)
    wid = "hour_count@2026-01-25T22:00:00"
    with StateDB(tmp_path / "state.sqlite") as db:
        _run(tmp_path, db, specs[:2], _factory())
        assert _product(db, wid)["groups"] == [s.group_id for s in specs[:2]]
        res = _run(tmp_path, db, specs[2:3], _factory())
        assert res.windows == {wid: "done"}
        assert _product(db, wid)["groups"] == [s.group_id for s in specs[:3]]
        assert _product(db, wid)["sum"] == 60


def test_a_window_stage_killed_mid_run_runs_again(tmp_path):
    """A kill leaves the window 'running' in the state DB: the next run redoes it."""
    specs = _specs(tmp_path, minutes=(0, 5))
    with StateDB(tmp_path / "state.sqlite") as db:
        _run(tmp_path, db, specs, _factory())
        (wid,) = [w["window_id"] for w in db.windows()]
        row = db.window(wid)
        db.set_window(wid, stage=row["stage"], start_mjd=row["start_mjd"],
                      end_mjd=row["end_mjd"], status="running")
        res = _run(tmp_path, db, _specs(tmp_path, minutes=(0, 5)), _factory())
        assert res.windows == {wid: "done"} and db.window(wid)["status"] == "done"
        assert len(db.stage_runs(wid)) == 2


def test_a_failed_window_names_no_finished_group_as_a_gap(tmp_path):
    specs = _specs(tmp_path, minutes=(0, 5))
    broken = HourCount()
    broken.fail = True
    with StateDB(tmp_path / "state.sqlite") as db:
        res = _run(tmp_path, db, specs, _factory(fail={specs[0].group_id}, window=broken))
        (wid,) = res.windows
        row = db.window(wid)
        assert row["status"] == "failed" and list(row["gaps"]) == [specs[0].group_id]
        gap = row["gaps"][specs[0].group_id]
        assert gap.startswith("group quarantined") and "truncated HDF5" in gap
