"""Measurement Set I/O for calibration (python-casacore), kept at the edge of the kernels.

:func:`read_ms_meta` checks the layout the calibration needs (one spectral window with
ascending frequencies, DATA/FLAG/UVW columns, one field); :func:`read_cube` reads rows
into a regular (n_time, n_bl, n_chan, n_pol) cube (missing rows flagged);
:func:`write_corrected` copies an MS and writes CORRECTED_DATA and FLAG in row chunks
(:func:`write_corrected_rows` when the caller has them already).
Every problem raises InputError naming the MS.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_pipeline.errors import InputError

STAGE = "calibration"


def _err(path: str | Path, msg: str, cause: BaseException | None = None) -> InputError:
    return InputError(msg, stage=STAGE, files=[str(path)], cause=cause)


@dataclass(frozen=True)
class MSMeta:
    """What the calibration needs to know about an MS."""

    path: str
    n_rows: int
    n_ant: int
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray      #: (n_ant, 3) ITRF m
    freqs: np.ndarray                  #: (n_chan,) Hz ascending
    widths: np.ndarray
    n_pol: int
    times: np.ndarray                  #: unique TIME values (MJD s)
    phase_dir: tuple[float, float]     #: ICRS (ra, dec) rad
    field_name: str
    telescope_name: str
    #: CASA Stokes enum of each correlation (POLARIZATION CORR_TYPE): XX=9 ... YY=12
    corr_types: tuple[int, ...] = ()


@dataclass
class VisCube:
    """Visibilities of an MS on a regular grid. ``uvw`` is (n_time, n_bl, 3) m."""

    vis: np.ndarray
    flags: np.ndarray
    uvw: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    times: np.ndarray
    row_time: np.ndarray | None = None   #: time index of each MS row
    row_bl: np.ndarray | None = None     #: baseline index of each MS row


def read_ms_meta(path: str | Path) -> MSMeta:
    """Read and check the metadata of an MS; raises InputError naming it."""
    from casacore import tables

    p = Path(path)
    if not (p / "table.dat").exists():
        raise _err(p, "not a Measurement Set (no table.dat)")
    try:
        with tables.table(str(p), ack=False) as t:
            cols = set(t.colnames())
            for c in ("DATA", "FLAG", "UVW", "TIME", "ANTENNA1", "ANTENNA2"):
                if c not in cols:
                    raise _err(p, f"MS has no {c} column")
            n_rows = t.nrows()
            if n_rows == 0:
                raise _err(p, "MS has no rows")
            ddid = np.unique(t.getcol("DATA_DESC_ID"))
            if len(ddid) != 1:
                raise _err(p, f"MS has {len(ddid)} spectral windows; calibration needs one "
                              "(convert with spw_per_subband=False)")
            times = np.unique(t.getcol("TIME"))
            uvw_type = t.getcoldesc("UVW").get("valueType", "double")
            if uvw_type != "double":
                raise _err(p, f"UVW column is {uvw_type}, not double")
            telescope = t.getkeyword("TELESCOPE_NAME_REAL") if "TELESCOPE_NAME_REAL" in \
                t.keywordnames() else ""
        with tables.table(str(p / "ANTENNA"), ack=False) as ta:
            names = tuple(ta.getcol("NAME"))
            pos = np.asarray(ta.getcol("POSITION"), float)
        with tables.table(str(p / "SPECTRAL_WINDOW"), ack=False) as ts:
            freqs = np.asarray(ts.getcell("CHAN_FREQ", int(ddid[0])), float)
            widths = np.asarray(ts.getcell("CHAN_WIDTH", int(ddid[0])), float)
        with tables.table(str(p / "POLARIZATION"), ack=False) as tp:
            n_pol = int(tp.getcell("NUM_CORR", 0))
            corr_types = tuple(int(c) for c in tp.getcell("CORR_TYPE", 0)) \
                if "CORR_TYPE" in tp.colnames() else ()
        with tables.table(str(p / "FIELD"), ack=False) as tf:
            if tf.nrows() < 1:
                raise _err(p, "MS has no FIELD row")
            pd = np.asarray(tf.getcell("PHASE_DIR", 0), float).reshape(-1, 2)[0]
            field_name = str(tf.getcell("NAME", 0))
    except InputError:
        raise
    except Exception as exc:  # casacore raises RuntimeError on broken tables
        raise _err(p, "cannot read the Measurement Set", exc) from exc
    if freqs.size > 1 and np.any(np.diff(freqs) <= 0):
        raise _err(p, "spectral window frequencies do not ascend")
    return MSMeta(path=str(p), n_rows=n_rows, n_ant=len(names), antenna_names=names,
                  antenna_positions=pos, freqs=freqs, widths=widths, n_pol=n_pol,
                  times=times, phase_dir=(float(pd[0]) % (2 * np.pi), float(pd[1])),
                  field_name=field_name, telescope_name=telescope, corr_types=corr_types)


#: CASA Stokes enum: names of the correlations, and the parallel hands among them
CORR_NAMES = {1: "I", 2: "Q", 3: "U", 4: "V", 5: "RR", 6: "RL", 7: "LR", 8: "LL", 9: "XX",
              10: "XY", 11: "YX", 12: "YY"}
_PARALLEL = {1, 5, 8, 9, 12}
_CROSS = {6, 7, 10, 11}


def correlation_names(meta: MSMeta) -> tuple[str, ...]:
    """The names of the MS's correlations (``?`` for an unknown CORR_TYPE)."""
    return tuple(CORR_NAMES.get(c, "?") for c in meta.corr_types)


def split_hands(meta: MSMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(parallel, cross) correlation indices of the MS: the gains are solved and applied on
    the parallel hands (XX, YY or RR, LL) only. Without CORR_TYPE, one or two correlations
    are taken as parallel hands and four as XX, XY, YX, YY. Any other layout (Stokes Q/U/V,
    a cross hand without both parallel hands) is an InputError naming the MS."""
    types = meta.corr_types
    if not types:
        if meta.n_pol in (1, 2):
            return tuple(range(meta.n_pol)), ()
        if meta.n_pol == 4:
            return (0, 3), (1, 2)
        raise _err(meta.path, f"MS has {meta.n_pol} correlations and no CORR_TYPE")
    par = tuple(i for i, c in enumerate(types) if c in _PARALLEL)
    cross = tuple(i for i, c in enumerate(types) if c in _CROSS)
    names = ", ".join(CORR_NAMES.get(c, str(c)) for c in types)
    if len(par) + len(cross) != len(types) or not par or len(par) > 2 \
            or (cross and len(par) != 2):
        raise _err(meta.path, f"correlations ({names}) are not parallel hands (XX, YY or RR, "
                              "LL) with or without their cross hands: calibration cannot "
                              "solve them")
    return par, cross


def row_index(time: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, times: np.ndarray,
              n_ant: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(time index, baseline index) of each row, and the baselines' ant1/ant2."""
    ti = np.searchsorted(times, time)
    key = ant1.astype(np.int64) * n_ant + ant2
    ukey, bi = np.unique(key, return_inverse=True)
    return ti, bi, (ukey // n_ant).astype(np.int32), (ukey % n_ant).astype(np.int32)


def regular_rows(ti: np.ndarray, bi: np.ndarray, n_bl: int) -> bool:
    """Whether row r holds (time r // n_bl, baseline r % n_bl): the cube is then the
    column itself, and reads and writes need no reordering."""
    r = np.arange(len(ti))
    return bool(len(ti) % n_bl == 0 and np.array_equal(ti, r // n_bl)
                and np.array_equal(bi, r % n_bl))


def read_cube(meta: MSMeta, column: str = "DATA", chunk_rows: int = 20_000,
              dtype: type = np.complex64) -> VisCube:
    """Read an MS column (with FLAG and UVW) into a (n_time, n_bl, n_chan, n_pol) cube.

    When the rows are time-major with the baselines in one order (as the conversion
    writes them) the columns are read straight into the cube, in chunks of whole
    integrations; otherwise row chunks are scattered into it (missing rows flagged)."""
    from casacore import tables

    p = meta.path
    with tables.table(p, ack=False) as t:
        if column not in t.colnames():
            raise _err(p, f"MS has no {column} column")
        time = t.getcol("TIME")
        a1 = t.getcol("ANTENNA1")
        a2 = t.getcol("ANTENNA2")
        ti, bi, b1, b2 = row_index(time, a1, a2, meta.times, meta.n_ant)
        nt, nb, nc, npol = len(meta.times), len(b1), meta.freqs.size, meta.n_pol
        shape = t.getcolshapestring(column, startrow=0, nrow=1)[0]
        if tuple(int(x) for x in shape.strip("[]").split(",")) != (nc, npol):
            raise _err(p, f"{column} cells have shape {shape}, expected ({nc}, {npol})")
        if regular_rows(ti, bi, nb) and np.dtype(dtype) == np.complex64:
            vis = np.empty((nt, nb, nc, npol), dtype)
            flags = np.empty((nt, nb, nc, npol), bool)
            uvw = np.empty((nt, nb, 3))
            step = max(1, chunk_rows // nb) * nb
            for start in range(0, meta.n_rows, step):
                n = min(step, meta.n_rows - start)
                sl = slice(start // nb, (start + n) // nb)
                t.getcolnp(column, vis[sl].reshape(n, nc, npol), startrow=start, nrow=n)
                t.getcolnp("FLAG", flags[sl].reshape(n, nc, npol), startrow=start, nrow=n)
            t.getcolnp("UVW", uvw.reshape(-1, 3))
        else:
            vis = np.zeros((nt, nb, nc, npol), dtype)
            flags = np.ones((nt, nb, nc, npol), bool)
            uvw = np.zeros((nt, nb, 3))
            for start in range(0, meta.n_rows, chunk_rows):
                n = min(chunk_rows, meta.n_rows - start)
                sl = slice(start, start + n)
                vis[ti[sl], bi[sl]] = t.getcol(column, startrow=start, nrow=n)
                flags[ti[sl], bi[sl]] = t.getcol("FLAG", startrow=start, nrow=n)
                uvw[ti[sl], bi[sl]] = t.getcol("UVW", startrow=start, nrow=n)
        if "FLAG_ROW" in t.colnames():
            fr = t.getcol("FLAG_ROW")
            if fr.any():
                flags[ti[fr], bi[fr]] = True
    return VisCube(vis=vis, flags=flags, uvw=uvw, ant1=b1, ant2=b2, times=meta.times,
                   row_time=ti, row_bl=bi)


def copy_ms(src: str | Path, dst: str | Path) -> None:
    """Copy the MS ``src`` to ``dst`` as files (sendfile: no Python, no GIL held)."""
    shutil.copytree(Path(src), Path(dst))


def add_corrected_column(t) -> None:
    """Add a CORRECTED_DATA column laid out as DATA to the open, writable table ``t``.

    Fill it before ``t`` closes: closing it empty writes the whole column as zeros (and
    python-casacore holds the GIL meanwhile), which the fill then writes again.
    """
    from casacore import tables

    if "CORRECTED_DATA" in t.colnames():
        return
    desc = t.getcoldesc("DATA")
    desc["comment"] = "The calibrated data column"
    dminfo = t.getdminfo("DATA")
    dminfo["NAME"] = "TiledCorrected"
    spec = dminfo.get("SPEC", {})
    if "HYPERCUBES" in spec:
        spec.pop("HYPERCUBES")
    t.addcols(tables.maketabdesc(tables.makecoldesc("CORRECTED_DATA", desc)), dminfo)


def write_corrected_rows(dst: str | Path,
                         chunks: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Write (start row, CORRECTED_DATA rows, FLAG rows) chunks into the MS ``dst`` (a copy
    made by :func:`copy_ms`; the column is added here)."""
    from casacore import tables

    with tables.table(str(dst), readonly=False, ack=False) as t:
        add_corrected_column(t)
        for start, corr, flag in chunks:
            t.putcol("CORRECTED_DATA", corr, startrow=start, nrow=len(corr))
            t.putcol("FLAG", flag, startrow=start, nrow=len(flag))


def write_corrected(src: str | Path, dst: str | Path,
                    correct: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                       np.ndarray], tuple[np.ndarray, np.ndarray]],
                    *, extra_flags: Callable[[np.ndarray, np.ndarray, np.ndarray],
                                             np.ndarray] | None = None,
                    chunk_rows: int = 20_000) -> Path:
    """Copy ``src`` to ``dst`` (a finished path the caller makes atomic) and write
    CORRECTED_DATA and FLAG there in row chunks.

    ``correct(data, flags, time, ant1, ant2) -> (corrected, flags)`` works on one chunk;
    ``extra_flags(time, ant1, ant2) -> flags`` (optional) adds flags (e.g. RFI) per chunk.
    The input MS is never modified.
    """
    from casacore import tables

    src, dst = Path(src), Path(dst)
    copy_ms(src, dst)
    with tables.table(str(dst), readonly=False, ack=False) as t:
        add_corrected_column(t)
        for start in range(0, t.nrows(), chunk_rows):
            n = min(chunk_rows, t.nrows() - start)
            data = t.getcol("DATA", startrow=start, nrow=n)
            flag = t.getcol("FLAG", startrow=start, nrow=n)
            time = t.getcol("TIME", startrow=start, nrow=n)
            a1 = t.getcol("ANTENNA1", startrow=start, nrow=n)
            a2 = t.getcol("ANTENNA2", startrow=start, nrow=n)
            if extra_flags is not None:
                flag = flag | extra_flags(time, a1, a2)
            corr, flag = correct(data, flag, time, a1, a2)
            t.putcol("CORRECTED_DATA", corr.astype(data.dtype), startrow=start, nrow=n)
            t.putcol("FLAG", flag, startrow=start, nrow=n)
    return dst
