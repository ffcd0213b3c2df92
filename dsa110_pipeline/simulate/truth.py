"""The truth written beside each simulated group: a JSON summary and an npz of arrays.

npz keys (per group):
  source_name, source_ra, source_dec (rad, ICRS), source_flux_ref (Jy at source_ref_freq_hz),
  source_spectral_index, source_ref_freq_hz, source_flux (nsrc, nfreq: intrinsic Jy per
  channel, in this group: a variable's factor applied), source_variability (nsrc: that
  factor, 1 for steady sources), source_variable_kind (nsrc: "", "flare", "dip", "step"),
  source_in_survey (nsrc: False for a source left out of the survey catalog, a new one),
  source_beam (nsrc, ntime, nfreq: primary-beam power; apparent = flux * beam),
  source_lmn (ntime, nsrc, 3: ENU direction cosines), freq_array (nsub, nchan: Hz, file
  order, descending), time_array (ntime: JD), time_mjd_s (ntime: MJD seconds, as in the
  MS), lst_array (ntime: rad),
  antenna_numbers, antenna_names, antenna_active, antenna_dead (all stations),
  gains (ntime, nstation, npol complex), bandpass (nstation, nfreq, npol complex; gains and
  bandpass are 1 where disabled and 0 for dead antennas), rfi_mask (ntime, nfreq bool),
  rfi_power_jy (ntime, nfreq), noise_rms_jy (scalar: cross-correlation rms per real or
  imaginary part, in sky units; 0 without noise), noise_rms_auto_jy, pointing_enu (3,).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_text_atomic
from ..catalogs import DEFAULT_REF_FREQ_HZ, DEFAULT_SPECTRAL_INDEX, SourceCatalog
from ..errors import InputError


def write_truth(json_path: Path, npz_path: Path, summary: dict, arrays: dict) -> None:
    """Write the JSON summary and the npz of arrays (each under a temporary name first)."""
    with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    write_text_atomic(json_path, json.dumps(summary, indent=1, default=_jsonable))


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_truth(npz_path: str | Path) -> dict[str, np.ndarray]:
    """Load a truth npz into a dict of arrays."""
    with np.load(npz_path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -- the truth's sources as a catalog (for the judges: tests and perf scoring) ----------

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


def truth_catalog(path: str | Path) -> SourceCatalog:
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
            return truth_catalog(c)
    raise InputError("truth JSON names no sources and no npz of them", files=[str(p)])


def _empty(source: str) -> SourceCatalog:
    z = np.zeros(0)
    return SourceCatalog(name=np.zeros(0, str), ra=z, dec=z, flux_jy=z, spectral_index=z,
                         ref_freq_hz=z, source=source)
