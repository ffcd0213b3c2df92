"""A stage seen through renamed context keys.

The wrapped stage keeps its own key names (``ms``, ``images``); the wrapper maps
them onto the keys of a larger graph (``2026-01-25T22:00:00/ms``), so the same
stage class can run once per observation group, or once per sweep variant, in
one plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .context import PipelineContext
from .stage import PipelineStage

#: Separates an owner (a group, a window) from a product or stage name in a night's keys.
SEP = "/"


def key(owner: str, inner: str) -> str:
    """The night-wide key of ``inner`` owned by a group or window: ``<owner>/<inner>``."""
    return f"{owner}{SEP}{inner}"


class MappedStage(PipelineStage):
    """Runs ``inner`` with ``inputs``/``outputs`` maps of inner key -> outer key."""

    def __init__(self, inner: PipelineStage, *, name: str, inputs: Mapping[str, str],
                 outputs: Mapping[str, str], group_id: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.inner = inner
        self.config = inner.config
        self.name = name  # type: ignore[misc]
        self.version = inner.version  # type: ignore[misc]
        self.in_map = dict(inputs)
        self.out_map = dict(outputs)
        self.group_id = group_id
        self.extra_metadata = dict(metadata or {})
        missing = [k for k in (*inner.requires, *inner.produces)
                   if k not in self.in_map and k not in self.out_map]
        if missing:
            raise ValueError(f"mapping of stage '{inner.name}' lacks key(s) {missing}")
        self.requires = tuple(self.in_map[k] for k in inner.requires)
        self.produces = tuple(self.out_map[k] for k in inner.produces)
        self.executor, self.retries, self.timeout = inner.executor, inner.retries, inner.timeout
        self.transient = inner.transient  # type: ignore[misc]
        self.resources = inner.resources  # type: ignore[misc]
        self.cacheable = inner.cacheable  # type: ignore[misc]

    def _inner_ctx(self, ctx: PipelineContext) -> PipelineContext:
        outputs = {inner: ctx.get(outer) for inner, outer in self.in_map.items()
                   if ctx.has(outer)}
        changes: dict[str, Any] = {"outputs": outputs, "inputs": {},
                                   "metadata": {**ctx.metadata, **self.extra_metadata}}
        if self.group_id is not None:
            changes["group_id"] = self.group_id
        return ctx._derive(**changes)

    def validate(self, ctx: PipelineContext) -> None:
        self.inner.validate(self._inner_ctx(ctx))

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        inner_in = self._inner_ctx(ctx)
        out = self.inner.execute(inner_in)
        produced = {self.out_map.get(k, k): v for k, v in out.outputs.items()
                    if inner_in.outputs.get(k) is not v}
        new_meta = {k: v for k, v in out.metadata.items()
                    if k not in self.extra_metadata and inner_in.metadata.get(k) != v}
        result = ctx.with_outputs(produced).with_metadata(**new_meta)
        for stage_name, metrics in out.metrics.items():
            if inner_in.metrics.get(stage_name) != metrics:
                result = result.with_metrics(self.name, **metrics)
        return result

    def cleanup(self, ctx: PipelineContext) -> None:
        self.inner.cleanup(self._inner_ctx(ctx))

    def config_hash(self) -> str:
        return self.inner.config_hash()
