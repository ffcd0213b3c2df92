"""Exceptions of the pipeline. Each names what failed (stage, files) and why."""

from __future__ import annotations

from collections.abc import Iterable


class PipelineError(Exception):
    """Base class: carries the stage name, the input files involved and the cause."""

    def __init__(self, message: str, *, stage: str | None = None,
                 files: Iterable[str] = (), cause: BaseException | None = None) -> None:
        self.stage = stage
        self.files = tuple(str(f) for f in files)
        self.cause = cause
        self.detail = message
        parts = []
        if stage:
            parts.append(f"stage '{stage}'")
        parts.append(message)
        text = ": ".join(parts)
        if self.files:
            text += f" [files: {', '.join(self.files)}]"
        if cause is not None and str(cause) not in message:
            text += f" (cause: {type(cause).__name__}: {cause})"
        super().__init__(text)


class ConfigError(PipelineError, ValueError):
    """Bad configuration: unknown key, wrong type, impossible value."""


class InputError(PipelineError, ValueError):
    """Bad input data (missing, truncated, corrupt, inconsistent). Never retried."""


class TransientError(PipelineError):
    """A failure worth retrying (worker lost, temporary I/O problem)."""


class ContractError(PipelineError):
    """A stage broke its contract, e.g. did not produce a declared output."""


class PlanError(PipelineError):
    """The pipeline graph cannot run: a cycle or a requirement nobody produces."""


class StageTimeout(PipelineError):
    """A stage exceeded its time limit and was stopped."""
