"""Shared fixtures. Real data is read in place from ../shared/data, never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("DSA110_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data beside the repository; skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set DSA110_SHARED_DATA)")
    return SHARED_DATA
