"""Thread limits of the numeric kernels: one clamp for numba's parallel loops."""

from __future__ import annotations

import numba


def set_numba_threads(nthreads: int | None) -> None:
    """numba's thread count for the calling thread (its parallel loops), between 1 and the
    pool's size (``NUMBA_NUM_THREADS``); None leaves it as it is."""
    if nthreads is not None:
        numba.set_num_threads(max(1, min(int(nthreads), numba.config.NUMBA_NUM_THREADS)))


__all__ = ["set_numba_threads"]
