"""Direct tile writes against casacore's own reading of TiledColumnStMan columns, and
the one-pass flags/weights kernel against plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from stages.conversion import weights
from stages.conversion.tiles import TileLayout, TileWriter, describe_column, tile_pieces

COLS = (("DATA", 0j, "complex", np.complex64), ("FLAG", False, "boolean", np.bool_),
        ("WEIGHT_SPECTRUM", 0.0, "float", np.float32))


def _make_table(path: Path, nrow: int, nchan: int, npol: int, tile: tuple[int, int, int]
                ) -> None:
    cols = []
    for name, value, vtype, _ in COLS:
        d = tables.makearrcoldesc(name, value, valuetype=vtype, ndim=2, shape=[nchan, npol],
                                  datamanagertype="TiledColumnStMan",
                                  datamanagergroup="T" + name)
        d["desc"]["option"] = 5
        cols.append(d)
    td = tables.maketabdesc(cols)
    dm = tables.makedminfo(td)
    for spec in dm.values():
        spec["SPEC"] = {"DEFAULTTILESHAPE": np.array(tile, np.int32)}
    tables.table(str(path), td, nrow=nrow, dminfo=dm, ack=False).close()  # zero-filled


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    if dtype is np.complex64:
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    return rng.random(shape).astype(dtype)


# (nrow, nchan, npol, tile (pol, chan, row), chunk rows, channels per writer)
CASES = [
    (10, 6, 2, (2, 3, 4), 4, 3),      # partial last row tile
    (24, 8, 4, (4, 4, 6), 5, 4),      # chunks straddle row tiles
    (30, 10, 2, (2, 4, 8), 8, 4),     # narrow last channel tile (10 = 4 + 4 + 2)
    (12, 4, 2, (2, 4, 12), 3, 4),     # one tile, row ranges inside it (bits byte-aligned)
]


@pytest.mark.parametrize("nrow,nchan,npol,tile,step,width", CASES)
def test_tile_writer_equals_casacore(tmp_path, nrow, nchan, npol, tile, step, width) -> None:
    ms = tmp_path / "t.tab"
    _make_table(ms, nrow, nchan, npol, tile)
    with tables.table(str(ms), ack=False) as t:
        layouts = {c: describe_column(t, c, ms) for c, *_ in COLS}
    assert all(isinstance(v, TileLayout) for v in layouts.values())
    rng = np.random.default_rng(nrow)
    truth = {c: _random(rng, (nrow, nchan, npol), dt) for c, _, _, dt in COLS}
    with TileWriter(layouts) as w:  # writers of disjoint regions, in any order
        regions = [(r, c) for c in range(0, nchan, width) for r in range(0, nrow, step)]
        for r, c in reversed(regions):
            sl = (slice(r, r + step), slice(c, c + width))
            w.write(r, c, truth["DATA"][sl], truth["FLAG"][sl], truth["WEIGHT_SPECTRUM"][sl])
    with tables.table(str(ms), ack=False) as t:
        for c, *_ in COLS:
            np.testing.assert_array_equal(t.getcol(c), truth[c], err_msg=c)


def test_tile_pieces_refuses_unaligned_regions() -> None:
    lay = TileLayout(path="x", nrows=20, nchan=8, npol=1, tile_rows=10, tile_chans=4,
                     bucket_size=5, itemsize=0)  # Booleans: 4 bits per row
    assert tile_pieces(lay, 0, 4, 0, 4) is not None  # 16 bits
    assert tile_pieces(lay, 1, 4, 0, 4) is None  # starts mid-byte
    assert tile_pieces(lay, 0, 3, 0, 4) is None  # ends mid-byte inside the tile
    assert tile_pieces(lay, 6, 4, 0, 4) is not None  # ends mid-byte at the tile end
    assert tile_pieces(lay, 0, 4, 2, 4) is None  # not whole channel tiles
    assert tile_pieces(lay, 18, 4, 0, 4) is None  # beyond the last row
    assert tile_pieces(lay, 8, 4, 4, 4) == [(1 * 5 + 4, 0, 2, 0, 4), (3 * 5, 2, 4, 0, 4)]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("uniform", [False, True])
def test_flags_and_weights_matches_numpy(flip, uniform) -> None:
    rng = np.random.default_rng(7)
    flags = rng.random((9, 6, 2)) < 0.3
    flags[4] = True
    ns = (np.repeat(rng.integers(1, 5, (9, 1, 2)), 6, axis=1) if uniform
          else rng.integers(1, 5, (9, 6, 2))).astype(np.float32)
    fo, wo, row_w, all_f, uni = weights.flags_and_weights(flags, ns, flip=flip)
    order = slice(None, None, -1) if flip else slice(None)
    np.testing.assert_array_equal(fo, flags[:, order])
    np.testing.assert_array_equal(wo, ns[:, order])
    np.testing.assert_array_equal(row_w, np.median(ns, axis=1))
    np.testing.assert_array_equal(all_f, flags.reshape(9, -1).all(axis=1))
    assert uni is uniform and all_f[4]
    _, none, _, _, _ = weights.flags_and_weights(flags, ns, flip=flip, want_weights=False)
    assert none is None
