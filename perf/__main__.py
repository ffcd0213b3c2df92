"""``python -m perf SUITE [--quick]`` runs ``perf.suites.SUITE.run(quick)`` and writes
``perf/results/SUITE.json`` and ``perf/results/SUITE.md``; ``python -m perf --list`` lists
the suites."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

from perf import suites
from perf.harness import RESULTS_DIR, format_markdown, machine_info, write_results


def list_suites() -> list[tuple[str, str]]:
    out = []
    for info in sorted(pkgutil.iter_modules(suites.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"perf.suites.{info.name}")
            doc = (mod.__doc__ or "").strip().splitlines()
            first = doc[0] if doc else ""
        except Exception as exc:  # a broken suite must not hide the others
            first = f"(cannot import: {type(exc).__name__}: {exc})"
        out.append((info.name, first))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", nargs="?", help="suite name (a module in perf/suites/)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--list", action="store_true", help="list the suites and exit")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR,
                    help=f"output folder (default {RESULTS_DIR})")
    ap.add_argument("--print", dest="print_md", action="store_true",
                    help="also print the markdown table")
    args = ap.parse_args(argv)
    if args.list or not args.suite:
        for name, doc in list_suites():
            print(f"{name:20s} {doc}")
        return 0 if args.list else 2
    try:
        mod = importlib.import_module(f"perf.suites.{args.suite}")
    except ModuleNotFoundError as exc:
        if exc.name != f"perf.suites.{args.suite}":
            raise
        names = ", ".join(n for n, _ in list_suites())
        print(f"unknown suite {args.suite!r}; known: {names}", file=sys.stderr)
        return 2
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    result = dict(mod.run(quick=args.quick))
    result.setdefault("suite", args.suite)
    result.setdefault("rows", [])
    result.setdefault("notes", [])
    result["quick"] = bool(args.quick)
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    result["machine"] = machine_info()
    result["machine"]["load_avg_at_start"] = load_start
    jp, mp = write_results(result, args.out)
    if args.print_md:
        print(format_markdown(result))
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
