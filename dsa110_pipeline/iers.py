"""Offline astropy: no downloads, and the Earth-orientation (IERS) table from a binary cache.

astropy parses its bundled IERS-A text table (``finals2000A.all``, 20 000 lines) the first
time a process needs UT1 or polar motion: about 3 s, paid again by every fresh dask worker
at its first sidereal time. :func:`offline_astropy` installs the same table from a pickle
written the first time (in the per-user cache directory, keyed by the astropy and
astropy-iers-data versions), which takes ~20 ms. The numbers are astropy's own, so LSTs and
apparent coordinates are unchanged to the last bit. The cache is a pickle: keep its
directory private to the user running the pipeline, as the default is.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from .atomic import atomic_path

_done = False


def cache_dir() -> Path:
    """``$DSA110_CACHE_DIR``, else ``$XDG_CACHE_HOME/dsa110_pipeline``, else
    ``~/.cache/dsa110_pipeline``."""
    env = os.environ.get("DSA110_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dsa110_pipeline"


def _cache_file() -> Path:
    import astropy

    try:
        import astropy_iers_data

        data = astropy_iers_data.__version__
    except Exception:  # older astropy bundles the tables itself
        data = "bundled"
    return cache_dir() / f"iers-auto-astropy{astropy.__version__}-data{data}.pkl"


def _load_cached(path: Path):
    from astropy.utils.iers import IERS

    try:
        with open(path, "rb") as fh:
            table = pickle.load(fh)
    except Exception:
        return None
    return table if isinstance(table, IERS) and len(table) > 0 else None


def offline_astropy(use_cache: bool = True) -> None:
    """Stop astropy from downloading IERS tables (the pipeline runs offline) and, with
    ``use_cache``, install its Earth-orientation table from the binary cache (built on the
    first call). Idempotent; a cache that cannot be read or written only costs the parse."""
    global _done
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    if _done or not use_cache:
        return
    _done = True
    path = _cache_file()
    table = _load_cached(path) if path.is_file() else None
    if table is not None:
        iers.earth_orientation_table.set(table)
        return
    table = iers.earth_orientation_table.get()  # the slow parse, once per cache
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            pickle.dump(table, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        pass


__all__ = ["cache_dir", "offline_astropy"]
