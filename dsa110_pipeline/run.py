"""``python -m dsa110_pipeline.run``: run the pipeline on observation groups.

With ``--demo`` it runs on its embedded default: a simulated observation when the
science stages are installed, otherwise the framework's demo pipeline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cache import ResultCache
from .cluster import ClientHandle
from .config import FrameworkConfig, load_config, resolve_stage
from .context import PipelineContext
from .errors import PipelineError
from .log import configure_logging, get_logger
from .manifest import build_manifest, write_manifest
from .runner import Runner, RunResult, Runtime, expand_sweep
from .stage import PipelineStage

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
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.add_argument("--demo", action="store_true", help="run on the embedded default")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--rerun", action="store_true", help="ignore the result cache")
    p.add_argument("--profile", action="store_true",
                   help="memory_profiler and cProfile for every stage")
    p.add_argument("--log-json", action="store_true", help="JSON-lines logging")
    return p.parse_args(argv)


def stages_from_config(cfg: FrameworkConfig) -> list[PipelineStage]:
    """Instantiate the stages named in ``pipeline.stages``, expanding sweeps into variants."""
    stages: list[PipelineStage] = []
    for name, path in cfg.pipeline.stages.items():
        cls = resolve_stage(path)
        stage = cls(cfg.stage_config(name))
        grid = {key.split(".", 1)[1]: values for key, values in cfg.pipeline.sweeps.items()
                if key.split(".", 1)[0] == name}
        stages.extend(expand_sweep(stage, grid))
    return stages


def make_profiler(cfg: FrameworkConfig, force: bool = False) -> Any:
    if not (cfg.profiling.enabled or force):
        return None
    from .profiling import RunProfiler

    return RunProfiler(enabled=True, interval_s=cfg.profiling.sample_interval_s)


def run_group(stages: Sequence[PipelineStage], ctx: PipelineContext, cfg: FrameworkConfig, *,
              client: ClientHandle, profiler: Any, rerun: bool = False,
              profile_all: bool = False) -> RunResult:
    """Run one group's stages with the run's cache, client and profiler."""
    prof = cfg.profiling
    out = Path(cfg.paths.output_dir)
    cache = ResultCache(cfg.paths.cache_dir or out / ".cache")
    runtime = Runtime(client_source=client, scratch_root=cfg.paths.scratch_dir, config=cfg)
    runner = Runner(stages, cache=cache, runtime=runtime, profiler=profiler, rerun=rerun,
                    max_workers=cfg.orchestrator.max_threads,
                    retry_backoff_s=cfg.orchestrator.retry_backoff_s,
                    memory_profile=["*"] if profile_all else prof.memory_profile,
                    cprofile=["*"] if profile_all else prof.cprofile,
                    cprofile_top=prof.cprofile_top)
    return runner.run(ctx)


def _records(result: RunResult, profiles: dict[str, dict]) -> list[dict[str, Any]]:
    recs = []
    for name, rec in result.records.items():
        d = rec.to_dict()
        d["profile"] = profiles.get(name)
        recs.append(d)
    return recs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.output:
        overrides.append(f"paths.output_dir={args.output}")
    if args.input:
        overrides.append(f"paths.input_dir={args.input}")
    if args.scheduler:
        overrides.append(f"orchestrator.scheduler={args.scheduler}")
    try:
        cfg = load_config(args.config, overrides=overrides)
        configure_logging(json_lines=args.log_json or cfg.logging.json_lines,
                          level=cfg.logging.level)
        log = get_logger()
        if args.demo and not cfg.pipeline.stages:
            out = Path(cfg.paths.output_dir)
            cfg = load_config(args.config, overrides=[
                *overrides, f"pipeline.stages={dict(FRAMEWORK_DEMO_STAGES)}",
                f"make_array.out_dir={out / 'demo'}", f"scale.out_dir={out / 'demo'}",
                f"summary.out_dir={out / 'demo'}"])
        stages = stages_from_config(cfg)
        if not stages:
            raise PipelineError("no stages configured: set pipeline.stages or use --demo")
        runner = Runner(stages)
        if args.dry_run:
            print(runner.plan().describe())
            return 0
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        profiler = make_profiler(cfg, force=args.profile)
        started = time.time()
        ctx = PipelineContext(group_id="demo" if args.demo else None,
                              config=cfg.model_dump(mode="json"))
        with ClientHandle(cfg.orchestrator) as client:
            if profiler is not None:
                profiler.start()
            try:
                result = run_group(stages, ctx, cfg, client=client, profiler=profiler,
                                   rerun=args.rerun, profile_all=args.profile)
            finally:
                if profiler is not None:
                    profiler.stop()
        profiles: dict[str, dict] = {}
        if profiler is not None:
            report = profiler.report()
            report.write(out, stem="profile")
            profiles = {p.name: p.to_dict() for p in report.stages}
        manifest = build_manifest(
            run_id=result.context.run_id, config=cfg.model_dump(mode="json"),
            groups={ctx.group_id or "run": {
                "records": _records(result, profiles),
                "outputs": {k: (v.model_dump(mode="json") if not isinstance(v, list)
                                else [r.model_dump(mode="json") for r in v])
                            for k, v in result.context.outputs.items()}}},
            started=started, finished=time.time())
        paths = write_manifest(manifest, out)
        for name, rec in result.records.items():
            log.info("stage", name=name, status=rec.status, wall_s=rec.wall_s, error=rec.error)
        log.info("run finished", ok=result.ok, manifest=str(paths["md"]))
        return 0 if result.ok else 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
