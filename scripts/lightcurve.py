#!/usr/bin/env python
"""Export a source's light curve from the light-curve store, as CSV and optionally a PNG.

    python scripts/lightcurve.py products/lightcurves.sqlite "SURV J225357.7+160854" \
        --csv lc.csv --png lc.png

A name fragment matches every source whose name contains it (the first is exported; the
others are listed). Reads the store only.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, help="lightcurves.sqlite")
    p.add_argument("name", help="source name, or a fragment of it")
    p.add_argument("--csv", type=Path, help="write the light curve here (default: stdout)")
    p.add_argument("--png", type=Path, help="plot it here")
    a = p.parse_args(argv)
    if not a.store.is_file():
        print(f"error: {a.store}: no such store", file=sys.stderr)
        return 2
    with sqlite3.connect(f"file:{a.store}?mode=ro", uri=True) as c:
        names = [r[0] for r in c.execute("SELECT name FROM sources WHERE name LIKE ? "
                                         "ORDER BY name", (f"%{a.name}%",))]
        if not names:
            print(f"error: no source matching {a.name!r} in {a.store}", file=sys.stderr)
            return 1
        if len(names) > 1:
            print(f"{len(names)} sources match; exporting {names[0]} (others: "
                  f"{', '.join(names[1:6])}{' ...' if len(names) > 6 else ''})",
                  file=sys.stderr)
        rows = c.execute(
            "SELECT m.image_id, m.mjd, m.flux_jy, m.err_jy, m.snr, m.edge, m.blended, "
            "m.artefact, i.verdict FROM measurements m JOIN sources s USING(source_id) "
            "JOIN images i USING(image_id) WHERE s.name=? ORDER BY m.mjd", (names[0],)
        ).fetchall()
    head = ["image_id", "mjd", "flux_jy", "err_jy", "snr", "edge", "blended", "artefact",
            "verdict"]
    fh = open(a.csv, "w", newline="") if a.csv else sys.stdout  # noqa: SIM115
    w = csv.writer(fh)
    w.writerow(head)
    w.writerows(rows)
    if a.csv:
        fh.close()
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        good = [r for r in rows if not (r[5] or r[6] or r[7]) and r[2] is not None]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.errorbar([(r[1] - good[0][1]) * 24 for r in good] if good else [],
                    [r[2] * 1e3 for r in good], [r[3] * 1e3 for r in good], fmt="o", ms=3)
        ax.set_xlabel("hours since the first measurement")
        ax.set_ylabel("flux density (mJy)")
        ax.set_title(names[0])
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
