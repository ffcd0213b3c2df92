"""Array layout: station CSV reader and built-in approximate DSA-110 layout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dsa110_pipeline.array_layout import (
    builtin_layout,
    ecef_to_enu,
    geodetic_to_ecef,
    load_layout,
    read_station_csv,
)
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.instrument import N_EW, N_NS, N_OUTRIGGERS, N_STATIONS, SITE_HEIGHT

CSV_REL = "dsa110/DSA110_Station_Coordinates.csv"
PREAMBLE = ",,,,\n,,,,\n,DSA-110 Station Coordinates,,,\n,Last updated:,,2/15/2022,\n,,,,\n"
HEADER = ",Station Number,Latitude,Longitude,Elevation (meters)\n"


def _astropy_ecef(lat_deg, lon_deg, h):
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    loc = EarthLocation.from_geodetic(lon=np.asarray(lon_deg) * u.deg,
                                      lat=np.asarray(lat_deg) * u.deg, height=np.asarray(h) * u.m)
    return np.stack([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)], axis=-1)


def test_shared_csv_all_rows(shared_data):
    path = shared_data / CSV_REL
    lay = read_station_csv(path)
    assert lay.n_stations == N_STATIONS == 117
    assert lay.names[0] == "DSA-001" and lay.names[-1] == "DSA-117"
    assert list(lay.numbers) == list(range(1, 118))
    # positions agree with astropy's WGS84 conversion of the CSV values (1 mm)
    rows = [r.split(",") for r in path.read_text().splitlines()[6:] if r.strip(",")]
    lat = np.array([float(r[2]) for r in rows])
    lon = np.array([float(r[3]) for r in rows])
    h = np.array([float(r[4]) if r[4].strip() else SITE_HEIGHT for r in rows])
    np.testing.assert_allclose(lay.ecef, _astropy_ecef(lat, lon, h), atol=1e-3)
    # DSA-117 has a blank elevation: filled with the site height
    assert h[-1] == SITE_HEIGHT
    # arms: the T of 51 + 51 stations and 15 outriggers; 96 active, 47/35/14
    assert Counter(lay.arm) == {"EW": 51, "NS": 51, "OUT": 15}
    act = Counter(np.array(lay.arm)[lay.active])
    assert act == {"EW": N_EW, "NS": N_NS, "OUT": N_OUTRIGGERS}
    # EW arm spacing ~5.75 m, along east
    ew = lay.enu[np.array(lay.arm) == "EW"]
    d = np.diff(ew[:, 0])
    assert np.median(d) == pytest.approx(5.745, abs=0.02)
    assert np.ptp(ew[:, 1]) < 0.01


def test_builtin_layout_facts():
    lay = builtin_layout()
    assert lay.n_stations == 117 and lay.active.sum() == 96
    assert Counter(np.array(lay.arm)[lay.active]) == {"EW": 47, "NS": 35, "OUT": 14}
    e = lay.enu[lay.active]
    bl = np.linalg.norm(e[:, None, :2] - e[None, :, :2], axis=-1)
    assert 3.0e3 < bl.max() < 3.4e3
    # ENU <-> ECEF round trip and absolute position of the reference
    np.testing.assert_allclose(ecef_to_enu(lay.ecef_rel, lay.site_lat_rad, lay.site_lon_rad),
                               lay.enu, atol=1e-9)
    ref = _astropy_ecef(np.rad2deg(lay.site_lat_rad), np.rad2deg(lay.site_lon_rad),
                        lay.site_height_m)
    np.testing.assert_allclose(lay.site_ecef, ref, atol=1e-3)
    # fewer active antennas keep the arm proportions and the outer stations
    small = lay.with_active(12)
    assert small.active.sum() == 12
    assert Counter(np.array(small.arm)[small.active])["OUT"] >= 1
    with pytest.raises(ValueError, match="active antennas"):
        lay.with_active(500)


def test_geodetic_to_ecef_matches_astropy():
    lat = np.array([0.0, 37.2334, -45.0, 89.9])
    lon = np.array([0.0, -118.2834, 170.0, 10.0])
    h = np.array([0.0, 1182.6, -20.0, 3000.0])
    got = geodetic_to_ecef(np.deg2rad(lat), np.deg2rad(lon), h)
    np.testing.assert_allclose(got, _astropy_ecef(lat, lon, h), atol=1e-4)


def test_load_layout_default_and_csv(tmp_path):
    assert load_layout(None).source.startswith("built-in")
    p = tmp_path / "ok.csv"
    p.write_text(PREAMBLE + HEADER + ",DSA-001,37.2333752,-118.2856408,1182.6\n"
                 ",DSA-002,37.2333752,-118.2855760,\n,DSA-003,37.2345,-118.2834051,1183.0\n")
    lay = load_layout(p, n_active=3)
    assert lay.n_stations == 3 and lay.active.all()
    # blank elevation filled: station 2 is at the same height as station 1 (to curvature)
    assert lay.enu[1, 2] == pytest.approx(lay.enu[0, 2], abs=0.01)


@pytest.mark.parametrize("body, match", [
    (PREAMBLE + ",Station Number,Latitude,Longitude\n,DSA-001,37.2,-118.2\n", "elevation"),
    (PREAMBLE + HEADER + ",DSA-001,north,-118.2,1182\n", "line 7: non-numeric"),
    (PREAMBLE + HEADER + ",DSA-001,37.2\n", "line 7: expected"),
    (PREAMBLE + HEADER + ",DSA-001,137.2,-118.2,1182\n", "out of range"),
    (PREAMBLE + HEADER + ",DSA-001,37.2,-118.2,1182\n,DSA-001,37.3,-118.2,1182\n", "duplicate"),
    (PREAMBLE + HEADER, "no station rows"),
    (",,,,\n,,,,\n", "preamble"),
])
def test_malformed_csv_clear_error(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(InputError, match=match) as ei:
        read_station_csv(p, n_active=1)
    assert str(p) in str(ei.value)


def test_missing_csv(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_station_csv(tmp_path / "nope.csv")
