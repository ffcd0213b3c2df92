"""A night's reports: the manifest (JSON and markdown) and the night summary page, from
what the state DB knows; the emergency manifest after a storage error."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import FrameworkConfig, resolve_stage
from .manifest import build_manifest, failed_groups, write_manifest
from .night import NightResult
from .state import StateDB


def _summary(cfg: FrameworkConfig, out: Path, state: StateDB, log: Any,
             rows: list[tuple[str, ...]] | None = None) -> None:
    """Write the night summary page through the ``pipeline.night_report`` hook: ``rows``
    (group, verdict, report[, reason]), else those of the state DB's groups of the last
    day (a live night's view); with the details the state DB holds when the hook takes
    them (QA figures, stage times, products, windows)."""
    if not cfg.pipeline.night_report:
        return
    if rows is None:
        rows = []
        groups = state.groups()
        latest = max((g["start_mjd"] for g in groups if g["start_mjd"] is not None),
                     default=0.0)
        for g in groups:
            if g["start_mjd"] is not None and g["start_mjd"] < latest - 1.0:
                continue
            verdict = state.verdict(g["group_id"])
            if verdict is not None:
                rows.append((g["group_id"], verdict["verdict"], verdict["report"]))
            elif g["status"] in ("quarantined", "failed", "waiting"):
                qdir = out / "quarantine" / g["group_id"].replace(":", "")
                rows.append((g["group_id"], g["status"].upper(), str(qdir / "errors.json"),
                             g["message"] or ""))
    hook = resolve_stage(cfg.pipeline.night_report)
    path = out / "night_summary.html"
    if "details" in inspect.signature(hook).parameters:
        page = hook(path, rows, details=_summary_details(state, [r[0] for r in rows]))
    else:
        page = hook(path, rows)
    log.info("night summary written", path=str(page))


def _summary_details(state: StateDB, gids: Sequence[str]) -> dict[str, Any]:
    """What the state DB knows of these groups and of the windows holding them."""
    def products(owner: str) -> list[dict[str, Any]]:
        return [{"key": p["key"], "kind": p["kind"], "path": p["path"],
                 "meta": json.loads(p["meta"] or "{}")} for p in state.products(owner)]

    groups: dict[str, Any] = {}
    for gid in gids:
        verdict = state.verdict(gid)
        stages: dict[str, float | None] = {}
        for r in state.stage_runs(gid):  # the latest run of each stage
            stages[r["stage"]] = r["wall_s"]
        groups[gid] = {"metrics": json.loads(verdict["metrics"] or "{}") if verdict else {},
                       "stages": stages, "products": products(gid)}
    wanted = set(gids)
    windows = [{**w, "products": products(w["window_id"])} for w in state.windows()
               if wanted & set(w["groups"]) or wanted & set(w["gaps"])]
    return {"groups": groups, "windows": windows}

def _emergency_manifest(cfg: FrameworkConfig, out: Path, state: StateDB, run_id: str,
                        started: float, log: Any) -> None:
    """After a storage error, write what the state DB knows as the manifest if the disk
    still takes it (a few kB often fit where an MS did not); never raises."""
    try:
        groups = {g["group_id"]: {"status": g["status"], "role": g["role"],
                                  "message": g["message"], "records": []}
                  for g in state.groups()}
        manifest = build_manifest(run_id=run_id, config=cfg.model_dump(mode="json"),
                                  groups=groups, started=started, finished=time.time(),
                                  extra={"aborted": "storage error"})
        paths = write_manifest(manifest, out)
        log.info("manifest written", path=str(paths["md"]))
    except Exception as exc:  # noqa: BLE001 - the storage error is what gets reported
        log.error("manifest not written", reason=str(exc))


def _night_reports(cfg: FrameworkConfig, out: Path, night: NightResult, state: StateDB,
                   profiler: Any, run_id: str, started: float, finished: float,
                   log: Any) -> list[tuple[str, str, str]]:
    """Write the manifest and the night summary; returns the failed groups
    (group, status, reason)."""
    profiles: dict[str, dict] = {}
    if profiler is not None:
        report = profiler.report()
        report.write(out, stem="profile")
        profiles = {p.name: p.to_dict() for p in report.stages}
    groups: dict[str, Any] = {}
    for gid, status in night.status.items():
        recs = []
        if night.result is not None:
            for name, rec in night.result.records.items():
                if name.startswith(gid + "/"):
                    d = rec.to_dict()
                    d["name"] = name.split("/", 1)[1]
                    d["profile"] = profiles.get(name)
                    recs.append(d)
        verdict = state.verdict(gid)
        row = state.group(gid) or {}
        groups[gid] = {"status": status, "role": row.get("role"), "message": row.get("message"),
                       "records": recs, "verdict": verdict["verdict"] if verdict else None,
                       "products": [{k: p[k] for k in ("key", "kind", "path", "checksum")}
                                    for p in state.products(gid)]}
    for g in groups.values():
        g["for_science"] = g["status"] in ("done", "skipped") and g["verdict"] != "REJECT"
    windows = [w for w in state.windows() if w["window_id"] in night.windows]
    manifest = build_manifest(run_id=run_id, config=cfg.model_dump(mode="json"), groups=groups,
                              started=started, finished=finished,
                              extra={"windows": windows} if windows else None)
    paths = write_manifest(manifest, out)
    log.info("manifest written", path=str(paths["md"]))
    failed = failed_groups(manifest)
    if cfg.pipeline.night_report:
        why = {gid: reason for gid, _, reason in failed}
        rows: list[tuple[str, str, str] | tuple[str, str, str, str]] = []
        for gid, g in sorted(groups.items()):
            verdict = state.verdict(gid)
            if verdict is not None:
                rows.append((gid, verdict["verdict"], verdict["report"]))
            else:
                qdir = out / "quarantine" / gid.replace(":", "")
                rows.append((gid, g["status"].upper(), str(qdir / "errors.json"),
                             why.get(gid, "")))
        _summary(cfg, out, state, log, rows)  # type: ignore[arg-type]
    return failed


# -- the framework demo (no science stages configured) --------------------------------------
