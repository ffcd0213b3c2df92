import math
import os
import time

import numpy as np
import pytest

from dsa110_pipeline.catalogs import (
    builtin_calibrators,
    calibrators_in_strip,
    find_calibrator,
    j2000_name,
    parse_vla_calibrators,
    read_vla_calibrators,
    vla,
)
from dsa110_pipeline.errors import InputError

SMALL = """IAU NAME EQUINOX  PC RA(hh,mm,ss)    DEC(ddd,mm,ss)   POS.REF ALT.NAME
===================================================================

1331+305   J2000  A 13h31m08.287984s  30d30'32.958850"  Aug01  3C286
1328+307   B1950  A 13h28m49.657700s  30d45'58.640000"
-----------------------------------------------------
BAND        A B C D    FLUX(Jy)    UVMIN(kL)  UVMAX(kL)
=====================================================
 90cm P  S S S S      26.00                       visplot
 20cm L  S S P P      FLUX                       visplot

0006-063   J2000  A 00h06m13.892894s -06d23'35.335300"  Aug01
0003-066   B1950  A 00h03m40.288800s -06d40'17.300000"
-----------------------------------------------------
BAND        A B C D    FLUX(Jy)    UVMIN(kL)  UVMAX(kL)
=====================================================
 20cm    L  S X X X       1.60           45
  6cm    C  X X X X
"""


def _rad(h, m, s, d, dm, ds, sign=1):
    return math.radians(15 * (h + m / 60 + s / 3600)), sign * math.radians(d + dm / 60 + ds / 3600)


@pytest.fixture
def vla_file(shared_data):
    return shared_data / "catalogs" / "vlacalibrators.txt"


def test_parses_all_1865_entries(vla_file):
    cals = read_vla_calibrators(vla_file)
    assert len(cals) == 1865
    assert sum(c.flux_jy is not None for c in cals) > 1000
    assert all(-math.pi / 2 <= c.dec <= math.pi / 2 for c in cals)


@pytest.mark.parametrize("alias,jname,pos,flux,quality", [
    ("3C286", "J1331+3030", (13, 31, 8.287984, 30, 30, 32.95885, 1), 15.0, "SSPP"),
    ("3C48", "J0137+3309", (1, 37, 41.299431, 33, 9, 35.13299, 1), 16.5, "XPPP"),
    ("3C147", "J0542+4951", (5, 42, 36.137916, 49, 51, 7.23356, 1), 22.5, "XSPP"),
    ("3C138", "J0521+1638", (5, 21, 9.886021, 16, 38, 22.05122, 1), 8.47, "XSPP"),
    ("3C454.3", "J2253+1608", (22, 53, 57.747932, 16, 8, 53.56089, 1), 10.0, "XXSS"),
])
def test_known_calibrators(vla_file, alias, jname, pos, flux, quality):
    cal = find_calibrator(alias, vla_file)
    assert cal.name == jname
    assert find_calibrator(jname, vla_file) is cal
    ra, dec = _rad(*pos)
    assert cal.ra == pytest.approx(ra, abs=1e-10)
    assert cal.dec == pytest.approx(dec, abs=1e-10)
    assert cal.flux_jy == pytest.approx(flux)
    assert "".join(cal.quality("20cm").values()) == quality


def test_details_of_the_format(vla_file):
    c = find_calibrator("J0006-0623", vla_file)  # negative declination
    assert c.dec == pytest.approx(-math.radians(6 + 23 / 60 + 35.3353 / 3600), abs=1e-10)
    assert c.bands["20cm"].uvmin_klambda == 45 and c.bands["20cm"].uvmax_klambda is None
    assert find_calibrator("3C48", vla_file).bands["20cm"].uvmax_klambda == 40
    assert find_calibrator("0922-399", vla_file).flux_jy is None  # flux written as '?'
    assert find_calibrator("B1328+307", vla_file).name == "J1331+3030"
    assert find_calibrator("1331+305", vla_file).alt_name == "3C286"
    assert find_calibrator("3c 286", vla_file).name == "J1331+3030"


def test_unknown_calibrator_names_the_file(vla_file):
    with pytest.raises(InputError, match="vlacalibrators.txt"):
        find_calibrator("3C999", vla_file)


def test_strip_query(vla_file):
    lo, hi = math.radians(10), math.radians(20)
    cals = calibrators_in_strip(lo, hi, min_flux_jy=5.0, path=vla_file)
    assert {c.name for c in cals} >= {"J0521+1638", "J2253+1608", "J0318+1628"}
    assert all(lo <= c.dec <= hi and c.flux_jy >= 5 for c in cals)
    assert [c.ra for c in cals] == sorted(c.ra for c in cals)
    everything = read_vla_calibrators(vla_file)
    n_all = sum(lo <= c.dec <= hi and c.flux_jy is not None and c.flux_jy >= 5
                for c in everything)
    assert len(cals) == n_all


def test_builtin_table_agrees_with_file(vla_file):
    for b in builtin_calibrators():
        c = find_calibrator(b.name, vla_file)
        assert c.ra == pytest.approx(b.ra, abs=1e-8)
        assert c.dec == pytest.approx(b.dec, abs=1e-8)
        assert c.flux_jy == b.flux_jy
        assert c.quality() == b.quality()


def test_fallback_to_builtin(monkeypatch):
    monkeypatch.setattr(vla, "default_calibrator_path", lambda: None)
    cals = read_vla_calibrators()
    assert 20 <= len(cals) < 100
    c = find_calibrator("3C286")
    assert c.name == "J1331+3030" and c.flux_jy == 15.0
    ra, dec = _rad(13, 31, 8.287984, 30, 30, 32.95885)
    assert c.ra == pytest.approx(ra, abs=1e-8) and c.dec == pytest.approx(dec, abs=1e-8)
    assert find_calibrator("3C454.3").flux_jy == 10.0


def test_env_var_and_cache_invalidation(tmp_path, monkeypatch):
    p = tmp_path / "cal.txt"
    p.write_text(SMALL.replace("FLUX", "15.00"))
    monkeypatch.setenv(vla.ENV_VAR, str(p))
    cals = read_vla_calibrators()
    assert len(cals) == 2
    assert find_calibrator("3C286").flux_jy == 15.0
    strip = calibrators_in_strip(0.5, 0.6)
    assert [c.name for c in strip] == ["J1331+3030"]
    # edit the file: same size, new content -> re-read, new strip result
    p.write_text(SMALL.replace("FLUX", "99.00"))
    os.utime(p, ns=(time.time_ns(), time.time_ns()))
    assert find_calibrator("3C286").flux_jy == 99.0
    assert calibrators_in_strip(0.5, 0.6)[0].flux_jy == 99.0
    assert calibrators_in_strip(0.5, 0.6, min_flux_jy=100.0) == []


def test_small_list_parsing(tmp_path):
    cals = parse_vla_calibrators(SMALL.replace("FLUX", "15.00"))
    c0, c1 = cals
    assert c0.b1950_name == "1328+307" and c0.position_code == "A"
    assert c0.bands["90cm"].flux_jy == 26.0
    assert c1.bands["6cm"].flux_jy is None
    assert c1.bands["6cm"].quality == {"A": "X", "B": "X", "C": "X", "D": "X"}


def test_malformed_file_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text(SMALL.replace("FLUX", "fifteen"))
    with pytest.raises(InputError, match=r"line 10.*bad\.txt"):
        read_vla_calibrators(p)
    q = tmp_path / "empty.txt"
    q.write_text("nothing here\n")
    with pytest.raises(InputError, match="empty.txt"):
        read_vla_calibrators(q)
    with pytest.raises(InputError, match="does not exist"):
        read_vla_calibrators(tmp_path / "missing.txt")


def test_j2000_name_truncates():
    ra, dec = _rad(13, 31, 59.99, 30, 59, 59.9)
    assert j2000_name(ra, dec) == "J1331+3059"
    ra, dec = _rad(0, 6, 13.9, 0, 23, 35.3, -1)
    assert j2000_name(ra, dec) == "J0006-0023"
    assert np.isfinite(ra)
