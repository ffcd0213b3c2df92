"""Benchmark of the calibration stage for the perf harness (``perf/suites/calibration.py``
can be ``from perf.calibration_benchmark import run``).

One simulated calibrator group (3C454.3 in transit, gains, bandpasses, noise, RFI, two dead
antennas) is converted to an MS, then calibrated by

- ours: flag + solve (B over the transit, G per 60 s) + apply (CORRECTED_DATA);
- the anchor (when CASA is importable by ``$DSA110_CASA_PYTHON``, default this Python):
  CASA ``bandpass`` (solint inf) + ``gaincal`` (solint 60s, calmode ap, B applied) +
  ``applycal``, on a copy of the same MS with our flags and our calibrator model in
  MODEL_DATA, in a subprocess.

Both are scored against the simulator's truth: rms amplitude error and rms phase error
(reference antenna's phase removed) of g(t, ν) = G(t) B(ν), over antennas with data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

GAIN_SOLINT_S = 60.0


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def simulate_group(root: Path, quick: bool) -> tuple[Any, Path]:
    """A calibrator group as an MS; returns (MS product reference, truth .npz path)."""
    from dsa110_pipeline.context import PipelineContext, ProductRef
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    kw = {"n_antennas": 24, "n_subbands": 2, "n_channels": 16} if quick else {}
    cfg = SimulationConfig(out_dir=root / "raw", n_sources=0, calibrator="3C454.3", seed=5,
                           jitter_s=0, **kw)
    g = simulate_observation(cfg).groups[0]
    ctx = PipelineContext(inputs={"subband_files": [ProductRef.for_path("uvh5", f)
                                                    for f in g.files]})
    ms = ConversionStage({"output_dir": str(root / "ms"), "scratch_dir": str(root / "scr"),
                          "expected_subbands": list(range(cfg.n_subbands))}
                         ).execute(ctx).outputs["ms"]
    return ms, g.truth_npz


def gain_errors(bandpass_table: str | Path, gain_table: str | Path, truth_npz: str | Path,
                times: np.ndarray, min_snr: float = 50.0) -> dict[str, float]:
    """rms amplitude and phase (deg) errors of G(t) B(ν) against the truth."""
    from stages.calibration.apply import interpolate_gains
    from stages.calibration.caltable import read_caltable

    truth = np.load(truth_npz)
    B, G = read_caltable(bandpass_table), read_caltable(gain_table)
    nums = truth["antenna_numbers"]
    order = np.argsort(truth["freq_array"].ravel())
    tg = np.conj(truth["gains"])[:, :, None, :] * np.conj(truth["bandpass"][:, order])[None]
    n_ant = B.gains.shape[1]
    true = np.zeros((tg.shape[0], n_ant) + tg.shape[2:], complex)
    ok = nums < n_ant
    true[:, nums[ok]] = tg[:, ok]
    good_ant = np.zeros(n_ant, bool)
    good_ant[nums[ok]] = (truth["antenna_active"] & ~truth["antenna_dead"])[ok]
    gt, gf = interpolate_gains(G.times, G.gains, G.flags, times)
    sol = gt * B.gains[0][None]
    ref = B.refant
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sol * np.conj(sol[:, ref:ref + 1]) / np.abs(sol[:, ref:ref + 1])) / (
            true * np.conj(true[:, ref:ref + 1]) / np.abs(true[:, ref:ref + 1]))
    use = good_ant.copy()
    use[ref] = False
    sel = ~(gf | B.flags[0][None])[:, use] & (np.broadcast_to(B.snr[0][None], sol.shape)[
        :, use] >= min_snr)
    rr = r[:, use][sel]
    return {"amp_err_rms": float(np.sqrt(np.mean((np.abs(rr) - 1) ** 2))),
            "phase_err_rms_deg": float(np.degrees(np.sqrt(np.mean(np.angle(rr) ** 2)))),
            "fraction_scored": float(sel.mean())}


def casa_available(python: str) -> bool:
    """Whether ``python`` can import CASA (casatasks and casadata): the ``casa`` extra."""
    try:
        r = subprocess.run([python, "-c", "import importlib.util as u; print(bool("
                            "u.find_spec('casatasks') and u.find_spec('casadata')))"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.stdout.strip() == "True"


def _write_model_and_flags(ms_path: Path, model_rows: np.ndarray, flags_rows: np.ndarray
                           ) -> None:
    from casacore import tables

    with tables.table(str(ms_path), readonly=False, ack=False) as t:
        if "MODEL_DATA" not in t.colnames():
            desc = t.getcoldesc("DATA")
            dminfo = t.getdminfo("DATA")
            dminfo["NAME"] = "TiledModel"
            dminfo.get("SPEC", {}).pop("HYPERCUBES", None)
            t.addcols(tables.maketabdesc(tables.makecoldesc("MODEL_DATA", desc)), dminfo)
        t.putcol("MODEL_DATA", model_rows.astype(np.complex64))
        t.putcol("FLAG", flags_rows)


def run_casa(ms_path: Path, work: Path, refant: str, python: str) -> dict[str, Any]:
    """CASA bandpass + gaincal + applycal in a subprocess; returns timings and table paths."""
    home = work / "home"
    b, g = work / "casa.B", work / "casa.G"
    script = textwrap.dedent(f"""
        import os, time, json, casadata
        os.makedirs({str(home / '.casa')!r}, exist_ok=True)
        with open({str(home / '.casa' / 'config.py')!r}, 'w') as fh:
            fh.write('measurespath = %r\\nmeasures_auto_update = False\\n'
                     'data_auto_update = False\\nnologfile = True\\n' % casadata.datapath)
        from casatasks import applycal, bandpass, gaincal
        out = {{}}
        t = time.perf_counter()
        bandpass(vis={str(ms_path)!r}, caltable={str(b)!r}, solint='inf', combine='scan',
                 refant={refant!r}, minsnr=3.0, solnorm=True)
        out['bandpass_s'] = time.perf_counter() - t
        t = time.perf_counter()
        gaincal(vis={str(ms_path)!r}, caltable={str(g)!r}, solint='{GAIN_SOLINT_S:g}s',
                refant={refant!r}, gaintype='G', calmode='ap', minsnr=3.0,
                gaintable=[{str(b)!r}])
        out['gaincal_s'] = time.perf_counter() - t
        t = time.perf_counter()
        applycal(vis={str(ms_path)!r}, gaintable=[{str(b)!r}, {str(g)!r}],
                 interp=['nearest', 'linear'], calwt=[False, False], flagbackup=False)
        out['applycal_s'] = time.perf_counter() - t
        print('RESULT', json.dumps(out))
    """)
    t = time.perf_counter()
    r = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=3600,
                       env={**os.environ, "HOME": str(home)}, cwd=work)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"CASA failed: {r.stderr[-2000:]}")
    import json

    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    return {**res, "wall_s": wall, "btable": b, "gtable": g}


def run(quick: bool = False) -> dict:
    """The perf-harness entry point (see ``perf/__main__.py``)."""
    from dsa110_pipeline.context import PipelineContext
    from stages.calibration import CalibrationStage, msio
    from stages.calibration.sky import geometry as _geometry

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="calbench-", dir=os.environ.get("TMPDIR", "/tmp")))
    try:
        ms, truth = simulate_group(root, quick)
        meta = msio.read_ms_meta(ms.path)
        stage = CalibrationStage({"output_dir": str(root / "ours"),
                                  "gain_solint_s": GAIN_SOLINT_S,
                                  "nthreads": os.cpu_count() or 1})
        # once per process, like CASA's start-up (outside CASA's task times): astropy
        # parses its IERS table at the first sidereal time
        t = time.perf_counter()
        _geometry(meta.times[:1], np.array([meta.phase_dir[0]]), np.array([meta.phase_dir[1]]))
        startup = time.perf_counter() - t
        t = time.perf_counter()
        out = stage.execute(PipelineContext(inputs={"ms": ms}))
        wall = time.perf_counter() - t
        m = out.metrics["calibration"]
        b_ref, g_ref = out.outputs["caltables"]
        err = gain_errors(b_ref.path, g_ref.path, truth, meta.times)
        scenario = "quick (24 ant, 32 chan)" if quick else "full group (96 ant, 768 chan)"
        rows.append({"scenario": scenario, "tool": "ours: flag+solve+apply", "wall_s": wall,
                     "peak_rss_gb": _peak_rss_gb(), "flag_s": m["flag_s"],
                     "solve_s": m["solve_s"], "apply_s": m.get("apply_s"),
                     "model_s": m["model_s"], "read_s": m["read_s"],
                     "geometry_s": m["geometry_s"], "write_tables_s": m["write_tables_s"],
                     "process_startup_s": startup, "flagged_fraction": m["flagged_fraction"],
                     **err})
        python = os.environ.get("DSA110_CASA_PYTHON", sys.executable)
        if casa_available(python):
            # same data, flags and model for CASA
            from .msio import row_index

            cal_ms = Path(out.outputs["ms_calibrated"].path)
            casa_ms = root / "casa.ms"
            shutil.copytree(ms.path, casa_ms)
            from casacore import tables

            with tables.table(str(cal_ms), ack=False) as tc:  # our flags
                flags_rows = tc.getcol("FLAG")
                a1, a2, tim = tc.getcol("ANTENNA1"), tc.getcol("ANTENNA2"), tc.getcol("TIME")
            ti, _, _, _ = row_index(tim, a1, a2, meta.times, meta.n_ant)
            model = _model_rows(meta, out, ti)
            _write_model_and_flags(casa_ms, model, flags_rows)
            refant = m["refant"]
            casa = run_casa(casa_ms, root, refant, python)
            err_c = gain_errors(casa["btable"], casa["gtable"], truth, meta.times)
            tasks = casa["bandpass_s"] + casa["gaincal_s"] + casa["applycal_s"]
            rows.append({"scenario": scenario, "tool": "CASA bandpass+gaincal+applycal",
                         "wall_s": casa["wall_s"], "tasks_s": tasks, "peak_rss_gb": None,
                         "bandpass_s": casa["bandpass_s"], "gaincal_s": casa["gaincal_s"],
                         "applycal_s": casa["applycal_s"], **err_c})
            notes.append(f"speed-up ours vs CASA: {tasks / wall:.1f}x against the sum of the "
                         f"three tasks ({casa['wall_s'] / wall:.1f}x against CASA's wall time "
                         "including its start-up); CASA's solve includes no flagging")
        else:
            notes.append("CASA not importable by $DSA110_CASA_PYTHON: anchor skipped")
        notes.append("errors: rms over antennas with data and solutions of SNR >= 50, "
                     "reference antenna's phase removed")
        notes.append("ours excludes the once-per-process start-up (process_startup_s: "
                     "astropy's IERS table, read at the first sidereal time), as CASA's "
                     "task times exclude CASA's start-up")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"suite": "calibration", "rows": rows, "notes": notes}


def _model_rows(meta, out, ti: np.ndarray) -> np.ndarray:
    """Our calibrator model (apparent spectrum × beam, exact DFT) for every MS row."""
    import math

    from casacore import tables

    from dsa110_pipeline.catalogs import find_calibrator, is_flux_standard
    from dsa110_pipeline.projection import radec_to_lmn
    from stages.calibration.model import apparent_spectra, model_visibilities, source_spectrum
    from stages.calibration.sky import geometry as _geometry

    cal = find_calibrator(out.metrics["calibration"]["calibrator"])
    pra, pdec = meta.phase_dir
    lst, _, app_dec_p = _geometry(meta.times, np.array([pra]), np.array([pdec]))
    pointing = float(np.mean(app_dec_p))
    _, ara, adec = _geometry(meta.times, np.array([cal.ra]), np.array([cal.dec]))
    name = cal.alt_name if cal.alt_name and is_flux_standard(cal.alt_name) else cal.name
    spec = source_spectrum(name, meta.freqs, cal.flux_jy)
    app = apparent_spectra(spec[None], lst[:, None] - ara, adec, pointing, meta.freqs)
    lmn = np.repeat(radec_to_lmn(np.array([cal.ra]), np.array([cal.dec]), pra, pdec)[None],
                    len(meta.times), axis=0)
    with tables.table(meta.path, ack=False) as t:
        uvw = t.getcol("UVW")
    vis = model_visibilities(uvw, ti, meta.freqs, lmn, app)
    assert math.isfinite(float(np.abs(vis).sum()))
    return np.repeat(vis[:, :, None], meta.n_pol, axis=2)
