"""Cheap, stable checksums of files and directories (a Measurement Set is a directory)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_FULL_HASH_LIMIT = 64 * 1024 * 1024  # bytes hashed in full; larger files are sampled


def file_checksum(path: str | Path) -> str:
    """sha256 over size plus content (head, middle and tail for files above 64 MiB)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
                h.update(block)
        else:
            block = 4 * 1024 * 1024
            for offset in (0, size // 2, size - block):
                fh.seek(offset)
                h.update(fh.read(block))
    return "sha256:" + h.hexdigest()[:32]


def path_checksum(path: str | Path) -> str:
    """Checksum of a file, or of a directory tree (relative names, sizes and contents)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"cannot checksum {p}: it does not exist")
    if p.is_file():
        return file_checksum(p)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            fp = Path(root) / name
            h.update(str(fp.relative_to(p)).encode())
            h.update(file_checksum(fp).encode())
    return "sha256:" + h.hexdigest()[:32]
