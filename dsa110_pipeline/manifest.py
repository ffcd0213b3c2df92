"""Run manifest: the resolved config, versions, and per-stage records, as JSON and markdown."""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_path

_PACKAGES = ("numpy", "scipy", "astropy", "pyuvdata", "python-casacore", "h5py", "dask",
             "distributed", "ducc0", "pydantic", "structlog", "psutil")


def versions() -> dict[str, str]:
    out = {"dsa110_pipeline": __version__, "python": sys.version.split()[0],
           "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def build_manifest(*, run_id: str, config: dict[str, Any], groups: dict[str, Any],
                   started: float, finished: float, extra: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """``groups`` maps a group id to {"records": [...], "outputs": {...}, "verdict": ...}."""
    return {"run_id": run_id, "started": started, "finished": finished,
            "wall_s": finished - started, "versions": versions(), "config": config,
            "groups": groups, **(extra or {})}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def manifest_markdown(m: dict[str, Any]) -> str:
    lines = [f"# Run {m['run_id']}", "",
             f"- started: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(m['started']))} UTC",
             f"- wall: {m['wall_s']:.2f} s",
             f"- pipeline {m['versions']['dsa110_pipeline']}, python {m['versions']['python']}",
             "", "| group | stage | status | attempts | wall (s) | CPU (s) | peak RSS (MB) "
             "| read (MB) | written (MB) | cache | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for gid, g in m["groups"].items():
        for r in g.get("records", []):
            p = r.get("profile") or {}
            cpu = None
            if p.get("cpu_user_s") is not None:
                cpu = p["cpu_user_s"] + (p.get("cpu_sys_s") or 0.0)
            rd = p.get("read_bytes")
            wr = p.get("write_bytes")
            lines.append(
                f"| {gid} | {r['name']} | {r['status']} | {r['attempts']} | "
                f"{_fmt(r.get('wall_s'), '.3f')} | {_fmt(cpu, '.2f')} | "
                f"{_fmt(p.get('peak_rss_mb'), '.0f')} | {_fmt(rd and rd / 1e6, '.1f')} | "
                f"{_fmt(wr and wr / 1e6, '.1f')} | {'hit' if r['status'] == 'cached' else ''} | "
                f"{(r.get('error') or '').replace('|', '/')[:120]} |")
        if g.get("verdict"):
            lines.append(f"| {gid} | verdict | {g['verdict']} | | | | | | | | |")
    windows = m.get("windows") or []
    if windows:
        lines += ["", "## Windows", "", "| window | status | groups | left out |",
                  "|---|---|---|---|"]
        for w in windows:
            gaps = "; ".join(f"{g}: {why}" for g, why in w["gaps"].items()) or "-"
            lines.append(f"| {w['window_id']} | {w['status']} | {len(w['groups'])} | "
                         f"{gaps.replace('|', '/')[:200]} |")
    failed = failed_groups(m)
    if failed:
        lines += ["", "## Failed groups", "", "| group | status | reason |", "|---|---|---|"]
        lines += [f"| {gid} | {status} | {reason.replace('|', '/')} |"
                  for gid, status, reason in failed]
    return "\n".join(lines) + "\n"


def failed_groups(m: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(group, status, reason) of each group that did not finish (failed, quarantined):
    the reason is the group's message, else the first stage error."""
    out = []
    for gid, g in m["groups"].items():
        status = g.get("status")
        if status is None or status in ("done", "skipped"):
            continue
        reason = g.get("message") or next(
            (r["error"] for r in g.get("records", []) if r.get("error")), "") or "unknown"
        out.append((gid, str(status), str(reason)))
    return out


def write_manifest(m: dict[str, Any], out_dir: str | Path, stem: str = "manifest"
                   ) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(m, indent=2, default=str))
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(manifest_markdown(m))
    return paths
