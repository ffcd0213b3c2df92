"""Parameter sweeps: one stage expanded into variants over a grid of config values, each
with its own name and products, in one plan."""

from __future__ import annotations

from itertools import product
from typing import Any

from .context import PipelineContext
from .errors import (
    ConfigError,
)
from .mapped import MappedStage
from .stage import PipelineStage


class VariantStage(MappedStage):
    """One point of a parameter sweep: the wrapped stage with some config values replaced.

    It is named ``name[key=value,...]``; its products get the same suffix so
    variants coexist in one plan, and ``ctx.metadata["variant_tag"]`` tells the
    wrapped stage to keep its file names apart (see :func:`variant_suffix`).
    """

    def __init__(self, inner: PipelineStage, variant: dict[str, Any]) -> None:
        self.tag = ",".join(f"{k}={v}" for k, v in variant.items())
        self.variant = dict(variant)
        clone = object.__new__(type(inner))
        clone.__dict__.update(inner.__dict__)
        clone.config = type(inner.config)(**{**inner.config.model_dump(), **variant})
        super().__init__(clone, name=f"{inner.name}[{self.tag}]",
                         inputs={k: k for k in inner.requires},
                         outputs={k: f"{k}[{self.tag}]" for k in inner.produces},
                         metadata={"variant_tag": self.tag})


def variant_suffix(ctx: PipelineContext) -> str:
    """A file-name-safe suffix for a sweep variant ("" outside sweeps)."""
    tag = ctx.metadata.get("variant_tag")
    if not tag:
        return ""
    return "_" + "".join(c if c.isalnum() or c in "-." else "_" for c in tag)


def expand_sweep(stage: PipelineStage, grid: dict[str, list[Any]]) -> list[PipelineStage]:
    """Variants of ``stage`` over the product of ``grid`` (config key -> values)."""
    if not grid:
        return [stage]
    keys = sorted(grid)
    known = stage.config.model_dump()
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ConfigError(f"sweep over unknown config key(s) {unknown} of stage '{stage.name}'")
    return [VariantStage(stage, dict(zip(keys, values)))
            for values in product(*(grid[k] for k in keys))]

