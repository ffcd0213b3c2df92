"""The one numba thread clamp."""

from __future__ import annotations

import numba

from dsa110_pipeline.threads import set_numba_threads


def test_numba_threads_are_clamped_to_the_pool():
    before = numba.get_num_threads()
    try:
        set_numba_threads(0)
        assert numba.get_num_threads() == 1
        set_numba_threads(10**6)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
        set_numba_threads(1)
        set_numba_threads(None)  # left as it is
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
