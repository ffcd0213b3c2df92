"""Small helpers shared by the catalog readers."""

from __future__ import annotations

from pathlib import Path

from ..checksum import file_checksum
from ..errors import InputError


def resolve_file(path: str | Path, what: str) -> tuple[str, str]:
    """Resolved path and content checksum of an existing file: the cache key of a read.

    The checksum is recomputed on every call (catalogs are small), so an edited
    file gets a new key and is read again.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{what} file does not exist or is not a file", files=[str(p)])
    resolved = str(p.resolve())
    try:
        checksum = file_checksum(resolved)
    except OSError as exc:
        raise InputError(f"cannot read {what} file", files=[str(p)], cause=exc) from exc
    return resolved, checksum
