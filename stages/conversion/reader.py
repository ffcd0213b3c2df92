"""Chunked, validating reader of UVH5 files (one file = one subband).

:func:`read_header` reads the small per-file metadata (antennas, times, uvw,
frequencies) and checks it; :func:`read_rows` reads a block of rows (integrations)
of visibilities, flags and nsamples with h5py slicing, so a whole group is never
held in memory. Every problem raises :class:`InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dsa110_pipeline.errors import InputError
from dsa110_pipeline.uvh5 import UVH5Header

STAGE = "conversion"

_REQUIRED_HEADER = ("Nblts", "Nfreqs", "Npols", "Ntimes", "ant_1_array", "ant_2_array",
                    "antenna_numbers", "antenna_positions", "freq_array", "channel_width",
                    "integration_time", "polarization_array", "time_array", "uvw_array",
                    "latitude", "longitude", "altitude", "telescope_name")
_REQUIRED_DATA = ("visdata", "flags", "nsamples")


def _err(path: Path, problem: str, cause: BaseException | None = None) -> InputError:
    return InputError(problem, stage=STAGE, files=[str(path)], cause=cause)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _get(h: h5py.Group, name: str, path: Path, dtype: Any = None) -> np.ndarray:
    try:
        value = np.asarray(h[name][()])
    except KeyError:
        raise _err(path, f"header field '{name}' is missing") from None
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise _err(path, f"header field '{name}' cannot be read (corrupt header)", exc) from exc
    if dtype is None:
        return value
    try:
        return value.astype(dtype)
    except (ValueError, TypeError) as exc:
        raise _err(path, f"header field '{name}' holds {value.dtype} values, not numbers "
                         "(corrupt header)", exc) from exc


def _phase_info(h: h5py.Group) -> tuple[str, dict[str, Any] | None]:
    if "phase_center_catalog" in h:
        cat = h["phase_center_catalog"]
        ids = np.unique(h["phase_center_id_array"][()]) if "phase_center_id_array" in h else []
        keys = list(cat.keys())
        key = str(int(ids[0])) if len(ids) == 1 and str(int(ids[0])) in cat else keys[0]
        if len(ids) > 1:
            return "multi", None
        entry = {k: (np.asarray(v[()]).item() if np.asarray(v[()]).shape == () else v[()])
                 for k, v in cat[key].items()}
        entry = {k: (_text(v) if isinstance(v, bytes) else v) for k, v in entry.items()}
        return str(entry.get("cat_type", "unprojected")), entry
    # older UVH5: phase_type drift/phased
    if "phase_type" in h:
        ptype = _text(h["phase_type"][()])
        if ptype == "phased":
            entry = {"cat_type": "sidereal", "cat_name": _text(h["object_name"][()])
                     if "object_name" in h else "phased",
                     "cat_lon": float(h["phase_center_ra"][()]),
                     "cat_lat": float(h["phase_center_dec"][()]),
                     "cat_frame": _text(h["phase_center_frame"][()])
                     if "phase_center_frame" in h else "icrs",
                     "cat_epoch": float(h["phase_center_epoch"][()])
                     if "phase_center_epoch" in h else 2000.0}
            return "sidereal", entry
    return "unprojected", None


def _extra_keywords(h: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "extra_keywords" in h:
        for k, v in h["extra_keywords"].items():
            val = v[()]
            out[k] = _text(val) if isinstance(val, bytes) else (
                val.item() if isinstance(val, np.generic) else val)
    return out


def read_header(path: str | Path) -> UVH5Header:
    """Read and check the header of one UVH5 file."""
    p = Path(path)
    try:
        return _read_header(p)
    except InputError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise _err(p, "corrupt header (cannot interpret its fields)", exc) from exc


def _read_header(p: Path) -> UVH5Header:
    if not p.is_file():
        raise _err(p, "file does not exist")
    try:
        f = h5py.File(p, "r")
    except (OSError, RuntimeError) as exc:
        raise _err(p, "cannot open as HDF5 (truncated or corrupt file)", exc) from exc
    with f:
        if "Header" not in f:
            raise _err(p, "no 'Header' group: not a UVH5 file")
        if "Data" not in f:
            raise _err(p, "no 'Data' group: not a UVH5 file")
        h = f["Header"]
        for name in _REQUIRED_HEADER:
            if name not in h:
                raise _err(p, f"header field '{name}' is missing")
        for name in _REQUIRED_DATA:
            if name not in f["Data"]:
                raise _err(p, f"data field 'Data/{name}' is missing")
        nblts, nfreqs, npols = (int(_get(h, k, p, np.int64)) for k in ("Nblts", "Nfreqs",
                                                                         "Npols"))
        freq = _get(h, "freq_array", p, np.float64).ravel()
        width = _get(h, "channel_width", p, np.float64)
        width = np.full(freq.shape, float(width)) if width.ndim == 0 else width.ravel()
        names = (tuple(_text(n) for n in _get(h, "antenna_names", p))
                 if "antenna_names" in h else ())
        ptype, centre = _phase_info(h)
        try:
            hdr = UVH5Header(
                path=p,
                telescope_name=_text(_get(h, "telescope_name", p)),
                instrument=_text(h["instrument"][()]) if "instrument" in h else "",
                latitude_deg=float(_get(h, "latitude", p, np.float64)),
                longitude_deg=float(_get(h, "longitude", p, np.float64)),
                altitude_m=float(_get(h, "altitude", p, np.float64)),
                antenna_numbers=_get(h, "antenna_numbers", p, np.int64),
                antenna_names=names,
                antenna_positions=_get(h, "antenna_positions", p, np.float64),
                antenna_diameters=(_get(h, "antenna_diameters", p, np.float64)
                                   if "antenna_diameters" in h else None),
                ant_1_array=_get(h, "ant_1_array", p, np.int64),
                ant_2_array=_get(h, "ant_2_array", p, np.int64),
                time_array=_get(h, "time_array", p, np.float64),
                integration_time=_get(h, "integration_time", p, np.float64),
                lst_array=(_get(h, "lst_array", p, np.float64) if "lst_array" in h
                           else None),
                uvw_array=_get(h, "uvw_array", p, np.float64),
                freq_array=freq,
                channel_width=width,
                polarization_array=_get(h, "polarization_array", p, np.int64).ravel(),
                vis_units=_text(h["vis_units"][()]) if "vis_units" in h else "uncalib",
                phase_type=ptype,
                phase_center=centre,
                extra_keywords=_extra_keywords(h),
                history=_text(h["history"][()]) if "history" in h else "",
                object_name=_text(h["object_name"][()]) if "object_name" in h else "",
                ntimes=int(_get(h, "Ntimes", p, np.int64)),
            )
        except InputError as exc:
            raise _err(p, exc.detail) from exc
        if hdr.nblts != nblts:
            raise _err(p, f"Nblts={nblts} but time_array has {hdr.nblts} entries")
        if hdr.nfreqs != nfreqs:
            raise _err(p, f"Nfreqs={nfreqs} but freq_array has {hdr.nfreqs} entries")
        if hdr.npols != npols:
            raise _err(p, f"Npols={npols} but polarization_array has {hdr.npols} entries")
        if "time_axis_faster_than_bls" in h and bool(h["time_axis_faster_than_bls"][()]):
            raise _err(p, "time-fastest baseline-time ordering is not supported")
        expected = (nblts, nfreqs, npols)
        for name in _REQUIRED_DATA:
            ds = f["Data"][name]
            shape = tuple(ds.shape)
            if len(shape) == 4 and shape[1] == 1:  # old UVH5 with a length-1 spw axis
                shape = (shape[0], shape[2], shape[3])
            if shape != expected:
                raise _err(p, f"Data/{name} has shape {tuple(ds.shape)}, expected {expected}")
    return hdr


def _as_complex(raw: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(raw):
        return raw.astype(np.complex64, copy=False)
    if raw.dtype.names and {"r", "i"} <= set(raw.dtype.names):
        out = np.empty(raw.shape, np.complex64)
        out.real = raw["r"]
        out.imag = raw["i"]
        return out
    raise TypeError(f"visdata has unsupported dtype {raw.dtype}")


def _read_block(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    if ds.ndim == 4:
        return ds[start:stop, 0]
    return ds[start:stop]


def _read_into(ds: h5py.Dataset, start: int, stop: int, buf: np.ndarray | None
               ) -> np.ndarray:
    """Rows [start, stop) of ``ds``, read straight into ``buf`` when it fits (no new
    allocation per chunk), else as a new array."""
    n = stop - start
    if buf is not None and ds.dtype == buf.dtype and buf.shape[0] >= n and (
            tuple(ds.shape[1:]) in (buf.shape[1:], (1, *buf.shape[1:]))):
        dest = buf[:n]
        ds.read_direct(dest.reshape((n, *ds.shape[1:])), source_sel=np.s_[start:stop])
        return dest
    return _read_block(ds, start, stop)


def read_rows(hdr: UVH5Header, start: int, stop: int, *, ascending: bool = True,
              check_nan: bool = True, handle: h5py.File | None = None,
              buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read rows [start, stop) as (vis complex64, flags bool, nsamples float32).

    Shapes are (rows, nfreqs, npols); with ``ascending`` the frequency axis is put in
    ascending order. Non-finite visibilities raise :class:`InputError`. ``buffers``
    (vis, flags, nsamples arrays of at least ``stop - start`` rows) are reused when the
    file's types match, so a chunked reader does not allocate per chunk.
    """
    p = hdr.path
    own = handle is None
    try:
        f = h5py.File(p, "r") if own else handle
    except (OSError, RuntimeError) as exc:
        raise _err(p, "cannot open as HDF5 (truncated or corrupt file)", exc) from exc
    try:
        d = f["Data"]
        bv, bf, bn = buffers if buffers is not None else (None, None, None)
        vis = _as_complex(_read_into(d["visdata"], start, stop, bv))
        flags = _read_into(d["flags"], start, stop, bf).astype(bool, copy=False)
        nsamp = _read_into(d["nsamples"], start, stop, bn).astype(np.float32, copy=False)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise _err(p, f"cannot read data rows {start}..{stop} (truncated or corrupt file)",
                   exc) from exc
    finally:
        if own:
            f.close()
    if check_nan and not np.isfinite(vis.view(np.float32)).all():
        bad = np.flatnonzero(~np.isfinite(vis.view(np.float32).reshape(vis.shape[0], -1))
                             .all(axis=1))
        raise _err(p, f"visdata holds NaN/Inf values (first bad row {start + int(bad[0])})")
    if ascending and hdr.descending:
        vis, flags, nsamp = vis[:, ::-1], flags[:, ::-1], nsamp[:, ::-1]
    return vis, flags, nsamp


def read_nsamples(path: str | Path, start: int, stop: int) -> np.ndarray:
    """nsamples of rows [start, stop) as float32 (rows, nfreqs, npols), file order."""
    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            return np.asarray(_read_block(f["Data"]["nsamples"], start, stop), np.float32)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise _err(p, f"cannot read nsamples rows {start}..{stop} (truncated or corrupt "
                      "file)", exc) from exc


def check_same_layout(ref: UVH5Header, other: UVH5Header) -> None:
    """Raise InputError when ``other`` disagrees with ``ref`` on rows, times or antennas."""
    p = other.path
    if other.ntimes != ref.ntimes:
        raise _err(p, f"has {other.ntimes} integrations / {other.nblts} rows but "
                      f"{ref.path.name} has {ref.ntimes} / {ref.nblts}: subbands disagree on "
                      "the integration count")
    if other.nblts != ref.nblts:
        na, nr = (len(set(h.ant_1_array.tolist()) | set(h.ant_2_array.tolist()))
                  for h in (other, ref))
        raise _err(p, f"has {other.nbls} baselines ({na} antennas) per integration but "
                      f"{ref.path.name} has {ref.nbls} ({nr} antennas): subbands disagree on "
                      "the antennas")
    if not (np.array_equal(other.ant_1_array, ref.ant_1_array)
            and np.array_equal(other.ant_2_array, ref.ant_2_array)):
        raise _err(p, f"baselines (antennas) differ from those of {ref.path.name}")
    if not np.array_equal(np.sort(other.antenna_numbers), np.sort(ref.antenna_numbers)):
        raise _err(p, f"antenna list differs from that of {ref.path.name}")
    if np.max(np.abs(other.time_array - ref.time_array)) * 86400.0 > 1e-3:
        raise _err(p, f"integration times differ from those of {ref.path.name}")
    if not np.array_equal(other.polarization_array, ref.polarization_array):
        raise _err(p, f"polarizations {other.polarization_array.tolist()} differ from "
                      f"{ref.polarization_array.tolist()} of {ref.path.name}")
    if other.nfreqs != ref.nfreqs:
        raise _err(p, f"has {other.nfreqs} channels but {ref.path.name} has {ref.nfreqs}")
