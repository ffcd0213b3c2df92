"""Command line: ``python -m dsa110_pipeline.simulate --out DIR [options]``.

Writes DSA-110-like observation groups (one UVH5 file per subband) plus their truth.
Defaults are full DSA-110 scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import PipelineError
from ..instrument import (
    FILENAME_JITTER,
    N_ACTIVE_ANTENNAS,
    N_CHANNELS_PER_SUBBAND,
    N_INTEGRATIONS,
    N_SUBBANDS,
    SEFD,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsa110_pipeline.simulate",
        description="Simulate DSA-110 observation groups (UVH5 per subband) with known truth.")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--start", default="2026-01-25T22:00:00",
                   help="UTC start of the first group (ISO 8601)")
    p.add_argument("--groups", type=int, default=1, help="consecutive groups (~309 s each)")
    p.add_argument("--dec", type=float, default=16.15, help="pointing declination (deg)")
    p.add_argument("--antennas", type=int, default=N_ACTIVE_ANTENNAS,
                   help="antennas carrying data")
    p.add_argument("--subbands", type=int, default=N_SUBBANDS)
    p.add_argument("--channels", type=int, default=N_CHANNELS_PER_SUBBAND,
                   help="channels per subband")
    p.add_argument("--integrations", type=int, default=N_INTEGRATIONS,
                   help="integrations per file")
    sky = p.add_mutually_exclusive_group()
    sky.add_argument("--sources", type=int, default=200,
                     help="random sources from the 1.4 GHz counts")
    sky.add_argument("--catalog", type=Path, default=None,
                     help="catalog CSV (ra_deg, dec_deg, flux_jy or catalog_flux_jy)")
    p.add_argument("--calibrator", default=None,
                   help="VLA calibrator to place in transit (e.g. 3C454.3)")
    p.add_argument("--calibrator-group", type=int, default=0,
                   help="group during which the calibrator transits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--rfi", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--gains", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--bandpass", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--beam", action=argparse.BooleanOptionalAction, default=True,
                   help="apply the Airy primary beam")
    p.add_argument("--sefd", type=float, default=SEFD, help="SEFD per antenna (Jy)")
    p.add_argument("--jitter", type=float, default=FILENAME_JITTER,
                   help="max jitter of file-name start times (s)")
    p.add_argument("--station-csv", type=Path, default=None,
                   help="DSA-110 station-coordinates CSV (default: built-in layout)")
    p.add_argument("--dead-antennas", type=int, default=2)
    p.add_argument("--missing-subband", type=int, default=None,
                   help="leave out this subband's file (first group)")
    p.add_argument("--truncate-subband", type=int, default=None,
                   help="truncate this subband's file (first group)")
    p.add_argument("--threads", type=int, default=None, help="threads for the kernels")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import SimulationConfig, simulate_observation

    try:
        cfg = SimulationConfig(
            out_dir=args.out, start=args.start, n_groups=args.groups, dec_deg=args.dec,
            n_antennas=args.antennas, n_subbands=args.subbands, n_channels=args.channels,
            n_integrations=args.integrations, n_sources=args.sources, catalog=args.catalog,
            calibrator=args.calibrator, calibrator_group=args.calibrator_group, seed=args.seed,
            noise=args.noise, rfi=args.rfi, gains=args.gains, bandpass=args.bandpass,
            beam=args.beam, sefd_jy=args.sefd, jitter_s=args.jitter,
            station_csv=args.station_csv, dead_antennas=args.dead_antennas,
            missing_subband=args.missing_subband, truncate_subband=args.truncate_subband,
            nthreads=args.threads)
        res = simulate_observation(cfg)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({
        "start": res.start_iso, "wall_s": round(res.wall_s, 2), "n_sources": res.n_sources,
        "groups": [{"start": g.start_iso, "files": [str(f) for f in g.files],
                    "truth_json": str(g.truth_json), "truth_npz": str(g.truth_npz)}
                   for g in res.groups],
        "notes": res.notes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
