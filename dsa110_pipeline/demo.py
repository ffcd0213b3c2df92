"""A tiny framework demo pipeline: make an array, scale it, summarise it.

It shows the stage contract end to end without any science dependency, and
serves the tests and benchmarks of the framework.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from .atomic import atomic_path
from .context import PipelineContext, ProductRef
from .stage import PipelineStage, StageConfig


class DemoOutputConfig(StageConfig):
    """Where the demo stages write their products."""

    out_dir: str = "demo_output"


def _save_npy(path: Path, data: np.ndarray) -> None:
    """``data`` written whole as the ``.npy`` file ``path`` (under a temporary name first)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, data)


def _load_npy(ctx: PipelineContext, kind: str) -> np.ndarray:
    """The array of the context's ``kind`` product, memory-mapped."""
    return np.load(ctx.get(kind).path, mmap_mode="r")


class MakeArrayConfig(DemoOutputConfig):
    size: int = Field(1_000_000, ge=1)
    seed: int = 0


class MakeArrayStage(PipelineStage):
    """Writes a random float64 array as ``array.npy``."""

    name = "make_array"
    Config = MakeArrayConfig
    produces = ("array",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        final = Path(cfg.out_dir) / "array.npy"
        _save_npy(final, np.random.default_rng(cfg.seed).standard_normal(cfg.size))
        return ctx.with_output("array", ProductRef.for_path("npy", final, size=cfg.size))


class ScaleConfig(DemoOutputConfig):
    factor: float = 2.0


class ScaleStage(PipelineStage):
    """Multiplies the array by ``factor``."""

    name = "scale"
    Config = ScaleConfig
    requires = ("array",)
    produces = ("scaled",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        final = Path(self.config.out_dir) / f"scaled_{self.config.factor:g}.npy"
        _save_npy(final, _load_npy(ctx, "array") * self.config.factor)
        return ctx.with_output("scaled", ProductRef.for_path("npy", final))


class SummaryConfig(DemoOutputConfig):
    """Config of :class:`SummaryStage` (where it writes, nothing else)."""


class SummaryStage(PipelineStage):
    """Writes mean and rms of the scaled array as JSON."""

    name = "summary"
    Config = SummaryConfig
    requires = ("scaled",)
    produces = ("summary",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        data = _load_npy(ctx, "scaled")
        stats = {"mean": float(data.mean()), "rms": float(data.std())}
        final = Path(self.config.out_dir) / "summary.json"
        with atomic_path(final) as tmp:
            tmp.write_text(json.dumps(stats))
        return ctx.with_output("summary", ProductRef.for_path("json", final, **stats))
