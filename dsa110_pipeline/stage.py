"""The stage contract every pipeline stage implements.

A stage declares what it ``requires`` and ``produces`` (context keys), its typed
frozen ``Config`` and its ``resources``. The runner enforces the contract:
``validate`` → ``execute`` → ``validate_outputs``, and ``cleanup`` always.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from .context import PipelineContext, ProductRef
from .errors import ContractError, InputError, TransientError


class StageConfig(BaseModel):
    """Base of every stage's typed, frozen config branch."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(BaseModel):
    """What one run of the stage needs; the orchestrator schedules by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: float = 1.0
    memory_gb: float = 0.5
    scratch_gb: float = 0.0


ExecutorKind = Literal["thread", "process", "dask"]


class PipelineStage:
    """Base class of a pipeline stage. Subclasses override :meth:`execute`.

    Class attributes give the defaults; ``requires``, ``produces``, ``name``,
    ``retries``, ``timeout`` and ``executor`` may be overridden per instance.
    """

    name: ClassVar[str] = "stage"
    #: Bump when the stage's code changes its products: it invalidates the cache.
    version: ClassVar[str] = "1"
    Config: ClassVar[type[StageConfig]] = StageConfig
    requires: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    resources: ClassVar[Resources] = Resources()
    #: "thread" for I/O-bound or GIL-releasing work, "process" for CPU-bound pure Python,
    #: "dask" for heavy per-group work run as one task on a dask worker (in a thread when
    #: the runner has no dask client).
    executor: ExecutorKind = "thread"
    #: Exception types worth a retry. InputError is never retried.
    transient: ClassVar[tuple[type[BaseException], ...]] = (TransientError,)
    retries: int = 0
    timeout: float | None = None
    #: Whether results may be taken from the cache.
    cacheable: ClassVar[bool] = True
    #: "group": runs once per observation group; "window": once per window of groups
    #: (see :class:`dsa110_pipeline.window.WindowStage`).
    scope: ClassVar[Literal["group", "window"]] = "group"
    #: Whether the stage still runs when some of its inputs' producers failed (on the
    #: inputs that exist, once every producer has finished): a window over groups.
    partial_inputs: bool = False
    #: The run's products tree (``paths.output_dir``), set by :meth:`bind_run`.
    run_output_dir: str | None = None

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, *,
                 name: str | None = None, requires: Iterable[str] | None = None,
                 produces: Iterable[str] | None = None, retries: int | None = None,
                 timeout: float | None = None, executor: ExecutorKind | None = None) -> None:
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        elif not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        if name is not None:
            self.name = name  # type: ignore[misc]
        if requires is not None:
            self.requires = tuple(requires)
        if produces is not None:
            self.produces = tuple(produces)
        if retries is not None:
            self.retries = retries
        if timeout is not None:
            self.timeout = timeout
        if executor is not None:
            self.executor = executor
        self.requires = tuple(self.requires)
        self.produces = tuple(self.produces)

    # -- contract ---------------------------------------------------------
    def validate(self, ctx: PipelineContext) -> None:
        """Check preconditions; the default checks required products exist (those whose
        producer failed may be absent for a stage taking partial inputs)."""
        for key in self.requires:
            if not ctx.has(key):
                if self.partial_inputs:
                    continue
                raise ContractError(f"required input '{key}' is missing", stage=self.name)
            for ref in _refs(ctx.get(key)):
                if not ref.exists():
                    raise InputError(f"input '{key}' points at a missing file", stage=self.name,
                                     files=[ref.path])

    def execute(self, ctx: PipelineContext) -> PipelineContext:  # pragma: no cover - abstract
        raise NotImplementedError(f"stage '{self.name}' does not implement execute()")

    def validate_outputs(self, ctx: PipelineContext) -> None:
        """Check postconditions; the default checks every declared output exists on disk."""
        for key in self.produces:
            if key not in ctx.outputs:
                raise ContractError(f"did not produce its declared output '{key}'",
                                    stage=self.name)
            for ref in _refs(ctx.outputs[key]):
                if not ref.exists():
                    raise ContractError(f"output '{key}' points at a missing file",
                                        stage=self.name, files=[ref.path])

    def cleanup(self, ctx: PipelineContext) -> None:
        """Release scratch space and temporary files; runs after success and failure."""

    def bind_run(self, run_config: Any) -> None:
        """Take what the stage needs from the run's typed config beyond its own branch
        (called once, when the run assembles its stages): the products tree. A stage
        needing more (another stage's settings) extends this."""
        out = getattr(getattr(run_config, "paths", None), "output_dir", None)
        self.run_output_dir = None if out is None else str(out)

    def products_dir(self, ctx: PipelineContext, subdir: str = "") -> Path:
        """Where the stage writes products: its config's ``output_dir`` when set, else the
        run's ``paths.output_dir`` (plus ``subdir``), else ``./products``."""
        own = getattr(self.config, "output_dir", None)
        if own:
            return Path(own)
        root = self.output_root()
        return root / subdir if subdir else root

    def output_root(self) -> Path:
        """The run's products tree: ``paths.output_dir``, else ``./products``."""
        return Path(self.run_output_dir) if self.run_output_dir else Path("products")

    # -- identity ---------------------------------------------------------
    def config_hash(self) -> str:
        blob = json.dumps(self.config.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} requires={list(self.requires)} "
                f"produces={list(self.produces)}>")


def _refs(product: Any) -> list[ProductRef]:
    return list(product) if isinstance(product, list) else [product]


class FunctionStage(PipelineStage):
    """A stage made from a plain function ``fn(ctx) -> ctx`` (tests, benchmarks, glue).

    The function's source-file path and qualified name enter the cache key, and
    ``version`` should be bumped when the function changes.
    """

    def __init__(self, fn: Callable[[PipelineContext], PipelineContext], *, name: str,
                 requires: Iterable[str] = (), produces: Iterable[str] = (),
                 version: str = "1", **kwargs: Any) -> None:
        super().__init__(name=name, requires=requires, produces=produces, **kwargs)
        self.fn = fn
        self.version = version  # type: ignore[misc]

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        return self.fn(ctx)

    def config_hash(self) -> str:
        ident = f"{getattr(self.fn, '__module__', '')}.{getattr(self.fn, '__qualname__', '')}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]


def stage(*, name: str | None = None, requires: Iterable[str] = (),
          produces: Iterable[str] = (), **kwargs: Any) -> Callable[[Callable], FunctionStage]:
    """Decorator: turn ``fn(ctx) -> ctx`` into a :class:`FunctionStage`."""

    def wrap(fn: Callable[[PipelineContext], PipelineContext]) -> FunctionStage:
        return FunctionStage(fn, name=name or fn.__name__, requires=requires,
                             produces=produces, **kwargs)

    return wrap


def write_product(path: str | Path) -> Path:
    """Ensure the parent directory of a product path exists; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


__all__ = ["PipelineStage", "StageConfig", "Resources", "FunctionStage", "stage",
           "write_product", "ExecutorKind"]
