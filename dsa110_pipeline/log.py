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


class RotatingFile:
    """A file-like log target that rotates at ``max_bytes``, keeping ``backup_count`` old
    files (``log``, ``log.1``, ...): a service's log never fills the disk."""

    def __init__(self, path: str, max_bytes: int, backup_count: int) -> None:
        from logging.handlers import RotatingFileHandler

        self.handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backup_count,
                                           encoding="utf-8")

    def write(self, text: str) -> None:
        self.handler.handle(logging.makeLogRecord({"msg": text.rstrip("\n")}))

    def flush(self) -> None:
        self.handler.flush()


def configure_logging(*, json_lines: bool = False, level: str = "INFO", stream: Any = None,
                      file: str | None = None, max_bytes: int = 50_000_000,
                      backup_count: int = 5) -> None:
    """Set up structlog once per process: console renderer or JSON lines, to standard
    error, ``stream``, or a rotated ``file``."""
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
        logger_factory=(structlog.WriteLoggerFactory(
            file=RotatingFile(file, max_bytes, backup_count)) if file is not None  # type: ignore[arg-type]
            else structlog.PrintLoggerFactory(file=stream) if stream is not None
            else _stderr_logger),
        cache_logger_on_first_use=False,
    )


def get_logger(**binds: Any) -> Any:
    return structlog.get_logger("dsa110").bind(**binds)


bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
