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

    def with_stage(self, stage: str) -> PipelineError:
        """The same error (class, message, files, cause) labelled with ``stage``: for a
        stage that calls code written for another (apply_calibration -> calibration)."""
        return type(self)(self.detail, stage=stage, files=self.files, cause=self.cause)


class ConfigError(PipelineError, ValueError):
    """Bad configuration: unknown key, wrong type, impossible value."""


class InputError(PipelineError, ValueError):
    """Bad input data (missing, truncated, corrupt, inconsistent). Never retried."""


class RoleUnfit(InputError):
    """The group's data cannot serve its role (a calibrator group whose solutions fail
    QA). Never retried in that role: the orchestrator runs the group again at once in the
    role ``pipeline.role_fallback`` names for it, if any, else quarantines it as bad input."""


class TransientError(PipelineError):
    """A failure worth retrying (worker lost, temporary I/O problem)."""


class ContractError(PipelineError):
    """A stage broke its contract, e.g. did not produce a declared output."""


class PlanError(PipelineError):
    """The pipeline graph cannot run: a cycle or a requirement nobody produces."""


class StageTimeout(PipelineError):
    """A stage exceeded its time limit and was stopped."""


class StorageError(PipelineError):
    """Output or scratch storage cannot be written: no permission, read-only, or full."""


def storage_error(exc: OSError | Exception, path: str | None = None, *,
                  stage: str | None = None) -> StorageError:
    """A one-line :class:`StorageError` for an OS or database error on ``path``: says
    "no space left on <path>" for a full disk, else the OS's reason."""
    import errno

    where = path or getattr(exc, "filename", None) or "?"
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOSPC or "disk is full" in text or "No space left" in text:
        msg = f"no space left on {where}"
    elif code in (errno.EROFS,) or "readonly" in text or "read-only" in text:
        msg = f"{where} is on a read-only file system or not writable"
    elif code in (errno.EACCES, errno.EPERM):
        msg = f"permission denied writing {where}"
    else:
        reason = getattr(exc, "strerror", None) or text
        msg = f"cannot write {where}: {reason}"
    return StorageError(msg, stage=stage, cause=exc)


#: Text of errors that mean a full disk where no errno survives: SQLite's, and casacore's
#: (a table write on a full disk fails an assertion in its lock file or storage managers).
_NO_SPACE_TEXT = ("No space left on device", "disk is full", "tracePWRITE", "Disk quota exceeded")


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) is a full disk: ENOSPC/EDQUOT, or the text
    that casacore and SQLite give for it."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(e) for t in _NO_SPACE_TEXT):
            return True
        e = e.__cause__ or e.__context__ or getattr(e, "cause", None)
    return False


def no_space_error(exc: BaseException, roots: Iterable[str | None], *,
                   stage: str | None = None) -> StorageError:
    """A one-line "no space left on <path>" for a full disk met by a stage. ``<path>`` is
    the first of ``roots`` (the output directory, then the scratch directory) that the
    error names, else the one of them with the least free space (a casacore assertion
    names no file)."""
    import shutil

    text = str(exc)
    named = [r for r in roots if r]
    where = next((r for r in named if r in text), None)
    if where is None:
        fname = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
        where = next((r for r in named if fname and str(fname).startswith(r)), None)
    if where is None and named:
        def free(r: str) -> float:
            try:
                return float(shutil.disk_usage(r).free)
            except OSError:
                return float("inf")
        where = min(named, key=free)
    return StorageError(f"no space left on {where or '?'}", stage=stage, cause=exc)
