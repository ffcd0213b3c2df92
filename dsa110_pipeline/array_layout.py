"""DSA-110 array layout: station positions from the station-coordinates CSV or a built-in
approximate T layout.

Positions are returned relative to the array reference position (``instrument.SITE_*``) both
in local East-North-Up (ENU, metres) and in Earth-centred Earth-fixed axes (ECEF, metres,
origin moved to the reference position: pyuvdata's ``antenna_positions``).

The CSV format is that of ``DSA110_Station_Coordinates.csv``: five preamble lines, then a
header ``,Station Number,Latitude,Longitude,Elevation (meters)`` and one row per station with
WGS84 degrees and metres; a blank elevation is filled with ``instrument.SITE_HEIGHT``.

The built-in layout is APPROXIMATE, built from published facts only: a 51-station east-west
arm (~5.75 m spacing), a 51-station north-south arm (~8.7 m spacing) and 15 outriggers out
to ~1.9 km, so that the longest baselines are ~3.2 km. Of the 117 stations, 96 carry data:
47 on the EW arm, 35 on the NS arm and 14 outriggers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .instrument import (
    N_ACTIVE_ANTENNAS,
    N_EW,
    N_NS,
    N_OUTRIGGERS,
    N_STATIONS,
    SITE_HEIGHT,
    SITE_LATITUDE_DEG,
    SITE_LONGITUDE_DEG,
)

# WGS84 ellipsoid
_WGS84_A = 6378137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_E2 = _WGS84_F * (2.0 - _WGS84_F)

_CSV_HEADER = ("station number", "latitude", "longitude", "elevation")
_CSV_PREAMBLE_LINES = 5


def geodetic_to_ecef(lat_rad: np.ndarray, lon_rad: np.ndarray, height_m: np.ndarray
                     ) -> np.ndarray:
    """WGS84 geodetic latitude, longitude (rad) and height (m) to ECEF (m), shape (..., 3)."""
    lat, lon, h = np.broadcast_arrays(np.asarray(lat_rad, float), np.asarray(lon_rad, float),
                                      np.asarray(height_m, float))
    sl, cl = np.sin(lat), np.cos(lat)
    nu = _WGS84_A / np.sqrt(1.0 - _WGS84_E2 * sl**2)
    x = (nu + h) * cl * np.cos(lon)
    y = (nu + h) * cl * np.sin(lon)
    z = (nu * (1.0 - _WGS84_E2) + h) * sl
    return np.stack([x, y, z], axis=-1)


def _enu_rotation(lat_rad: float, lon_rad: float) -> np.ndarray:
    """Matrix R with enu = R @ (ecef - ecef_ref) (rows: east, north, up)."""
    sl, cl = np.sin(lat_rad), np.cos(lat_rad)
    so, co = np.sin(lon_rad), np.cos(lon_rad)
    return np.array([[-so, co, 0.0],
                     [-sl * co, -sl * so, cl],
                     [cl * co, cl * so, sl]])


def ecef_to_enu(ecef_rel: np.ndarray, lat_rad: float, lon_rad: float) -> np.ndarray:
    """ECEF offsets from a reference point (m, (..., 3)) to ENU at that point."""
    return np.asarray(ecef_rel, float) @ _enu_rotation(lat_rad, lon_rad).T


def enu_to_ecef(enu: np.ndarray, lat_rad: float, lon_rad: float) -> np.ndarray:
    """ENU offsets (m, (..., 3)) at a reference point to ECEF offsets from that point."""
    return np.asarray(enu, float) @ _enu_rotation(lat_rad, lon_rad)


@dataclass(frozen=True)
class ArrayLayout:
    """All stations of the telescope and which of them carry data.

    ``enu`` and ``ecef_rel`` are (N, 3) metres relative to the reference position
    (``site_lat_rad``, ``site_lon_rad``, ``site_height_m``). ``active`` is the boolean mask of
    stations carrying data. ``arm`` labels each station "EW", "NS" or "OUT".
    """

    names: tuple[str, ...]
    numbers: np.ndarray
    enu: np.ndarray
    arm: tuple[str, ...]
    active: np.ndarray
    site_lat_rad: float = float(np.deg2rad(SITE_LATITUDE_DEG))
    site_lon_rad: float = float(np.deg2rad(SITE_LONGITUDE_DEG))
    site_height_m: float = SITE_HEIGHT
    source: str = "built-in approximate DSA-110 layout"
    ecef_rel: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        enu = np.asarray(self.enu, dtype=float)
        if enu.shape != (n, 3):
            raise ValueError(f"enu must have shape ({n}, 3), got {enu.shape}")
        if not np.all(np.isfinite(enu)):
            raise ValueError("station positions must be finite")
        numbers = np.asarray(self.numbers, dtype=np.int64)
        if numbers.shape != (n,) or len(np.unique(numbers)) != n:
            raise ValueError("station numbers must be unique, one per station")
        if len(set(self.names)) != n:
            raise ValueError("station names must be unique")
        active = np.asarray(self.active, dtype=bool)
        if active.shape != (n,) or not active.any():
            raise ValueError("active must be a boolean mask with at least one station")
        if len(self.arm) != n:
            raise ValueError("arm must label every station")
        object.__setattr__(self, "enu", enu)
        object.__setattr__(self, "numbers", numbers)
        object.__setattr__(self, "active", active)
        object.__setattr__(self, "ecef_rel",
                           enu_to_ecef(enu, self.site_lat_rad, self.site_lon_rad))

    def __repr__(self) -> str:
        return (f"ArrayLayout({self.n_stations} stations, {int(self.active.sum())} active, "
                f"from {self.source})")

    @property
    def n_stations(self) -> int:
        return len(self.names)

    @property
    def site_ecef(self) -> np.ndarray:
        """ECEF position (m) of the reference point."""
        return geodetic_to_ecef(self.site_lat_rad, self.site_lon_rad, self.site_height_m)

    @property
    def ecef(self) -> np.ndarray:
        """Absolute ECEF positions (m) of all stations."""
        return self.ecef_rel + self.site_ecef

    def with_active(self, n_active: int) -> ArrayLayout:
        """The same stations with ``n_active`` of them carrying data.

        Stations are taken from each arm in proportion to the 47/35/14 split of the real
        array, spread evenly along each arm (deterministic).
        """
        if not 1 <= n_active <= self.n_stations:
            raise ValueError(f"number of active antennas must be in 1..{self.n_stations}, "
                             f"got {n_active}")
        return ArrayLayout(self.names, self.numbers, self.enu, self.arm,
                           _choose_active(self.arm, n_active), self.site_lat_rad,
                           self.site_lon_rad, self.site_height_m, self.source)


def _spread(idx: np.ndarray, k: int) -> np.ndarray:
    """k indices spread evenly over idx (keeps both ends)."""
    if k <= 0:
        return idx[:0]
    if k >= len(idx):
        return idx
    pick = np.unique(np.round(np.linspace(0, len(idx) - 1, k)).astype(int))
    return idx[pick]


def _choose_active(arm: tuple[str, ...], n_active: int) -> np.ndarray:
    arm_arr = np.array(arm)
    groups = {a: np.flatnonzero(arm_arr == a) for a in ("EW", "NS", "OUT")}
    share = np.array([N_EW, N_NS, N_OUTRIGGERS], float) / N_ACTIVE_ANTENNAS
    caps = np.array([len(groups["EW"]), len(groups["NS"]), len(groups["OUT"])])
    want = np.minimum(np.floor(share * n_active).astype(int), caps)
    # hand out the remainder to arms with room, EW first
    while want.sum() < n_active:
        room = np.flatnonzero(want < caps)
        if room.size == 0:
            break
        want[room[np.argmax(share[room] * n_active - want[room])]] += 1
    mask = np.zeros(len(arm), bool)
    for k, a in zip(want, ("EW", "NS", "OUT")):
        mask[_spread(groups[a], int(k))] = True
    return mask


def _classify_arms(enu: np.ndarray, tol_m: float = 2.0) -> tuple[str, ...]:
    """Label stations EW (on the most populated east-west line), NS (on the most populated
    north-south line) or OUT (everything else)."""
    def mode_line(coord: np.ndarray) -> np.ndarray:
        counts = np.array([(np.abs(coord - c) < tol_m).sum() for c in coord])
        return np.abs(coord - coord[np.argmax(counts)]) < tol_m

    on_ew = mode_line(enu[:, 1])
    on_ns = mode_line(enu[:, 0]) & ~on_ew
    return tuple("EW" if e else "NS" if s else "OUT" for e, s in zip(on_ew, on_ns))


def read_station_csv(path: str | Path, n_active: int = N_ACTIVE_ANTENNAS) -> ArrayLayout:
    """Read a DSA-110 station-coordinates CSV into an :class:`ArrayLayout`.

    Station numbers are taken from the names (``DSA-017`` → 17). ``n_active`` stations carry
    data, chosen per arm as in :meth:`ArrayLayout.with_active`. Raises :class:`InputError`
    naming the file and line on any malformed content.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read station CSV: {exc}", files=[path], cause=exc) from exc
    rows = list(csv.reader(text.splitlines()))
    if len(rows) <= _CSV_PREAMBLE_LINES:
        raise InputError(f"station CSV has {len(rows)} lines; expected {_CSV_PREAMBLE_LINES} "
                         "preamble lines, a header and station rows", files=[path])
    header = [h.strip().lower() for h in rows[_CSV_PREAMBLE_LINES]]
    cols = []
    for key in _CSV_HEADER:
        hit = [i for i, h in enumerate(header) if h.startswith(key)]
        if not hit:
            raise InputError(
                f"station CSV header (line {_CSV_PREAMBLE_LINES + 1}) lacks a '{key}' column; "
                f"got {rows[_CSV_PREAMBLE_LINES]!r}", files=[path])
        cols.append(hit[0])
    names, lat, lon, hgt = [], [], [], []
    for lineno, row in enumerate(rows[_CSV_PREAMBLE_LINES + 1:], start=_CSV_PREAMBLE_LINES + 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(cols[:3]):
            raise InputError(f"line {lineno}: expected at least {max(cols[:3]) + 1} fields, "
                             f"got {len(row)}: {row!r}", files=[path])
        name = row[cols[0]].strip()
        if not name:
            raise InputError(f"line {lineno}: empty station name", files=[path])
        try:
            la, lo = float(row[cols[1]]), float(row[cols[2]])
            el = row[cols[3]].strip() if len(row) > cols[3] else ""
            h = float(el) if el else SITE_HEIGHT
        except ValueError as exc:
            raise InputError(f"line {lineno}: non-numeric coordinate in {row!r}", files=[path],
                             cause=exc) from exc
        if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 360.0) or not np.isfinite(h):
            raise InputError(f"line {lineno}: coordinates out of range: {row!r}", files=[path])
        names.append(name)
        lat.append(la)
        lon.append(lo)
        hgt.append(h)
    if not names:
        raise InputError("station CSV has no station rows", files=[path])
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"duplicate station names: {dup}", files=[path])
    numbers = []
    for i, n in enumerate(names):
        digits = "".join(ch for ch in n.split("-")[-1] if ch.isdigit())
        numbers.append(int(digits) if digits else i + 1)
    if len(set(numbers)) != len(numbers):
        numbers = list(range(1, len(names) + 1))
    lat_ref, lon_ref = np.deg2rad(SITE_LATITUDE_DEG), np.deg2rad(SITE_LONGITUDE_DEG)
    ecef = geodetic_to_ecef(np.deg2rad(lat), np.deg2rad(lon), np.array(hgt))
    enu = ecef_to_enu(ecef - geodetic_to_ecef(lat_ref, lon_ref, SITE_HEIGHT), lat_ref, lon_ref)
    arm = _classify_arms(enu)
    if n_active > len(names):
        raise InputError(f"{n_active} active antennas requested but the CSV has only "
                         f"{len(names)} stations", files=[path])
    return ArrayLayout(tuple(names), np.array(numbers), enu, arm, _choose_active(arm, n_active),
                       source=str(path))


def builtin_layout(n_active: int = N_ACTIVE_ANTENNAS) -> ArrayLayout:
    """Approximate DSA-110 T layout (117 stations, ``n_active`` carrying data).

    EW arm: 51 stations at 5.75 m along y=0 with a gap at the T's junction; NS arm: 51
    stations at 8.67 m going north from the junction; 15 outriggers between 0.4 and 1.9 km
    placed to give a maximum baseline of ~3.2 km. Heights vary by a few metres like the
    real site. Documented as approximate: use a station CSV for real positions.
    """
    n_arm = (N_STATIONS - (N_OUTRIGGERS + 1)) // 2  # 51 per arm
    ew_x = (np.arange(n_arm) - n_arm // 2) * 5.75
    ew_x = np.where(ew_x >= 0, ew_x + 10.0, ew_x - 10.0)  # gap where the NS arm starts
    ew = np.column_stack([ew_x, np.zeros(n_arm), np.zeros(n_arm)])
    ns = np.column_stack([np.zeros(n_arm), 8.67 * (np.arange(n_arm) + 1), np.zeros(n_arm)])
    # outriggers (east, north) in metres: a spread of distances and azimuths
    out_en = np.array([
        [190.0, -370.0], [580.0, 200.0], [590.0, 1060.0], [590.0, 1500.0], [590.0, 1690.0],
        [600.0, 1850.0], [360.0, 1850.0], [-40.0, 1850.0], [-250.0, 1850.0], [-400.0, 1850.0],
        [-700.0, 1850.0], [-1110.0, 1850.0], [-1050.0, 1290.0], [-1000.0, -220.0],
        [-1180.0, -210.0]]) * 1.18  # stretched so the longest active baseline is ~3.2 km
    up = 0.004 * out_en[:, 1] - 0.0015 * out_en[:, 0] - 1.0  # gentle slope, ~±5 m
    out = np.column_stack([out_en, up])
    enu = np.vstack([ew, ns, out])
    arm = ("EW",) * n_arm + ("NS",) * n_arm + ("OUT",) * len(out)
    n = len(enu)
    names = tuple(f"DSA-{i + 1:03d}" for i in range(n))
    return ArrayLayout(names, np.arange(1, n + 1), enu, arm, _choose_active(arm, n_active))


def load_layout(station_csv: str | Path | None = None,
                n_active: int = N_ACTIVE_ANTENNAS) -> ArrayLayout:
    """The layout from ``station_csv`` when given, else the built-in approximate layout."""
    if station_csv is None:
        return builtin_layout(n_active)
    return read_station_csv(station_csv, n_active)
