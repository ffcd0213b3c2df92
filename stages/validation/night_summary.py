"""The night summary page an operator opens first (the ``pipeline.night_report`` hook).

One row per group: a thumbnail of its image, its verdict, the key QA figures (noise over
thermal, the reliability estimate, sources, flux ratio), its stage times and the reason of
a failure, with a link to the group's report. Then each window stage's products: PNGs
(mosaic thumbnails, light curves, the eta-V plane) and CSV tables (the candidates). Files
are written beside the page in ``<page>_files/``; links are relative.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dsa110_pipeline.atomic import write_text_atomic

from .report import _CSS, _esc, badge
from .verdict import Verdict

_EXTRA_CSS = """
td.thumb img{width:110px;height:110px;border:1px solid #ddd}
.windows img{max-width:48%;margin:4px}
td.reason{color:#a00;font-size:0.85em;max-width:420px}
"""
MAX_TABLE_ROWS = 50


def _rel(path: str | Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:
        return str(path)


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else _esc(v)


def _group_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    noise = metrics.get("noise") or {}
    sign = (metrics.get("sign_reliability") or {}).get("estimate") or {}
    flux = metrics.get("flux_scale") or {}
    est = metrics.get("reliability_estimate", sign.get("5sigma"))
    return {"rms/thermal": noise.get("ratio"), "reliability (5σ est.)": est,
            "sources": metrics.get("n_sources"), "flux ratio": flux.get("median_ratio")}


def _thumbnail(products: Sequence[Mapping[str, Any]], files: Path, gid: str) -> Path | None:
    """A PNG of the group's restored image (made once; None without one)."""
    image = next((p for p in products if p.get("key") == "images"
                  and (p.get("meta") or {}).get("role") == "image"), None)
    if image is None or not Path(image["path"]).exists():
        return None
    out = files / f"{gid.replace(':', '')}.png"
    if out.exists() and out.stat().st_mtime >= Path(image["path"]).stat().st_mtime:
        return out
    try:
        from astropy.io import fits

        from dsa110_pipeline.thumbnail import thumbnail_png

        data = fits.getdata(image["path"])
        return thumbnail_png(data.reshape(data.shape[-2], data.shape[-1]), out, max_px=220)
    except (OSError, ValueError):
        return None


def _csv_table(path: str, base: Path) -> str:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError:
        return ""
    if len(rows) <= 1:
        return "<p class='small'>none</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_esc(c[:24])}</td>" for c in r) + "</tr>"
                   for r in rows[1:MAX_TABLE_ROWS + 1])
    more = len(rows) - 1 - MAX_TABLE_ROWS
    tail = f"<p class='small'>… {more} more in <a href='{_esc(_rel(path, base))}'>the " \
           f"table</a></p>" if more > 0 else ""
    return f"<table><tr>{head}</tr>{body}</table>{tail}"


def write_night_summary(path: str | Path, groups: Sequence[tuple[Any, ...]],
                        title: str = "DSA-110 night summary",
                        details: Mapping[str, Any] | None = None) -> Path:
    """Write the page. ``groups``: (group id, verdict, report path[, reason]) rows.
    ``details`` (optional): ``{"groups": {id: {"metrics", "stages": {name: wall s},
    "products": [{key, kind, path, meta}]}}, "windows": [{window_id, stage, status,
    groups, gaps, products}]}``, as the orchestrator's state DB has them."""
    out = Path(path)
    base = out.parent
    files = base / f"{out.stem}_files"
    det = details or {}
    gdet = det.get("groups") or {}
    counts: dict[str, int] = {}
    rows = []
    fig_names = list(_group_figures({}))
    for gid, verdict, report, *rest in groups:
        v = verdict.value if isinstance(verdict, Verdict) else str(verdict)
        counts[v] = counts.get(v, 0) + 1
        d = gdet.get(gid) or {}
        thumb = _thumbnail(d.get("products") or [], files, gid) if d else None
        img = f"<img src='{_esc(_rel(thumb, base))}' alt='{_esc(gid)}'>" if thumb else ""
        figs = _group_figures(d.get("metrics") or {})
        stages = d.get("stages") or {}
        wall = sum(x for x in stages.values() if x is not None)
        times = "; ".join(f"{k} {x:.1f} s" for k, x in stages.items() if x is not None)
        reason = str(rest[0]) if rest and rest[0] else ""
        rows.append(
            f"<tr><td>{_esc(gid)}</td><td class='thumb'>{img}</td><td>{badge(v)}</td>"
            + "".join(f"<td>{_fmt(figs[k])}</td>" for k in fig_names)
            + f"<td title='{_esc(times)}'>{_fmt(wall, '.1f') if stages else '–'}</td>"
            f'<td><a href="{_esc(_rel(report, base))}">report</a></td>'
            f'<td class="reason">{_esc(reason)}</td></tr>')
    tally = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "no groups"
    sections = []
    for w in det.get("windows") or []:
        prods = w.get("products") or []
        pngs = [p for p in prods if str(p.get("path", "")).endswith(".png")]
        tables = [p for p in prods if (p.get("meta") or {}).get("role") in (
            "candidates", "new_sources")]
        reports = [p for p in prods if str(p.get("path", "")).endswith(".html")]
        gaps = "; ".join(f"{g}: {why}" for g, why in (w.get("gaps") or {}).items())
        sections.append(
            f"<h3>{_esc(w['window_id'])} {badge(str(w.get('status', '?')).upper())}</h3>"
            f"<p class='small'>{len(w.get('groups') or [])} group(s)"
            + (f"; left out: {_esc(gaps)}" if gaps else "") + "</p>"
            + "".join(f"<p>validation {badge(str((r.get('meta') or {}).get('verdict', '?')))}"
                      f" <a href='{_esc(_rel(r['path'], base))}'>report</a></p>"
                      for r in reports)
            + "".join(f"<h4>{_esc(str(t['meta']['role']).replace('_', ' '))}</h4>"
                      f"{_csv_table(t['path'], base)}" for t in tables)
            + "".join(f"<a href='{_esc(_rel(p['path'], base))}'><img src='"
                      f"{_esc(_rel(p['path'], base))}' alt='{_esc(Path(p['path']).name)}'>"
                      "</a>" for p in pngs))
    text = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1><p>{_esc(tally)}</p>",
        '<section id="groups"><table><tr><th>group</th><th>image</th><th>verdict</th>'
        + "".join(f"<th>{_esc(k)}</th>" for k in fig_names)
        + "<th>wall (s)</th><th>report</th><th>reason</th></tr>",
        *rows, "</table></section>",
        '<section id="windows" class="windows"><h2>Windows</h2>'
        + ("".join(sections) or "<p class='small'>none</p>") + "</section></body></html>"])
    return write_text_atomic(out, text)
