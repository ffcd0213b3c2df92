"""Small stage builders shared by the framework tests."""

from __future__ import annotations

import time
from pathlib import Path

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.stage import FunctionStage


def file_stage(name: str, out_dir: Path, produces: str, requires: tuple[str, ...] = (),
               sleep: float = 0.0, log: list | None = None, **kwargs) -> FunctionStage:
    """A stage that (optionally sleeps and) writes ``<out_dir>/<produces>.txt``."""

    def fn(ctx: PipelineContext) -> PipelineContext:
        start = time.perf_counter()
        if sleep:
            time.sleep(sleep)
        path = out_dir / f"{produces}.txt"
        text = "|".join([name] + [str(ctx.get(k).checksum) for k in requires])
        path.write_text(text)
        if log is not None:
            log.append((name, start, time.perf_counter()))
        return ctx.with_output(produces, ProductRef.for_path("text", path))

    return FunctionStage(fn, name=name, requires=requires, produces=(produces,), **kwargs)
