"""Point-source catalogs: a self-checking container and a reader for CSV, VOTable and FITS.

Columns are found by name, case-insensitively:

- RA: ``ra_deg``, ``ra``, ``raj2000``, ``ra_j2000`` (degrees unless the file gives a
  unit), or ``ra_rad`` (radians); Dec likewise.
- flux: ``flux_jy``, ``catalog_flux_jy``, ``flux``, ``s_jy``, or ``flux_mjy`` (mJy).
- optional spectral index: ``spectral_index``, ``alpha``, ``si`` (default -0.7).
- optional name: ``name``, ``source_name``, ``source``, ``id`` (default ``SRC<n>``).
- optional reference frequency: ``ref_freq_hz`` (default 1.4 GHz).
- optional position error (1 sigma per axis): ``pos_err_arcsec``, ``dec_err_arcsec``,
  ``e_dej2000`` (arcsec unless the file gives a unit; NVSS's Dec error), default 0.

Reads are cached with :func:`functools.lru_cache` on (resolved path, file checksum),
so an edited file is read again. The arrays of a returned catalog are read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import resolve_file

DEFAULT_REF_FREQ_HZ = 1.4e9
DEFAULT_SPECTRAL_INDEX = -0.7
#: The file name of a night's survey catalog (NVSS cut-out) in its input directory.
SURVEY_CATALOG = "survey_catalog.csv"

_RA = ("ra_deg", "ra", "raj2000", "ra_j2000", "ra_rad")
_DEC = ("dec_deg", "dec", "dej2000", "decj2000", "dec_j2000", "dec_rad")
_FLUX = ("flux_jy", "catalog_flux_jy", "flux", "s_jy", "flux_mjy")
_ALPHA = ("spectral_index", "alpha", "si")
_NAME = ("name", "source_name", "source", "id")
_REF = ("ref_freq_hz",)
_POS_ERR = ("pos_err_arcsec", "dec_err_arcsec", "e_dej2000")

_FORMATS = {".csv": "csv", ".txt": "csv", ".vot": "votable", ".xml": "votable",
            ".votable": "votable", ".fits": "fits", ".fit": "fits", ".fts": "fits"}


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SourceCatalog:
    """Point sources: ``name``, ``ra``/``dec`` (rad), ``flux_jy`` at ``ref_freq_hz``,
    ``spectral_index`` (S ∝ ν^α) and ``pos_err`` (rad, the position's 1-sigma error per
    axis; 0 where the catalog gives none), all numpy arrays of one length. Checks itself."""

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux_jy: np.ndarray
    spectral_index: np.ndarray
    ref_freq_hz: np.ndarray
    source: str = "<memory>"
    pos_err: np.ndarray | float = 0.0

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.ra))
        fields = {}
        for key in ("ra", "dec", "flux_jy", "spectral_index", "ref_freq_hz", "pos_err"):
            arr = np.asarray(getattr(self, key), dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(n, float(arr))
            if arr.shape != (n,):
                raise InputError(f"catalog column '{key}' has shape {arr.shape}, expected "
                                 f"({n},)", files=[self.source])
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad)[:5].tolist()
                raise InputError(f"catalog column '{key}' has non-finite values "
                                 f"(rows {rows})", files=[self.source])
            fields[key] = arr
        names = np.asarray(self.name, dtype=str)
        if names.shape != (n,):
            raise InputError(f"catalog column 'name' has shape {names.shape}, expected ({n},)",
                             files=[self.source])
        if np.any((fields["ra"] < 0) | (fields["ra"] >= 2 * np.pi + 1e-12)):
            raise InputError("catalog RA outside [0, 2π) rad", files=[self.source])
        if np.any(np.abs(fields["dec"]) > np.pi / 2 + 1e-12):
            raise InputError("catalog Dec outside ±π/2 rad", files=[self.source])
        if np.any(fields["pos_err"] < 0):
            raise InputError("catalog position errors must not be negative",
                             files=[self.source])
        if np.any(fields["ref_freq_hz"] <= 0):
            raise InputError("catalog reference frequency must be positive",
                             files=[self.source])
        object.__setattr__(self, "name", _readonly(names))
        for key, arr in fields.items():
            object.__setattr__(self, key, _readonly(arr))

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_arrays(cls, ra: np.ndarray, dec: np.ndarray, flux_jy: np.ndarray, *,
                    name: np.ndarray | None = None,
                    spectral_index: np.ndarray | float = DEFAULT_SPECTRAL_INDEX,
                    ref_freq_hz: np.ndarray | float = DEFAULT_REF_FREQ_HZ,
                    pos_err: np.ndarray | float = 0.0,
                    source: str = "<memory>") -> SourceCatalog:
        """Build a catalog from arrays (radians, Jy); scalars broadcast."""
        ra = np.atleast_1d(np.asarray(ra, dtype=float))
        if name is None:
            name = np.array([f"SRC{i:05d}" for i in range(len(ra))])
        return cls(name=np.asarray(name), ra=ra, dec=np.atleast_1d(dec),
                   flux_jy=np.atleast_1d(flux_jy), spectral_index=spectral_index,
                   ref_freq_hz=ref_freq_hz, source=source, pos_err=pos_err)

    # -- queries ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.ra.shape[0])

    def select(self, mask_or_index: np.ndarray) -> SourceCatalog:
        """A new catalog of the rows picked by a boolean mask or index array."""
        sel = np.asarray(mask_or_index)
        return SourceCatalog(name=self.name[sel], ra=self.ra[sel], dec=self.dec[sel],
                             flux_jy=self.flux_jy[sel],
                             spectral_index=self.spectral_index[sel],
                             ref_freq_hz=self.ref_freq_hz[sel], source=self.source,
                             pos_err=self.pos_err[sel])

    @classmethod
    def concat(cls, catalogs: list[SourceCatalog], source: str = "<joined>") -> SourceCatalog:
        """One catalog of the rows of ``catalogs``, in order."""
        if not catalogs:
            raise ValueError("concat needs at least one catalog")
        return cls(name=np.concatenate([c.name for c in catalogs]),
                   ra=np.concatenate([c.ra for c in catalogs]),
                   dec=np.concatenate([c.dec for c in catalogs]),
                   flux_jy=np.concatenate([c.flux_jy for c in catalogs]),
                   spectral_index=np.concatenate([c.spectral_index for c in catalogs]),
                   ref_freq_hz=np.concatenate([c.ref_freq_hz for c in catalogs]),
                   pos_err=np.concatenate([c.pos_err for c in catalogs]), source=source)

    def strip(self, dec_min: float, dec_max: float) -> SourceCatalog:
        """Sources with dec_min <= Dec <= dec_max (rad)."""
        if dec_min > dec_max:
            raise ValueError(f"dec_min {dec_min} > dec_max {dec_max}")
        return self.select((self.dec >= dec_min) & (self.dec <= dec_max))

    def brightest(self, n: int) -> SourceCatalog:
        """The ``n`` brightest sources at their reference frequency, brightest first."""
        order = np.argsort(-self.flux_jy, kind="stable")[:n]
        return self.select(order)

    def flux_at(self, freq_hz: np.ndarray | float) -> np.ndarray:
        """Flux density (Jy) of every source at ``freq_hz``: shape (n_sources, *freq.shape)."""
        f = np.asarray(freq_hz, dtype=float)
        ratio = f[None, ...] / self.ref_freq_hz.reshape((-1,) + (1,) * f.ndim)
        alpha = self.spectral_index.reshape((-1,) + (1,) * f.ndim)
        return self.flux_jy.reshape((-1,) + (1,) * f.ndim) * ratio ** alpha

    def __repr__(self) -> str:
        return f"<SourceCatalog {len(self)} sources from {self.source}>"


# -- reading -------------------------------------------------------------------------------

def _find(colmap: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    for c in candidates:
        if c in colmap:
            return colmap[c]
    return None


def _values(table, col: str) -> np.ndarray:
    """A column as float64, masked (blank) cells as NaN."""
    c = table[col]
    if getattr(c, "mask", None) is not None and np.any(c.mask):
        return np.asarray(c.astype(float).filled(np.nan), dtype=float)
    return np.asarray(c, dtype=float)


def _angle(table, col: str, source: str) -> np.ndarray:
    values = _values(table, col)
    unit = getattr(table[col], "unit", None)
    if unit is not None:
        from astropy import units as u

        try:
            return (values * u.Unit(unit)).to_value(u.rad)
        except (u.UnitConversionError, ValueError) as exc:
            raise InputError(f"column '{col}' has unit {unit}, not an angle", files=[source],
                             cause=exc) from exc
    if col.lower().endswith("_rad"):
        return values
    return np.radians(values)


def _read_table(path: str, fmt: str):
    from astropy.table import Table

    if fmt == "csv":
        return Table.read(path, format="ascii.csv")
    if fmt == "votable":
        return Table.read(path, format="votable")
    return Table.read(path, format="fits")


@lru_cache(maxsize=32)
def _read_cached(resolved: str, checksum: str, fmt: str) -> SourceCatalog:
    try:
        table = _read_table(resolved, fmt)
    except Exception as exc:  # astropy raises many types for a corrupt file
        raise InputError(f"cannot read catalog as {fmt}", files=[resolved], cause=exc) from exc
    colmap = {c.lower(): c for c in table.colnames}

    def need(candidates: tuple[str, ...], what: str) -> str:
        col = _find(colmap, candidates)
        if col is None:
            raise InputError(f"catalog has no {what} column (looked for "
                             f"{', '.join(candidates)}; found {', '.join(table.colnames)})",
                             files=[resolved])
        return col

    ra_col = need(_RA, "RA")
    dec_col = need(_DEC, "Dec")
    flux_col = need(_FLUX, "flux")
    try:
        ra = _angle(table, ra_col, resolved) % (2 * np.pi)
        dec = _angle(table, dec_col, resolved)
        flux = _values(table, flux_col)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("catalog RA/Dec/flux columns are not numeric", files=[resolved],
                         cause=exc) from exc
    if flux_col.lower() == "flux_mjy":
        flux = flux * 1e-3
    unit = getattr(table[flux_col], "unit", None)
    if unit is not None and flux_col.lower() != "flux_mjy":
        from astropy import units as u

        try:
            flux = (flux * u.Unit(unit)).to_value(u.Jy)
        except (u.UnitConversionError, ValueError) as exc:
            raise InputError(f"flux column '{flux_col}' has unit {unit}, not a flux density",
                             files=[resolved], cause=exc) from exc
    alpha_col = _find(colmap, _ALPHA)
    alpha = (_values(table, alpha_col) if alpha_col
             else np.full(len(table), DEFAULT_SPECTRAL_INDEX))
    if alpha_col is not None:
        alpha = np.where(np.isfinite(alpha), alpha, DEFAULT_SPECTRAL_INDEX)
    ref_col = _find(colmap, _REF)
    ref = (_values(table, ref_col) if ref_col
           else np.full(len(table), DEFAULT_REF_FREQ_HZ))
    name_col = _find(colmap, _NAME)
    names = (np.asarray([str(v).strip() for v in table[name_col]]) if name_col
             else np.array([f"SRC{i:05d}" for i in range(len(table))]))
    err_col = _find(colmap, _POS_ERR)
    pos_err = np.zeros(len(table))
    if err_col is not None:
        e = (_angle(table, err_col, resolved) if getattr(table[err_col], "unit", None)
             else np.radians(_values(table, err_col) / 3600.0))
        pos_err = np.where(np.isfinite(e) & (e >= 0), e, 0.0)
    return SourceCatalog(name=names, ra=ra, dec=dec, flux_jy=flux, spectral_index=alpha,
                         ref_freq_hz=ref, source=resolved, pos_err=pos_err)


def catalog_format(path: str | Path) -> str:
    """"csv", "votable" or "fits" from the file name (``.gz`` allowed for FITS)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError("unknown catalog format: expected .csv, .vot/.xml or .fits",
                         files=[str(p)])
    return fmt


def read_catalog(path: str | Path) -> SourceCatalog:
    """Read a point-source catalog (CSV, VOTable or FITS). Cached on (path, checksum)."""
    fmt = catalog_format(path)
    resolved, checksum = resolve_file(path, "catalog")
    return _read_cached(resolved, checksum, fmt)


__all__ = ["SourceCatalog", "read_catalog", "catalog_format", "DEFAULT_REF_FREQ_HZ",
           "DEFAULT_SPECTRAL_INDEX"]
