"""The VLA calibrator manual list: parser, name look-up and declination-strip queries.

The list (``vlacalibrators.txt``) is a sequence of fixed-width text blocks, one per
calibrator: a J2000 line (IAU name, position code, RA, Dec, position reference,
alternative name), a B1950 line, and a table of bands with array-configuration
quality codes (A B C D), flux density (Jy) and optional UV limits (kλ).

Without a file the module falls back to a small built-in table of bright
calibrators (see :mod:`._builtin`), so simulations work away from the shared data.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._builtin import ALIASES, BRIGHT_CALIBRATORS
from ._common import resolve_file

#: Environment variable naming the VLA calibrator list to use by default.
ENV_VAR = "DSA110_VLA_CALIBRATORS"
#: Where the shared data keeps the list, relative to the repository root.
SHARED_RELATIVE = Path("..") / "shared" / "data" / "catalogs" / "vlacalibrators.txt"
L_BAND = "20cm"
QUALITY_CODES = frozenset("PSWXC?")
CONFIGS = ("A", "B", "C", "D")

_J2000 = re.compile(
    r"^\s*(?P<iau>\S+)\s+J2000\s+(?P<pc>\S)\s+"
    r"(?P<rh>\d+)h(?P<rm>\d+)m(?P<rs>[\d.]+)s\s+"
    r"(?P<dsign>[+-]?)(?P<dd>\d+)d(?P<dm>\d+)'(?P<ds>[\d.]+)\"(?P<rest>.*)$")
_B1950 = re.compile(r"^\s*(?P<name>\S+)\s+B1950\s")
_BAND = re.compile(r"^\s*(?P<band>[\d.]+cm)\s+(?P<code>[A-Za-z])(?P<rest>(\s.*)?)$")
_TOKEN = re.compile(r"\S+")
# offsets (characters after the D-configuration quality code) of the header's UV columns
_UVMIN_END, _UVMAX_START = 26, 27


@dataclass(frozen=True)
class BandInfo:
    """One band of a calibrator: quality codes per VLA configuration, flux and UV range."""

    band: str                      #: wavelength label, e.g. "20cm"
    code: str                      #: band letter, e.g. "L"
    quality: dict[str, str | None]  #: configuration ("A".."D") -> code (P S W X C ?) or None
    flux_jy: float | None
    uvmin_klambda: float | None = None
    uvmax_klambda: float | None = None


@dataclass(frozen=True)
class VLACalibrator:
    """One calibrator of the VLA list. Angles in radians, fluxes in Jy."""

    name: str                       #: J2000 IAU name, e.g. "J1331+3030"
    ra: float                       #: rad, J2000
    dec: float                      #: rad, J2000
    iau_name: str = ""              #: name as the list writes it, e.g. "1331+305"
    b1950_name: str | None = None   #: e.g. "1328+307"
    position_code: str = ""         #: A B C T (position accuracy)
    alt_name: str | None = None     #: e.g. "3C286" or "JVAS"
    bands: dict[str, BandInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.ra) and 0.0 <= self.ra < 2 * math.pi + 1e-12):
            raise ValueError(f"calibrator {self.name}: RA {self.ra!r} rad outside [0, 2π)")
        if not (np.isfinite(self.dec) and abs(self.dec) <= math.pi / 2 + 1e-12):
            raise ValueError(f"calibrator {self.name}: Dec {self.dec!r} rad outside ±π/2")
        if not self.name:
            raise ValueError("calibrator name must not be empty")

    @property
    def flux_jy(self) -> float | None:
        """L-band (20 cm) flux density in Jy, or None when the list gives none."""
        b = self.bands.get(L_BAND)
        return None if b is None else b.flux_jy

    def quality(self, band: str = L_BAND) -> dict[str, str | None]:
        """Quality codes per configuration for ``band`` (empty when the band is absent)."""
        b = self.bands.get(band)
        return {} if b is None else dict(b.quality)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this calibrator answers to (normalised)."""
        out = {_norm(self.name), _norm(self.iau_name), _norm("J" + self.iau_name)}
        if self.b1950_name:
            out.add(_norm("B" + self.b1950_name))
        if self.alt_name and not _is_survey(self.alt_name):
            out.add(_norm(self.alt_name))
        out.discard("")
        out.discard("J")
        return tuple(sorted(out))


def j2000_name(ra: float, dec: float) -> str:
    """IAU ``JHHMM±DDMM`` name from J2000 RA/Dec in radians (truncated, as IAU names are)."""
    ra_h = (math.degrees(ra) / 15.0) % 24.0
    hh = int(ra_h)
    mm = int((ra_h - hh) * 60.0 + 1e-9)
    d = abs(math.degrees(dec))
    dd = int(d)
    dm = int((d - dd) * 60.0 + 1e-9)
    sign = "-" if dec < 0 else "+"
    return f"J{hh:02d}{mm:02d}{sign}{dd:02d}{dm:02d}"


def _norm(name: str) -> str:
    return re.sub(r"[\s_]", "", name).upper()


def _is_survey(alt: str) -> bool:
    return alt.upper() in {"JVAS", "CJ2", "VERA", "VSOP", "GVAR", "USNO"} or alt.startswith("AW")


# -- parsing -----------------------------------------------------------------------------

def parse_vla_calibrators(text: str, source: str = "<text>") -> list[VLACalibrator]:
    """Parse the text of a VLA calibrator list. Raises InputError naming the bad line."""
    entries: list[VLACalibrator] = []
    cur: dict | None = None
    n_j2000 = 0

    def finish() -> None:
        if cur is not None:
            entries.append(VLACalibrator(
                name=j2000_name(cur["ra"], cur["dec"]), ra=cur["ra"], dec=cur["dec"],
                iau_name=cur["iau"], b1950_name=cur["b1950"], position_code=cur["pc"],
                alt_name=cur["alt"], bands=cur["bands"]))

    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(("---", "===", "BAND", "IAU NAME")):
            continue
        if " J2000 " in line:
            n_j2000 += 1
            m = _J2000.match(line)
            if m is None:
                raise InputError(f"line {lineno}: cannot parse the J2000 position line "
                                 f"{line.strip()!r}", files=[source])
            finish()
            cur = _position(m, lineno, source)
            continue
        if cur is None:
            raise InputError(f"line {lineno}: data before the first J2000 line: "
                             f"{line.strip()!r}", files=[source])
        mb = _B1950.match(line)
        if mb is not None:
            cur["b1950"] = mb.group("name")
            continue
        mband = _BAND.match(line)
        if mband is None:
            raise InputError(f"line {lineno}: cannot parse line {line.strip()!r} of calibrator "
                             f"{cur['iau']}", files=[source])
        info = _band(mband, lineno, source)
        cur["bands"][info.band] = info
    finish()
    if not entries:
        raise InputError("no calibrators found: not a VLA calibrator list", files=[source])
    if len(entries) != n_j2000:  # pragma: no cover - guarded by the parse errors above
        raise InputError(f"parsed {len(entries)} of {n_j2000} entries", files=[source])
    return entries


def _position(m: re.Match, lineno: int, source: str) -> dict:
    rh, rm, rs = int(m["rh"]), int(m["rm"]), float(m["rs"])
    dd, dm, ds = int(m["dd"]), int(m["dm"]), float(m["ds"])
    if rh >= 24 or rm >= 60 or rs >= 60 or dd > 90 or dm >= 60 or ds >= 60:
        raise InputError(f"line {lineno}: position out of range for {m['iau']}", files=[source])
    ra = math.radians(15.0 * (rh + rm / 60.0 + rs / 3600.0))
    dec = math.radians(dd + dm / 60.0 + ds / 3600.0)
    if m["dsign"] == "-":
        dec = -dec
    alt = None
    for tok in _TOKEN.finditer(m["rest"]):
        if tok.start() >= 6:  # the POS.REF column comes first, ALT.NAME further right
            alt = tok.group()
    return {"iau": m["iau"], "pc": m["pc"], "ra": ra, "dec": dec, "alt": alt,
            "b1950": None, "bands": {}}


def _band(m: re.Match, lineno: int, source: str) -> BandInfo:
    rest = m["rest"] or ""
    tokens = list(_TOKEN.finditer(rest))
    quality: dict[str, str | None] = dict.fromkeys(CONFIGS)
    i = 0
    d_end = None
    while i < len(tokens) and i < 4 and len(tokens[i].group()) == 1 \
            and tokens[i].group().upper() in QUALITY_CODES:
        quality[CONFIGS[i]] = tokens[i].group().upper()
        d_end = tokens[i].end()
        i += 1
    flux = None
    flux_seen = False
    numbers: list[tuple[float, int]] = []
    for tok in tokens[i:]:
        text = tok.group()
        if text.lower() == "visplot":
            continue
        if text == "?" and not flux_seen:  # flux not known
            flux_seen = True
            continue
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"line {lineno}: unexpected token {text!r} in band "
                             f"{m['band']}", files=[source]) from None
        if not flux_seen:
            flux, flux_seen = value, True
        else:
            numbers.append((value, tok.end()))
    uvmin = uvmax = None
    if len(numbers) >= 2:
        uvmin, uvmax = numbers[0][0], numbers[1][0]
    elif len(numbers) == 1:
        value, end = numbers[0]
        rel = end - (d_end if d_end is not None else 0)
        if d_end is not None and rel <= _UVMIN_END:
            uvmin = value
        elif d_end is not None and rel >= _UVMAX_START:
            uvmax = value
        else:
            uvmin = value
    if flux is not None and flux <= 0:
        flux = None  # the list writes 0.00 for "not measured"
    return BandInfo(band=m["band"], code=m["code"].upper(), quality=quality, flux_jy=flux,
                    uvmin_klambda=uvmin, uvmax_klambda=uvmax)


# -- reading, caching, queries -------------------------------------------------------------

def default_calibrator_path() -> Path | None:
    """The list to read when none is named: $DSA110_VLA_CALIBRATORS, then ../shared/data."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    candidate = (repo / SHARED_RELATIVE).resolve()
    return candidate if candidate.is_file() else None


@lru_cache(maxsize=8)
def _read_cached(resolved: str, checksum: str) -> tuple[VLACalibrator, ...]:
    try:
        text = Path(resolved).read_text(encoding="latin-1")
    except OSError as exc:
        raise InputError("cannot read VLA calibrator list", files=[resolved], cause=exc) from exc
    return tuple(parse_vla_calibrators(text, source=resolved))


def _key(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        path = default_calibrator_path()
        if path is None:
            return ("<builtin>", "builtin")
    return resolve_file(path, "VLA calibrator list")


def _load(key: tuple[str, str]) -> tuple[VLACalibrator, ...]:
    if key[0] == "<builtin>":
        return builtin_calibrators()
    return _read_cached(*key)


@lru_cache(maxsize=1)
def builtin_calibrators() -> tuple[VLACalibrator, ...]:
    """The built-in table of bright calibrators (used when no list file is available)."""
    out = []
    for name, ra_deg, dec_deg, flux, codes, alt in BRIGHT_CALIBRATORS:
        quality: dict[str, str | None] = dict(zip(CONFIGS, codes, strict=True))
        out.append(VLACalibrator(
            name=name, ra=math.radians(ra_deg), dec=math.radians(dec_deg),
            iau_name=name[1:], alt_name=alt,
            bands={L_BAND: BandInfo(band=L_BAND, code="L", quality=quality, flux_jy=flux)}))
    return tuple(out)


def read_vla_calibrators(path: str | Path | None = None) -> list[VLACalibrator]:
    """All calibrators of a VLA list.

    ``path`` None reads ``$DSA110_VLA_CALIBRATORS`` or the shared data's list when
    present, else returns the built-in table of bright calibrators. Reads are cached
    on (resolved path, file checksum), so an edited file is read again.
    """
    return list(_load(_key(path)))


@lru_cache(maxsize=8)
def _index(key: tuple[str, str]) -> dict[str, VLACalibrator]:
    idx: dict[str, VLACalibrator] = {}
    for cal in _load(key):
        for n in cal.names:
            idx.setdefault(n, cal)
    for alias, jname in ALIASES.items():
        target = idx.get(_norm(jname))
        if target is not None:
            idx.setdefault(_norm(alias), target)
    return idx


def find_calibrator(name: str, path: str | Path | None = None) -> VLACalibrator:
    """Look a calibrator up by J2000 name (J1331+3030, 1331+305) or alias (3C286, 3C454.3)."""
    key = _key(path)
    idx = _index(key)
    n = _norm(name)
    for cand in (n, "J" + n if not n.startswith(("J", "B")) else n):
        if cand in idx:
            return idx[cand]
    raise InputError(f"calibrator {name!r} is not in the VLA calibrator list",
                     files=[key[0]])


@lru_cache(maxsize=64)
def _strip(key: tuple[str, str], dec_min: float, dec_max: float,
           min_flux_jy: float) -> tuple[VLACalibrator, ...]:
    cals = [c for c in _load(key) if dec_min <= c.dec <= dec_max
            and c.flux_jy is not None and c.flux_jy >= min_flux_jy]
    return tuple(sorted(cals, key=lambda c: c.ra))


def calibrators_in_strip(dec_min: float, dec_max: float, *, min_flux_jy: float = 0.0,
                         path: str | Path | None = None) -> list[VLACalibrator]:
    """Calibrators with dec_min <= Dec <= dec_max (rad) and an L-band flux >= min_flux_jy,
    sorted by RA. Cached with the list's checksum in the key."""
    if dec_min > dec_max:
        raise ValueError(f"dec_min {dec_min} > dec_max {dec_max}")
    return list(_strip(_key(path), float(dec_min), float(dec_max), float(min_flux_jy)))


__all__ = ["BandInfo", "VLACalibrator", "read_vla_calibrators", "parse_vla_calibrators",
           "find_calibrator", "calibrators_in_strip", "builtin_calibrators", "j2000_name",
           "default_calibrator_path", "ENV_VAR"]
