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


class MakeArrayConfig(StageConfig):
    size: int = Field(1_000_000, ge=1)
    seed: int = 0
    out_dir: str = "demo_output"


class MakeArrayStage(PipelineStage):
    """Writes a random float64 array as ``array.npy``."""

    name = "make_array"
    Config = MakeArrayConfig
    produces = ("array",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        data = np.random.default_rng(cfg.seed).standard_normal(cfg.size)
        final = Path(cfg.out_dir) / "array.npy"
        with atomic_path(final) as tmp, open(tmp, "wb") as fh:
            np.save(fh, data)
        return ctx.with_output("array", ProductRef.for_path("npy", final, size=cfg.size))


class ScaleConfig(StageConfig):
    factor: float = 2.0
    out_dir: str = "demo_output"


class ScaleStage(PipelineStage):
    """Multiplies the array by ``factor``."""

    name = "scale"
    Config = ScaleConfig
    requires = ("array",)
    produces = ("scaled",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        data = np.load(ctx.get("array").path, mmap_mode="r")
        final = Path(self.config.out_dir) / f"scaled_{self.config.factor:g}.npy"
        with atomic_path(final) as tmp, open(tmp, "wb") as fh:
            np.save(fh, data * self.config.factor)
        return ctx.with_output("scaled", ProductRef.for_path("npy", final))


class SummaryConfig(StageConfig):
    out_dir: str = "demo_output"


class SummaryStage(PipelineStage):
    """Writes mean and rms of the scaled array as JSON."""

    name = "summary"
    Config = SummaryConfig
    requires = ("scaled",)
    produces = ("summary",)

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        data = np.load(ctx.get("scaled").path, mmap_mode="r")
        stats = {"mean": float(data.mean()), "rms": float(data.std())}
        final = Path(self.config.out_dir) / "summary.json"
        with atomic_path(final) as tmp:
            tmp.write_text(json.dumps(stats))
        return ctx.with_output("summary", ProductRef.for_path("json", final, **stats))
