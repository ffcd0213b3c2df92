"""The source list produced by a finder, and its CSV / FITS-table writers.

Angles are radians and fluxes Jy inside; the files carry degrees, arcseconds and Jy
with the unit in each column name (CSV) or column unit (FITS).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from dsa110_pipeline.atomic import atomic_path

_FLOAT_FIELDS = ("ra", "dec", "ra_err", "dec_err", "x", "y", "peak_jy", "peak_err_jy",
                 "int_jy", "int_err_jy", "maj", "min", "pa_deg", "rms_jy")


@dataclass(frozen=True, eq=False)
class SourceTable:
    """Sources found in an image. ``ra``/``dec`` and errors in rad; ``x``/``y`` 0-based
    pixels; ``peak_jy`` (Jy/beam) and ``int_jy`` (Jy) apparent (not PB-corrected);
    ``maj``/``min`` fitted FWHM (rad); ``pa_deg`` east of north; ``rms_jy`` local noise;
    ``fit`` how each source was measured: "gaussian" (a fitted Gaussian), "moments" (the
    flux-weighted moments of its pixels: extended or artefact emission) or "peak" (a fit
    that failed, reported at the peak pixel); None = all "gaussian"."""

    ra: np.ndarray
    dec: np.ndarray
    ra_err: np.ndarray
    dec_err: np.ndarray
    x: np.ndarray
    y: np.ndarray
    peak_jy: np.ndarray
    peak_err_jy: np.ndarray
    int_jy: np.ndarray
    int_err_jy: np.ndarray
    maj: np.ndarray
    min: np.ndarray
    pa_deg: np.ndarray
    rms_jy: np.ndarray
    island: np.ndarray
    finder: str = "unknown"
    fit: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.ra))
        for name in _FLOAT_FIELDS:
            arr = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            if arr.shape != (n,):
                raise ValueError(f"source column '{name}' has shape {arr.shape}, expected ({n},)")
            object.__setattr__(self, name, arr)
        isl = np.atleast_1d(np.asarray(self.island, dtype=np.int64))
        if isl.shape != (n,):
            raise ValueError(f"source column 'island' has shape {isl.shape}, expected ({n},)")
        object.__setattr__(self, "island", isl)
        fit = np.full(n, "gaussian") if self.fit is None else np.atleast_1d(
            np.asarray(self.fit, dtype=np.str_))
        if fit.shape != (n,):
            raise ValueError(f"source column 'fit' has shape {fit.shape}, expected ({n},)")
        object.__setattr__(self, "fit", fit)
        for name in ("ra", "dec", "x", "y", "peak_jy", "int_jy"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"source column '{name}' has non-finite values")
        if np.any(self.rms_jy < 0):
            raise ValueError("source rms must be >= 0")

    def __len__(self) -> int:
        return int(self.ra.shape[0])

    @property
    def snr(self) -> np.ndarray:
        """Peak S/N against the local rms."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.rms_jy > 0, self.peak_jy / self.rms_jy, np.inf)

    def select(self, sel: np.ndarray) -> SourceTable:
        kw = {f.name: getattr(self, f.name)[sel] for f in fields(self) if f.name != "finder"}
        return SourceTable(**kw, finder=self.finder)

    @classmethod
    def empty(cls, finder: str = "unknown") -> SourceTable:
        z = np.zeros(0)
        return cls(**{n: z for n in _FLOAT_FIELDS}, island=np.zeros(0, np.int64), finder=finder)


def _columns(src: SourceTable, pb: np.ndarray | None) -> dict[str, tuple[np.ndarray, str]]:
    arcsec = np.degrees(1.0) * 3600.0
    cols = {
        "source_id": (np.arange(len(src)), ""),
        "ra_deg": (np.degrees(src.ra), "deg"),
        "dec_deg": (np.degrees(src.dec), "deg"),
        "ra_err_arcsec": (src.ra_err * arcsec, "arcsec"),
        "dec_err_arcsec": (src.dec_err * arcsec, "arcsec"),
        "x_pix": (src.x, "pix"),
        "y_pix": (src.y, "pix"),
        "peak_flux_jy": (src.peak_jy, "Jy/beam"),
        "peak_flux_err_jy": (src.peak_err_jy, "Jy/beam"),
        "int_flux_jy": (src.int_jy, "Jy"),
        "int_flux_err_jy": (src.int_err_jy, "Jy"),
        "maj_arcsec": (src.maj * arcsec, "arcsec"),
        "min_arcsec": (src.min * arcsec, "arcsec"),
        "pa_deg": (src.pa_deg, "deg"),
        "rms_jy": (src.rms_jy, "Jy/beam"),
        "snr": (src.snr, ""),
        "island_id": (src.island, ""),
        "fit": (src.fit, ""),
    }
    if pb is not None:
        pb = np.asarray(pb, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            cols["pb"] = (pb, "")
            cols["peak_flux_pbcor_jy"] = (src.peak_jy / pb, "Jy/beam")
            cols["int_flux_pbcor_jy"] = (src.int_jy / pb, "Jy")
            cols["int_flux_pbcor_err_jy"] = (src.int_err_jy / pb, "Jy")
    return cols


def write_sources_csv(path: str | Path, src: SourceTable, pb: np.ndarray | None = None) -> Path:
    """Write the source list as CSV (atomically). ``pb`` adds PB-corrected flux columns."""
    cols = _columns(src, pb)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for i in range(len(src)):
            w.writerow([_fmt(v[i]) for v, _ in cols.values()])
    return Path(path)


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return f"{float(v):.10g}"


def write_sources_fits(path: str | Path, src: SourceTable, pb: np.ndarray | None = None,
                       meta: dict | None = None) -> Path:
    """Write the source list as a FITS binary table (atomically), units per column."""
    from astropy.io import fits

    columns = []
    for name, (values, unit) in _columns(src, pb).items():
        v = np.asarray(values)
        if v.dtype.kind == "U":
            columns.append(fits.Column(name=name, format=f"{max(v.dtype.itemsize // 4, 1)}A",
                                       array=v))
            continue
        fmt = "K" if np.issubdtype(v.dtype, np.integer) else "D"
        columns.append(fits.Column(name=name, format=fmt, unit=unit or None,
                                   array=v.astype(np.int64 if fmt == "K" else np.float64)))
    hdu = fits.BinTableHDU.from_columns(columns)
    hdu.header["FINDER"] = src.finder
    for k, v in (meta or {}).items():
        hdu.header[k[:8].upper()] = v
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return Path(path)


def read_sources_fits(path: str | Path) -> SourceTable:
    """Read a table written by :func:`write_sources_fits` back into a SourceTable."""
    from astropy.table import Table

    t = Table.read(path, format="fits")
    arcsec = np.radians(1.0 / 3600.0)
    return SourceTable(
        ra=np.radians(t["ra_deg"]), dec=np.radians(t["dec_deg"]),
        ra_err=np.asarray(t["ra_err_arcsec"]) * arcsec,
        dec_err=np.asarray(t["dec_err_arcsec"]) * arcsec, x=t["x_pix"], y=t["y_pix"],
        peak_jy=t["peak_flux_jy"], peak_err_jy=t["peak_flux_err_jy"], int_jy=t["int_flux_jy"],
        int_err_jy=t["int_flux_err_jy"], maj=np.asarray(t["maj_arcsec"]) * arcsec,
        min=np.asarray(t["min_arcsec"]) * arcsec, pa_deg=t["pa_deg"], rms_jy=t["rms_jy"],
        island=t["island_id"], finder=str(t.meta.get("FINDER", "unknown")),
        fit=np.asarray(t["fit"], str) if "fit" in t.colnames else None)


__all__ = ["SourceTable", "write_sources_csv", "write_sources_fits", "read_sources_fits"]
