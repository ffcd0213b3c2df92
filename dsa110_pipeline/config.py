"""One typed configuration tree, loaded from YAML plus overrides.

The framework owns the branches ``paths``, ``instrument``, ``orchestrator``,
``profiling``, ``logging`` and ``pipeline``. Each stage named in
``pipeline.stages`` (a dotted path such as ``stages.imaging:ImagingStage``)
contributes its own typed ``Config`` as the branch of the same name, so a stage
developer adds a folder under ``stages/`` and one line of config. The framework
never imports a stage module statically.

Precedence (later wins): model defaults < ``config/default.yaml`` < a user file <
``DSA110_``-prefixed environment variables (``DSA110_IMAGING__ROBUST=0.5``) <
``--set imaging.robust=0.5``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .errors import ConfigError

ENV_PREFIX = "DSA110_"
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[1] / "config" / "default.yaml"


class _Branch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsConfig(_Branch):
    input_dir: str = "incoming"
    output_dir: str = "products"
    #: Scratch root for staging (tmpfs). Falls back beside the output when too small.
    scratch_dir: str = "/dev/shm"
    #: SQLite state DB; default ``<output_dir>/state.sqlite``.
    state_db: str | None = None
    #: Cache of stage results (product references); default ``<output_dir>/.cache``.
    cache_dir: str | None = None
    #: The night's survey catalog (NVSS-like CSV/VOTable/FITS): the calibration and imaging
    #: sky model and the validation reference, unless a stage's own key names another.
    #: None: ``survey_catalog.csv`` in the input directory when there is one.
    survey_catalog: str | None = None


class InstrumentConfig(_Branch):
    #: Station coordinates CSV (DSA-110 format); None uses the built-in layout.
    station_csv: str | None = None
    sefd_jy: float = Field(6500.0, gt=0)
    n_antennas: int = Field(96, ge=2, le=117)


#: dask housekeeping periods a pipeline cluster runs with (see ``dask_config``).
QUIET_DASK: dict[str, Any] = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "1s",
    "distributed.worker.memory.monitor-interval": "250ms",
}


class OrchestratorConfig(_Branch):
    scheduler: str | None = None
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    dashboard: bool = False
    max_groups_in_flight: int = Field(2, ge=1)
    retries: int = Field(2, ge=0)
    retry_backoff_s: float = Field(1.0, ge=0)
    stage_timeout_s: float | None = Field(None, gt=0)
    quarantine_after: int = Field(3, ge=1)
    max_threads: int | None = Field(None, ge=1)
    #: Threads a stage run on a dask worker may use; None: the worker's thread count.
    stage_threads: int | None = Field(None, ge=1)
    #: dask settings of the LocalCluster (its scheduler, nannies and workers), as dotted
    #: keys under ``distributed.``. The defaults slow dask's own housekeeping (statistical
    #: profiler, event-loop watchdog, system and memory monitors): at dask's defaults it
    #: costs ~7 % of a core per worker, taken from the stages when every core runs one.
    dask_config: dict[str, Any] = Field(default_factory=lambda: dict(QUIET_DASK))

    @field_validator("dask_config")
    @classmethod
    def _known_dask_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        import dask
        import distributed  # noqa: F401  (loads the distributed.* defaults)

        for k in value:
            if not k.startswith("distributed."):
                raise ValueError(f"dask_config key {k!r}: only distributed.* settings belong here")
            try:
                dask.config.get(k)
            except KeyError:
                raise ValueError(f"dask_config key {k!r} is not a dask setting") from None
        return value


class ProfilingConfig(_Branch):
    enabled: bool = True
    sample_interval_s: float = Field(0.1, gt=0)
    #: Stage names to profile line by line with memory_profiler.
    memory_profile: list[str] = Field(default_factory=list)
    #: Stage names to run under cProfile.
    cprofile: list[str] = Field(default_factory=list)
    cprofile_top: int = Field(25, ge=1)


class LoggingConfig(_Branch):
    level: str = "INFO"
    json_lines: bool = False
    #: Log file (rotated) instead of standard error; None: standard error.
    file: str | None = None
    #: Size at which the log file is rotated, and how many old files are kept.
    max_bytes: int = Field(50_000_000, ge=10_000)
    backup_count: int = Field(5, ge=0)


class WatchConfig(_Branch):
    """A live night (``--watch``): groups processed as their files land."""

    #: Rescan period (s); inotify wakes the service sooner where it is available.
    poll_s: float = Field(2.0, gt=0)
    #: A file has landed once its size and mtime have not changed for this long (s).
    settle_s: float = Field(5.0, ge=0)
    #: When set (e.g. ".done"), a file has landed only once <file><suffix> exists.
    marker_suffix: str | None = None
    #: Wait this long (s) after a group's first file has landed for the rest of it.
    late_timeout_s: float = Field(120.0, ge=0)
    #: What a group still incomplete after the timeout does: "proceed" (converted with
    #: the missing files' channels flagged) when it has at least ``min_files``, else
    #: "quarantine".
    partial: Literal["proceed", "quarantine"] = "proceed"
    min_files: int = Field(12, ge=1)
    #: Groups run in one batch at most (a backlog goes in batches, oldest first).
    max_batch: int = Field(4, ge=1)
    #: A group that failed, or waits for calibration, is offered again after this (s).
    retry_s: float = Field(60.0, ge=0)
    #: No file for this long (s): the night is over. Open windows close and groups still
    #: waiting for calibration fail.
    idle_close_s: float = Field(1800.0, gt=0)
    #: Run ``pipeline.redo_after`` hooks (re-apply tonight's calibration to targets done
    #: with an earlier night's).
    redo: bool = True
    #: Status file (JSON: in flight, waiting, last latencies); None: <output>/watch_status.json.
    status_file: str | None = None
    #: Use inotify (watchdog) to wake on new files; False: poll only.
    inotify: bool = True


class PipelineSection(_Branch):
    #: Stage name -> "module:Class". Order is the default execution order. A stage set to
    #: null is switched off (dropped from roles, wiring, executors, windows; its branch
    #: ignored).
    stages: dict[str, str] = Field(default_factory=dict)
    #: Group role -> the stage names run for a group of that role (default: all stages).
    roles: dict[str, list[str]] = Field(default_factory=dict)
    #: Stage name -> {its input key: the product key it reads}, e.g. imaging: {ms: ms_calibrated}.
    wiring: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: "module:function" (input_dir, config) -> list of GroupSpec: finds a night's groups.
    discover: str | None = None
    #: "module:function" (groups, config) -> groups with roles and shared products set.
    assign_roles: str | None = None
    #: Product key -> "module:function" (state DB, group id, product) called when a group
    #: makes that product: a stage's registry (calibration solutions), the QA verdict.
    on_product: dict[str, str] = Field(default_factory=dict)
    #: Product key -> "module:function" (state DB, group spec) -> product or None, for a
    #: product a group needs that no stage makes tonight and no earlier run recorded.
    find_product: dict[str, str] = Field(default_factory=dict)
    #: Product key -> "module:function" (state DB, group id, product) -> group ids: on a
    #: live night (``--watch``), finished groups to run again once a group makes that
    #: product (targets calibrated before tonight's calibrator was solved).
    redo_after: dict[str, str] = Field(default_factory=dict)
    #: Role -> the role a group runs in, at once, when a stage finds its data unfit for the
    #: first (``RoleUnfit``: a calibrator group whose solutions fail QA is then calibrated
    #: and imaged as a target, its science not lost); a role not named: quarantined.
    role_fallback: dict[str, str] = Field(default_factory=dict)
    #: "module:function" (path, [(group, verdict, report path)]) writing the night summary.
    night_report: str | None = None
    #: Parameter sweeps: "stage.key" -> list of values, expanded into variants.
    sweeps: dict[str, list[Any]] = Field(default_factory=dict)
    #: Stage name -> where it runs: "thread" (in the runner), "process" (a child process)
    #: or "dask" (one task on a dask worker); stages not named keep their class default.
    executors: dict[str, Literal["thread", "process", "dask"]] = Field(default_factory=dict)
    #: Window stage name -> its window length: seconds, "hour" or "night" (a UTC day);
    #: window stages not named keep their class default.
    windows: dict[str, float | Literal["hour", "night"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_are_stages(self) -> PipelineSection:
        """Every stage named in ``roles``, ``wiring``, ``executors`` and ``windows`` is one
        of ``stages``, and with ``roles`` every stage runs in at least one role (else it
        never would)."""
        known = list(self.stages)
        if not known:
            return self
        listed = ", ".join(known)
        named = [(f"roles.{role}", n) for role, names in self.roles.items() for n in names]
        named += [(f"wiring.{n}", n) for n in self.wiring]
        named += [(f"executors.{n}", n) for n in self.executors]
        named += [(f"windows.{n}", n) for n in self.windows]
        for key, n in named:
            if n not in self.stages:
                raise ValueError(f"pipeline.{key}: {n!r} is not a stage (stages: {listed})")
        for old, new in self.role_fallback.items():
            if self.roles and (old not in self.roles or new not in self.roles):
                raise ValueError(f"pipeline.role_fallback: {old!r} -> {new!r} names a role "
                                 f"not in pipeline.roles ({', '.join(self.roles)})")
        in_roles = {n for names in self.roles.values() for n in names}
        idle = [n for n in known if n not in in_roles]
        if self.roles and idle:
            raise ValueError(f"pipeline.roles.*: stage(s) {', '.join(idle)} are in no role and "
                             "would never run (add them to a role or remove them from "
                             "pipeline.stages)")
        return self


class DemoConfig(_Branch):
    """The simulated night behind ``--demo`` (one calibrator group, then targets)."""

    n_groups: int = Field(3, ge=1)
    n_antennas: int = Field(48, ge=4, le=117)
    n_subbands: int = Field(16, ge=1, le=16)
    n_channels: int = Field(8, ge=1, le=48)
    n_integrations: int = Field(24, ge=1)
    n_sources: int = Field(40, ge=0)
    dec_deg: float = Field(16.15, ge=-50, le=90)
    calibrator: str = "3C454.3"
    #: Sky catalog; None: random sources from the 1.4 GHz counts.
    catalog: str | None = None
    start: str = "2026-01-25T22:00:00"
    seed: int = 1
    noise: bool = True
    rfi: bool = True


class FrameworkConfig(_Branch):
    """The framework's branches; stage branches are added by :func:`config_model`."""

    paths: PathsConfig = PathsConfig()
    instrument: InstrumentConfig = InstrumentConfig()
    orchestrator: OrchestratorConfig = OrchestratorConfig()
    profiling: ProfilingConfig = ProfilingConfig()
    logging: LoggingConfig = LoggingConfig()
    watch: WatchConfig = WatchConfig()
    pipeline: PipelineSection = PipelineSection()
    demo: DemoConfig = DemoConfig()

    def stage_config(self, name: str) -> BaseModel:
        """The typed config branch of the stage called ``name``."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise ConfigError(f"no config branch for stage '{name}'") from None

    def digest(self) -> str:
        return config_digest(self.model_dump(mode="json"))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its data: the class is built per set of stages, so a dask worker
        rebuilds it with :func:`build_config`."""
        return build_config, (self.model_dump(mode="json"),)


def config_digest(data: Mapping[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def resolve_stage(path: str) -> Any:
    """Import a stage class (or a hook function) from ``"package.module:Name"``."""
    if ":" not in path:
        raise ConfigError(f"stage path '{path}' must look like 'package.module:Class'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import stage module '{module_name}' ({path})",
                          cause=exc) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no stage class '{attr}'") from None


@lru_cache(maxsize=32)
def _model_for(stage_items: tuple[tuple[str, str], ...]) -> type[FrameworkConfig]:
    fields: dict[str, Any] = {}
    for name, path in stage_items:
        if name in FrameworkConfig.model_fields:
            raise ConfigError(f"pipeline.stages.{name}: the name is reserved for the framework")
        cls = resolve_stage(path)
        cfg_cls = cls.Config
        fields[name] = (cfg_cls, cfg_cls())
    return create_model("PipelineConfig", __base__=FrameworkConfig, **fields)


def config_model(stages: Mapping[str, str] | None = None) -> type[FrameworkConfig]:
    """The pydantic model of the whole tree for the given ``pipeline.stages``."""
    return _model_for(tuple((stages or {}).items()))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise ConfigError(f"empty config key in override '{dotted}'")
    node = tree
    for key in keys[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            node[key] = nxt
        node = nxt
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"imaging.robust=0.5"`` -> ``("imaging.robust", 0.5)``; values are YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML", cause=exc) from exc
    return key.strip(), value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any]]:
    """``DSA110_IMAGING__ROBUST=0.5`` -> ``("imaging.robust", 0.5)``.

    Only names of the form ``DSA110_<BRANCH>__<KEY>`` are overrides; other ``DSA110_``
    variables (``DSA110_SHARED_DATA``, ``DSA110_CASA_PYTHON``) belong to other tools.
    """
    out = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        out.append(parse_override(f"{dotted}={raw}"))
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}", files=[p], cause=exc) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("config file is not valid YAML", files=[p], cause=exc) from exc
    if not isinstance(data, dict):
        raise ConfigError("config file must hold a mapping at the top level", files=[p])
    return data


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        extra = err["type"] == "extra_forbidden"
        msg = "unknown key" if extra else err["msg"]
        got = err.get("input")
        shown = "" if extra or isinstance(got, dict) else f" (got {got!r})"
        cause = str((err.get("ctx") or {}).get("error", ""))
        if err["type"] == "value_error" and cause.startswith(f"{loc}."):
            lines.append(cause)  # a section's own check, which names the key itself
            continue
        lines.append(f"{loc}: {msg}{shown}")
    return "; ".join(lines)


def without_disabled_stages(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` less the stages ``pipeline.stages`` sets to null (``--set
    pipeline.stages.photometry=null``): each goes from the stages, the roles, wiring,
    executors and windows, and its own branch, so a default stage is switched off
    without editing the defaults."""
    section = raw.get("pipeline")
    stages = section.get("stages") if isinstance(section, Mapping) else None
    if not isinstance(stages, Mapping):
        return dict(raw)
    off = {k for k, v in stages.items() if v is None}
    if not off:
        return dict(raw)
    out = {k: v for k, v in raw.items() if k not in off}
    sec = dict(section)  # type: ignore[arg-type]
    sec["stages"] = {k: v for k, v in stages.items() if k not in off}
    if isinstance(sec.get("roles"), Mapping):
        sec["roles"] = {r: [n for n in names if n not in off] if isinstance(names, list)
                        else names for r, names in sec["roles"].items()}
    for key in ("wiring", "executors", "windows"):
        if isinstance(sec.get(key), Mapping):
            sec[key] = {k: v for k, v in sec[key].items() if k not in off}
    out["pipeline"] = sec
    return out


def build_config(raw: Mapping[str, Any], *, source: str = "<config>") -> FrameworkConfig:
    """Validate a raw mapping into the typed tree; errors name each key's path. A stage
    set to null in ``pipeline.stages`` is switched off (:func:`without_disabled_stages`)."""
    raw = without_disabled_stages(raw)
    section = raw.get("pipeline")
    stages = section.get("stages", {}) if isinstance(section, Mapping) else {}
    if not isinstance(stages, Mapping):
        raise ConfigError("pipeline.stages: must be a mapping of name -> 'module:Class'",
                          files=[source])
    model = config_model({str(k): str(v) for k, v in stages.items()})
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {_format_errors(exc)}", files=[source]) from None


def load_config(path: str | Path | None = None, *, overrides: Sequence[str] = (),
                environ: Mapping[str, str] | None = None,
                defaults: str | Path | None = DEFAULT_CONFIG_FILE) -> FrameworkConfig:
    """Load defaults, a user file, environment and ``--set`` overrides into one typed tree."""
    raw: dict[str, Any] = {}
    sources = []
    if defaults is not None and Path(defaults).exists():
        raw = read_yaml(defaults)
        sources.append(str(defaults))
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
        sources.append(str(path))
    for key, value in env_overrides(os.environ if environ is None else environ):
        _set_path(raw, key, value)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(raw, key, value)
    return build_config(raw, source=" + ".join(sources) or "<defaults>")
