"""Offline astropy: no downloads, and the Earth-orientation (IERS) table from a binary cache.

astropy parses its bundled IERS-A text table (``finals2000A.all``, 20 000 lines) the first
time a process needs UT1 or polar motion: about 3 s, paid again by every fresh dask worker
at its first sidereal time. :func:`offline_astropy` installs the same table from a binary
cache written the first time (in the per-user cache directory, keyed by the astropy and
astropy-iers-data versions), which takes ~20 ms. The numbers are astropy's own, so LSTs and
apparent coordinates are unchanged to the last bit. The cache is plain arrays (``.npz``
read with ``allow_pickle=False``, metadata as JSON), never a pickle: whoever can write the
cache directory can at worst make astropy's numbers wrong, not run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
    return cache_dir() / f"iers-auto-astropy{astropy.__version__}-data{data}.npz"


def _plain(obj: Any) -> Any:
    """JSON value of a numpy scalar (else its text)."""
    return obj.item() if hasattr(obj, "item") else str(obj)


def _save_table(table: Any, fh: Any) -> None:
    """Write an IERS table as plain arrays: values, units, masks; meta as JSON."""
    import numpy as np

    arrays: dict[str, Any] = {"__names__": np.array(table.colnames),
                              "__meta__": np.array(json.dumps(dict(table.meta), default=_plain))}
    for i, name in enumerate(table.colnames):
        col = table[name]
        arrays[f"v{i}"] = np.asarray(getattr(col, "value", col))
        unit = getattr(col, "unit", None)
        arrays[f"u{i}"] = np.array("" if unit is None else unit.to_string())
        if hasattr(col, "mask"):
            arrays[f"m{i}"] = np.asarray(col.mask, bool)
    np.savez(fh, **arrays)


def _load_cached(path: Path) -> Any:
    """The IERS table of the cache, or None when it cannot be read (no pickle)."""
    import astropy.units as u
    import numpy as np
    from astropy.table import Column, MaskedColumn
    from astropy.utils.iers import IERS_Auto

    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["__names__"]]
            meta = json.loads(str(z["__meta__"]))
            cols: list[Any] = []
            for i, name in enumerate(names):
                values, unit = z[f"v{i}"], str(z[f"u{i}"])
                if f"m{i}" in z:
                    cols.append(MaskedColumn(values, name=name, mask=z[f"m{i}"],
                                             unit=unit or None))
                elif unit:
                    cols.append(u.Quantity(values, unit))
                else:
                    cols.append(Column(values, name=name))
        table = IERS_Auto(cols, names=names, meta=meta)
    except Exception:
        return None
    return table if len(table) > 0 else None


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
            _save_table(table, fh)
    except OSError:
        pass


__all__ = ["cache_dir", "offline_astropy"]
