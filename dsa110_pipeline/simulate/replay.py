"""Replay a night's subband files into a directory as a correlator would write them: at
N× real time, with per-file jitter, out-of-order arrival, slow writes and late files.

For tests and the ``realtime`` perf suite of ``--watch``. Each group's files land
``(start - first start) / speed`` after the replay starts, each shifted by a random jitter;
a slow write puts a file down in chunks over ``slow_write_s`` seconds under its final name
(what a live service must not read half-written). The simulator's ``*_truth*`` files are
never copied: a replayed night carries only what a real one would.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

_NAME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)_sb(\d\d)\.hdf5$")


@dataclass(frozen=True)
class Landing:
    """One file's replay: when (s after the replay starts) and how slowly it is written."""

    at_s: float
    path: Path
    write_s: float


def schedule(files: Sequence[Path], *, speed: float = 10.0, jitter_s: float = 2.0,
             slow_write_s: float = 0.0, slow_fraction: float = 0.0,
             late: Sequence[str] = (), late_s: float = 0.0,
             seed: int = 0) -> list[Landing]:
    """When each file lands. ``jitter_s`` (real seconds, not scaled) shuffles the files of
    a group; ``slow_fraction`` of the files are written over ``slow_write_s``; files named
    in ``late`` land ``late_s`` after the rest of their group."""
    rng = np.random.default_rng(seed)
    times = {}
    for p in files:
        m = _NAME.match(p.name)
        if m is None:
            raise ValueError(f"{p.name} is not a <YYYY-MM-DDTHH:MM:SS>_sbNN.hdf5 file name")
        times[p] = datetime.fromisoformat(m[1]).timestamp()
    t0 = min(times.values())
    out = []
    for p, t in times.items():
        at = (t - t0) / speed + float(rng.uniform(0.0, jitter_s))
        if p.name in late:
            at += late_s
        slow = slow_write_s if rng.uniform() < slow_fraction else 0.0
        out.append(Landing(max(at, 0.0), p, slow))
    return sorted(out, key=lambda x: x.at_s)


def _write(src: Path, dst: Path, write_s: float, chunks: int = 10) -> None:
    if write_s <= 0:
        tmp = dst.with_name(f".{dst.name}.part")
        shutil.copyfile(src, tmp)
        tmp.rename(dst)  # lands whole, as a copy-then-rename writer does
        return
    data = src.read_bytes()
    step = -(-len(data) // chunks)
    with open(dst, "wb") as fh:  # under its final name, slowly: the hard case
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            time.sleep(write_s / chunks)


def replay(src: str | Path, dst: str | Path, *, speed: float = 10.0, jitter_s: float = 2.0,
           slow_write_s: float = 0.0, slow_fraction: float = 0.0,
           late: Sequence[str] = (), late_s: float = 0.0, seed: int = 0,
           verbose: bool = False) -> list[Landing]:
    """Replay ``src``'s subband files into ``dst`` (created); blocks until the last file has
    landed. The survey catalog (and any other non-truth side file) is copied first."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.name.endswith(".hdf5") and "_truth" not in p.name:
            shutil.copyfile(p, dst / p.name)
    plan = schedule(sorted(src.glob("*_sb??.hdf5")), speed=speed, jitter_s=jitter_s,
                    slow_write_s=slow_write_s, slow_fraction=slow_fraction, late=late,
                    late_s=late_s, seed=seed)
    start = time.monotonic()
    writers = []
    for landing in plan:
        delay = landing.at_s - (time.monotonic() - start)
        if delay > 0:
            time.sleep(delay)
        if verbose:
            print(f"{time.monotonic() - start:8.1f} s  {landing.path.name}"
                  + (f"  (written over {landing.write_s:.0f} s)" if landing.write_s else ""),
                  flush=True)
        t = threading.Thread(target=_write, args=(landing.path, dst / landing.path.name,
                                                  landing.write_s), daemon=True)
        t.start()
        writers.append(t)
    for t in writers:
        t.join()
    return plan
