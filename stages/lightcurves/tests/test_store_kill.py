"""A writer of the light-curve store SIGKILLed mid-night: the rerun leaves no duplicate
measurement and the same light curves (the kill is injected, the store is real SQLite)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from stages.lightcurves.store import LightCurveStore

ROWS = [{"name": f"S{i}", "ra_deg": 150 + i * 1e-3, "dec_deg": 30.0, "flux_jy": 0.01 + i * 1e-5,
         "err_jy": 0.001, "flux_app_jy": 0.01, "err_app_jy": 0.001, "pb": 1.0, "snr": 10.0,
         "chi2": 1.0, "edge": 0, "blended": 0, "artefact": 0, "mjd": 61000.0,
         "catalog_flux_jy": 0.01} for i in range(500)]


def _store_night(path, night):
    with LightCurveStore(path) as st:
        for g in range(3):
            rows = [{**r, "mjd": 61000.0 + night + g * 0.0036} for r in ROWS]
            st.store_image(f"n{night}g{g}", rows, mjd=61000.0 + night + g * 0.0036,
                           path="x", verdict="ACCEPT", rms_jy=0.001)


def test_a_writer_killed_mid_transaction_then_rerun(tmp_path):
    store = tmp_path / "lc.sqlite"
    _store_night(store, 0)
    # night 1's writer dies in the middle of its second image's inserts
    code = textwrap.dedent(f"""
        import os, signal, sqlite3
        from stages.lightcurves import store as S
        from stages.lightcurves.tests.test_store_kill import _store_night
        calls = []
        real = sqlite3.Connection.executemany
        class Dying(sqlite3.Connection):
            def executemany(self, sql, rows):
                calls.append(sql)
                if len(calls) == 2:  # the second image, half way
                    rows = list(rows)
                    real(self, sql, rows[:len(rows) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(self, sql, rows)
        connect = sqlite3.connect
        S.sqlite3.connect = lambda *a, **k: connect(*a, factory=Dying, **k)
        _store_night({str(store)!r}, 1)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    with LightCurveStore(store) as st:  # the lock is free again; night 1 has one image
        _, flux, _, images = st.light_curves()
        assert images == ["n0g0", "n0g1", "n0g2", "n1g0"]
    _store_night(store, 1)  # the rerun
    with LightCurveStore(store) as st:
        n = st.db.execute("select count(*) from measurements").fetchone()[0]
        dup = st.db.execute("select count(*) from (select source_id, image_id, count(*) c "
                            "from measurements group by 1, 2 having c > 1)").fetchone()[0]
        _, flux, _, images = st.light_curves()
    assert n == 6 * len(ROWS) and dup == 0 and len(images) == 6
    clean = tmp_path / "clean.sqlite"
    _store_night(clean, 0)
    _store_night(clean, 1)
    with LightCurveStore(clean) as st:
        assert np.array_equal(st.light_curves()[1], flux, equal_nan=True)
