"""Write tiny Measurement Sets with python-casacore for the imaging tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from casacore import tables


def write_test_ms(path: str | Path, *, uvw: np.ndarray, freq: np.ndarray, data: np.ndarray,
                  ant1: np.ndarray, ant2: np.ndarray, time: np.ndarray, ra: float, dec: float,
                  flag: np.ndarray | None = None, weight: float | np.ndarray = 1.0,
                  corrected: bool = True, field_name: str = "TESTFIELD",
                  enu: np.ndarray | None = None, telescope: str = "DSA-110",
                  dish_diameter: float | np.ndarray = 4.65) -> Path:
    """A single-SPW, single-field MS with XX/YY DATA (and CORRECTED_DATA) = ``data``.

    ``data`` is (nrow, nchan, 2); ``freq`` may be in any order (it is written as given).
    DSA-110 is written as conversion writes it (OVRO_MMA plus the real name in a keyword);
    another ``telescope`` goes into TELESCOPE_NAME as it is.
    """
    path = Path(path)
    nrow, nchan, npol = data.shape
    cols = [tables.makearrcoldesc("DATA", 0j, shape=[nchan, npol], valuetype="complex"),
            tables.makearrcoldesc("WEIGHT_SPECTRUM", 0.0, shape=[nchan, npol],
                                  valuetype="float")]
    if corrected:
        cols.append(tables.makearrcoldesc("CORRECTED_DATA", 0j, shape=[nchan, npol],
                                          valuetype="complex"))
    t = tables.default_ms(str(path), tables.maketabdesc(cols))
    t.addrows(nrow)
    if nrow:
        t.putcol("UVW", uvw)
        t.putcol("DATA", data)
        if corrected:
            t.putcol("CORRECTED_DATA", data)
        t.putcol("FLAG", np.zeros(data.shape, bool) if flag is None else flag)
        w = np.broadcast_to(np.asarray(weight, np.float32), data.shape)
        t.putcol("WEIGHT_SPECTRUM", w)
        t.putcol("WEIGHT", np.ascontiguousarray(w[:, 0, :]))
        t.putcol("SIGMA", np.ones((nrow, npol), np.float32))
        t.putcol("ANTENNA1", ant1.astype(np.int32))
        t.putcol("ANTENNA2", ant2.astype(np.int32))
        t.putcol("TIME", time)
        t.putcol("TIME_CENTROID", time)
        t.putcol("INTERVAL", np.full(nrow, 12.884902))
        t.putcol("EXPOSURE", np.full(nrow, 12.884902))
    t.close()
    nant = len(enu) if enu is not None else int(max(ant1.max(), ant2.max())) + 1
    with tables.table(str(path / "ANTENNA"), readonly=False, ack=False) as a:
        a.addrows(nant)
        pos = np.zeros((nant, 3)) if enu is None else enu
        # crude ECEF near the DSA-110 site (only used by external imagers)
        a.putcol("POSITION", pos + np.array([-2409150.4, -4478573.1, 3838617.3]))
        a.putcol("NAME", [f"DSA-{i + 1:03d}" for i in range(nant)])
        a.putcol("STATION", [f"DSA-{i + 1:03d}" for i in range(nant)])
        a.putcol("DISH_DIAMETER", np.broadcast_to(np.asarray(dish_diameter, float), (nant,)))
        a.putcol("TYPE", ["GROUND-BASED"] * nant)
        a.putcol("MOUNT", ["ALT-AZ"] * nant)
    with tables.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as s:
        s.addrows(1)
        width = np.full(nchan, np.abs(np.diff(freq)).min() if nchan > 1 else 1e6)
        s.putcell("CHAN_FREQ", 0, freq)
        s.putcell("CHAN_WIDTH", 0, width)
        s.putcell("EFFECTIVE_BW", 0, width)
        s.putcell("RESOLUTION", 0, width)
        s.putcell("NUM_CHAN", 0, nchan)
        s.putcell("REF_FREQUENCY", 0, float(freq[0]))
        s.putcell("TOTAL_BANDWIDTH", 0, float(width.sum()))
        s.putcell("NAME", 0, "SPW0")
        s.putcell("MEAS_FREQ_REF", 0, 5)
    with tables.table(str(path / "POLARIZATION"), readonly=False, ack=False) as p:
        p.addrows(1)
        p.putcell("CORR_TYPE", 0, np.array([9, 12], np.int32))
        p.putcell("CORR_PRODUCT", 0, np.array([[0, 1], [0, 1]], np.int32))
        p.putcell("NUM_CORR", 0, 2)
    with tables.table(str(path / "DATA_DESCRIPTION"), readonly=False, ack=False) as d:
        d.addrows(1)
        d.putcell("SPECTRAL_WINDOW_ID", 0, 0)
        d.putcell("POLARIZATION_ID", 0, 0)
    with tables.table(str(path / "FIELD"), readonly=False, ack=False) as f:
        f.addrows(1)
        for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            f.putcell(col, 0, np.array([[ra, dec]]))
        f.putcell("NAME", 0, field_name)
        f.putcell("TIME", 0, float(time[0]) if nrow else 0.0)
    with tables.table(str(path / "OBSERVATION"), readonly=False, ack=False) as o:
        o.addrows(1)
        dsa = telescope == "DSA-110"
        o.putcell("TELESCOPE_NAME", 0, "OVRO_MMA" if dsa else telescope)
        if nrow:
            o.putcell("TIME_RANGE", 0, np.array([time.min(), time.max()]))
        if dsa:
            o.putkeyword("TELESCOPE_NAME_REAL", "DSA-110")
    return path
