"""The light-curve window stage over a night of groups: stored once, REJECTs left out,
variables found, a rerun of the night replacing (not duplicating) its measurements."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.night import GroupSpec, NightOrchestrator
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB
from stages.lightcurves import LightCurveStage
from stages.photometry.stage import COLUMNS

N_GROUPS, N_SRC = 10, 200
MJD0 = 61065.0 + 22 / 24


def _fluxes():
    """Steady 10 mJy sources with 1 mJy errors; source 0 flares by 20 sigma in groups 4-6."""
    rng = np.random.default_rng(4)
    s = 0.010 + rng.normal(0, 0.001, (N_SRC, N_GROUPS))
    s[0, 4:7] += 0.020
    return s


FLUX = _fluxes()


def _photometry(ctx):
    k = ctx.metadata["index"]
    out = f"{ctx.metadata['out_dir']}/g{k}.photometry.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i in range(N_SRC):
            row = {c: 0 for c in COLUMNS}
            row.update(name=f"S{i}", ra_deg=150 + i * 0.01, dec_deg=30, pb=1.0,
                       flux_app_jy=FLUX[i, k], err_app_jy=0.001, flux_jy=FLUX[i, k],
                       err_jy=0.001, snr=FLUX[i, k] / 0.001, group_id=ctx.group_id,
                       mjd=MJD0 + k * 0.0036, catalog_flux_jy=0.01)
            w.writerow([row[c] for c in COLUMNS])
    return ctx.with_output("photometry", ProductRef.for_path("csv", out, mjd=MJD0 + k * 0.0036))


def _validation(ctx):
    out = f"{ctx.metadata['out_dir']}/g{ctx.metadata['index']}.html"
    Path(out).write_text("report")
    verdict = "REJECT" if ctx.metadata["index"] == 2 else "ACCEPT"
    return ctx.with_output("validation", ProductRef.for_path("html", out, verdict=verdict))


def _run(tmp_path, db, rerun=False):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    specs = [GroupSpec(f"2026-01-25T22:{5 * k:02d}:00", {}, start_mjd=MJD0 + k * 0.0036,
                       metadata={"index": k}) for k in range(N_GROUPS)]
    stages = [FunctionStage(_photometry, name="photometry", produces=("photometry",)),
              FunctionStage(_validation, name="validation", produces=("validation",)),
              LightCurveStage({"min_epochs": 4, "output_dir": str(out)})]
    orch = NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".cache"),
                             rerun=rerun)
    return orch.run(specs, lambda spec: stages, PipelineContext(metadata={"out_dir": str(out)}))


def test_a_night_into_the_store_and_its_variable_found(tmp_path):
    with StateDB(tmp_path / "state.sqlite") as db:
        res = _run(tmp_path, db)
        assert list(res.windows.values()) == ["done"]
        store = tmp_path / "out" / "lightcurves.sqlite"
        with sqlite3.connect(store) as c:
            n_meas = c.execute("select count(*) from measurements").fetchone()[0]
            images = dict(c.execute("select image_id, n_measured from images"))
            cands = [r[0] for r in c.execute(
                "select s.name from variability v join sources s using(source_id) "
                "where candidate=1")]
            eta = dict(c.execute("select s.name, v.eta from variability v join sources s "
                                 "using(source_id)"))
        assert n_meas == (N_GROUPS - 1) * N_SRC  # the REJECTed group left out
        assert images["2026-01-25T22:10:00"] == 0
        assert "S0" in cands and len(cands) <= 1 + N_SRC // 100  # <= 1 % false alarms
        assert abs(np.median([v for k, v in eta.items() if k != "S0"]) - 1.0) < 0.15
        (ref,) = [r for r in res.result.context.get(
            "lightcurves@2026-01-25T00:00:00/lightcurves") if r.meta["role"] == "candidates"]
        assert ref.meta["left_out"] == {"2026-01-25T22:10:00": "verdict REJECT"}
        # a rerun of the night replaces its measurements
        _run(tmp_path, db, rerun=True)
        with sqlite3.connect(store) as c:
            assert c.execute("select count(*) from measurements").fetchone()[0] == n_meas
            assert c.execute("select count(*) from sources").fetchone()[0] == N_SRC
