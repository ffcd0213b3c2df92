"""The calibration registry in the state DB, and the night's use of it through the
orchestrator's product hooks."""

from __future__ import annotations

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.night import GroupSpec, NightOrchestrator
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB
from stages.calibration.registry import (
    CALTABLES,
    best_calibration,
    find_solutions,
    register_calibration,
    register_solutions,
)


def test_validity_both_sides_of_transit(tmp_path):
    with StateDB(tmp_path / "s.sqlite") as db:
        transit = 61000.50
        register_calibration(db, "cal", ["/p/cal.B", "/p/cal.G"], transit_mjd=transit,
                             valid_before_s=6 * 3600, valid_after_s=6 * 3600, dec_deg=16.0,
                             dec_halfwidth_deg=1.5, calibrator="3C454.3", qa={"snr": 80})
        before = best_calibration(db, transit - 0.2, 16.5)
        after = best_calibration(db, transit + 0.2, 15.0)
        assert before is not None and after is not None and before.tables[0] == "/p/cal.B"
        assert best_calibration(db, transit + 0.3, 16.0) is None  # outside 6 h
        assert best_calibration(db, transit, 30.0) is None  # other declination strip


def test_nearest_solution_in_time_wins(tmp_path):
    with StateDB(tmp_path / "s.sqlite") as db:
        assert best_calibration(db, 61000.0, 16) is None  # an empty registry
        for gid, t in (("early", 61000.0), ("late", 61000.4)):
            register_calibration(db, gid, [gid], transit_mjd=t, valid_before_s=86400,
                                 valid_after_s=86400, dec_deg=16, dec_halfwidth_deg=2,
                                 calibrator=None, qa={})
        assert best_calibration(db, 61000.35, 16).group_id == "late"
        assert best_calibration(db, 61000.1, 16).group_id == "early"


def test_registering_the_same_solution_again_adds_no_row(tmp_path):
    """A resumed run that hits a cached calibration registers it again: one row stays."""
    with StateDB(tmp_path / "s.sqlite") as db:
        kw = dict(transit_mjd=61000.5, valid_before_s=3600, valid_after_s=3600, dec_deg=16.0,
                  dec_halfwidth_deg=1.5, calibrator="3C454.3", qa={"snr": 80})
        ids = {register_calibration(db, "cal", ["/p/cal.B", "/p/cal.G"], **kw)
               for _ in range(4)}
        assert len(ids) == 1
        assert db.query("SELECT count(*) AS n FROM calibrations")[0]["n"] == 1
        other = register_calibration(db, "cal", ["/p/cal2.B", "/p/cal2.G"], **kw)
        assert other not in ids  # a new solve is a new row


def _calibrate(ctx: PipelineContext) -> PipelineContext:
    out = ctx.metadata["out_dir"] + f"/{ctx.group_id}.G"
    with open(out, "w") as fh:
        fh.write("gains")
    meta = {"transit_mjd": 61000.0, "valid_start_mjd": 60999.5, "valid_end_mjd": 61000.5,
            "dec_deg": 16.0, "dec_halfwidth_deg": 1.5, "calibrator": "3C454.3",
            "qa_passed": ctx.group_id != "badcal", "qa": {"median_snr": 90}}
    return ctx.with_output(CALTABLES, [ProductRef.for_path("caltable", out, **meta)])


def _apply(ctx: PipelineContext) -> PipelineContext:
    out = ctx.metadata["out_dir"] + f"/{ctx.group_id}.applied"
    with open(out, "w") as fh:
        fh.write(ctx.get(CALTABLES)[0].path)
    return ctx.with_output("calibrated", ProductRef.for_path("text", out))


def test_target_without_calibrator_tonight_uses_the_registry(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    raw = tmp_path / "raw.txt"
    raw.write_text("r")
    ctx = PipelineContext(metadata={"out_dir": str(out)})

    def factory(spec):
        if spec.role == "calibrator":
            return [FunctionStage(_calibrate, name="calibrate", requires=("raw",),
                                  produces=(CALTABLES,))]
        return [FunctionStage(_apply, name="apply", requires=("raw", CALTABLES),
                              produces=("calibrated",))]

    def night(db, spec):
        orch = NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".cache"),
                                 retry_backoff_s=0.0,
                                 on_product={CALTABLES: register_solutions},
                                 find_product={CALTABLES: find_solutions})
        return orch.run([spec], factory, ctx)

    def group(gid, role="target", dec=16.3):
        return GroupSpec(gid, {"raw": ProductRef.for_path("text", raw)}, role=role,
                         start_mjd=61000.2 if role == "target" else 61000.0, dec_deg=dec)

    with StateDB(tmp_path / "state.sqlite") as db:
        night(db, group("badcal", "calibrator", 16.0))  # failed QA: not registered
        assert best_calibration(db, 61000.1, 16.4) is None
        night(db, group("cal", "calibrator", 16.0))
        entry = best_calibration(db, 61000.1, 16.4)
        assert entry is not None and entry.calibrator == "3C454.3"
        # next night: only a target, no calibrator group in the plan
        assert night(db, group("tgt")).status["tgt"] == "done"
        assert (out / "tgt.applied").read_text() == entry.tables[0]
        # too far in declination: no valid solution, so the group fails alone, clearly
        res = night(db, group("far", dec=40.0))
        assert res.status["far"] == "failed"
        assert CALTABLES in db.group("far")["message"]
