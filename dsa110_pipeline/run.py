"""``python -m dsa110_pipeline.run``: run the pipeline on a night of observation groups.

With ``--demo`` it runs on its embedded default: a small simulated night (one
calibrator group and two target groups) when the science stages are configured,
otherwise the framework's demo pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .assemble import (  # noqa: F401 - also this module's API
    _runner_options,
    build_stage,
    make_factory,
    make_orchestrator,
    make_profiler,
    role_stage_names,
    stages_from_config,
)
from .cache import ResultCache
from .cluster import ClientHandle
from .config import FrameworkConfig, load_config, resolve_stage
from .context import PipelineContext
from .errors import ConfigError, PipelineError, StorageError, storage_error
from .instrument import N_SUBBANDS
from .log import configure_logging, get_logger
from .manifest import build_manifest, write_manifest
from .night import GroupSpec, NightResult, group_scoped, night_windows
from .progress import Progress
from .reports import _emergency_manifest, _night_reports, _summary
from .runner import Runner, RunResult, Runtime
from .stage import PipelineStage
from .state import StateDB

FRAMEWORK_DEMO_STAGES = {
    "make_array": "dsa110_pipeline.demo:MakeArrayStage",
    "scale": "dsa110_pipeline.demo:ScaleStage",
    "summary": "dsa110_pipeline.demo:SummaryStage",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dsa110_pipeline.run", description=__doc__)
    p.add_argument("--input", help="directory of incoming subband files")
    p.add_argument("--output", help="directory for products, state DB and reports")
    p.add_argument("--config", help="YAML file merged over config/default.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set imaging.robust=0.5")
    p.add_argument("--start", help="first group start time (ISO, UTC) of the window")
    p.add_argument("--end", help="last group start time (ISO, UTC) of the window")
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.add_argument("--demo", action="store_true", help="run on the embedded default")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_true", default=True,
                        help="skip finished groups and cached stages (default)")
    resume.add_argument("--rerun", dest="resume", action="store_false",
                        help="ignore the state DB's finished groups and the cache")
    p.add_argument("--from-stage", help="run this stage and the ones after it")
    p.add_argument("--only-stage", help="run only this stage")
    p.add_argument("--profile", action="store_true",
                   help="memory_profiler and cProfile for every stage")
    p.add_argument("--log-json", action="store_true", help="JSON-lines logging, no progress")
    p.add_argument("--log-file", help="log to this file (rotated, see logging.max_bytes)")
    p.add_argument("--watch", action="store_true",
                   help="a live night: process groups as their files land in --input, until "
                        "SIGTERM (see the watch config branch)")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="with --watch: exit once the state DB holds N finished groups "
                        "(done or quarantined) and none is open (replays, tests)")
    args = p.parse_args(argv)
    _check_window(p, args.start, args.end)
    return args


def _check_window(p: argparse.ArgumentParser, start: str | None, end: str | None) -> None:
    """--start/--end must be UTC ISO times, start not after end: else a usage error."""
    from astropy.time import Time

    times = {}
    for opt, value in (("--start", start), ("--end", end)):
        if value is None:
            continue
        try:
            times[opt] = Time(value, scale="utc")
        except ValueError:
            p.error(f"{opt} {value!r} is not an ISO UTC time such as 2026-01-25T22:00:00")
    if len(times) == 2 and times["--start"] > times["--end"]:
        p.error(f"--start {start} is later than --end {end}: the window is empty")


def prepare_output(out: Path) -> Path:
    """Create ``out`` if needed and check that it can be written: a
    :class:`StorageError` in one line otherwise (never a traceback)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise storage_error(exc, str(out)) from exc
    return out


# -- one group (the framework demo) ----------------------------------------------------

def run_group(stages: Sequence[PipelineStage], ctx: PipelineContext, cfg: FrameworkConfig, *,
              client: ClientHandle, profiler: Any, rerun: bool = False,
              profile_all: bool = False) -> RunResult:
    """Run one group's stages with the run's cache, client and profiler."""
    out = Path(cfg.paths.output_dir)
    cache = ResultCache(cfg.paths.cache_dir or out / ".cache")
    runtime = Runtime(client_source=client, scratch_root=cfg.paths.scratch_dir, config=cfg)
    runner = Runner(stages, cache=cache, runtime=runtime, profiler=profiler, rerun=rerun,
                    max_workers=cfg.orchestrator.max_threads,
                    retry_backoff_s=cfg.orchestrator.retry_backoff_s,
                    **_runner_options(cfg, profile_all))
    return runner.run(ctx)


# -- nights -------------------------------------------------------------------------------

def discover_groups(cfg: FrameworkConfig, args: argparse.Namespace) -> list[GroupSpec]:
    if not cfg.pipeline.discover:
        raise ConfigError("pipeline.discover is not set: no way to find observation groups")
    specs = list(resolve_stage(cfg.pipeline.discover)(Path(cfg.paths.input_dir), cfg))
    specs = _in_window(specs, args.start, args.end)
    if cfg.pipeline.assign_roles:
        specs = list(resolve_stage(cfg.pipeline.assign_roles)(specs, cfg))
    return specs


def _in_window(specs: list[GroupSpec], start: str | None, end: str | None
               ) -> list[GroupSpec]:
    """Groups whose observation overlaps [start, end]; a straddling group is kept whole."""
    if not (start or end):
        return specs
    from astropy.time import Time

    from . import instrument

    lo = Time(start, scale="utc").mjd if start else -1e30
    hi = Time(end, scale="utc").mjd if end else 1e30
    dur = instrument.FILE_DURATION / 86400.0
    return [s for s in specs if s.start_mjd is None
            or (s.start_mjd + dur >= lo and s.start_mjd <= hi)]


def describe_night(specs: Sequence[GroupSpec], cfg: FrameworkConfig,
                   args: argparse.Namespace) -> str:
    lines = [f"night: {len(specs)} group(s) in {cfg.paths.input_dir}"]
    disk = mem = 0.0
    factory = make_factory(cfg, args)
    for s in specs:
        names = [st.name for st in group_scoped(factory)(s)]
        cal = s.metadata.get("calibrator")
        shared = ", ".join(f"{k} <- {v}" for k, v in s.shared.items())
        lines.append(f"  {s.group_id}  {s.role:<10} dec={_fmt_dec(s.dec_deg)} "
                     f"files={len(s.files)}" + (f" calibrator={cal}" if cal else "")
                     + (f" uses {shared}" if shared else ""))
        lines.append(f"      stages: {' -> '.join(names)}")
        est = s.metadata.get("estimate", {})
        disk += est.get("disk_gb", 0.0)
        mem = max(mem, est.get("memory_gb", 0.0))
    lines.append(f"estimated products: {disk:.1f} GB on disk; peak memory per group "
                 f"{mem:.1f} GB; groups in flight: {cfg.orchestrator.max_groups_in_flight}")
    windows = night_windows(specs, factory)
    if windows:
        lines.append(f"windows: {len(windows)}, each run once its groups have finished")
    for plan, stage in windows:
        lines.append(f"  {plan.window_id}  ({stage.window_s:.0f} s)  "  # type: ignore[attr-defined]
                     f"{len(plan.members)} group(s): {', '.join(plan.members)}")
    return "\n".join(lines)


def _fmt_dec(dec: float | None) -> str:
    return "?" if dec is None else f"{dec:+.2f}"


def watch_night(cfg: FrameworkConfig, args: argparse.Namespace, log: Any) -> int:
    """``--watch``: process groups as their files land, until SIGTERM (see
    :mod:`dsa110_pipeline.realtime`)."""
    from .realtime import LiveNight

    if not cfg.pipeline.discover:
        raise ConfigError("pipeline.discover is not set: no way to find observation groups")
    inp = Path(cfg.paths.input_dir)
    if not inp.is_dir():
        raise ConfigError(f"--watch: input directory {inp} does not exist")
    out = prepare_output(Path(cfg.paths.output_dir))
    discover = resolve_stage(cfg.pipeline.discover)
    assign = resolve_stage(cfg.pipeline.assign_roles) if cfg.pipeline.assign_roles else None

    def group(files: Sequence[Path]) -> list[GroupSpec]:
        specs = list(discover(inp, cfg, files=files))
        return list(assign(specs, cfg)) if assign is not None else specs

    with StateDB(Path(cfg.paths.state_db or out / "state.sqlite")) as state, \
            ClientHandle(cfg.orchestrator) as client:
        # no run profiler and no dask report: their records grow with the run
        orch = make_orchestrator(cfg, args, state, out, client, None, None)
        live = LiveNight(
            cfg=cfg, state=state, orch=orch, factory=make_factory(cfg, args), group=group,
            make_ctx=lambda: PipelineContext(config=cfg.model_dump(mode="json")), log=log,
            redo_after={k: resolve_stage(v) for k, v in cfg.pipeline.redo_after.items()},
            after_batch=lambda: _summary(cfg, out, state, log))
        client.get()
        return live.serve(max_groups=args.stop_after)


def run_night(cfg: FrameworkConfig, args: argparse.Namespace, log: Any) -> int:
    specs = discover_groups(cfg, args)
    if args.dry_run:
        print(describe_night(specs, cfg, args))
        return 0
    if not specs:
        log.warning("no observation groups found", input_dir=cfg.paths.input_dir)
        return 0
    out = prepare_output(Path(cfg.paths.output_dir))
    state_path = Path(cfg.paths.state_db or out / "state.sqlite")
    profiler = make_profiler(cfg, force=args.profile)
    factory = make_factory(cfg, args)
    n_stages = (sum(len(group_scoped(factory)(s)) for s in specs)
                + len(night_windows(specs, factory)))
    progress = Progress(n_stages, enabled=not (args.log_json or cfg.logging.json_lines))
    started = time.time()
    ctx = PipelineContext(config=cfg.model_dump(mode="json"))
    with StateDB(state_path) as state, _SweepAfterAbort() as final_sweep, \
            ClientHandle(cfg.orchestrator) as client:
        orch = make_orchestrator(cfg, args, state, out, client, profiler, progress.update)
        final_sweep.orch = orch
        from distributed import performance_report

        client.get()  # a night always fans out: start the cluster before the report opens
        report_cm = performance_report(filename=str(out / "dask-report.html"))
        if profiler is not None:
            profiler.start()
        try:
            with report_cm:
                night = orch.run(specs, factory, ctx)
        except (StorageError, OSError) as exc:  # the state DB or dask's report: disk full
            err = exc if isinstance(exc, StorageError) else storage_error(exc, str(out))
            _stop_running(orch, state, str(err), log)
            _emergency_manifest(cfg, out, state, ctx.run_id, started, log)
            if err is exc:
                raise
            raise err from exc
        finally:
            if profiler is not None:
                profiler.stop()
        finished = time.time()
        final_sweep.failed = _storage_failure(night) is not None
        state_windows = state.windows()
        try:
            reasons = _night_reports(cfg, out, night, state, profiler, ctx.run_id, started,
                                     finished, log)
        except OSError as exc:  # the reports did not fit: the manifest alone may
            _emergency_manifest(cfg, out, state, ctx.run_id, started, log)
            raise storage_error(exc, str(out)) from exc
    for gid, status, reason in reasons:  # each failed group says why, on the console too
        log.error("group " + status, group=gid, reason=reason)
    bad = [g for g, s in night.status.items() if s not in ("done", "skipped")]
    bad += [w for w, s in night.windows.items() if s != "done"]
    for wid, status in night.windows.items():
        row = next((w for w in state_windows if w["window_id"] == wid), {})
        (log.info if status == "done" else log.error)(
            "window " + status, window=wid, groups=len(row.get("groups", [])),
            gaps=row.get("gaps"), reason=row.get("message"))
    log.info("night finished", groups=len(specs), windows=len(night.windows), failed=len(bad),
             wall_s=finished - started)
    full = _storage_failure(night)
    if full is not None:  # a full or unwritable disk: one line says where
        print(f"error: {full}; {len(bad)} group(s) not finished, rerun when there is space",
              file=sys.stderr)
        return 2
    return 0 if not bad else 1


def _storage_failure(night: NightResult) -> str | None:
    """The first storage error a stage of the night met (its message), else None."""
    if night.result is None:
        return None
    for rec in night.result.records.values():
        if rec.status == "failed" and rec.error_type == "StorageError":
            return rec.error
    return None


class _SweepAfterAbort:
    """Entered before the dask cluster, so left after it has stopped: when a storage error
    ends the night (raised, or recorded by a group's stage: ``failed``), sweep once more. A
    worker still writing when the first sweep ran (its process alive, its staging directory
    not yet stale) has gone by then."""

    def __init__(self) -> None:
        self.orch: Any = None
        self.failed = False

    def __enter__(self) -> _SweepAfterAbort:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        raised = exc_type is not None and issubclass(exc_type, (StorageError, OSError))
        if self.orch is not None and (raised or self.failed):
            with contextlib.suppress(Exception):  # the storage error is what gets reported
                # the cluster's worker processes may still be exiting
                self.orch.sweep(wait_s=10.0)
        return False


def _stop_running(orch: Any, state: StateDB, message: str, log: Any) -> None:
    """After a storage error stopped the night: free what writers that died on the full
    disk left, then record the groups still marked running as failed (a full disk is not
    their fault: no quarantine count), so that the state says what happened; never
    raises."""
    try:
        orch.sweep()
        for g in state.groups():
            if g["status"] == "running":
                state.set_group_status(g["group_id"], "failed", message, failed=False)
    except Exception as exc:  # noqa: BLE001 - the storage error is what gets reported
        log.error("group states not recorded", reason=str(exc))


def run_single(cfg: FrameworkConfig, args: argparse.Namespace, log: Any) -> int:
    stages = stages_from_config(cfg)
    if not stages:
        raise PipelineError("no stages configured: set pipeline.stages or use --demo")
    if args.dry_run:
        print(Runner(stages).plan().describe())
        return 0
    out = prepare_output(Path(cfg.paths.output_dir))
    profiler = make_profiler(cfg, force=args.profile)
    started = time.time()
    ctx = PipelineContext(group_id="demo" if args.demo else None,
                          config=cfg.model_dump(mode="json"))
    with ClientHandle(cfg.orchestrator) as client:
        if profiler is not None:
            profiler.start()
        try:
            result = run_group(stages, ctx, cfg, client=client, profiler=profiler,
                               rerun=not args.resume, profile_all=args.profile)
        finally:
            if profiler is not None:
                profiler.stop()
    profiles: dict[str, dict] = {}
    if profiler is not None:
        report = profiler.report()
        report.write(out, stem="profile")
        profiles = {p.name: p.to_dict() for p in report.stages}
    records = []
    for name, rec in result.records.items():
        d = rec.to_dict()
        d["profile"] = profiles.get(name)
        records.append(d)
    manifest = build_manifest(
        run_id=result.context.run_id, config=cfg.model_dump(mode="json"),
        groups={ctx.group_id or "run": {"records": records}},
        started=started, finished=time.time())
    paths = write_manifest(manifest, out)
    for name, rec in result.records.items():
        log.info("stage", name=name, status=rec.status, wall_s=rec.wall_s, error=rec.error)
    log.info("run finished", ok=result.ok, manifest=str(paths["md"]))
    return 0 if result.ok else 1


def _demo_config(args: argparse.Namespace, overrides: list[str],
                 cfg: FrameworkConfig) -> FrameworkConfig:
    """The embedded default: simulate a small night when the science stages are configured."""
    out = Path(cfg.paths.output_dir)
    if not cfg.pipeline.stages:
        demo = out / "demo"
        return load_config(args.config, overrides=[
            *overrides, f"pipeline.stages={dict(FRAMEWORK_DEMO_STAGES)}",
            f"make_array.out_dir={demo}", f"scale.out_dir={demo}", f"summary.out_dir={demo}"])
    from .simulate.demo import simulate_demo_night

    # the simulated night carries its survey catalog (NVSS-like), which discovery finds
    # beside the files as on a real night; only tests and perf scoring see the simulated sky
    incoming = simulate_demo_night(out / "incoming", cfg)
    extra = [f"paths.input_dir={incoming}"]
    n_sb = cfg.demo.n_subbands
    if "conversion" in cfg.pipeline.stages and n_sb < N_SUBBANDS:  # a reduced observation
        extra.append(f"conversion.expected_subbands={list(range(n_sb))}")
    return load_config(args.config, overrides=[*extra, *overrides])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.output:
        overrides.append(f"paths.output_dir={args.output}")
    elif args.demo:
        overrides.append("paths.output_dir=demo_output")
    if args.input:
        overrides.append(f"paths.input_dir={args.input}")
    if args.scheduler:
        overrides.append(f"orchestrator.scheduler={args.scheduler}")
    try:
        cfg = load_config(args.config, overrides=overrides)
        configure_logging(json_lines=args.log_json or cfg.logging.json_lines,
                          level=cfg.logging.level, file=args.log_file or cfg.logging.file,
                          max_bytes=cfg.logging.max_bytes,
                          backup_count=cfg.logging.backup_count)
        log = get_logger()
        if not args.dry_run:
            prepare_output(Path(cfg.paths.output_dir))
        if args.demo:
            cfg = _demo_config(args, overrides, cfg)
        if args.watch:
            return watch_night(cfg, args, log)
        if cfg.pipeline.discover:
            return run_night(cfg, args, log)
        return run_single(cfg, args, log)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:  # storage: one line, never a traceback
        print(f"error: {storage_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
