"""Where a subband worker's processed rows go: its region of the pre-created MS once the
MS is ready (:class:`LazyRegionSink`: straight into the tile files when aligned, else
through casacore), and the ready marker that says so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dsa110_pipeline import staging
from dsa110_pipeline.atomic import write_text_atomic
from dsa110_pipeline.errors import InputError

from . import ms_writer, tiles
from .reader import STAGE


def mark_ready(ready_path: str | Path, layouts: dict[str, tiles.TileLayout] | None) -> None:
    """Tell the workers the MS exists, and how to write it: straight into the tile files
    (``layouts``) or through casacore (None)."""
    write_text_atomic(ready_path, json.dumps(
        {"layouts": None if layouts is None else
         {c: lay.to_dict() for c, lay in layouts.items()}}))


def open_region_writer(ms_path: str | Path, ready_path: str | Path | None
                       ) -> ms_writer.RegionWriter | tiles.TileWriter:
    """The writer :func:`mark_ready` chose for the pre-created MS."""
    layouts = None
    if ready_path is not None:
        with open(ready_path) as fh:
            layouts = json.load(fh).get("layouts")
    if layouts:
        return tiles.TileWriter({c: tiles.TileLayout.from_dict(d) for c, d in layouts.items()})
    return ms_writer.RegionWriter(ms_path)


def tile_layouts(ms_path: Path, regions: list[tuple[int, int, int, int]]
                  ) -> dict[str, tiles.TileLayout] | None:
    """Layouts of the data columns when every region can be written straight into the
    tile files, else None (all writers then go through casacore's table locks)."""
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as t:
        cols = [c for c in ("DATA", "FLAG", "WEIGHT_SPECTRUM") if c in t.colnames()]
        layouts = {c: tiles.describe_column(t, c, ms_path) for c in cols}
    if any(lay is None for lay in layouts.values()):
        return None
    ok = {c: lay for c, lay in layouts.items() if lay is not None}
    return ok if tiles.regions_writable(ok, regions) else None


class LazyRegionSink:
    """Direct mode: writes into the pre-created MS, but while the orchestrator is still
    creating it (``ready_path`` absent) keeps up to ``limit`` bytes of processed chunks
    in memory, so reading and phasing overlap the MS creation."""

    def __init__(self, ms_path: str, ready_path: str | None, limit: int,
                 timeout_s: float = 900.0) -> None:
        self.ms_path, self.ready_path, self.limit = ms_path, ready_path, limit
        self.timeout_s = timeout_s
        self.writer: ms_writer.RegionWriter | tiles.TileWriter | None = None
        self.pending: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.held = 0

    def _ready(self) -> bool:
        return self.ready_path is None or os.path.exists(self.ready_path)

    def _wait_ready(self) -> None:
        import time

        t0 = last_check = time.monotonic()
        while not self._ready():
            work = os.path.dirname(self.ready_path or "")
            now = time.monotonic()
            gone = bool(work) and not os.path.isdir(work)
            if not gone and work and now - last_check > 0.5:
                # the process creating the MS was killed: nobody will ever mark it ready
                gone, last_check = staging.abandoned(work), now
            if gone or now - t0 > self.timeout_s:
                why = ("its creator was killed or gave it up" if gone else
                       f"not ready after {self.timeout_s:g} s")
                raise InputError(f"the Measurement Set was never created ({why}: the "
                                 "conversion was aborted)", stage=STAGE, files=[self.ms_path])
            time.sleep(0.01)

    def _open(self) -> ms_writer.RegionWriter | tiles.TileWriter:
        if self.writer is None:
            self.writer = open_region_writer(self.ms_path, self.ready_path)
            for item in self.pending:
                self.writer.write(*item)
            self.pending, self.held = [], 0
        return self.writer

    def write(self, row0: int, chan0: int, data: np.ndarray, flags: np.ndarray,
              weights: np.ndarray | None) -> None:
        if self.writer is None and not self._ready():
            size = data.nbytes + flags.nbytes + (0 if weights is None else weights.nbytes)
            if self.held + size <= self.limit:
                self.pending.append((row0, chan0, data.copy(), flags.copy(),
                                     None if weights is None else weights.copy()))
                self.held += size
                return
            self._wait_ready()
        self._open().write(row0, chan0, data, flags, weights)

    def close(self) -> None:
        if self.pending and self.writer is None:
            self._wait_ready()
            self._open()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> LazyRegionSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self.writer is not None:
            self.writer.close()


__all__ = ["LazyRegionSink", "mark_ready", "open_region_writer", "tile_layouts"]
