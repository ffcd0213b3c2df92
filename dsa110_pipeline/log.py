"""Structured logging (structlog): readable console lines, or JSON lines.

Every record carries ``run_id``, ``group_id`` and ``stage`` when they are bound
(the runner binds them around each stage through structlog's contextvars).
Nothing is configured at import.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def _stderr_logger(*_args: Any) -> Any:
    """A logger writing to the ``sys.stderr`` of the moment it is made, not of the moment
    logging was configured (a stream replaced since, e.g. by a test's capture, may be
    closed by now)."""
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(*, json_lines: bool = False, level: str = "INFO", stream: Any = None) -> None:
    """Set up structlog once per process: console renderer or JSON lines."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: Any = (structlog.processors.JSONRenderer() if json_lines
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream) if stream is not None
        else _stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(**binds: Any) -> Any:
    return structlog.get_logger("dsa110").bind(**binds)


bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
