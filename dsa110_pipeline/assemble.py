"""What a config makes: the stages (with their executors, windows, retries and time
limits), the per-group stage factory, the run profiler and the night's orchestrator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cache import ResultCache
from .cluster import ClientHandle
from .config import FrameworkConfig, resolve_stage
from .errors import ConfigError
from .night import GroupSpec, NightOrchestrator
from .runner import Runtime, expand_sweep
from .stage import PipelineStage
from .state import StateDB
from .window import window_length


def build_stage(cfg: FrameworkConfig, name: str) -> PipelineStage:
    """The stage called ``name`` with its config branch, where it runs
    (``pipeline.executors``), and the orchestrator's retries and time limit."""
    cls = resolve_stage(cfg.pipeline.stages[name])
    stage = cls(cfg.stage_config(name))
    stage.name = name  # type: ignore[misc]
    if name in cfg.pipeline.executors:
        stage.executor = cfg.pipeline.executors[name]
    if name in cfg.pipeline.windows:
        if stage.scope != "window":
            raise ConfigError(f"pipeline.windows.{name}: stage {name!r} runs per group, not "
                              "over a window (its class is no WindowStage)")
        stage.window_s = window_length(cfg.pipeline.windows[name])  # type: ignore[attr-defined]
    stage.bind_run(cfg)
    stage.retries = max(stage.retries, cfg.orchestrator.retries)
    if stage.timeout is None:
        stage.timeout = cfg.orchestrator.stage_timeout_s
    return stage


def stages_from_config(cfg: FrameworkConfig) -> list[PipelineStage]:
    """Instantiate the stages named in ``pipeline.stages``, expanding sweeps into variants."""
    stages: list[PipelineStage] = []
    for name in cfg.pipeline.stages:
        grid = {key.split(".", 1)[1]: values for key, values in cfg.pipeline.sweeps.items()
                if key.split(".", 1)[0] == name}
        stages.extend(expand_sweep(build_stage(cfg, name), grid))
    return stages


def role_stage_names(cfg: FrameworkConfig, role: str, *, from_stage: str | None = None,
                     only_stage: str | None = None) -> list[str]:
    names = list(cfg.pipeline.roles.get(role) or cfg.pipeline.stages)
    for n in (from_stage, only_stage):
        if n is not None and n not in cfg.pipeline.stages:
            raise ConfigError(f"unknown stage '{n}' (stages: {', '.join(cfg.pipeline.stages)})")
    if only_stage:
        return [n for n in names if n == only_stage]
    if from_stage:
        order = list(cfg.pipeline.stages)
        return [n for n in names if order.index(n) >= order.index(from_stage)]
    return names


def make_factory(cfg: FrameworkConfig, args: argparse.Namespace) -> Any:
    cache: dict[str, PipelineStage] = {}

    def factory(spec: GroupSpec) -> list[PipelineStage]:
        out = []
        for name in role_stage_names(cfg, spec.role, from_stage=args.from_stage,
                                     only_stage=args.only_stage):
            if name not in cache:
                cache[name] = build_stage(cfg, name)
            out.append(cache[name])
        return out

    return factory


def make_profiler(cfg: FrameworkConfig, force: bool = False) -> Any:
    if not (cfg.profiling.enabled or force):
        return None
    from .profiling import RunProfiler

    return RunProfiler(enabled=True, interval_s=cfg.profiling.sample_interval_s)


def _runner_options(cfg: FrameworkConfig, profile_all: bool) -> dict[str, Any]:
    prof = cfg.profiling
    return {"memory_profile": ["*"] if profile_all else prof.memory_profile,
            "cprofile": ["*"] if profile_all else prof.cprofile,
            "cprofile_top": prof.cprofile_top}


def make_orchestrator(cfg: FrameworkConfig, args: argparse.Namespace, state: StateDB,
                      out: Path, client: ClientHandle, profiler: Any,
                      on_stage_done: Any) -> NightOrchestrator:
    """The night's orchestrator: the run's cache, cluster, profiler and config hooks."""
    return NightOrchestrator(
        state, output_dir=out, cache=ResultCache(cfg.paths.cache_dir or out / ".cache"),
        runtime=Runtime(client_source=client, scratch_root=cfg.paths.scratch_dir, config=cfg),
        profiler=profiler, rerun=not args.resume,
        max_groups_in_flight=cfg.orchestrator.max_groups_in_flight,
        quarantine_after=cfg.orchestrator.quarantine_after,
        retry_backoff_s=cfg.orchestrator.retry_backoff_s,
        runner_options=_runner_options(cfg, args.profile), wiring=cfg.pipeline.wiring,
        on_stage_done=on_stage_done,
        on_product={k: resolve_stage(v) for k, v in cfg.pipeline.on_product.items()},
        find_product={k: resolve_stage(v) for k, v in cfg.pipeline.find_product.items()},
        role_fallback=dict(cfg.pipeline.role_fallback))
