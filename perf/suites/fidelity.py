"""fidelity: science fidelity of whole nights against the truth, ours beside WSClean.

Nights at different declinations, each with its own VLA calibrator in transit in its first
group and its own seed, at demo scale (3 groups: 48 antennas, 16 x 8 channels, 24
integrations, 60 sources) and as one full-scale group (96 antennas, 16 x 48 channels, 200
sources). The simulator writes the truth and an NVSS-like ``survey_catalog.csv``; the truth
is moved out of the input directory before the pipeline runs, so the night has only the
survey catalog (as a real night has only NVSS).

Per group, against the truth (``perf/fidelity_score.py``): reliability of the peaks at 5, 7
and 10σ, negative / positive peaks at 5σ, residual rms / thermal, median flux ratio and
astrometry for S/N >= 50, completeness at 10σ; beside them the validation stage's own
estimate from the negative image and its verdict. WSClean 3.1 images the same calibrated MS
with the same size, cell and weighting (auto-mask 3, auto-threshold 1, niter 50000, mgain
0.8), and its image is scored the same way (its peaks found by our validation kernels).
Cost: the imaging stage's wall time and the pipeline's peak RSS.

``python -m perf fidelity`` runs everything; ``--quick`` runs one demo-scale night.
Environment: ``DSA110_FIDELITY_NIGHTS`` = comma-separated indices of NIGHTS to run,
``DSA110_FIDELITY_SCALES`` = ``demo``, ``full`` or both, ``DSA110_FIDELITY_WSCLEAN=0`` to
skip WSClean, ``DSA110_FIDELITY_EXTRA`` = nights the suite does not list, as
``dec:calibrator:seed`` separated by ``;`` (for example ``33.2:3C48:51;52.2:3C295:71``),
run after the listed ones (``DSA110_FIDELITY_NIGHTS=none`` runs only those).

Beside each group's figures: the number of 5σ peaks that pure Gaussian noise with the
image's PSF gives per sign (``noise_peaks_5sigma``), the Poisson probability of the group's
false and negative peaks given it, and the 5σ reliability that noise alone would leave
with the group's true peaks (``noise_limited_reliability_5sigma``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from perf.fidelity_score import acceptance, score
from perf.harness import row, run_measured

REPO = Path(__file__).resolve().parents[2]

#: (label, pointing declination, calibrator, seed)
NIGHTS = [
    ("dec+30.5 3C286", 30.5, "3C286", 11),
    ("dec+49.9 3C147", 49.9, "3C147", 23),
    ("dec+16.1 3C454.3", 16.15, "3C454.3", 37),
]
SCALES = {
    "demo": {"groups": 3, "ants": 48, "sb": 16, "ch": 8, "ints": 24, "sources": 60},
    "full": {"groups": 1, "ants": 96, "sb": 16, "ch": 48, "ints": 24, "sources": 200},
}

_SIM = r"""
import json, sys
from pathlib import Path
from dsa110_pipeline.simulate import SimulationConfig, simulate_observation
a = json.loads(sys.argv[1])
res = simulate_observation(SimulationConfig(out_dir=Path(a["out"]), n_groups=a["groups"],
    n_antennas=a["ants"], n_subbands=a["sb"], n_channels=a["ch"], n_integrations=a["ints"],
    n_sources=a["sources"], calibrator=a["cal"], dec_deg=a["dec"], seed=a["seed"],
    rfi=a.get("rfi", True)))
print(json.dumps({"truth": [str(g.truth_npz) for g in res.groups],
                  "starts": [g.start_iso for g in res.groups]}))
"""


def simulate_night(inp: Path, judges: Path, dec: float, cal: str, seed: int,
                   size: dict[str, int], rfi: bool = True) -> list[Path]:
    """Simulate a night into ``inp`` and move its truth into ``judges``."""
    m = run_measured([sys.executable, "-c", _SIM, json.dumps(
        {"out": str(inp), "dec": dec, "cal": cal, "seed": seed, "rfi": rfi, **size})],
        cwd=REPO, timeout=3600)
    if not m.ok:
        raise RuntimeError(f"simulation failed: {m.error_text()}")
    judges.mkdir(parents=True, exist_ok=True)
    for p in inp.glob("*_truth*"):
        p.rename(judges / p.name)
    return sorted(judges.glob("*_truth.npz"))


def run_pipeline(inp: Path, out: Path, sets: list[str] = ()):
    cmd = [sys.executable, "-m", "dsa110_pipeline.run", "--input", str(inp), "--output",
           str(out), "--log-json", "--rerun"]
    for s in sets:
        cmd += ["--set", s]
    return run_measured(cmd, cwd=REPO, timeout=7200)


def _truth_for(group: str, truths: list[Path]) -> Path:
    from datetime import datetime

    def t(s: str) -> float:
        return datetime.fromisoformat(s.split("_truth")[0]).timestamp()

    return min(truths, key=lambda p: abs(t(p.name) - t(group)))


def _pb(path: str) -> np.ndarray:
    from astropy.io import fits

    d = fits.getdata(path)
    return np.asarray(d, float).reshape(d.shape[-2:])


def wsclean_image(ms: str, work: Path, npix: int, cell_arcsec: float, robust: float,
                  threads: int) -> tuple[Path | None, float, str]:
    """WSClean on the calibrated MS: the issue's settings. Returns (image, wall, error)."""
    exe = shutil.which("wsclean")
    if exe is None:
        return None, 0.0, "wsclean not installed"
    name = work / "wsclean"
    cmd = [exe, "-quiet", "-name", str(name), "-size", str(npix), str(npix), "-scale",
           f"{cell_arcsec}asec", "-weight", "briggs", str(robust), "-niter", "50000",
           "-mgain", "0.8", "-auto-mask", "3", "-auto-threshold", "1", "-data-column",
           "CORRECTED_DATA", "-j", str(threads), "-no-update-model-required", ms]
    m = run_measured(cmd, cwd=work, timeout=3600)
    if not m.ok:
        return None, m.wall_s, m.error_text()
    return Path(f"{name}-image.fits"), m.wall_s, ""


def validate_foreign(image: Path, residual: Path, pb_path: str, survey: Path, out: Path,
                     theoretical: float | None) -> dict[str, Any]:
    """Our validation kernels on another tool's image (its peaks, noise and verdict)."""
    from stages.validation.config import ValidationConfig
    from stages.validation.validate import validate_group

    o = validate_group(image, out, group=image.stem, cfg=ValidationConfig(finder="islands"),
                       reference_path=survey, theoretical_rms=theoretical, pb_path=pb_path,
                       residual_path=str(residual))
    return json.loads(o.metrics_json.read_text())


def extra_nights() -> list[tuple[str, float, str, int]]:
    """Nights named in ``DSA110_FIDELITY_EXTRA`` (``dec:calibrator:seed;...``)."""
    out = []
    for item in os.environ.get("DSA110_FIDELITY_EXTRA", "").split(";"):
        if not item.strip():
            continue
        try:
            dec, cal, seed = item.split(":")
            out.append((f"dec{float(dec):+.1f} {cal.strip()} seed {int(seed)}", float(dec),
                        cal.strip(), int(seed)))
        except ValueError:
            raise SystemExit(f"DSA110_FIDELITY_EXTRA: {item!r} is not dec:calibrator:seed"
                             ) from None
    return out


def night_rows(label: str, scale: str, work: Path, threads: int, wsclean: bool,
               sets: list[str] = ()) -> tuple[list[dict], list[str]]:
    """Simulate, run, and score one night; rows per group for ours (and WSClean)."""
    _, dec, cal, seed = next(n for n in NIGHTS + extra_nights() if n[0] == label)
    size = SCALES[scale]
    inp, judges, out = work / "in", work / "judges", work / "out"
    notes: list[str] = []
    t0 = time.perf_counter()
    truths = simulate_night(inp, judges, dec, cal, seed, size)
    sim_s = time.perf_counter() - t0
    run = run_pipeline(inp, out, sets)
    notes.append(f"{label} {scale}: simulated in {sim_s:.0f} s; pipeline {run.wall_s:.0f} s, "
                 f"peak RSS {run.peak_rss_gb:.2f} GB, rc {run.returncode}")
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    survey = inp / "survey_catalog.csv"
    for gid, g in sorted(manifest["groups"].items()):
        mjson = next((out / "validation").glob(
            "".join(c if c.isalnum() or c in "-_.+" else "_" for c in gid) + "_metrics.json"),
            None)
        if mjson is None:
            notes.append(f"{gid}: no validation ({g.get('status')}: {g.get('message')})")
            continue
        metrics = json.loads(mjson.read_text())
        truth = dict(np.load(_truth_for(gid, truths)))
        images = {p["path"].rsplit("-", 1)[-1].removesuffix(".fits"): p["path"]
                  for p in g["products"] if p["key"] == "images"}
        pb = _pb(images["pb"])
        s = score(images["image"], metrics, truth, pb, psf_fits=images.get("psf"))
        rec = {r["name"]: r for r in g["records"]}
        img_rec = rec.get("imaging") or {}
        base = dict(night=label, scale=scale, group=gid, role=g.get("role"),
                    verdict=metrics["verdict"])
        rows.append(row(f"{label} {scale}", "ours", round(float(img_rec.get("wall_s") or 0), 2),
                        round(run.peak_rss_gb, 3), **base, **_round(s),
                        failing=[k for k, v in acceptance(s).items() if v is False]))
        if wsclean:
            ms = next(p["path"] for p in g["products"] if p["key"] == "ms_calibrated")
            hdr = _header(images["image"])
            wdir = work / f"ws-{len(rows)}"
            wdir.mkdir()
            wimg, wall, err = wsclean_image(ms, wdir, hdr["NAXIS1"],
                                            abs(hdr["CDELT1"]) * 3600.0, 0.0, threads)
            if wimg is None:
                notes.append(f"{gid}: WSClean failed: {err}")
                continue
            wm = validate_foreign(wimg, wdir / "wsclean-residual.fits", images["pb"], survey,
                                  wdir / "val", metrics["metrics"]["noise"]
                                  .get("theoretical_rms_jy"))
            wpsf = Path(wimg).with_name(Path(wimg).name.replace("-image", "-psf"))
            ws = score(wimg, wm, truth, pb, psf_fits=wpsf if wpsf.exists() else None)
            rows.append(row(f"{label} {scale}", "WSClean 3.1", round(wall, 2), None,
                            **{**base, "verdict": wm["verdict"]}, **_round(ws),
                            failing=[k for k, v in acceptance(ws).items() if v is False]))
    return rows, notes


def _header(path: str) -> Any:
    from astropy.io import fits

    return fits.getheader(path)


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def run(quick: bool = False) -> dict:
    threads = os.cpu_count() or 1
    listed = os.environ.get("DSA110_FIDELITY_NIGHTS", "0" if quick else ",".join(
        str(i) for i in range(len(NIGHTS))))
    nights = [NIGHTS[int(i)] for i in listed.split(",") if i.strip() not in ("", "none")]
    nights += extra_nights()
    scales = os.environ.get("DSA110_FIDELITY_SCALES", "demo" if quick else "demo,full"
                            ).split(",")
    wsclean = os.environ.get("DSA110_FIDELITY_WSCLEAN", "1") != "0"
    rows: list[dict] = []
    notes: list[str] = []
    for label, *_ in nights:
        for scale in scales:
            work = Path(tempfile.mkdtemp(prefix="perf-fidelity-", dir="/tmp"))
            try:
                r, n = night_rows(label, scale, work, threads, wsclean)
                rows += r
                notes += n
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                notes.append(f"{label} {scale}: failed: {exc}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
    notes.append("reliability: the fraction of the validation stage's positive peaks (local "
                 "S/N maxima, one per beam) within one beam of a true source; estimate_5sigma "
                 "is the stage's own 1 - negative/positive peaks; flux ratio against the "
                 "truth's apparent (beam-weighted, time- and band-averaged) flux")
    return {"suite": "fidelity", "rows": rows, "notes": notes}


__all__ = ["NIGHTS", "SCALES", "run", "night_rows", "simulate_night", "run_pipeline"]
