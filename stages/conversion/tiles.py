"""Direct writes of channel/row regions into the data file of a TiledColumnStMan column.

casacore's TiledColumnStMan keeps one hypercube per column in one file
(``table.f<SEQNR>_TSM0``): tiles ("buckets") of ``bucket_size`` bytes, numbered with the
channel-tile index fastest (``bucket = chan_tile + n_chan_tiles * row_tile``). Inside a
tile the values are in Fortran order over (pol, chan, row), i.e. C order over
(row, chan, pol), in the table's byte order; Booleans are packed 8 to a byte, first value
in the lowest bit. A row range of whole channel tiles is therefore one contiguous byte
range per tile, and processes writing disjoint tiles (or byte-aligned row ranges of one
tile) need no lock and no read-modify-write.

:func:`tile_pieces` is the pure layout kernel. :func:`describe_column` reads (and
checks) the layout of an existing column; :class:`TileWriter` writes with ``os.pwrite``.
The layout is verified against casacore's own description before it is used, and the
tests read every written column back through casacore.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TileLayout:
    """The layout of one fixed-shape (rows, chans, pols) column in its tile file."""

    path: str  # the column's data file
    nrows: int
    nchan: int
    npol: int
    tile_rows: int
    tile_chans: int
    bucket_size: int  # bytes per tile
    itemsize: int  # bytes per value; 0: Booleans stored as bits

    @property
    def chan_tiles(self) -> int:
        return -(-self.nchan // self.tile_chans)

    @property
    def row_tiles(self) -> int:
        return -(-self.nrows // self.tile_rows)

    @property
    def file_size(self) -> int:
        return self.chan_tiles * self.row_tiles * self.bucket_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileLayout:
        return cls(**d)


def _row_bits(layout: TileLayout, chans: int) -> int:
    return chans * layout.npol * (8 * layout.itemsize if layout.itemsize else 1)


def tile_pieces(layout: TileLayout, row0: int, nrows: int, chan0: int, nchan: int
                ) -> list[tuple[int, int, int, int, int]] | None:
    """Where a region of rows [row0, row0+nrows) x channels [chan0, chan0+nchan) goes.

    Returns ``(file_offset, r0, r1, c0, c1)`` per piece, the row and channel ranges
    relative to the region, or None when the region cannot be written as whole bytes:
    it must cover whole channel tiles, and for Booleans every piece must start on a byte
    and end on one (or at the end of its tile).
    """
    tc, tr = layout.tile_chans, layout.tile_rows
    if nrows <= 0 or nchan <= 0 or row0 < 0 or row0 + nrows > layout.nrows:
        return None
    if chan0 % tc or not ((chan0 + nchan) % tc == 0 or chan0 + nchan == layout.nchan):
        return None
    if chan0 + nchan > layout.nchan:
        return None
    pieces = []
    for ct in range(chan0 // tc, -(-(chan0 + nchan) // tc)):
        c0, c1 = ct * tc - chan0, min((ct + 1) * tc, layout.nchan) - chan0
        row_bits = _row_bits(layout, tc)  # tiles are full width even at the band edge
        r = row0
        while r < row0 + nrows:
            rt = r // tr
            stop = min(row0 + nrows, (rt + 1) * tr)
            start_bits = (r - rt * tr) * row_bits
            stop_bits = (stop - rt * tr) * row_bits
            ends_tile = stop == (rt + 1) * tr or stop == layout.nrows
            if start_bits % 8 or (stop_bits % 8 and not ends_tile):
                return None
            bucket = ct + layout.chan_tiles * rt
            pieces.append((bucket * layout.bucket_size + start_bits // 8, r - row0,
                           stop - row0, c0, c1))
            r = stop
    return pieces


def encode(block: np.ndarray, tile_chans: int, boolean: bool) -> np.ndarray:
    """The bytes of ``block`` (rows, chans, pols) as stored in a tile ``tile_chans`` wide
    (narrower blocks, at the band edge, are padded)."""
    if block.shape[1] != tile_chans:
        pad = np.zeros((block.shape[0], tile_chans, block.shape[2]), block.dtype)
        pad[:, :block.shape[1]] = block
        block = pad
    if boolean:
        return np.packbits(block.reshape(-1), bitorder="little")
    return np.ascontiguousarray(block).reshape(-1).view(np.uint8)


def describe_column(table: Any, column: str, ms_path: str | Path) -> TileLayout | None:
    """The tile layout of ``column`` of an open casacore ``table`` at ``ms_path``; None
    when it is not a single-hypercube TiledColumnStMan column in native byte order with
    its data file complete (then write through casacore instead)."""
    if column not in table.colnames() or table.endianformat() != sys.byteorder:
        return None
    info = table.getdminfo(column)
    cubes = info.get("SPEC", {}).get("HYPERCUBES", {})
    if info.get("TYPE") != "TiledColumnStMan" or len(cubes) != 1:
        return None
    cube = next(iter(cubes.values()))
    npol, nchan, nrows = (int(x) for x in cube["CubeShape"])
    tpol, tchan, trows = (int(x) for x in cube["TileShape"])
    vtype = table.getcoldesc(column)["valueType"]
    itemsize = {"complex": 8, "float": 4, "double": 8, "boolean": 0}.get(vtype)
    if itemsize is None or tpol != npol or nrows != table.nrows():
        return None
    layout = TileLayout(path=str(Path(ms_path) / f"table.f{int(info['SEQNR'])}_TSM0"),
                        nrows=nrows, nchan=nchan, npol=npol, tile_rows=trows,
                        tile_chans=tchan, bucket_size=int(cube["BucketSize"]),
                        itemsize=itemsize)
    per_tile = tpol * tchan * trows * itemsize if itemsize else -(-(tpol * tchan * trows) // 8)
    if per_tile != layout.bucket_size:
        return None
    try:
        if os.path.getsize(layout.path) != layout.file_size:
            return None
    except OSError:
        return None
    return layout


class TileWriter:
    """Writes (DATA, FLAG, WEIGHT_SPECTRUM) regions straight into their tile files.

    Regions of different writers must not share bytes (:func:`tile_pieces` checks the
    alignment); no table lock is taken, casacore never caches these tiles meanwhile.
    """

    def __init__(self, layouts: dict[str, TileLayout]) -> None:
        self.layouts = layouts
        self._fds = {col: os.open(lay.path, os.O_WRONLY) for col, lay in layouts.items()}

    def write(self, row0: int, chan0: int, data: np.ndarray, flags: np.ndarray,
              weights: np.ndarray | None) -> None:
        """Write ``data``/``flags``/``weights`` (rows, chans, pols) at (row0, chan0)."""
        for col, arr in (("DATA", data), ("FLAG", flags), ("WEIGHT_SPECTRUM", weights)):
            if arr is None or col not in self.layouts:
                continue
            lay = self.layouts[col]
            pieces = tile_pieces(lay, row0, arr.shape[0], chan0, arr.shape[1])
            if pieces is None:
                raise ValueError(f"region rows {row0}+{arr.shape[0]}, channels "
                                 f"{chan0}+{arr.shape[1]} is not tile-aligned in {col}")
            for offset, r0, r1, c0, c1 in pieces:
                buf = encode(arr[r0:r1, c0:c1], lay.tile_chans, lay.itemsize == 0)
                done = 0
                while done < buf.nbytes:
                    done += os.pwrite(self._fds[col], buf[done:], offset + done)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def regions_writable(layouts: dict[str, TileLayout],
                     regions: list[tuple[int, int, int, int]]) -> bool:
    """Whether every (row0, nrows, chan0, nchan) region can be written directly in every
    column (else all writers must go through casacore)."""
    return all(tile_pieces(lay, *reg) is not None for lay in layouts.values()
               for reg in regions)


__all__ = ["TileLayout", "TileWriter", "tile_pieces", "encode", "describe_column",
           "regions_writable"]
