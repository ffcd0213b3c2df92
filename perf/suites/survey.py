"""survey: forced photometry, light curves and variability on a simulated night with injected
variable sources, scored against the truth (injection-recovery).

A night of 12 groups (one hour) at demo scale (48 antennas, 16 x 8 channels, 24
integrations) at dec +33 with 3C48 in its first group, 1500 random sources over the
hour's strip (about 25 inside each group's primary-beam cut) of which 60 vary: flares
and dips lasting 3 groups and steps, of fractional amplitude 0.1, 0.2, 0.4 and 0.8,
chosen among the sources of 20 mJy or more that transit within 1.5 deg of the pointing,
each starting at its transit group (the simulator's ``variable_max_offset_deg``).
The pipeline runs on it as a night does (``python -m dsa110_pipeline.run``, its survey
catalog beside the files, the truth moved out of its reach); then, against the
truth:

- photometry of steady sources: the pulls ``(S - S_true) / sigma`` of the apparent flux
  (the image's, against the truth's flux x primary beam averaged over the group), their
  width (standard deviation and 1.4826 MAD) and the median flux ratio, for unflagged
  measurements of sources at S/N >= 5 and >= 20;
- variables: the fraction recovered as candidates, per amplitude in units of the
  per-group error: the change of the true flux between the epochs measured (max - min, over
  sigma), since a step before the first epoch or a flare over all of them leaves a light
  curve that cannot vary (counted apart);
- false alarms: the fraction of steady sources that are candidates, and the eta, V and
  dip thresholds that give 1 % of the steady sources with enough epochs;
- ``rate``: the forced-photometry kernel's sources per second on one core (goal >= 10,000);
- cost: the photometry and light-curve stages' time per group beside the group's
  end-to-end time;
- the hour's mosaic (:mod:`perf.mosaic_score`): noise, fluxes in the overlaps,
  positions, jumps at group boundaries;
- ``mosaic_full``: the mosaic stage's wall time and peak RSS on 12 full-scale group
  images (:mod:`perf.mosaic_full`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.robust import robust_rms
from perf.harness import row, run_measured
from perf.mosaic_score import nearest, score_mosaic
from perf.suites.end_to_end import REPO

#: Variables injected into a night (among the sources its groups measure)
N_VARIABLES = 60

_SIM = r"""
import json, sys
from pathlib import Path
from dsa110_pipeline.simulate import SimulationConfig, simulate_observation
a = json.loads(sys.argv[1])
res = simulate_observation(SimulationConfig(out_dir=Path(a["out"]), n_groups=a["groups"],
    n_antennas=a["ants"], n_subbands=a["sb"], n_channels=a["ch"], n_integrations=a["ints"],
    n_sources=a["sources"], calibrator=a["cal"], dec_deg=a["dec"], seed=a["seed"],
    n_variables=a["variables"], start=a["start"], **a["extra"]))
print(json.dumps({"groups": [g.start_iso for g in res.groups]}))
"""


def _match(ra: np.ndarray, dec: np.ndarray, tra: np.ndarray, tdec: np.ndarray,
           radius_arcsec: float) -> np.ndarray:
    """Index of the nearest truth source within the radius, -1 where none."""
    idx, dist = nearest(ra, dec, tra, tdec)
    return np.where(dist < np.radians(radius_arcsec / 3600.0), idx, -1)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def score(out: Path, judges: Path) -> dict[str, Any]:
    """Photometry and variability of a finished night against its truth."""
    truths = {p.name.split("_truth")[0]: np.load(p) for p in sorted(judges.glob("*truth.npz"))}
    steady_pull: list[float] = []
    steady_ratio: list[float] = []
    steady_snr: list[float] = []
    per_source: dict[str, dict[str, Any]] = {}
    for table in sorted((out / "photometry").glob("*.photometry.csv")):
        rows = _rows(table)
        if not rows:
            continue
        gid = rows[0]["group_id"]
        t = next((v for k, v in truths.items() if abs(_iso_s(k) - _iso_s(gid)) < 90), None)
        if t is None:
            continue
        app = np.mean(t["source_flux"][:, None, :] * t["source_beam"], axis=(1, 2))
        ra = np.radians([float(r["ra_deg"]) for r in rows])
        dec = np.radians([float(r["dec_deg"]) for r in rows])
        m = _match(ra, dec, t["source_ra"], t["source_dec"], 20.0)
        for r, j in zip(rows, m, strict=True):
            if j < 0 or r["edge"] == "1" or r["blended"] == "1" or r["artefact"] == "1":
                continue
            s, e = float(r["flux_app_jy"]), float(r["err_app_jy"])
            kind = str(t["source_variable_kind"][j])
            src = per_source.setdefault(r["name"], {"kind": kind, "factors": [], "err": [],
                                                    "app_steady": []})
            f = float(t["source_variability"][j])
            src["factors"].append(f)
            src["err"].append(e)
            src["app_steady"].append(app[j] / f)
            if kind == "":
                steady_pull.append((s - app[j]) / e)
                steady_ratio.append(s / app[j])
                steady_snr.append(app[j] / e)
    pull, ratio, snr = map(np.asarray, (steady_pull, steady_ratio, steady_snr))
    with sqlite3.connect(out / "lightcurves.sqlite") as c:
        var = {r[0]: r[1:] for r in c.execute(
            "SELECT s.name, v.candidate, v.eta, v.v, v.dip_sigma, v.n FROM variability v "
            "JOIN sources s USING(source_id)")}
    rec: dict[str, list[int]] = {}
    var_stats: dict[str, list[tuple]] = {}
    steady_stats = []
    for name, src in per_source.items():
        v = var.get(name)
        if v is None:
            continue
        if src["kind"] == "":
            steady_stats.append(v)
            continue
        # the amplitude the light curve can show: the change between the epochs measured
        # (a step before the first, or a flare over all of them, changes nothing within the
        # night; such variables are counted apart, as "none in the light curve")
        f = np.asarray(src["factors"])
        amp_sigma = np.ptp(f) * np.median(src["app_steady"]) / np.median(src["err"])
        b = ("none in the light curve" if amp_sigma == 0 else "<5" if amp_sigma < 5
             else "5-10" if amp_sigma < 10 else "10-20" if amp_sigma < 20 else ">=20")
        rec.setdefault(b, []).append(int(v[0]))
        var_stats.setdefault(b, []).append((v[1], v[2], v[3], v[4]))
    st = np.asarray([s[1:] for s in steady_stats if s[4] and s[4] >= 4], dtype=float)
    cands = np.asarray([s[0] for s in steady_stats], dtype=float)

    def robust(x: np.ndarray) -> float | None:
        return None if x.size < 5 else robust_rms(x)

    out_d: dict[str, Any] = {}
    for lo, hi in ((5.0, 20.0), (20.0, 100.0), (100.0, np.inf), (5.0, np.inf)):
        sel = (snr >= lo) & (snr < hi)
        out_d[f"snr{lo:g}-{hi:g}"] = {"n": int(sel.sum()),
                                "pull_std": _r(np.std(pull[sel])) if sel.sum() > 4 else None,
                                "pull_mad": _r(robust(pull[sel])),
                                "median_ratio": _r(np.median(ratio[sel])) if sel.any()
                                else None}
    out_d["recovery"] = {b: {"n": len(v), "recovered": _r(np.mean(v)),
                             "median_eta": _r(np.nanmedian([x[0] or np.nan for x in
                                                            var_stats[b]])),
                             "median_v": _r(np.nanmedian([x[1] or np.nan for x in
                                                          var_stats[b]])),
                             "median_epochs": _r(np.nanmedian([x[3] or np.nan for x in
                                                               var_stats[b]]))}
                         for b, v in sorted(rec.items())}
    out_d["false_alarm"] = _r(np.mean(cands)) if cands.size else None
    out_d["n_steady"] = int(cands.size)
    if st.size:
        out_d["thresholds_1pct"] = {"eta": _r(np.nanpercentile(st[:, 0], 99)),
                                    "v": _r(np.nanpercentile(st[:, 1], 99)),
                                    "dip_sigma": _r(np.nanpercentile(st[:, 2], 99))}
    return out_d


def _iso_s(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso[:19]).timestamp()


def _r(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 3)


def _stage_times(out: Path) -> dict[str, float]:
    """Mean wall time of each stage over its runs (group stages per group, window stages
    per window), from the state DB."""
    per: dict[str, list[float]] = {}
    with sqlite3.connect(out / "state.sqlite") as c:
        for stage, wall in c.execute("SELECT stage, wall_s FROM stage_runs WHERE status='ok'"):
            if wall is not None:
                per.setdefault(stage, []).append(wall)
    return {k: float(np.mean(v)) for k, v in per.items()}


def _stage_totals(out: Path) -> dict[str, float]:
    """Total wall time of each stage over all its runs, from the state DB."""
    with sqlite3.connect(out / "state.sqlite") as c:
        return {k: float(v) for k, v in c.execute(
            "SELECT stage, sum(wall_s) FROM stage_runs WHERE status='ok' GROUP BY stage")}


def _peak_rss(out: Path, stage: str) -> float | None:
    """The largest peak RSS (GB) of a stage's runs, from the state DB."""
    with sqlite3.connect(out / "state.sqlite") as c:
        (v,) = c.execute("SELECT max(peak_rss_mb) FROM stage_runs WHERE stage=?",
                         (stage,)).fetchone()
    return None if v is None else v / 1024.0


def _night(work: Path, name: str, size: dict[str, Any], n_groups: int, out: Path,
           start: str, extra: dict[str, Any]) -> tuple[Any, Path]:
    """Simulate a night into ``work/name`` (its truth moved to ``work/judges``), run the
    pipeline on it into ``out``: (the measured run, the judges' folder)."""
    inp, judges = work / name, work / "judges"
    sim = run_measured([sys.executable, "-c", _SIM, json.dumps({
        "out": str(inp), "groups": n_groups, "cal": "3C48", "dec": 33.2, "seed": 51,
        "variables": N_VARIABLES, "start": start, "extra": extra, **size})], cwd=REPO, timeout=3600)
    if not sim.ok:
        raise RuntimeError(f"simulation failed: {sim.error_text()}")
    judges.mkdir(exist_ok=True)
    for p in inp.glob("*_truth*"):
        p.rename(judges / p.name)
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--input", str(inp), "--output",
           str(out), "--log-json", "--set", "orchestrator.n_workers=2", "--set",
           f"conversion.expected_subbands={list(range(size['sb']))}"]
    m = run_measured(cmd, cwd=REPO, timeout=7200)
    if not (out / "manifest.json").exists():
        raise RuntimeError(f"pipeline failed: {m.error_text()}")
    return m, judges


def _rows_of(sc: dict[str, Any], label: str) -> list[dict]:
    rows = []
    for lo in (k for k in sc if k.startswith("snr")):
        d = sc[lo]
        rows.append(row(f"{label}: steady sources, S/N {lo[3:]}", "forced photometry", None,
                        None, n=d["n"], pull_std=d["pull_std"], pull_mad=d["pull_mad"],
                        median_flux_ratio=d["median_ratio"],
                        goal="pull width 0.9-1.1, ratio 1.00 +- 0.02"))
    for b, d in sc["recovery"].items():
        rows.append(row(f"{label}: variables, amplitude {b} sigma", "lightcurves candidates",
                        None, None, n=d["n"], recovered=d["recovered"],
                        median_eta=d["median_eta"], median_v=d["median_v"],
                        median_epochs=d["median_epochs"],
                        goal=">= 0.9 at >= 10 sigma" if b in ("10-20", ">=20") else ""))
    rows.append(row(f"{label}: steady sources", "lightcurves candidates", None, None,
                    n=sc["n_steady"], false_alarm=sc["false_alarm"],
                    **{f"threshold_1pct_{k}": v for k, v in
                       (sc.get("thresholds_1pct") or {}).items()}, goal="<= 0.01"))
    return rows


def _mosaic_rows(ms: dict[str, Any], label: str) -> list[dict]:
    if "error" in ms:
        return [row(label, "mosaic stage", None, None, error=ms["error"])]

    def each(k: str) -> str:
        return " / ".join(str(_r(v)) if not isinstance(v, str) else v for v in ms.get(k) or [])

    rows = [row(f"{label}: noise", "residual / noise map", None, None,
                mosaics=" / ".join(m.removeprefix("mosaic_") for m in ms.get("mosaics", [])),
                z_width=each("noise_z_width"),
                validation_noise_ratio=each("validation_noise_ratio"),
                verdict=each("validation_verdict"),
                goal="rms within 10 % of the inverse-variance expectation")]
    for k in ("overlap_snr20", "overlap_snr50"):
        d = ms.get(k) or {}
        rows.append(row(f"{label}: steady sources in overlaps, S/N >= {k[11:]}",
                        "beam fit at truth positions", None, None, n=d.get("n"),
                        median_flux_ratio=_r(d.get("median_ratio")),
                        pull_width=_r(d.get("pull_width")), goal="within 2 % of the truth"))
    d = ms.get("positions_snr20") or {}
    rows.append(row(f"{label}: positions, S/N >= 20", "mosaic finder vs truth", None, None,
                    n=d.get("n"), median_offset_beams=_r(d.get("median_offset_beams")),
                    rms_offset_beams=_r(d.get("rms_offset_beams")), goal="<= 0.1 beam"))
    d = ms.get("new_sources") or {}
    if d:
        rows.append(row(f"{label}: new sources (20 left out of the survey catalog)",
                        "mosaic new-source list vs truth", None, None,
                        listed=d.get("listed"), listed_unsurveyed=d.get("listed_unsurveyed"),
                        listed_no_truth_source=d.get("listed_no_truth_source"),
                        **{f"{k}_{x}": v[x] for k, v in d.items() if k.startswith(
                            "unsurveyed_snr") for x in ("n", "found")},
                        goal="found when above the threshold; none false"))
    d = ms.get("boundary_jumps") or {}
    rows.append(row(f"{label}: group boundaries", "mean residual / noise, inside - outside",
                    None, None, n=d.get("n"), max_abs_sigma=_r(d.get("max_abs_sigma")),
                    n_above_2sigma=d.get("n_above_2sigma"),
                    expected_by_chance=d.get("expected_above_2sigma_by_chance"),
                    goal="no jump above 2 sigma"))
    return rows


def _kernel_rate(n: int, npix: int = 2048) -> dict:
    """Sources per second of the forced-photometry kernel on one core: ``n`` beam fits at
    random positions in a ``npix``^2 image (the best of three runs)."""
    from stages.photometry.forced import forced_fluxes

    rng = np.random.default_rng(3)
    img = rng.standard_normal((npix, npix)).astype(np.float32)
    x, y = rng.uniform(10, npix - 10, n), rng.uniform(10, npix - 10, n)
    sigma = np.ones(n)
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        forced_fluxes(img, x, y, sigma, 4.2, 2.6, -89.0, factor=1.0)
        walls.append(time.perf_counter() - t0)
    rate = n / min(walls)
    return row(f"forced photometry kernel, {n} sources on a {npix}^2 image",
               "stages.photometry.forced.forced_fluxes (1 core)", min(walls), None,
               sources_per_s=round(rate), goal=">= 10,000 sources per second per core: "
               + ("met" if rate >= 10_000 else "not met"))


def run(quick: bool = False) -> dict:
    size = ({"ants": 24, "sb": 4, "ch": 8, "ints": 6, "sources": 60} if quick
            else {"ants": 48, "sb": 16, "ch": 8, "ints": 24, "sources": 1500})
    n_groups, n_nights, per_night = (6, 3, 2) if quick else (12, 8, 4)
    want = set(os.environ.get("DSA110_SURVEY_SCENARIOS",
                              "rate,hour,nights,mosaic_full").split(","))
    rows: list[dict] = []
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="perf-survey-"))
    try:
        if "rate" in want:  # the forced-photometry kernel alone, one core
            rows.append(_kernel_rate(20_000 if quick else 200_000))
        if "hour" in want:  # one night's hour: photometry, within-night variability, cost
            out = work / "out"
            m, judges = _night(work, "in", size, n_groups, out, "2026-03-10T02:00:00",
                               {"n_unsurveyed": 20, "unsurveyed_min_flux_jy": 0.005})
            sc = score(out, judges)
            rows += _rows_of(sc, "1 hour")
            times = _stage_times(out)
            window = ("lightcurves", "mosaic")
            per_group = sum(v for k, v in times.items() if k not in window)
            # every window's run counts (a night's hour may fall across two UTC hours)
            totals = _stage_totals(out)
            added = times.get("photometry", 0.0) + sum(totals.get(k, 0.0)
                                                       for k in window) / n_groups
            manifest = json.loads((out / "manifest.json").read_text())
            n_meas = [r.get("metrics", {}) for g in manifest["groups"].values()
                      for r in g["records"] if r["name"] == "photometry"]
            rows.append(row(f"{n_groups} groups, demo scale", "photometry + lightcurves + "
                            "mosaic", m.wall_s, m.peak_rss_gb,
                            photometry_s_per_group=_r(times.get("photometry")),
                            lightcurves_s=_r(times.get("lightcurves")),
                            mosaic_s_per_window=_r(times.get("mosaic")),
                            mosaic_windows=round(totals.get("mosaic", 0.0)
                                                 / times["mosaic"]) if times.get("mosaic")
                            else None,
                            mosaic_peak_rss_gb=_r(_peak_rss(out, "mosaic")),
                            group_stages_s=_r(per_group),
                            added_pct=_r(100 * added / per_group) if per_group else None,
                            sources_per_group=_r(np.mean([x.get("n_sources", 0)
                                                          for x in n_meas]))
                            if n_meas else None,
                            goal="added <= 10 % of a group's time"))
            notes.append(f"1 hour: {n_groups} groups, dec +33.2, 3C48, seed 51, "
                         f"{size['sources']} sources, {N_VARIABLES} variables at their transits, "
                         "20 sources of 5 mJy or more left out of the survey catalog")
            rows += _mosaic_rows(score_mosaic(out, judges), "the hour's mosaics")
        if "mosaic_full" in want:  # the mosaic's cost at full scale
            d = work / "mosaic_full"
            made = run_measured([sys.executable, "-m", "perf.mosaic_full", "make", str(d)],
                                cwd=REPO, timeout=1800)
            if not made.ok:
                raise RuntimeError(f"full-scale images failed: {made.error_text()}")
            for proj in ("SIN", "CAR"):
                m = run_measured([sys.executable, "-m", "perf.mosaic_full", "run", str(d),
                                  proj], cwd=REPO, timeout=3600)
                if not m.ok:
                    raise RuntimeError(f"full-scale mosaic ({proj}) failed: "
                                       f"{m.error_text()}")
                got = m.json()
                mm = next(iter(got["metrics"].values()), {})
                what = ("12 full-scale group images (2048^2, 6\")" if proj == "SIN" else
                        "the same, as a CAR tile of a night's strip")
                rows.append(row(what, f"mosaic stage, {proj} (incl. its validation)",
                                m.wall_s, m.peak_rss_gb, stage_s=_r(got["stage_wall_s"]),
                                npix_x=mm.get("npix_x"), npix_y=mm.get("npix_y"),
                                noise_ratio=_r(mm.get("noise_ratio")),
                                flux_ratio=_r(mm.get("flux_ratio")), verdict=mm.get("verdict"),
                                goal="wall and peak RSS on 2 cores"))
            notes.append("full-scale mosaic: 12 synthetic group images at the imaging "
                         "stage's full-scale grid (perf/mosaic_full.py: Airy beam, "
                         "beam-correlated noise, 200 sources), one group of RA apart")
        if "nights" in want:  # variability between nights, the survey's timescale
            out = work / "nights_out"
            for k in range(n_nights):
                judges = _night(work / "nights", f"night{k}", size, per_night, out,
                                f"2026-03-{10 + k:02d}T02:00:00",
                                {"variable_nights": n_nights, "variable_night": k,
                                 "variable_duration_groups": 2})[1]
            sc = score(out, judges)
            rows += _rows_of(sc, f"{n_nights} nights")
            notes.append(f"{n_nights} nights: {per_night} groups each at the same LST, dec "
                         f"+33.2, 3C48, seed 51, {size['sources']} sources, "
                         f"{N_VARIABLES} variables: flares and dips over 2 nights and steps, "
                         "between nights")
    finally:
        if os.environ.get("DSA110_SURVEY_KEEP"):
            notes.append(f"work kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"suite": "survey", "rows": rows, "notes": notes}
