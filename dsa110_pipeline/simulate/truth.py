"""The truth written beside each simulated group: a JSON summary and an npz of arrays.

npz keys (per group):
  source_name, source_ra, source_dec (rad, ICRS), source_flux_ref (Jy at source_ref_freq_hz),
  source_spectral_index, source_ref_freq_hz, source_flux (nsrc, nfreq: intrinsic Jy per
  channel), source_beam (nsrc, ntime, nfreq: primary-beam power; apparent = flux * beam),
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
import os
from pathlib import Path

import numpy as np


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_truth(json_path: Path, npz_path: Path, summary: dict, arrays: dict) -> None:
    """Write the JSON summary and the npz of arrays (each under a temporary name first)."""
    def wj(p: Path) -> None:
        p.write_text(json.dumps(summary, indent=1, default=_jsonable))

    def wn(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    _atomic(Path(npz_path), wn)
    _atomic(Path(json_path), wj)


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
