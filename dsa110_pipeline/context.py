"""The immutable context that flows from stage to stage.

It carries references to products (files), never large arrays, so it is cheap to
hash, to send to a dask worker and to store in the state DB or a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class ProductRef(BaseModel):
    """A reference to a complete product on disk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    path: str
    checksum: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind", "path")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        return v

    @classmethod
    def for_path(cls, kind: str, path: str | Path, *, checksum: str | None = None,
                 **meta: Any) -> ProductRef:
        """Build a reference, computing the checksum of ``path`` unless one is given."""
        from .checksum import path_checksum

        p = Path(path)
        return cls(kind=kind, path=str(p), checksum=checksum or path_checksum(p), meta=meta)

    def exists(self) -> bool:
        return os.path.exists(self.path)


Product = ProductRef | list[ProductRef]


class ProvenanceRecord(BaseModel):
    """What ran to make a stage's outputs (or that a cached result was reused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    stage_version: str
    cache_key: str | None = None
    cache_hit: bool = False
    config_hash: str
    input_checksums: dict[str, Any] = Field(default_factory=dict)
    pipeline_version: str
    started: float
    finished: float
    attempts: int = 1
    host: str = ""
    variant: dict[str, Any] = Field(default_factory=dict)


class PipelineContext(BaseModel):
    """Immutable state of one pipeline run (one observation group).

    Use :meth:`with_output`, :meth:`with_outputs`, :meth:`with_metadata`,
    :meth:`with_metrics` to derive new contexts; the original is never changed.
    The runtime (dask client, scratch) rides along privately and is not serialised.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    group_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Product] = Field(default_factory=dict)
    outputs: dict[str, Product] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    provenance: tuple[ProvenanceRecord, ...] = ()
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _runtime: Any = PrivateAttr(default=None)

    # -- derivation -------------------------------------------------------
    def _derive(self, **changes: Any) -> PipelineContext:
        # A hand-made shallow copy: pydantic's model_copy costs ~25 µs, and the
        # runner derives contexts on its hot path. Values are trusted here.
        new = object.__new__(type(self))
        state = dict(self.__dict__)
        state.update(changes)
        object.__setattr__(new, "__dict__", state)
        object.__setattr__(new, "__pydantic_fields_set__",
                           self.__pydantic_fields_set__ | changes.keys())
        object.__setattr__(new, "__pydantic_extra__", None)
        object.__setattr__(new, "__pydantic_private__", {"_runtime": self._runtime})
        return new

    def with_output(self, key: str, ref: Product) -> PipelineContext:
        return self.with_outputs({key: ref})

    def with_outputs(self, refs: Mapping[str, Product]) -> PipelineContext:
        for key, ref in refs.items():
            items = ref if isinstance(ref, list) else [ref]
            if not all(isinstance(r, ProductRef) for r in items):
                raise TypeError(f"output '{key}' must be a ProductRef or a list of them, "
                                f"not {type(ref).__name__}")
        outputs = dict(self.outputs)  # dict(d) copies without rehashing
        outputs.update(refs)
        return self._derive(outputs=outputs)

    def with_metadata(self, **items: Any) -> PipelineContext:
        return self._derive(metadata={**self.metadata, **items})

    def with_metrics(self, stage: str, **metrics: Any) -> PipelineContext:
        merged = {**self.metrics.get(stage, {}), **metrics}
        return self._derive(metrics={**self.metrics, stage: merged})

    def with_provenance(self, record: ProvenanceRecord) -> PipelineContext:
        return self._derive(provenance=self.provenance + (record,))

    def with_runtime(self, runtime: Any) -> PipelineContext:
        new = self._derive()
        new._runtime = runtime
        return new

    # -- access -----------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.outputs or key in self.inputs

    def get(self, key: str) -> Product:
        """The product under ``key``: outputs first, then inputs."""
        if key in self.outputs:
            return self.outputs[key]
        if key in self.inputs:
            return self.inputs[key]
        known = sorted({*self.inputs, *self.outputs})
        raise KeyError(f"context has no product '{key}' (known: {', '.join(known) or 'none'})")

    @property
    def runtime(self) -> Any:
        """The runner's runtime (dask client, scratch, logger); None when run bare."""
        return self._runtime

    @property
    def client(self) -> Any:
        """The dask client owned by the runner. Stages never create their own."""
        rt = self._runtime
        if rt is None or getattr(rt, "client", None) is None:
            raise RuntimeError("no dask client in this context: run the stage through the "
                               "Runner (it hands stages a client) or use ctx.with_runtime()")
        return rt.client

    # -- serialisation ----------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PipelineContext:
        return cls.model_validate_json(text)

    def digest(self) -> str:
        """A short content hash of the whole context."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
