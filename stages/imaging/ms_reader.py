"""Read a Measurement Set for imaging, chunk by chunk, with python-casacore.

:func:`read_ms_info` reads only metadata (and checks the MS is usable) so that every bad
input is caught before heavy work. :class:`MSChunkSource` is a re-iterable source of
Stokes-I :class:`~stages.imaging.imager.VisChunk` rows: each pass reads the MS again in row
chunks, so the whole MS is never held in memory; :meth:`MSChunkSource.load` reads it once
into memory when it fits. Frequencies come out ascending whatever their order in the MS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_pipeline.errors import InputError

from .polarization import stokes_i
from .vis_chunk import VisChunk

_TELESCOPE_KEYWORD = "TELESCOPE_NAME_REAL"


@dataclass(frozen=True)
class MSInfo:
    """What the imager needs to know about a Measurement Set."""

    path: str
    column: str
    nrow: int
    #: channel frequencies (Hz) of each spectral window, in MS order
    spw_freqs: tuple[np.ndarray, ...]
    #: spectral window of each DATA_DESC_ID
    ddid_spw: tuple[int, ...]
    corr_types: tuple[int, ...]
    ra: float
    dec: float
    radesys: str
    field_name: str
    telescope: str
    time_start: float  # MJD seconds
    time_end: float
    has_weight_spectrum: bool

    @property
    def nchan_total(self) -> int:
        return int(sum(len(f) for f in self.spw_freqs))

    @property
    def freqs(self) -> np.ndarray:
        """All channel frequencies, ascending."""
        return np.sort(np.concatenate(self.spw_freqs))

    @property
    def nvis(self) -> int:
        """Rows x channels (upper bound when several spectral windows share the rows)."""
        per_row = max(len(f) for f in self.spw_freqs)
        return self.nrow * per_row


def _tables():
    from casacore import tables

    return tables


def read_ms_info(path: str | Path, column: str = "CORRECTED_DATA") -> MSInfo:
    """Metadata of ``path``; raises InputError for a missing, empty or unusable MS."""
    tables = _tables()
    p = Path(path)
    if not p.is_dir() or not (p / "table.dat").exists():
        raise InputError("not a Measurement Set (no table.dat)", files=[str(p)])
    try:
        with tables.table(str(p), ack=False) as t:
            nrow = t.nrows()
            cols = set(t.colnames())
            if column not in cols:
                have = ", ".join(c for c in ("DATA", "CORRECTED_DATA", "MODEL_DATA") if c in cols)
                raise InputError(f"column {column} is absent (present: {have or 'none'})",
                                 files=[str(p)])
            has_ws = "WEIGHT_SPECTRUM" in cols and (nrow == 0 or t.iscelldefined(
                "WEIGHT_SPECTRUM", 0))
            if nrow == 0:
                raise InputError("the Measurement Set has no rows", files=[str(p)])
            times = t.getcol("TIME", startrow=0, nrow=1), t.getcol("TIME", startrow=nrow - 1,
                                                                 nrow=1)
            field_ids = np.unique(t.getcol("FIELD_ID"))
        with tables.table(str(p / "SPECTRAL_WINDOW"), ack=False) as t:
            spw_freqs = tuple(np.asarray(t.getcell("CHAN_FREQ", i), dtype=np.float64)
                              for i in range(t.nrows()))
        with tables.table(str(p / "DATA_DESCRIPTION"), ack=False) as t:
            ddid_spw = tuple(int(x) for x in t.getcol("SPECTRAL_WINDOW_ID"))
        with tables.table(str(p / "POLARIZATION"), ack=False) as t:
            corr = tuple(int(x) for x in t.getcell("CORR_TYPE", 0))
        with tables.table(str(p / "FIELD"), ack=False) as t:
            if len(field_ids) > 1:
                dirs = np.array([t.getcell("PHASE_DIR", int(f))[0] for f in field_ids])
                if np.ptp(dirs, axis=0).max() > 1e-9:
                    raise InputError(f"{len(field_ids)} fields with different phase centres: "
                                     "rephase to one centre before imaging", files=[str(p)])
            f0 = int(field_ids[0])
            ra, dec = (float(x) for x in t.getcell("PHASE_DIR", f0)[0])
            name = str(t.getcell("NAME", f0))
            kw = t.getcolkeywords("PHASE_DIR")
            ref = str(kw.get("MEASINFO", {}).get("Ref", "J2000"))
        telescope = ""
        if (p / "OBSERVATION").exists():
            with tables.table(str(p / "OBSERVATION"), ack=False) as t:
                if t.nrows():
                    telescope = str(t.getcell("TELESCOPE_NAME", 0))
                if _TELESCOPE_KEYWORD in t.keywordnames():
                    telescope = str(t.getkeyword(_TELESCOPE_KEYWORD))
    except InputError:
        raise
    except Exception as exc:  # casacore raises RuntimeError for damaged tables
        raise InputError("cannot read the Measurement Set", files=[str(p)], cause=exc) from exc
    if not spw_freqs or any(len(f) == 0 for f in spw_freqs):
        raise InputError("SPECTRAL_WINDOW has no channels", files=[str(p)])
    radesys = {"J2000": "FK5", "ICRS": "ICRS"}.get(ref.upper(), "FK5")
    return MSInfo(path=str(p), column=column, nrow=nrow, spw_freqs=spw_freqs, ddid_spw=ddid_spw,
                  corr_types=corr, ra=ra % (2 * np.pi), dec=dec, radesys=radesys,
                  field_name=name, telescope=telescope, time_start=float(times[0][0]),
                  time_end=float(times[1][0]), has_weight_spectrum=bool(has_ws))


def _ddid_tables(t, ddids: np.ndarray):
    """(ddid, table-like) pairs: the table itself for one DDID, selections otherwise."""
    if len(ddids) == 1:
        yield int(ddids[0]), t, False
        return
    for d in ddids:
        yield int(d), t.query(f"DATA_DESC_ID=={int(d)}"), True


class MSChunkSource:
    """Re-iterable Stokes-I chunks of an MS (reads the MS on every pass).

    ``rows_per_chunk`` bounds memory: one chunk holds about rows x channels x 30 bytes.
    Autocorrelations, flagged rows and flagged or zero-weight channels are masked.
    """

    def __init__(self, info: MSInfo, rows_per_chunk: int = 20_000) -> None:
        if rows_per_chunk < 1:
            raise ValueError("rows_per_chunk must be >= 1")
        self.info = info
        self.rows_per_chunk = int(rows_per_chunk)

    def _spectral_windows(self, t):
        """(table-like, freq, order, ascending) per DATA_DESC_ID present in the MS."""
        info = self.info
        ddids = np.unique(t.getcol("DATA_DESC_ID"))
        for ddid, sub, is_query in _ddid_tables(t, ddids):
            try:
                freq = info.spw_freqs[info.ddid_spw[ddid]]
                order = np.argsort(freq, kind="stable")
                ascending = bool(np.all(order == np.arange(len(freq))))
                yield sub, freq, order, ascending
            finally:
                if is_query:
                    sub.close()

    def __iter__(self) -> Iterator[VisChunk]:
        tables = _tables()
        with tables.table(self.info.path, ack=False) as t:
            for sub, freq, order, ascending in self._spectral_windows(t):
                n = sub.nrows()
                for r0 in range(0, n, self.rows_per_chunk):
                    m = min(self.rows_per_chunk, n - r0)
                    yield self._read(sub, r0, m, freq, order, ascending)

    def _read_rows(self, t, r0: int, m: int, bufs: _ReadBuffers | None = None
                   ) -> tuple[np.ndarray, ...]:
        """(data, flag, weight, unusable row, uvw, time) of rows r0..r0+m; ``bufs`` (at
        least ``m`` rows) receive DATA and FLAG without new allocations."""
        info = self.info
        if bufs is not None:
            data, flag = bufs.data[:m], bufs.flag[:m]
            t.getcolnp(info.column, data, startrow=r0, nrow=m)
            t.getcolnp("FLAG", flag, startrow=r0, nrow=m)
        else:
            data = t.getcol(info.column, startrow=r0, nrow=m)
            flag = t.getcol("FLAG", startrow=r0, nrow=m)
        if info.has_weight_spectrum:
            weight = t.getcol("WEIGHT_SPECTRUM", startrow=r0, nrow=m)
        else:
            w = t.getcol("WEIGHT", startrow=r0, nrow=m)
            weight = np.broadcast_to(w[:, None, :], data.shape)
        bad_row = t.getcol("FLAG_ROW", startrow=r0, nrow=m) | (
            t.getcol("ANTENNA1", startrow=r0, nrow=m) == t.getcol("ANTENNA2", startrow=r0,
                                                                 nrow=m))
        uvw = t.getcol("UVW", startrow=r0, nrow=m).astype(np.float64)
        time = t.getcol("TIME", startrow=r0, nrow=m).astype(np.float64)
        return data, flag, weight, bad_row, uvw, time

    def _read(self, t, r0: int, m: int, freq: np.ndarray, order: np.ndarray,
              ascending: bool) -> VisChunk:
        """Rows r0..r0+m as a chunk."""
        data, flag, weight, bad_row, uvw, time = self._read_rows(t, r0, m)
        vis, wgt, mask = stokes_i(data, flag, weight, self.info.corr_types)
        mask[bad_row] = 0
        if not ascending:
            vis, wgt, mask = (np.ascontiguousarray(a[:, order]) for a in (vis, wgt, mask))
            freq = freq[order]
        return VisChunk(uvw=uvw, freq=np.ascontiguousarray(freq), vis=vis, weight=wgt,
                        mask=mask, time=time)

    def load(self, read_rows: int = 4096, w_order: bool = True) -> list[VisChunk]:
        """All rows in memory, one chunk per spectral window (for data that fit).

        Rows are read about ``read_rows`` at a time (rounded to whole tiles of the data
        column: a read that splits a tile makes casacore assemble it twice) into reused
        buffers, so the transient memory of the casacore reads and the Stokes-I conversion
        stays small. With ``w_order`` the rows of a chunk are sorted by w (Stokes I is
        scattered straight into its sorted row): a block of consecutive rows then spans a
        narrow w range, and ducc0 grids it with few w planes, so major cycles can predict
        in small row blocks (little memory) at almost no extra cost.
        """
        tables = _tables()
        out = []
        with tables.table(self.info.path, ack=False) as t:
            for sub, freq, order, ascending in self._spectral_windows(t):
                n, nchan = sub.nrows(), len(freq)
                dest = None
                if w_order:
                    dest = np.empty(n, np.int64)
                    dest[np.argsort(sub.getcol("UVW")[:, 2], kind="stable")] = np.arange(n)
                uvw = np.empty((n, 3))
                time = np.empty(n)
                vis = np.empty((n, nchan), np.complex64)
                wgt = np.empty((n, nchan), np.float32)
                mask = np.empty((n, nchan), np.uint8)
                step = _aligned_rows(sub, self.info.column, read_rows)
                bufs = _ReadBuffers.for_column(sub, self.info.column, min(step, n))
                for r0 in range(0, n, step):
                    m = min(step, n - r0)
                    rows = np.arange(r0, r0 + m) if dest is None else dest[r0:r0 + m]
                    data, flag, weight, bad_row, uvw[rows], time[rows] = \
                        self._read_rows(sub, r0, m, bufs)
                    if ascending:  # Stokes I straight into its rows of the chunk
                        stokes_i(data, flag, weight, self.info.corr_types,
                                 out=(vis, wgt, mask), rows=rows)
                    else:
                        v, w_, k = stokes_i(data, flag, weight, self.info.corr_types)
                        vis[rows], wgt[rows], mask[rows] = v[:, order], w_[:, order], k[:, order]
                    mask[rows[bad_row]] = 0
                out.append(VisChunk(uvw=uvw, freq=np.ascontiguousarray(np.sort(freq)),
                                    vis=vis, weight=wgt, mask=mask, time=time))
        return out


@dataclass
class _ReadBuffers:
    """Reused destinations of the DATA-like column and FLAG reads (rows, chan, corr)."""

    data: np.ndarray
    flag: np.ndarray

    @classmethod
    def for_column(cls, t, column: str, rows: int) -> _ReadBuffers | None:
        """Buffers for ``rows`` rows of a fixed-shape complex column, else None."""
        try:
            shape = tuple(int(x) for x in t.getcell(column, 0).shape)
            vt = t.getcoldesc(column).get("valueType", "")
        except Exception:  # variable shapes or an empty table: plain reads
            return None
        dtype = {"complex": np.complex64, "dcomplex": np.complex128}.get(vt)
        if dtype is None or len(shape) != 2:
            return None
        return cls(np.empty((rows, *shape), dtype), np.empty((rows, *shape), bool))


def _aligned_rows(t, column: str, want: int) -> int:
    """About ``want`` rows, rounded to whole row tiles of ``column`` when it is tiled."""
    try:
        spec = t.getdminfo(column).get("SPEC", {})
        tile = int(np.asarray(spec.get("DEFAULTTILESHAPE"))[-1])
    except Exception:
        return want
    if tile <= 0:
        return want
    return max(1, round(want / tile)) * tile


def scan_usable(info: MSInfo, rows_per_chunk: int = 50_000) -> tuple[int, float]:
    """(number of usable visibilities seen, max |uv| in metres) from FLAG/UVW only.

    Stops reading flags once usable data are found; UVW is read in full (small).
    """
    tables = _tables()
    usable = 0
    uvmax = 0.0
    with tables.table(info.path, ack=False) as t:
        n = t.nrows()
        for r0 in range(0, n, rows_per_chunk):
            m = min(rows_per_chunk, n - r0)
            uvw = t.getcol("UVW", startrow=r0, nrow=m)
            a1 = t.getcol("ANTENNA1", startrow=r0, nrow=m)
            a2 = t.getcol("ANTENNA2", startrow=r0, nrow=m)
            cross = (a1 != a2) & ~t.getcol("FLAG_ROW", startrow=r0, nrow=m)
            if cross.any():
                uvmax = max(uvmax, float(np.hypot(uvw[cross, 0], uvw[cross, 1]).max()))
            if usable == 0 and cross.any():
                flag = t.getcol("FLAG", startrow=r0, nrow=m)
                usable = int(np.count_nonzero(~flag[cross]))
    return usable, uvmax
