import subprocess
import sys

import pytest

from dsa110_pipeline.context import ProductRef
from dsa110_pipeline.state import StateDB


def test_wal_mode_and_round_trip(tmp_path):
    with StateDB(tmp_path / "state.sqlite") as db:
        mode = db._query("PRAGMA journal_mode")[0][0]
        assert mode == "wal"
        db.upsert_group("g1", start_mjd=61000.5, dec_deg=16.1, role="target",
                        files=[("/in/a_sb00.hdf5", 0, 100)])
        db.set_group_status("g1", "failed", "corrupt subband", failed=True)
        g = db.group("g1")
        assert g["status"] == "failed" and g["failures"] == 1 and g["dec_deg"] == 16.1
        db.upsert_group("g1")  # re-discovery keeps what is known
        assert db.group("g1")["start_mjd"] == 61000.5


def test_only_one_writer(tmp_path):
    path = tmp_path / "state.sqlite"
    with StateDB(path):
        code = (f"from dsa110_pipeline.state import StateDB; StateDB({str(path)!r})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode != 0 and "only one writer" in out.stderr
    StateDB(path).close()  # free again once the first writer is gone


def test_calibration_registry_validity_both_sides_of_transit(tmp_path):
    with StateDB(tmp_path / "s.sqlite") as db:
        transit = 61000.50
        db.register_calibration("cal", ["/p/cal.B", "/p/cal.G"], transit_mjd=transit,
                                valid_before_s=6 * 3600, valid_after_s=6 * 3600, dec_deg=16.0,
                                dec_halfwidth_deg=1.5, calibrator="3C454.3", qa={"snr": 80})
        before = db.best_calibration(transit - 0.2, 16.5)
        after = db.best_calibration(transit + 0.2, 15.0)
        assert before is not None and after is not None and before.tables[0] == "/p/cal.B"
        assert db.best_calibration(transit + 0.3, 16.0) is None  # outside 6 h
        assert db.best_calibration(transit, 30.0) is None  # other declination strip


def test_nearest_solution_in_time_wins(tmp_path):
    with StateDB(tmp_path / "s.sqlite") as db:
        for gid, t in (("early", 61000.0), ("late", 61000.4)):
            db.register_calibration(gid, [gid], transit_mjd=t, valid_before_s=86400,
                                    valid_after_s=86400, dec_deg=16, dec_halfwidth_deg=2,
                                    calibrator=None, qa={})
        assert db.best_calibration(61000.35, 16).group_id == "late"
        assert db.best_calibration(61000.1, 16).group_id == "early"


def test_products_reconcile_with_disk(tmp_path):
    f = tmp_path / "img.fits"
    f.write_text("x")
    g = tmp_path / "gone.fits"
    g.write_text("y")
    with StateDB(tmp_path / "s.sqlite") as db:
        db.record_products("g1", {"images": [ProductRef.for_path("fits", f),
                                             ProductRef.for_path("fits", g)]})
        g.unlink()
        db.upsert_group("g1")
        db.set_group_status("g1", "done")
        assert [r["path"] for r in db.reconcile()] == [str(g)]
        assert db.group("g1")["status"] == "pending"
        assert [p["path"] for p in db.products("g1")] == [str(f)]


def test_stage_runs_and_verdicts(tmp_path):
    with StateDB(tmp_path / "s.sqlite") as db:
        db.record_stage_run("r1", "g1", {"name": "imaging", "status": "ok", "attempts": 1,
                                         "wall_s": 2.0, "profile": {"cpu_user_s": 1.5,
                                                                    "cpu_sys_s": 0.5,
                                                                    "peak_rss_mb": 900}})
        run = db.stage_runs("g1")[0]
        assert run["cpu_s"] == pytest.approx(2.0) and run["peak_rss_mb"] == 900
        db.set_verdict("g1", "REJECT", reasons=["flux scale off by 20%"])
        assert db.verdict("g1")["verdict"] == "REJECT"
