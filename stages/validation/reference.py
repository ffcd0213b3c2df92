"""Reference catalogs for validation: an NVSS-format catalog file or a simulation truth.

Catalog files go through :func:`dsa110_pipeline.catalogs.read_catalog`. Simulation truth is
the simulator's npz (keys ``source_ra``, ``source_dec`` (rad), ``source_flux_ref``,
``source_spectral_index``, ``source_ref_freq_hz``, ``source_name``) or a JSON file holding
either a ``sources`` table (list of records or dict of columns; ``ra``/``dec`` in rad or
``ra_deg``/``dec_deg``, ``flux_jy``, optional ``spectral_index``, ``ref_freq_hz``, ``name``),
the same ``source_*`` keys, or the path of its npz (a key ending in ``npz``, or a file of the
same stem beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dsa110_pipeline.catalogs import (
    DEFAULT_REF_FREQ_HZ,
    DEFAULT_SPECTRAL_INDEX,
    SourceCatalog,
    read_catalog,
)
from dsa110_pipeline.errors import InputError


def _from_columns(cols: dict[str, Any], source: str) -> SourceCatalog:
    low = {k.lower(): v for k, v in cols.items()}

    def pick(*names: str) -> Any:
        for n in names:
            if n in low:
                return low[n]
        return None

    ra = pick("source_ra", "ra", "ra_rad")
    dec = pick("source_dec", "dec", "dec_rad")
    if ra is None and pick("ra_deg") is not None:
        ra, dec = np.radians(np.asarray(pick("ra_deg"), float)), np.radians(
            np.asarray(pick("dec_deg"), float))
    flux = pick("source_flux_ref", "flux_jy_ref", "flux_jy", "flux", "catalog_flux_jy")
    if ra is None or dec is None or flux is None:
        raise InputError("truth has no source positions/fluxes (expected ra/dec/flux_jy or "
                         f"source_ra/source_dec/source_flux_ref; found {sorted(cols)})",
                         files=[source])
    ra = np.mod(np.asarray(ra, float), 2 * np.pi)
    alpha = pick("source_spectral_index", "spectral_index", "alpha")
    ref = pick("source_ref_freq_hz", "ref_freq_hz")
    name = pick("source_name", "name")
    return SourceCatalog.from_arrays(
        ra, np.asarray(dec, float), np.asarray(flux, float),
        name=None if name is None else np.asarray(name, str),
        spectral_index=DEFAULT_SPECTRAL_INDEX if alpha is None else np.asarray(alpha, float),
        ref_freq_hz=DEFAULT_REF_FREQ_HZ if ref is None else np.asarray(ref, float),
        source=source)


def read_truth_catalog(path: str | Path) -> SourceCatalog:
    """Read a simulation truth (npz or JSON) as a :class:`SourceCatalog`."""
    p = Path(path)
    if not p.is_file():
        raise InputError("truth file does not exist", files=[str(p)])
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return _from_columns({k: z[k] for k in z.files}, str(p))
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("cannot read truth JSON", files=[str(p)], cause=exc) from exc
    if isinstance(doc, list):
        doc = {"sources": doc}
    if not isinstance(doc, dict):
        raise InputError("truth JSON must be an object or a list of sources", files=[str(p)])
    src = doc.get("sources")
    if isinstance(src, list):
        if not src:
            return _empty(str(p))
        keys = {k for row in src for k in row}
        return _from_columns({k: [row.get(k) for row in src] for k in keys}, str(p))
    if isinstance(src, dict):
        return _from_columns(src, str(p))
    if any(k.lower() in ("source_ra", "ra", "ra_deg") for k in doc):
        return _from_columns(doc, str(p))
    npz = next((v for k, v in doc.items() if k.lower().endswith("npz") and isinstance(v, str)),
               None)
    cand = [p.parent / npz] if npz else []
    cand.append(p.with_suffix(".npz"))
    for c in cand:
        if Path(c).is_file():
            return read_truth_catalog(c)
    raise InputError("truth JSON names no sources and no npz of them", files=[str(p)])


def _empty(source: str) -> SourceCatalog:
    z = np.zeros(0)
    return SourceCatalog(name=np.zeros(0, str), ra=z, dec=z, flux_jy=z, spectral_index=z,
                         ref_freq_hz=z, source=source)


def load_reference(path: str | Path,
                   kind: Literal["auto", "catalog", "truth"] = "auto") -> SourceCatalog:
    """Load the reference catalog; ``auto`` takes .json/.npz as truth, else a catalog file."""
    p = Path(path)
    if kind == "auto":
        kind = "truth" if p.suffix.lower() in (".json", ".npz") else "catalog"
    if kind == "truth":
        return read_truth_catalog(p)
    return read_catalog(p)


__all__ = ["load_reference", "read_truth_catalog"]
