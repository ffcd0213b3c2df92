"""The calibration registry: solutions a night made, kept in the state DB for groups that
need them later (a target observed before tonight's calibrator, tomorrow's targets).

Two orchestrator hooks, named in config (``pipeline.on_product`` and
``pipeline.find_product``), connect it to the night: :func:`register_solutions` records
a calibrator group's ``caltables`` when they are made, and :func:`find_solutions` gives a
group that needs ``caltables`` nobody makes tonight the registry's nearest valid ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsa110_pipeline.context import Product, ProductRef
from dsa110_pipeline.night import GroupSpec
from dsa110_pipeline.state import StateDB

#: The product key of calibration solutions.
CALTABLES = "caltables"

SCHEMA = """
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL,
    tables TEXT NOT NULL,      -- JSON list of caltable paths
    transit_mjd REAL NOT NULL,
    valid_start_mjd REAL NOT NULL,
    valid_end_mjd REAL NOT NULL,
    dec_deg REAL NOT NULL,
    dec_halfwidth_deg REAL NOT NULL,
    calibrator TEXT,
    qa TEXT,
    created REAL NOT NULL
);
"""
#: What a caltable reference's meta must carry to be registered (the stage writes them).
REGISTRY_META = ("transit_mjd", "valid_start_mjd", "valid_end_mjd", "dec_deg",
                 "dec_halfwidth_deg")
_DAY = 86400.0


@dataclass(frozen=True)
class Calibration:
    """One registered solution and where (in time and declination) it is valid."""

    id: int
    group_id: str
    tables: list[str]
    transit_mjd: float
    valid_start_mjd: float
    valid_end_mjd: float
    dec_deg: float
    dec_halfwidth_deg: float
    calibrator: str | None
    qa: dict[str, Any]


def register_calibration(state: StateDB, group_id: str, tables: list[str], *,
                         transit_mjd: float, valid_before_s: float, valid_after_s: float,
                         dec_deg: float, dec_halfwidth_deg: float, calibrator: str | None,
                         qa: dict[str, Any]) -> int:
    """Register solutions valid both before and after the calibrator transit; returns the
    row id. Idempotent: the same tables of the same group (a resumed run's cached solve)
    update their row instead of adding one."""
    state.ensure_schema(SCHEMA)
    row = (transit_mjd, transit_mjd - valid_before_s / _DAY, transit_mjd + valid_after_s / _DAY,
           dec_deg, dec_halfwidth_deg, calibrator, json.dumps(qa, default=str))
    with state.transaction() as c:
        old = c.execute("SELECT id FROM calibrations WHERE group_id=? AND tables=?",
                        (group_id, json.dumps(tables))).fetchone()
        if old is not None:
            c.execute("UPDATE calibrations SET transit_mjd=?, valid_start_mjd=?, "
                      "valid_end_mjd=?, dec_deg=?, dec_halfwidth_deg=?, calibrator=?, qa=? "
                      "WHERE id=?", (*row, old[0]))
            return int(old[0])
        cur = c.execute("INSERT INTO calibrations(group_id, tables, transit_mjd, "
                        "valid_start_mjd, valid_end_mjd, dec_deg, dec_halfwidth_deg, "
                        "calibrator, qa, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (group_id, json.dumps(tables), *row, time.time()))
        return int(cur.lastrowid)


def best_calibration(state: StateDB, mjd: float, dec_deg: float) -> Calibration | None:
    """The valid solution nearest in time whose declination strip covers ``dec_deg``."""
    state.ensure_schema(SCHEMA)
    rows = state.query(
        "SELECT * FROM calibrations WHERE valid_start_mjd <= ? AND valid_end_mjd >= ? "
        "AND abs(dec_deg - ?) <= dec_halfwidth_deg ORDER BY abs(transit_mjd - ?), id DESC "
        "LIMIT 1", (mjd, mjd, dec_deg, mjd))
    if not rows:
        return None
    r = rows[0]
    return Calibration(id=r["id"], group_id=r["group_id"], tables=json.loads(r["tables"]),
                       transit_mjd=r["transit_mjd"], valid_start_mjd=r["valid_start_mjd"],
                       valid_end_mjd=r["valid_end_mjd"], dec_deg=r["dec_deg"],
                       dec_halfwidth_deg=r["dec_halfwidth_deg"], calibrator=r["calibrator"],
                       qa=json.loads(r["qa"] or "{}"))


def register_solutions(state: StateDB, group_id: str, product: Product) -> None:
    """Hook (``pipeline.on_product.caltables``): register solutions whose references carry
    their validity and passed QA."""
    refs = product if isinstance(product, list) else [product]
    meta = refs[0].meta
    if not all(k in meta for k in REGISTRY_META) or meta.get("qa_passed") is False:
        return
    transit = float(meta["transit_mjd"])
    register_calibration(
        state, group_id, [r.path for r in refs], transit_mjd=transit,
        valid_before_s=(transit - float(meta["valid_start_mjd"])) * _DAY,
        valid_after_s=(float(meta["valid_end_mjd"]) - transit) * _DAY,
        dec_deg=float(meta["dec_deg"]), dec_halfwidth_deg=float(meta["dec_halfwidth_deg"]),
        calibrator=meta.get("calibrator"), qa=meta.get("qa") or {})


def find_solutions(state: StateDB, spec: GroupSpec) -> Product | None:
    """Hook (``pipeline.find_product.caltables``): the registry's valid solution nearest in
    time for the group's declination, if its tables still exist."""
    if spec.start_mjd is None or spec.dec_deg is None:
        return None
    cal = best_calibration(state, spec.start_mjd, spec.dec_deg)
    if cal is None or not all(Path(t).exists() for t in cal.tables):
        return None
    return [ProductRef.for_path("caltable", t, registry_id=cal.id, calibrator=cal.calibrator)
            for t in cal.tables]


def groups_to_recalibrate(state: StateDB, group_id: str, product: Product) -> list[str]:
    """Hook (``pipeline.redo_after.caltables``, live nights): when a calibrator group's
    solutions are registered, the finished target groups inside their validity (time and
    declination strip) that were calibrated with other solutions (an earlier night's,
    taken before tonight's calibrator had come), to be re-applied and re-imaged."""
    refs = product if isinstance(product, list) else [product]
    meta = refs[0].meta
    if not all(k in meta for k in REGISTRY_META) or meta.get("qa_passed") is False:
        return []
    new = {r.path for r in refs}
    redo = []
    for g in state.query(
            "SELECT group_id FROM groups WHERE status='done' AND role='target' AND "
            "start_mjd BETWEEN ? AND ? AND abs(dec_deg - ?) <= ?",
            (float(meta["valid_start_mjd"]), float(meta["valid_end_mjd"]),
             float(meta["dec_deg"]), float(meta["dec_halfwidth_deg"]))):
        used = [json.loads(p["meta"] or "{}").get("caltables") for p in
                state.products(g["group_id"]) if p["key"] == "ms_calibrated"]
        if used and used[0] is not None and set(used[0]) != new:
            redo.append(g["group_id"])
    return redo
