"""CASA-compatible calibration tables (NewCalTable layout) written and read with casacore.

MAIN has one row per (solution time, antenna): TIME, FIELD_ID, SPECTRAL_WINDOW_ID,
ANTENNA1, ANTENNA2 (the reference antenna), INTERVAL, SCAN_NUMBER, OBSERVATION_ID and the
arrays CPARAM, PARAMERR, FLAG, SNR, WEIGHT of shape (n_chan, n_pol) per row. The table
info is type "Calibration" with subType "B Jones" or "G Jones"; keywords ParType
("Complex"), VisCal, MSName, PolBasis and CASA_Version; subtables ANTENNA, FIELD,
SPECTRAL_WINDOW, HISTORY and OBSERVATION. Tables are written under a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.errors import InputError

from .gain_solution import GainSolution

VISCAL = {"B": "B Jones", "G": "G Jones"}
_KIND = {v: k for k, v in VISCAL.items()}
WRITER = "dsa110_pipeline"


@dataclass(frozen=True)
class CalTableContext:
    """What a caltable records about the data it was solved from."""

    ms_name: str
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray          #: (n_ant, 3) ITRF metres
    spw_freqs: np.ndarray                  #: (n_chan,) Hz, the MS's channel frequencies
    spw_widths: np.ndarray                 #: (n_chan,) Hz
    field_name: str = "calibrator"
    field_dir: tuple[float, float] = (0.0, 0.0)  #: (RA, Dec) rad
    telescope_name: str = "OVRO_MMA"
    dish_diameter: float = 4.65

    def __post_init__(self) -> None:
        n = len(self.antenna_names)
        if np.shape(self.antenna_positions) != (n, 3):
            raise ValueError(f"antenna_positions must be ({n}, 3)")
        if np.shape(self.spw_freqs) != np.shape(self.spw_widths):
            raise ValueError("spw_freqs and spw_widths must have the same shape")


def _main_desc(tables) -> dict:
    std = tables.required_ms_desc("MAIN")
    desc = {}
    for col in ("TIME", "FIELD_ID", "ANTENNA1", "ANTENNA2", "INTERVAL", "SCAN_NUMBER",
                "OBSERVATION_ID"):
        desc[col] = dict(std[col])
    desc["SPECTRAL_WINDOW_ID"] = dict(std["DATA_DESC_ID"])
    desc["SPECTRAL_WINDOW_ID"]["comment"] = "Spectral window id"
    for col in desc:
        desc[col]["option"] = 5
    arrays = [("CPARAM", 0j, "complex", "Complex gain values"),
              ("PARAMERR", 0.0, "float", "Uncertainty of the gains"),
              ("FLAG", False, "boolean", "Solution flags"),
              ("SNR", 0.0, "float", "Signal-to-noise ratio of the solution"),
              ("WEIGHT", 0.0, "float", "Solution weight")]
    for name, value, vtype, comment in arrays:
        d = tables.makearrcoldesc(name, value, valuetype=vtype, ndim=2,
                                  datamanagertype="StandardStMan", comment=comment)["desc"]
        desc[name] = d
    for col in desc:
        desc[col]["dataManagerGroup"] = "MSMTAB"
        desc[col]["dataManagerType"] = "StandardStMan"
    return desc


def write_caltable(path: str | Path, sol: GainSolution, ctx: CalTableContext, *,
                   history: str = "", overwrite: bool = True) -> Path:
    """Write ``sol`` (kind "B" or "G") as a CASA calibration table at ``path``."""
    from casacore import tables

    if sol.kind not in VISCAL:
        raise ValueError(f"cannot write a '{sol.kind}' solution as a gain table")
    n_t, n_ant, n_chan, n_pol = sol.gains.shape
    if len(ctx.antenna_names) != n_ant:
        raise ValueError(f"solution has {n_ant} antennas, context {len(ctx.antenna_names)}")
    final = Path(path)
    with atomic_path(final, overwrite=overwrite) as tmp:
        desc = _main_desc(tables)
        dminfo = tables.makedminfo(desc)
        nrow = n_t * n_ant
        with tables.table(str(tmp), tabledesc=desc, dminfo=dminfo, nrow=nrow, ack=False,
                          readonly=False) as t:
            t.putinfo({"type": "Calibration", "subType": VISCAL[sol.kind],
                       "readme": f"Written by {WRITER}"})
            t.putkeyword("ParType", "Complex")
            t.putkeyword("MSName", ctx.ms_name)
            t.putkeyword("VisCal", VISCAL[sol.kind])
            t.putkeyword("PolBasis", "unknown")
            t.putkeyword("CASA_Version", WRITER)
            tt = np.repeat(np.asarray(sol.times, float), n_ant)
            t.putcol("TIME", tt)
            t.putcol("INTERVAL", np.repeat(np.asarray(sol.interval, float), n_ant))
            t.putcol("ANTENNA1", np.tile(np.arange(n_ant, dtype=np.int32), n_t))
            t.putcol("ANTENNA2", np.full(nrow, sol.refant, dtype=np.int32))
            t.putcol("FIELD_ID", np.zeros(nrow, np.int32))
            t.putcol("SPECTRAL_WINDOW_ID", np.zeros(nrow, np.int32))
            t.putcol("SCAN_NUMBER", np.ones(nrow, np.int32))
            t.putcol("OBSERVATION_ID", np.zeros(nrow, np.int32))
            g = sol.gains.reshape(nrow, n_chan, n_pol)
            snr = sol.snr.reshape(nrow, n_chan, n_pol).astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                err = np.where(snr > 0, np.abs(g) / snr, 0.0).astype(np.float32)
            t.putcol("CPARAM", g.astype(np.complex64))
            t.putcol("PARAMERR", err)
            t.putcol("FLAG", sol.flags.reshape(nrow, n_chan, n_pol))
            t.putcol("SNR", snr)
            t.putcol("WEIGHT", np.ones((nrow, n_chan, n_pol), np.float32))
            t.putcolkeyword("TIME", "QuantumUnits", ["s"])
            _subtables(tables, t, str(tmp), sol, ctx, history)
    return final


def _subtables(tables, main, path: str, sol: GainSolution, ctx: CalTableContext,
               history: str) -> None:
    n_ant = sol.n_ant
    ant = tables.default_ms_subtable("ANTENNA", f"{path}/ANTENNA")
    ant.addrows(n_ant)
    ant.putcol("NAME", list(ctx.antenna_names))
    ant.putcol("STATION", list(ctx.antenna_names))
    ant.putcol("TYPE", ["GROUND-BASED"] * n_ant)
    ant.putcol("MOUNT", ["ALT-AZ"] * n_ant)
    ant.putcol("POSITION", np.asarray(ctx.antenna_positions, float))
    ant.putcol("OFFSET", np.zeros((n_ant, 3)))
    ant.putcol("DISH_DIAMETER", np.full(n_ant, ctx.dish_diameter))
    ant.putcol("FLAG_ROW", np.zeros(n_ant, bool))
    ant.close()

    fld = tables.default_ms_subtable("FIELD", f"{path}/FIELD")
    fld.addrows(1)
    fld.putcell("NAME", 0, ctx.field_name)
    fld.putcell("CODE", 0, "")
    fld.putcell("TIME", 0, float(np.mean(sol.times)))
    fld.putcell("NUM_POLY", 0, 0)
    direction = np.array([list(ctx.field_dir)], dtype=float)
    for col in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
        fld.putcell(col, 0, direction)
    fld.putcell("SOURCE_ID", 0, -1)
    fld.putcell("FLAG_ROW", 0, False)
    fld.close()

    spw = tables.default_ms_subtable("SPECTRAL_WINDOW", f"{path}/SPECTRAL_WINDOW")
    spw.addrows(1)
    freqs = np.asarray(sol.freqs, float)
    if sol.kind == "G":  # one channel covering the band
        widths = np.array([float(np.sum(ctx.spw_widths))])
    else:
        widths = np.asarray(ctx.spw_widths, float)
        if widths.shape != freqs.shape:
            raise ValueError("bandpass channels do not match the spectral window")
    spw.putcell("NUM_CHAN", 0, int(freqs.size))
    spw.putcell("NAME", 0, "SPW0")
    spw.putcell("CHAN_FREQ", 0, freqs)
    spw.putcell("CHAN_WIDTH", 0, widths)
    spw.putcell("EFFECTIVE_BW", 0, widths)
    spw.putcell("RESOLUTION", 0, widths)
    spw.putcell("TOTAL_BANDWIDTH", 0, float(np.sum(ctx.spw_widths)))
    spw.putcell("REF_FREQUENCY", 0, float(freqs[0]))
    spw.putcell("MEAS_FREQ_REF", 0, 5)
    spw.putcell("NET_SIDEBAND", 0, 1)
    spw.putcell("FREQ_GROUP", 0, 0)
    spw.putcell("FREQ_GROUP_NAME", 0, "")
    spw.putcell("IF_CONV_CHAIN", 0, 0)
    spw.putcell("FLAG_ROW", 0, False)
    spw.close()

    obs = tables.default_ms_subtable("OBSERVATION", f"{path}/OBSERVATION")
    obs.addrows(1)
    obs.putcell("TELESCOPE_NAME", 0, ctx.telescope_name)
    t0 = float(np.min(sol.times - sol.interval / 2))
    t1 = float(np.max(sol.times + sol.interval / 2))
    obs.putcell("TIME_RANGE", 0, np.array([t0, t1]))
    obs.putcell("OBSERVER", 0, WRITER)
    obs.putcell("PROJECT", 0, "DSA-110")
    obs.putcell("SCHEDULE_TYPE", 0, "")
    obs.putcell("RELEASE_DATE", 0, 0.0)
    obs.putcell("FLAG_ROW", 0, False)
    obs.close()

    hist = tables.default_ms_subtable("HISTORY", f"{path}/HISTORY")
    if history:
        hist.addrows(1)
        hist.putcell("TIME", 0, time.time() + 3506716800.0)  # unix -> MJD seconds
        hist.putcell("OBSERVATION_ID", 0, 0)
        hist.putcell("MESSAGE", 0, history)
        hist.putcell("PRIORITY", 0, "NORMAL")
        hist.putcell("ORIGIN", 0, WRITER)
        hist.putcell("OBJECT_ID", 0, 0)
        hist.putcell("APPLICATION", 0, WRITER)
        hist.putcell("CLI_COMMAND", 0, np.array([""]))
        hist.putcell("APP_PARAMS", 0, np.array([""]))
    hist.close()

    for name in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION", "HISTORY"):
        main.putkeyword(name, f"Table: {path}/{name}")


def read_caltable(path: str | Path) -> GainSolution:
    """Read a "B Jones" or "G Jones" table written by :func:`write_caltable` (or CASA, for a
    single spectral window and field). Raises InputError naming the table when it is not one."""
    from casacore import tables

    p = Path(path)
    if not (p / "table.dat").exists():
        raise InputError("not a casacore table", files=[str(p)])
    try:
        with tables.table(str(p), ack=False) as t:
            info = t.info()
            viscal = t.getkeyword("VisCal") if "VisCal" in t.keywordnames() else \
                info.get("subType", "")
            if viscal not in _KIND:
                raise InputError(f"calibration table type {viscal!r} is not B or G Jones",
                                 files=[str(p)])
            if t.getkeyword("ParType") != "Complex":
                raise InputError("calibration table parameters are not complex",
                                 files=[str(p)])
            if len(np.unique(t.getcol("SPECTRAL_WINDOW_ID"))) > 1:
                raise InputError("only single-spectral-window tables are supported",
                                 files=[str(p)])
            time_col = t.getcol("TIME")
            interval = t.getcol("INTERVAL")
            a1 = t.getcol("ANTENNA1")
            a2 = t.getcol("ANTENNA2")
            cparam = t.getcol("CPARAM")
            flag = t.getcol("FLAG")
            snr = t.getcol("SNR")
        with tables.table(str(p / "ANTENNA"), ack=False) as ta:
            n_ant = ta.nrows()
        with tables.table(str(p / "SPECTRAL_WINDOW"), ack=False) as ts:
            freqs = np.asarray(ts.getcell("CHAN_FREQ", 0), float)
    except InputError:
        raise
    except Exception as exc:  # casacore raises RuntimeError for broken tables
        raise InputError("cannot read calibration table", files=[str(p)], cause=exc) from exc
    utimes, ti = np.unique(time_col, return_inverse=True)
    n_t = len(utimes)
    n_chan, n_pol = cparam.shape[1:]
    gains = np.zeros((n_t, n_ant, n_chan, n_pol), complex)
    flags = np.ones(gains.shape, bool)
    snrs = np.zeros(gains.shape)
    gains[ti, a1] = cparam
    flags[ti, a1] = flag
    snrs[ti, a1] = snr
    intervals = np.zeros(n_t)
    intervals[ti] = interval
    refant = int(np.bincount(a2[a2 >= 0]).argmax()) if np.any(a2 >= 0) else 0
    return GainSolution(_KIND[viscal], gains, flags, snrs, utimes, intervals, freqs, refant,
                        meta={"path": str(p)})
