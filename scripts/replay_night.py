#!/usr/bin/env python
"""Replay a simulated night's subband files into a directory at N× real time (with jitter,
out-of-order arrival, slow writes and late files), for ``run --watch`` tests and perf.

    python scripts/replay_night.py SIMULATED_DIR INCOMING_DIR --speed 10 --slow-fraction 0.1
"""

from __future__ import annotations

import argparse
import sys

from dsa110_pipeline.simulate.replay import replay


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="directory of a night's <time>_sbNN.hdf5 files")
    p.add_argument("dst", help="directory to drop them into (the service's --input)")
    p.add_argument("--speed", type=float, default=10.0, help="times real time (default 10)")
    p.add_argument("--jitter", type=float, default=2.0,
                   help="per-file random delay, s (shuffles a group's files)")
    p.add_argument("--slow-write", type=float, default=10.0,
                   help="seconds a slow file takes to write, in chunks")
    p.add_argument("--slow-fraction", type=float, default=0.0,
                   help="fraction of the files written slowly")
    p.add_argument("--late", action="append", default=[], metavar="FILE",
                   help="a file name that lands --late-s after its group")
    p.add_argument("--late-s", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    replay(a.src, a.dst, speed=a.speed, jitter_s=a.jitter, slow_write_s=a.slow_write,
           slow_fraction=a.slow_fraction, late=a.late, late_s=a.late_s, seed=a.seed,
           verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
