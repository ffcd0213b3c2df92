#!/usr/bin/env python
"""Re-run the survey layer (forced photometry, light curves, mosaics) of a past night from
the images it already has, e.g. after changing the photometry config or the catalog:

    python scripts/rerun_survey.py --input /data/incoming/2026-01-25 \
        --output /data/products/2026-01-25 [--set photometry.pb_cut=0.3]

It is ``python -m dsa110_pipeline.run --rerun --from-stage photometry``: the groups'
conversion, calibration and imaging are not run again (their recorded products are the
inputs), every group's photometry is, and then its night's light curves (replacing the
night's measurements in the store, never duplicating them) and its hour mosaics.
"""

from __future__ import annotations

import sys

from dsa110_pipeline.run import main as run_main


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    return run_main(["--rerun", "--from-stage", "photometry", *args])


if __name__ == "__main__":
    sys.exit(main())
