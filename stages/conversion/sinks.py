"""Where a subband worker's processed rows go: its region of the pre-created MS once the
MS is ready (:class:`LazyRegionSink`: straight into the tile files when aligned, else
through casacore; the :mod:`.ready` signal says when, and which)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dsa110_pipeline import staging
from dsa110_pipeline.errors import InputError

from . import ms_writer, tiles
from .reader import STAGE
from .ready import Layouts, ReadySignal


def layouts_payload(layouts: dict[str, tiles.TileLayout] | None) -> Layouts:
    """What a :class:`~.ready.ReadySignal` carries: the tile layouts as plain dicts."""
    return None if layouts is None else {c: lay.to_dict() for c, lay in layouts.items()}


def open_region_writer(ms_path: str | Path, layouts: Layouts
                       ) -> ms_writer.RegionWriter | tiles.TileWriter:
    """The writer the MS's creator chose: straight into the tile files (``layouts``) or
    through casacore (None)."""
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
    creating it (``ready`` not yet set) keeps up to ``limit`` bytes of processed chunks
    in memory, so reading and phasing overlap the MS creation. ``work_dir``: the
    creator's work directory; its removal, or its staging owner's death, means the MS
    will never be ready."""

    def __init__(self, ms_path: str, ready: ReadySignal | None, limit: int,
                 work_dir: str | None = None, timeout_s: float = 900.0) -> None:
        self.ms_path, self.ready, self.limit = ms_path, ready, limit
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.writer: ms_writer.RegionWriter | tiles.TileWriter | None = None
        self.pending: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.held = 0

    def _ready(self) -> bool:
        return self.ready is None or self.ready.wait(0)

    def _wait_ready(self) -> None:
        import time

        t0 = time.monotonic()
        while self.ready is not None and not self.ready.wait(0.5):
            work = self.work_dir
            # the process creating the MS was killed: nobody will ever set the signal
            gone = bool(work) and (not os.path.isdir(work) or staging.abandoned(work))
            if gone or time.monotonic() - t0 > self.timeout_s:
                why = ("its creator was killed or gave it up" if gone else
                       f"not ready after {self.timeout_s:g} s")
                raise InputError(f"the Measurement Set was never created ({why}: the "
                                 "conversion was aborted)", stage=STAGE, files=[self.ms_path])

    def _open(self) -> ms_writer.RegionWriter | tiles.TileWriter:
        if self.writer is None:
            self.writer = open_region_writer(
                self.ms_path, None if self.ready is None else self.ready.layouts())
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


__all__ = ["LazyRegionSink", "layouts_payload", "open_region_writer", "tile_layouts"]
