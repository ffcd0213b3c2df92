import json
import time

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.night import GroupSpec, NightOrchestrator, key
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB

LOG: list = []


def _writer(name, produces, requires=(), sleep=0.0, fail_group=None):
    def fn(ctx: PipelineContext) -> PipelineContext:
        t0 = time.time()
        if ctx.group_id == fail_group:
            raise InputError("truncated HDF5 file", files=[f"{ctx.group_id}_sb03.hdf5"])
        time.sleep(sleep)
        out = ctx.metadata["out_dir"] + f"/{ctx.group_id}_{produces}.txt"
        refs = [r for k in requires for r in (ctx.get(k) if isinstance(ctx.get(k), list)
                                                  else [ctx.get(k)])]
        text = ",".join(str(r.checksum) for r in refs) + name
        with open(out, "w") as fh:
            fh.write(text)
        LOG.append((ctx.group_id, name, t0, time.time()))
        return ctx.with_output(produces, ProductRef.for_path("text", out))

    return FunctionStage(fn, name=name, requires=requires, produces=(produces,))


def _factory(fail_group=None):
    def factory(spec: GroupSpec):
        convert = _writer("convert", "ms", ("raw",), sleep=0.05, fail_group=fail_group)
        if spec.role == "calibrator":
            cal = _writer("calibrate", "caltables", ("ms",), sleep=0.2)
        else:
            cal = _writer("apply", "calibrated", ("ms", "caltables"))
        return [convert, cal]

    return factory


def _specs(tmp_path):
    specs = []
    for i, role in enumerate(("calibrator", "target", "target")):
        gid = f"2026-01-25T22:{i * 5:02d}:00"
        raw = tmp_path / f"raw{i}.txt"
        raw.write_text(str(i))
        shared = {} if role == "calibrator" else {"caltables": key(specs[0].group_id,
                                                                   "caltables")}
        specs.append(GroupSpec(gid, {"raw": ProductRef.for_path("text", raw)}, role=role,
                               start_mjd=61000 + i * 0.0036, dec_deg=16.0, shared=shared,
                               files=[(str(raw), 0, 1)]))
    return specs


def _orch(tmp_path, db, **kw):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".cache"),
                             retry_backoff_s=0.0, **kw)


def _ctx(tmp_path):
    return PipelineContext(metadata={"out_dir": str(tmp_path / "out")})


def test_targets_wait_for_the_calibrator_and_all_complete(tmp_path):
    LOG.clear()
    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        res = _orch(tmp_path, db, max_groups_in_flight=3).run(specs, _factory(), _ctx(tmp_path))
        assert res.status == {s.group_id: "done" for s in specs}
        cal_end = next(e for g, n, s, e in LOG if n == "calibrate")
        applies = [s for g, n, s, e in LOG if n == "apply"]
        assert len(applies) == 2 and min(applies) >= cal_end
        # Target conversions did not wait for the calibrator: they overlap its solve.
        convert_starts = [s for g, n, s, e in LOG if n == "convert"]
        assert max(convert_starts) < cal_end
        for s in specs:
            prods = db.products(s.group_id)
            assert {p["key"] for p in prods} >= {"ms"}
            assert all(p["checksum"] for p in prods)
        runs = db.stage_runs(specs[1].group_id)
        assert {r["stage"] for r in runs} == {"convert", "apply"}


def test_rerun_of_a_finished_night_does_nothing(tmp_path):
    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        _orch(tmp_path, db).run(specs, _factory(), _ctx(tmp_path))
        LOG.clear()
        again = _orch(tmp_path, db).run(_specs(tmp_path), _factory(), _ctx(tmp_path))
        assert set(again.status.values()) == {"skipped"} and LOG == []


def test_deleted_product_makes_its_group_run_again(tmp_path):
    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        _orch(tmp_path, db).run(specs, _factory(), _ctx(tmp_path))
        victim = db.products(specs[2].group_id)[0]["path"]
        import os

        os.remove(victim)
        LOG.clear()
        again = _orch(tmp_path, db).run(_specs(tmp_path), _factory(), _ctx(tmp_path))
        assert again.status[specs[2].group_id] == "done"
        assert again.status[specs[1].group_id] == "skipped"
        assert os.path.exists(victim)
        # The calibrator was not rerun: its recorded caltables came in as an input.
        assert all(g == specs[2].group_id for g, *_ in LOG)


def test_bad_group_is_quarantined_and_the_night_goes_on(tmp_path):
    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        bad = specs[1].group_id
        res = _orch(tmp_path, db).run(specs, _factory(fail_group=bad), _ctx(tmp_path))
        assert res.status[bad] == "quarantined"
        assert res.status[specs[0].group_id] == "done" == res.status[specs[2].group_id]
        row = db.group(bad)
        assert row["status"] == "quarantined" and "truncated HDF5" in row["message"]
        qfile = tmp_path / "out" / "quarantine" / bad.replace(":", "") / "errors.json"
        assert "sb03.hdf5" in json.loads(qfile.read_text())["stages"][0]["error"]


def test_product_hooks_record_and_find_what_no_stage_makes(tmp_path):
    """``on_product`` sees each product as a group makes it (the DB's one writer calls it);
    ``find_product`` supplies one a group needs that no stage makes tonight."""
    seen: list[tuple[str, str]] = []
    found: list[str] = []
    spare = tmp_path / "spare.txt"
    spare.write_text("s")

    def finder(state, spec):
        found.append(spec.group_id)
        return ProductRef.for_path("text", spare) if spec.dec_deg < 30 else None

    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        for s in specs[1:]:
            s.shared = {}  # targets share nothing: their caltables must be found
        specs[2].dec_deg = 40.0
        orch = _orch(tmp_path, db, on_product={"ms": lambda st, g, p: seen.append((g, p.path))},
                     find_product={"caltables": finder})
        res = orch.run(specs[1:], _factory(), _ctx(tmp_path))
        assert res.status == {specs[1].group_id: "done", specs[2].group_id: "failed"}
        assert found == [specs[1].group_id, specs[2].group_id]
        assert [g for g, _ in seen] == [specs[1].group_id]  # the other never started
        assert "caltables" in db.group(specs[2].group_id)["message"]


def test_night_start_sweeps_temporaries_of_dead_writers(tmp_path):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    dead = subprocess_dead_pid()
    stale = [out / f".g1.ms.tmp-{dead}-abc123", out / "images" / f".g1-image.fits.tmp-{dead}-x"]
    stale[0].mkdir()
    stale[1].write_text("half")
    with StateDB(tmp_path / "state.sqlite") as db:
        _orch(tmp_path, db).run(_specs(tmp_path), _factory(), _ctx(tmp_path))
    assert not any(p.exists() for p in stale)


def subprocess_dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_targets_of_a_failed_calibrator_fall_back_to_the_finder_in_the_same_run(tmp_path):
    """A calibrator group fails: its targets are not lost with it, they run again at once
    with what the finder (the calibration registry) gives."""
    spare = tmp_path / "registry.G"
    spare.write_text("an earlier solution")
    asked: list[str] = []

    def finder(state, spec):
        asked.append(spec.group_id)
        return ProductRef.for_path("caltable", spare)

    with StateDB(tmp_path / "state.sqlite") as db:
        specs = _specs(tmp_path)
        cal = specs[0].group_id
        res = _orch(tmp_path, db, find_product={"caltables": finder}).run(
            specs, _factory(fail_group=cal), _ctx(tmp_path))
        assert res.status[cal] == "quarantined"
        assert res.status[specs[1].group_id] == "done" == res.status[specs[2].group_id]
        assert sorted(asked) == [specs[1].group_id, specs[2].group_id]
        out = tmp_path / "out" / f"{specs[1].group_id}_calibrated.txt"
        assert out.exists()


def test_a_calibrator_unfit_for_its_role_runs_again_as_a_target(tmp_path):
    """A calibrator group whose solve says its data cannot calibrate (``RoleUnfit``: its
    solutions fail QA) is not lost: with ``role_fallback`` it runs again at once as a
    target, with the finder's (the registry's) solutions, its targets too; without one it
    is quarantined as bad input."""
    from dsa110_pipeline.errors import RoleUnfit

    spare = tmp_path / "registry.G"
    spare.write_text("an earlier solution")

    def factory(spec: GroupSpec):
        stages = _factory()(spec)
        if spec.role == "calibrator":
            def unfit(ctx):
                raise RoleUnfit("calibrator J0020+1540: solutions failed QA: bandpass "
                                "median SNR 3.6 < 10.0", stage="calibrate")
            stages[1] = FunctionStage(unfit, name="calibrate", requires=("ms",),
                                      produces=("caltables",))
        return stages

    def finder(state, spec):
        return ProductRef.for_path("caltable", spare)

    for fallback, want in (({"calibrator": "target"}, "done"), ({}, "quarantined")):
        work = tmp_path / (fallback and "with" or "without")
        work.mkdir()
        with StateDB(work / "state.sqlite") as db:
            specs = _specs(tmp_path)
            cal = specs[0].group_id
            res = _orch(work, db, find_product={"caltables": finder},
                        role_fallback=fallback).run(
                specs, factory, PipelineContext(metadata={"out_dir": str(work / "out")}))
            assert res.status[cal] == want
            # its targets are calibrated either way (the finder replaces its solutions)
            assert res.status[specs[1].group_id] == "done" == res.status[specs[2].group_id]
            row = db.group(cal)
            if fallback:
                assert row["role"] == "target" and row["failures"] == 0
                assert (work / "out" / f"{cal}_calibrated.txt").read_text().endswith("apply")
            else:
                assert row["role"] == "calibrator" and "failed QA" in row["message"]
