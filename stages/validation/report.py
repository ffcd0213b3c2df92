"""Writers of the validation products: the per-group HTML report (self-contained, with
base64 PNGs), the metrics JSON, and the night summary page linking the group reports."""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dsa110_pipeline.atomic import atomic_path

from .verdict import Verdict, VerdictResult

#: Section ids of a group report, in page order (the browser test checks them all).
SECTIONS = ("verdict", "metrics", "image", "flux-scale", "astrometry", "completeness",
            "noise", "timing", "products")

#: Marks on <body> how many images the browser decoded (read back by the browser test).
_IMG_CHECK = """<script>
window.addEventListener('load', function () {
  var im = document.images, ok = 0;
  for (var i = 0; i < im.length; i++) { if (im[i].complete && im[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images-total', im.length);
  document.body.setAttribute('data-images-decoded', ok);
});
</script>"""

_COLOURS = {"ACCEPT": "#1b7f3b", "WARN": "#b8860b", "REJECT": "#b22222",
            "NOT_VALIDATED": "#555555"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1100px}
h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:4px;
margin-top:28px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:0.92em} th{background:#f3f3f3}
.badge{display:inline-block;color:#fff;padding:4px 12px;border-radius:4px;font-weight:bold}
img{max-width:100%;border:1px solid #ddd}
.small{color:#666;font-size:0.85em}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def badge(verdict: str) -> str:
    colour = _COLOURS.get(verdict, "#555")
    return f'<span class="badge" style="background:{colour}">{_esc(verdict)}</span>'


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return f"<p class='small'>({_esc(alt)}: no data)</p>"
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return _esc(v)


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _attr(rec: Any, key: str) -> Any:
    return rec.get(key) if isinstance(rec, dict) else getattr(rec, key, None)


def timing_rows(metrics: Mapping[str, Mapping[str, Any]] | None,
                provenance: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Stage timing/memory rows from a context's ``metrics`` (profiling keys ``wall_s``,
    ``cpu_user_s``, ``cpu_sys_s``, ``peak_rss_mb``) and provenance records."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in provenance or ():
        name = getattr(rec, "stage", None) or (rec.get("stage") if isinstance(rec, dict) else None)
        if not name:
            continue
        started, finished = _attr(rec, "started"), _attr(rec, "finished")
        row = rows.setdefault(name, {"stage": name})
        if started is not None and finished is not None:
            row["wall_s"] = float(finished) - float(started)
        row["cache_hit"] = _attr(rec, "cache_hit")
        row["attempts"] = _attr(rec, "attempts")
    for name, m in (metrics or {}).items():
        if not isinstance(m, Mapping):
            continue
        row = rows.setdefault(name, {"stage": name})
        for k in ("wall_s", "cpu_user_s", "cpu_sys_s", "peak_rss_mb"):
            if m.get(k) is not None:
                row[k] = m[k]
    return list(rows.values())


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any],
                       verdict: VerdictResult, extra: Mapping[str, Any] | None = None) -> Path:
    """Write all metrics, the verdict and its reasons as JSON (atomically)."""
    doc = {"verdict": verdict.verdict.value, "reasons": [r.to_dict() for r in verdict.reasons],
           "metrics": dict(metrics), **(extra or {})}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=_json_default))
    return Path(path)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Verdict):
        return o.value
    return str(o)


def _metric_rows(m: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    fs, ast, comp, rel, noise, beam = (m.get(k) or {} for k in (
        "flux_scale", "astrometry", "completeness", "reliability", "noise", "beam"))
    sign, art = m.get("sign_reliability") or {}, m.get("artefacts") or {}
    return [
        ("source finder", m.get("finder"), ""),
        ("sources found / above 5σ", f"{m.get('n_sources')} / {m.get('n_sources_above_5sigma')}",
         ""),
        ("reference sources in field / matched",
         f"{m.get('n_reference_in_field')} / {m.get('n_matched')}",
         f"radius {_fmt(m.get('match_radius_arcsec'))}″"),
        ("flux ratio (median)", fs.get("median_ratio"),
         f"95% CI [{_fmt(fs.get('ci95_low'))}, {_fmt(fs.get('ci95_high'))}], n={fs.get('n')}, "
         f"{fs.get('measure')} flux, PB-corrected"),
        ("median ΔRA·cosδ, ΔDec (″)",
         f"{_fmt(ast.get('median_dra_arcsec'))}, {_fmt(ast.get('median_ddec_arcsec'))}",
         f"n={ast.get('n')}"),
        ("astrometric rms (″)", ast.get("rms_arcsec"),
         f"per axis {_fmt(ast.get('rms_dra_arcsec'))}, {_fmt(ast.get('rms_ddec_arcsec'))}"),
        ("completeness", comp.get("value"),
         f"above {comp.get('snr_min')}σ expected, n={comp.get('n')}; >5σ "
         f"{_fmt(comp.get('above_5sigma'))}; >10σ {_fmt(comp.get('above_10sigma'))}"),
        ("reliability (>5σ, above reference limit)",
         rel.get("above_5sigma_and_reference_limit"),
         f"n={rel.get('n')}; all >5σ {_fmt(rel.get('above_5sigma'))}"),
        ("reliability against the survey (>5σ, listable)", (rel.get("survey") or {}).get("value"),
         f"{(rel.get('survey') or {}).get('n_unlisted')} of {(rel.get('survey') or {}).get('n')} "
         "detections whose flux the survey is complete to are not in it"),
        ("reliability estimate (5σ)", m.get("reliability_estimate"),
         "the lower of the survey's and the −image's"),
        ("reliability from −image (≥5σ, ≥7σ, ≥10σ)",
         ", ".join(_fmt(v) for v in (sign.get("estimate") or {}).values()),
         "1 − negative/positive peaks: "
         + ", ".join(f"{n}/{p}" for n, p in zip((sign.get("n_neg") or {}).values(),
                                                (sign.get("n_pos") or {}).values()))),
        ("artefacts near bright sources",
         art.get("worst_annulus_rms_ratio"),
         "worst rms in 3–15 beams around the 5 brightest peaks / rms far from them; most negative "
         f"pixel / peak {_fmt(art.get('most_negative_over_peak'))}"),
        ("image rms (Jy/beam)", noise.get("image_rms_jy"), f"from {noise.get('from')}"),
        ("theoretical rms (Jy/beam)", noise.get("theoretical_rms_jy"), "radiometer equation"),
        ("rms / theoretical", noise.get("ratio"), ""),
        ("dynamic range", m.get("dynamic_range"), f"peak {_fmt(m.get('peak_jy'))} Jy/beam"),
        ("beam (″, ″, °)",
         f"{_fmt(beam.get('bmaj_arcsec'))} × {_fmt(beam.get('bmin_arcsec'))}, "
         f"PA {_fmt(beam.get('bpa_deg'))}", f"{_fmt(beam.get('pixels_per_bmin'))} px per bmin"),
    ]


def render_group_report(*, group: str, verdict: VerdictResult, metrics: Mapping[str, Any],
                        figures: Mapping[str, bytes | None], timing: Sequence[Mapping[str, Any]],
                        products: Mapping[str, str], image_path: str = "",
                        reference: str = "") -> str:
    """The HTML text of one group's report. ``figures`` keys: image, flux_ratio, astrometry,
    completeness, noise (PNG bytes or None); ``products``: label → relative link."""
    v = verdict.verdict.value
    reasons = _table(((r.metric, r.level.value, r.message) for r in verdict.reasons),
                     ("metric", "level", "reason"))
    timing_tab = _table(((t.get("stage"), t.get("wall_s"), t.get("cpu_user_s"),
                          t.get("cpu_sys_s"), t.get("peak_rss_mb"), t.get("cache_hit"))
                         for t in timing),
                        ("stage", "wall (s)", "CPU user (s)", "CPU sys (s)", "peak RSS (MB)",
                         "cached"))
    prod = "".join(f'<li><a href="{_esc(href)}">{_esc(label)}</a></li>'
                   for label, href in products.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Validation {_esc(group)}: {_esc(v)}</title>", f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>DSA-110 validation report — group {_esc(group)}</h1>",
        f"<p class='small'>image: {_esc(image_path)}<br>reference: {_esc(reference)}<br>"
        f"generated {_esc(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}</p>",
        f'<section id="verdict"><h2>Verdict</h2><p>{badge(v)}</p>{reasons}</section>',
        f'<section id="metrics"><h2>Metrics</h2>'
        f'{_table(_metric_rows(metrics), ("metric", "value", "notes"))}</section>',
        f'<section id="image"><h2>Image</h2>{_img(figures.get("image"), "image thumbnail")}'
        "<p class='small'>green circles: matched detections; red crosses: detections without "
        "a reference source; orange squares: reference sources expected above 5σ but not "
        "found.</p></section>",
        f'<section id="flux-scale"><h2>Flux scale</h2>'
        f'{_img(figures.get("flux_ratio"), "flux ratio against flux")}</section>',
        f'<section id="astrometry"><h2>Astrometry</h2>'
        f'{_img(figures.get("astrometry"), "astrometric offsets")}</section>',
        f'<section id="completeness"><h2>Completeness and reliability</h2>'
        f'{_img(figures.get("completeness"), "completeness curve")}</section>',
        f'<section id="noise"><h2>Noise</h2>{_img(figures.get("noise"), "noise histogram")}'
        "</section>",
        f'<section id="timing"><h2>Stage timing and memory</h2>{timing_tab}</section>',
        f'<section id="products"><h2>Products</h2><ul>{prod}</ul></section>',
        _IMG_CHECK, "</body></html>",
    ]
    return "\n".join(parts)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


__all__ = ["SECTIONS", "render_group_report", "write_metrics_json",
           "timing_rows", "write_text_atomic", "badge"]
