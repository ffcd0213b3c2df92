"""The cached Earth-orientation table gives astropy's own sidereal times, and a bad cache
only costs the parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, time
t0 = time.perf_counter()
from dsa110_pipeline.iers import offline_astropy, _cache_file
offline_astropy()
from astropy.time import Time
t = Time([2461066.5, 2461066.75, 2461100.123], format="jd", scale="utc")
lst = t.sidereal_time("apparent", longitude=-118.2834).rad.tolist()
print(json.dumps({"lst": lst, "dut1": t.delta_ut1_utc.tolist(),
                  "cache": str(_cache_file()), "s": time.perf_counter() - t0}))
"""


def _probe(cache: Path) -> dict:
    env = {**os.environ, "DSA110_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cached_table_gives_identical_sidereal_times(tmp_path: Path) -> None:
    first = _probe(tmp_path)  # parses the text table and writes the cache
    cache = Path(first["cache"])
    assert cache.parent == tmp_path and cache.is_file() and cache.stat().st_size > 100_000
    second = _probe(tmp_path)  # reads the cache
    assert second["lst"] == first["lst"]
    assert second["dut1"] == first["dut1"]
    assert any(abs(d) > 1e-3 for d in first["dut1"])  # UT1 - UTC really came from the table


def test_corrupt_cache_is_replaced(tmp_path: Path) -> None:
    good = _probe(tmp_path)
    cache = Path(good["cache"])
    cache.write_bytes(b"not a pickle")
    again = _probe(tmp_path)
    assert again["lst"] == good["lst"]
    assert cache.stat().st_size > 100_000  # rewritten from the parsed table


def test_cache_is_plain_arrays_not_a_pickle(tmp_path: Path) -> None:
    """The cache in the user's directory is read without unpickling anything."""
    import numpy as np
    from astropy.utils import iers

    from dsa110_pipeline.iers import _load_cached

    cache = Path(_probe(tmp_path)["cache"])
    assert cache.suffix == ".npz"
    with np.load(cache, allow_pickle=False) as z:  # raises on any pickled object array
        assert all(z[k].dtype != object for k in z.files)
    table = _load_cached(cache)
    assert isinstance(table, iers.IERS_Auto) and len(table) > 10_000
    iers.conf.auto_download = False
    parsed = iers.earth_orientation_table.get()
    for name in ("MJD", "UT1_UTC", "PM_x", "UT1Flag", "PolPMFlag_A"):
        np.testing.assert_array_equal(np.asarray(getattr(table[name], "value", table[name])),
                                      np.asarray(getattr(parsed[name], "value",
                                                         parsed[name])), err_msg=name)
    assert table.meta["predictive_index"] == parsed.meta["predictive_index"]
