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


def test_full_disk_is_one_storage_error_and_the_db_stays_consistent(tmp_path):
    """SQLite's own full-disk condition (max_page_count): the error says so instead of
    being masked by a failing ROLLBACK, and what was committed stays readable."""
    from dsa110_pipeline.errors import StorageError

    path = tmp_path / "state.sqlite"
    with StateDB(path) as db:
        db.upsert_group("g0", files=[("/in/a_sb00.hdf5", 0, 100)])
        db.set_group_status("g0", "running")
        pages = db._query("PRAGMA page_count")[0][0]
        db._conn.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(StorageError, match=f"no space left on {path}"):
            for i in range(1, 200):
                db.upsert_group(f"g{i}", files=[(f"/in/{i}/{'x' * 200}_sb{j:02d}.hdf5", j, 1)
                                                for j in range(16)])
        assert not db._conn.in_transaction
        db._conn.execute("PRAGMA max_page_count=1073741823")  # space again
        db.set_group_status("g0", "failed", "no space left", failed=True)
        assert db.group("g0")["status"] == "failed"
    with StateDB(path) as db:  # reopened: consistent, nothing half-written
        groups = db.groups()
        assert all(len(db._query("SELECT * FROM files WHERE group_id=?", (g["group_id"],)))
                   == (1 if g["group_id"] == "g0" else 16) for g in groups)
