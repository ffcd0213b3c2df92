"""Direct Measurement Set writing with python-casacore (no concatenation step).

The orchestrating process creates the whole MS up front (:func:`create_ms`: MAIN with
every row and fixed-shape tiled DATA/FLAG(/WEIGHT_SPECTRUM) columns, plus the row
metadata and all subtables). Workers then fill disjoint regions of the data columns:
straight into the tile files (:mod:`.tiles`, no locks) when the regions are tile-aligned,
else through casacore (:class:`RegionWriter`) under its user table locks, so concurrent
writers never clobber each other. Tiles are one subband wide, so regions never share a
tile's channels.

Conventions (as pyuvdata's ``write_ms``): DATA = conj(UVH5 data), UVW = −(UVH5 uvw),
WEIGHT_SPECTRUM = nsamples (optional: left out where it would equal WEIGHT in every
channel), WEIGHT = median over channels of nsamples, SIGMA = WEIGHT^−1/2; frequencies
ascend; TIME is MJD seconds (UTC).
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables

from dsa110_pipeline import instrument

#: AIPS/pyuvdata polarization code -> CASA Stokes enum.
AIPS_TO_CASA_POL = {1: 1, 2: 2, 3: 3, 4: 4, -1: 5, -3: 6, -4: 7, -2: 8,
                    -5: 9, -7: 10, -8: 11, -6: 12}
#: CASA Stokes enum -> receptor pair indices (0 = X/R, 1 = Y/L).
_CORR_PRODUCT = {5: (0, 0), 6: (0, 1), 7: (1, 0), 8: (1, 1),
                 9: (0, 0), 10: (0, 1), 11: (1, 0), 12: (1, 1)}
#: Main-table keyword set last, when every region is written.
COMPLETE_KEYWORD = "DSA110_COMPLETE"
TELESCOPE_KEYWORD = "TELESCOPE_NAME_REAL"

_TARGET_TILE_BYTES = 4 * 1024 * 1024


def casa_pol_order(aips_pols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, casa_codes): the permutation putting polarizations in CASA order."""
    try:
        casa = np.array([AIPS_TO_CASA_POL[int(p)] for p in aips_pols])
    except KeyError as exc:
        raise ValueError(f"unsupported polarization code {exc.args[0]}") from None
    order = np.argsort(casa, kind="stable")
    return order, casa[order]


def conjugate_pol_permutation(casa_codes: np.ndarray) -> np.ndarray:
    """Index permutation of the polarization axis that conjugating a baseline implies
    (XY <-> YX, RL <-> LR)."""
    swap = {10: 11, 11: 10, 6: 7, 7: 6}
    pos = {int(c): i for i, c in enumerate(casa_codes)}
    return np.array([pos.get(swap.get(int(c), int(c)), i) for i, c in enumerate(casa_codes)])


def ms_telescope_name(name: str) -> str:
    """A telescope name CASA knows (DSA-110 -> instrument.CASA_TELESCOPE_NAME)."""
    norm = name.upper().replace("_", "-").replace(" ", "")
    if norm in {"DSA-110", "DSA110"}:
        return instrument.CASA_TELESCOPE_NAME
    return name


def jd_to_mjd_seconds(jd: np.ndarray) -> np.ndarray:
    """UTC JD -> MJD seconds as the MS stores TIME (astropy on unique values)."""
    from astropy.time import Time

    uniq, inv = np.unique(np.asarray(jd, dtype=np.float64), return_inverse=True)
    return (Time(uniq, format="jd", scale="utc").mjd * 86400.0)[inv]


def choose_tile_rows(rows_per_integration: int, bytes_per_row: int,
                     target: int = _TARGET_TILE_BYTES) -> int:
    """Rows per tile: a divisor of the rows of one integration (so chunks of whole
    integrations start on tile boundaries) near ``target`` bytes, or a multiple of it."""
    n = max(1, rows_per_integration)
    per = max(1, bytes_per_row)
    if n * per <= target:
        return n * max(1, target // (n * per))
    best = 1
    for d in range(1, int(np.sqrt(n)) + 1):
        if n % d == 0:
            for c in (d, n // d):
                if c * per <= target and c > best:
                    best = c
    return best


@dataclass(frozen=True)
class SpectralWindow:
    """One spectral window: ascending channel centres and widths (Hz)."""

    freqs: np.ndarray
    widths: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if self.freqs.ndim != 1 or self.freqs.shape != self.widths.shape:
            raise ValueError("freqs and widths must be 1-D of the same length")
        if self.freqs.size > 1 and np.any(np.diff(self.freqs) <= 0):
            raise ValueError("spectral window frequencies must ascend")


@dataclass
class MSDescription:
    """Everything :func:`create_ms` needs besides the row metadata."""

    spws: list[SpectralWindow]
    aips_pols: np.ndarray
    tile_chans: int
    tile_rows: int
    telescope_name: str
    instrument_name: str
    telescope_xyz: np.ndarray  # ECEF of the array centre, m
    antenna_numbers: np.ndarray
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray  # relative ECEF, m
    antenna_diameters: np.ndarray | None
    phase_center: tuple[float, float]  # ICRS rad
    field_name: str = "drift"
    vis_units: str = "uncalib"
    history: str = ""
    write_weight_spectrum: bool = True
    extra_keywords: dict[str, Any] = field(default_factory=dict)

    @property
    def nchan(self) -> int:
        """Channels per row (all SPWs have the same number)."""
        return int(self.spws[0].freqs.size)

    @property
    def npol(self) -> int:
        return int(self.aips_pols.size)


def _array_col(name: str, value: Any, valuetype: str, shape: list[int], group: str,
               comment: str) -> dict:
    desc = tables.makearrcoldesc(name, value, valuetype=valuetype, ndim=len(shape),
                                 shape=shape, datamanagertype="TiledColumnStMan",
                                 datamanagergroup=group, comment=comment)
    desc["desc"]["option"] = 5  # Direct | FixedShape
    return desc


def create_ms(path: str | Path, desc: MSDescription, *, time_jd: np.ndarray,
              integration_time: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
              uvw: np.ndarray) -> int:
    """Create the MS at ``path`` with all rows, row metadata and subtables.

    ``time_jd``, ``integration_time``, ``ant1``, ``ant2`` and ``uvw`` (pyuvdata
    convention, float64) describe one block of rows; with several SPWs the block is
    repeated once per SPW (SPW-major). The data columns are not written here.

    The table is closed (tiles zero-filled) for :class:`RegionWriter` processes (or the
    tile writers), and the number of rows is returned.
    """
    path = str(path)
    nblts = int(time_jd.size)
    nspw = len(desc.spws)
    nrows = nblts * nspw
    nchan, npol = desc.nchan, desc.npol
    order, casa = casa_pol_order(desc.aips_pols)

    ms_desc = tables.required_ms_desc("MAIN")
    for key in ("FLAG", "WEIGHT", "SIGMA", "FLAG_CATEGORY", "UVW"):
        ms_desc.pop(key, None)
    cols = [
        _array_col("DATA", 0j, "complex", [nchan, npol], "TiledData", "The data column"),
        _array_col("FLAG", False, "boolean", [nchan, npol], "TiledFlag", "The data flags"),
        _array_col("UVW", 0.0, "double", [3], "TiledUVW", "Vector with uvw coordinates"),
        _array_col("WEIGHT", 0.0, "float", [npol], "TiledWgt", "Weight for each polarization"),
        _array_col("SIGMA", 0.0, "float", [npol], "TiledSigma", "Estimated rms noise"),
    ]
    if desc.write_weight_spectrum:
        cols.append(_array_col("WEIGHT_SPECTRUM", 0.0, "float", [nchan, npol], "TiledWgtSpec",
                               "Weight for each data point"))
    fc = tables.makearrcoldesc("FLAG_CATEGORY", False, valuetype="boolean", ndim=3,
                               datamanagertype="StandardStMan",
                               comment="The flag category, NUM_CAT flags for each datum")
    fc["desc"]["keywords"] = {"CATEGORY": np.array(["baddata"])}
    cols.append(fc)
    extra = tables.maketabdesc(cols)
    # keep the UVW measure info of the standard description
    std = tables.required_ms_desc("MAIN")
    extra["UVW"]["keywords"] = std["UVW"]["keywords"]
    for key in ("WEIGHT", "SIGMA"):
        extra[key]["keywords"] = std[key].get("keywords", {})
    ms_desc.update(extra)
    dminfo = tables.makedminfo(ms_desc)
    tile_chans = min(desc.tile_chans, nchan)
    for spec in dminfo.values():
        if spec["TYPE"] != "TiledColumnStMan":
            continue
        col = spec["COLUMNS"][0]
        if col in ("DATA", "FLAG", "WEIGHT_SPECTRUM"):
            shape = [npol, tile_chans, desc.tile_rows]
        elif col == "UVW":
            shape = [3, 4096]
        else:
            shape = [npol, 4096]
        spec["SPEC"] = {"DEFAULTTILESHAPE": np.array(shape, dtype=np.int32),
                        "MAXIMUMCACHESIZE": 0}
    ms = tables.default_ms(path, ms_desc, dminfo)
    try:
        ms.addrows(nrows)
        t_mjd = jd_to_mjd_seconds(time_jd)

        def rep(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a] * nspw) if nspw > 1 else a

        ms.putcol("TIME", rep(t_mjd))
        ms.putcol("TIME_CENTROID", rep(t_mjd))
        ms.putcol("INTERVAL", rep(integration_time))
        ms.putcol("EXPOSURE", rep(integration_time))
        ms.putcol("ANTENNA1", rep(ant1.astype(np.int32)))
        ms.putcol("ANTENNA2", rep(ant2.astype(np.int32)))
        ms.putcol("UVW", rep(-np.asarray(uvw, dtype=np.float64)))
        ms.putcol("DATA_DESC_ID", np.repeat(np.arange(nspw, dtype=np.int32), nblts))
        ones = np.ones(nrows, dtype=np.int32)
        zeros = np.zeros(nrows, dtype=np.int32)
        ms.putcol("SCAN_NUMBER", ones)
        for col in ("FIELD_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID", "STATE_ID",
                    "FEED1", "FEED2"):
            ms.putcol(col, zeros)
        ms.putcol("FLAG_ROW", np.zeros(nrows, dtype=bool))
        ms.putcolkeyword("DATA", "QuantumUnits", np.array([desc.vis_units]))
        ms.putkeyword(TELESCOPE_KEYWORD, desc.telescope_name)
        ms.putkeyword(COMPLETE_KEYWORD, False)
        ms.putkeyword("pyuvdata_flip_conj", True)
        for k, v in desc.extra_keywords.items():
            ms.putkeyword(k, v)
        t0, t1 = float(t_mjd.min() - integration_time[0] / 2), float(
            t_mjd.max() + integration_time[-1] / 2)
        _write_subtables(ms, path, desc, casa, (t0, t1), np.unique(t_mjd),
                         float(np.median(integration_time)))
    except BaseException:
        ms.close()
        raise
    ms.close()
    return nrows


def _write_subtables(ms: tables.table, path: str, desc: MSDescription, casa: np.ndarray,
                     trange: tuple[float, float], utimes: np.ndarray, tint: float) -> None:
    tmid = 0.5 * (trange[0] + trange[1])
    ra, dec = desc.phase_center
    ms_name = ms_telescope_name(desc.telescope_name)

    # ANTENNA: row index = antenna number (as pyuvdata writes it)
    nant = int(desc.antenna_numbers.max()) + 1
    names = [""] * nant
    pos = np.zeros((nant, 3))
    diam = np.zeros(nant)
    dd = desc.antenna_diameters
    for i, num in enumerate(desc.antenna_numbers.tolist()):
        names[num] = desc.antenna_names[i] if i < len(desc.antenna_names) else str(num)
        pos[num] = desc.antenna_positions[i] + desc.telescope_xyz
        if dd is not None:
            diam[num] = dd[i]
    if dd is not None and np.unique(dd).size == 1:
        diam[:] = dd[0]
    elif dd is None and desc.telescope_name.upper().startswith("DSA"):
        diam[:] = instrument.DISH_DIAMETER
    with tables.table(f"{path}/ANTENNA", readonly=False, ack=False) as t:
        t.addrows(nant)
        t.putcol("NAME", names)
        t.putcol("STATION", names)
        t.putcol("TYPE", ["GROUND-BASED"] * nant)
        t.putcol("MOUNT", ["ALT-AZ"] * nant)
        t.putcol("POSITION", pos)
        t.putcol("OFFSET", np.zeros((nant, 3)))
        t.putcol("DISH_DIAMETER", diam)
        t.putcol("FLAG_ROW", np.zeros(nant, dtype=bool))

    with tables.table(f"{path}/SPECTRAL_WINDOW", readonly=False, ack=False) as t:
        t.addrows(len(desc.spws))
        for i, spw in enumerate(desc.spws):
            t.putcell("NUM_CHAN", i, int(spw.freqs.size))
            t.putcell("NAME", i, spw.name or f"SPW{i}")
            t.putcell("CHAN_FREQ", i, spw.freqs)
            t.putcell("CHAN_WIDTH", i, spw.widths)
            t.putcell("EFFECTIVE_BW", i, spw.widths)
            t.putcell("RESOLUTION", i, spw.widths)
            t.putcell("TOTAL_BANDWIDTH", i, float(np.sum(spw.widths)))
            t.putcell("REF_FREQUENCY", i, float(spw.freqs[0]))
            t.putcell("MEAS_FREQ_REF", i, 5)  # TOPO
            t.putcell("NET_SIDEBAND", i, 1)
            t.putcell("FREQ_GROUP", i, 0)
            t.putcell("FREQ_GROUP_NAME", i, "")
            t.putcell("IF_CONV_CHAIN", i, 0)
            t.putcell("FLAG_ROW", i, False)

    with tables.table(f"{path}/POLARIZATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("NUM_CORR", 0, int(casa.size))
        t.putcell("CORR_TYPE", 0, casa.astype(np.int32))
        prod = np.array([_CORR_PRODUCT.get(int(c), (0, 0)) for c in casa], dtype=np.int32)
        t.putcell("CORR_PRODUCT", 0, prod)
        t.putcell("FLAG_ROW", 0, False)

    with tables.table(f"{path}/DATA_DESCRIPTION", readonly=False, ack=False) as t:
        t.addrows(len(desc.spws))
        t.putcol("SPECTRAL_WINDOW_ID", np.arange(len(desc.spws), dtype=np.int32))
        t.putcol("POLARIZATION_ID", np.zeros(len(desc.spws), dtype=np.int32))
        t.putcol("FLAG_ROW", np.zeros(len(desc.spws), dtype=bool))

    direction = np.array([[ra, dec]])
    with tables.table(f"{path}/FIELD", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("NAME", 0, desc.field_name)
        t.putcell("CODE", 0, "")
        t.putcell("TIME", 0, tmid)
        t.putcell("NUM_POLY", 0, 0)
        for col in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
            t.putcell(col, 0, direction)
        t.putcell("SOURCE_ID", 0, 0)
        t.putcell("FLAG_ROW", 0, False)

    with tables.table(f"{path}/OBSERVATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("TELESCOPE_NAME", 0, ms_name)
        t.putcell("TIME_RANGE", 0, np.array(trange))
        t.putcell("OBSERVER", 0, desc.instrument_name or desc.telescope_name)
        t.putcell("PROJECT", 0, desc.telescope_name)
        t.putcell("SCHEDULE_TYPE", 0, "")
        t.putcell("RELEASE_DATE", 0, 0.0)
        t.putcell("FLAG_ROW", 0, False)
        t.putkeyword(TELESCOPE_KEYWORD, desc.telescope_name)

    linear = bool(np.any(casa >= 9))
    with tables.table(f"{path}/FEED", readonly=False, ack=False) as t:
        t.addrows(nant)
        t.putcol("ANTENNA_ID", np.arange(nant, dtype=np.int32))
        t.putcol("FEED_ID", np.zeros(nant, dtype=np.int32))
        t.putcol("SPECTRAL_WINDOW_ID", np.full(nant, -1, dtype=np.int32))
        t.putcol("TIME", np.full(nant, tmid))
        t.putcol("INTERVAL", np.full(nant, trange[1] - trange[0]))
        t.putcol("NUM_RECEPTORS", np.full(nant, 2, dtype=np.int32))
        t.putcol("BEAM_ID", np.full(nant, -1, dtype=np.int32))
        t.putcol("BEAM_OFFSET", np.zeros((nant, 2, 2)))
        t.putcol("POLARIZATION_TYPE", np.array([["X", "Y"] if linear else ["R", "L"]] * nant))
        t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (nant, 1, 1)))
        t.putcol("POSITION", np.zeros((nant, 3)))
        t.putcol("RECEPTOR_ANGLE", np.tile([0.0, np.pi / 2] if linear else [0.0, 0.0],
                                           (nant, 1)))

    with tables.table(f"{path}/STATE", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("SIG", 0, True)
        t.putcell("REF", 0, False)
        t.putcell("CAL", 0, 0.0)
        t.putcell("LOAD", 0, 0.0)
        t.putcell("SUB_SCAN", 0, 0)
        t.putcell("OBS_MODE", 0, "OBSERVE_TARGET.ON_SOURCE")
        t.putcell("FLAG_ROW", 0, False)

    src_path = f"{path}/SOURCE"
    tables.default_ms_subtable("SOURCE", src_path).close()
    ms.putkeyword("SOURCE", f"Table: {src_path}")
    with tables.table(src_path, readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("SOURCE_ID", 0, 0)
        t.putcell("TIME", 0, tmid)
        t.putcell("INTERVAL", 0, trange[1] - trange[0])
        t.putcell("SPECTRAL_WINDOW_ID", 0, -1)
        t.putcell("NUM_LINES", 0, 0)
        t.putcell("NAME", 0, desc.field_name)
        t.putcell("CALIBRATION_GROUP", 0, 0)
        t.putcell("CODE", 0, "")
        t.putcell("DIRECTION", 0, np.array([ra, dec]))
        t.putcell("PROPER_MOTION", 0, np.zeros(2))

    with tables.table(f"{path}/HISTORY", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("TIME", 0, tmid)
        t.putcell("OBSERVATION_ID", 0, 0)
        t.putcell("MESSAGE", 0, desc.history or "converted from UVH5")
        t.putcell("PRIORITY", 0, "NORMAL")
        t.putcell("ORIGIN", 0, "dsa110_pipeline.stages.conversion")
        t.putcell("OBJECT_ID", 0, 0)
        t.putcell("APPLICATION", 0, "dsa110_pipeline conversion")
        t.putcell("CLI_COMMAND", 0, np.array([""]))
        t.putcell("APP_PARAMS", 0, np.array([""]))

    # POINTING: per antenna and integration, the meridian at the phase centre's dec
    nt = utimes.size
    with tables.table(f"{path}/POINTING", readonly=False, ack=False) as t:
        t.addrows(nant * nt)
        t.putcol("ANTENNA_ID", np.tile(np.arange(nant, dtype=np.int32), nt))
        t.putcol("TIME", np.repeat(utimes, nant))
        t.putcol("INTERVAL", np.full(nant * nt, tint))
        t.putcol("NAME", [""] * (nant * nt))
        t.putcol("NUM_POLY", np.zeros(nant * nt, dtype=np.int32))
        t.putcol("TIME_ORIGIN", np.repeat(utimes, nant))
        drift = 2.0 * np.pi * 1.00273781191135448 * (utimes - tmid) / 86400.0
        dirs = np.zeros((nant * nt, 1, 2))
        dirs[:, 0, 0] = np.repeat(np.mod(ra + drift, 2 * np.pi), nant)
        dirs[:, 0, 1] = dec
        t.putcol("DIRECTION", dirs)
        t.putcol("TARGET", dirs)
        t.putcol("TRACKING", np.zeros(nant * nt, dtype=bool))


class RegionWriter:
    """Writes blocks of (DATA, FLAG, WEIGHT_SPECTRUM) into a pre-created MS.

    Several processes may hold one each: every write takes the table's write lock
    and releases (flushes) it afterwards.
    """

    def __init__(self, path: str | Path, cache_bytes: int = 16 * 2**20) -> None:
        self.path = str(path)
        self._lockfile = open(f"{self.path}.writelock", "a+b")  # noqa: SIM115
        # opening reads the table under a casacore lock too: queue on the flock first
        fcntl.flock(self._lockfile, fcntl.LOCK_EX)
        try:
            self.table = tables.table(self.path, readonly=False, ack=False,
                                      lockoptions="user")
        finally:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        self.has_weight_spectrum = "WEIGHT_SPECTRUM" in self.table.colnames()
        self.nchan = int(self.table.getcoldesc("DATA")["shape"][0])
        # writes cover whole tiles: a small tile cache keeps worker memory bounded
        for col in ("DATA", "FLAG", "WEIGHT_SPECTRUM"):
            if col in self.table.colnames():
                self.table.setmaxcachesize(col, cache_bytes)

    def write(self, row0: int, chan0: int, data: np.ndarray, flags: np.ndarray,
              weights: np.ndarray | None) -> None:
        """Write ``data``/``flags``/``weights`` (rows, chans, pols) at (row0, chan0)."""
        n, nc, npol = data.shape
        full = chan0 == 0 and nc == self.nchan
        blc, trc = [chan0, 0], [chan0 + nc - 1, npol - 1]
        # casacore polls a busy table lock once per second: queue on a blocking flock
        # first, so the table lock itself is never contended
        fcntl.flock(self._lockfile, fcntl.LOCK_EX)
        self.table.lock(write=True)
        try:
            for col, arr in (("DATA", data), ("FLAG", flags), ("WEIGHT_SPECTRUM", weights)):
                if arr is None or (col == "WEIGHT_SPECTRUM" and not self.has_weight_spectrum):
                    continue
                if full:
                    self.table.putcol(col, arr, startrow=row0, nrow=n)
                else:
                    self.table.putcolslice(col, arr, blc, trc, startrow=row0, nrow=n)
        finally:
            self.table.unlock()
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)

    def close(self) -> None:
        fcntl.flock(self._lockfile, fcntl.LOCK_EX)
        try:
            self.table.close()
        finally:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()

    def __enter__(self) -> RegionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finish_ms(path: str | Path, weight: np.ndarray, flag_row: np.ndarray) -> None:
    """Write WEIGHT, SIGMA (= WEIGHT^−1/2, 0 where WEIGHT ≤ 0) and FLAG_ROW, then mark
    the MS complete."""
    with tables.table(str(path), readonly=False, ack=False) as t:
        _put_weights(t, weight, flag_row)


def _put_weights(t: tables.table, weight: np.ndarray, flag_row: np.ndarray) -> None:
    w = np.asarray(weight, dtype=np.float32)
    sigma = np.zeros_like(w)
    np.power(w, -0.5, where=w > 0, out=sigma)
    t.putcol("WEIGHT", w)
    t.putcol("SIGMA", sigma)
    t.putcol("FLAG_ROW", np.asarray(flag_row, dtype=bool))
    t.putkeyword(COMPLETE_KEYWORD, True)


def median_weight_from_ms(path: str | Path, chunk_rows: int = 65536) -> np.ndarray:
    """Median over channels of WEIGHT_SPECTRUM, read back in row chunks."""
    with tables.table(str(path), ack=False) as t:
        n = t.nrows()
        out = np.empty((n, int(t.getcoldesc("DATA")["shape"][1])), dtype=np.float32)
        for r in range(0, n, chunk_rows):
            m = min(chunk_rows, n - r)
            out[r:r + m] = np.median(t.getcol("WEIGHT_SPECTRUM", startrow=r, nrow=m), axis=1)
    return out


def ms_is_complete(path: str | Path, expected_rows: int) -> bool:
    """True when the MS opens, has ``expected_rows`` rows and carries the completion mark."""
    try:
        with tables.table(str(path), ack=False) as t:
            return (t.nrows() == expected_rows and COMPLETE_KEYWORD in t.keywordnames()
                    and bool(t.getkeyword(COMPLETE_KEYWORD)))
    except RuntimeError:
        return False
