import math

import numpy as np
import pytest

from dsa110_pipeline.catalogs import SourceCatalog, read_catalog
from dsa110_pipeline.errors import InputError


def test_nvss_field(shared_data):
    cat = read_catalog(shared_data / "catalogs" / "nvss_3c454_field_dsa110_forced_phot.csv")
    assert len(cat) == 170
    assert cat.name[0] == "J343.4904+16.1482"
    assert cat.ra[0] == pytest.approx(math.radians(343.49042))
    assert cat.dec[0] == pytest.approx(math.radians(16.14817))
    assert cat.flux_jy[0] == pytest.approx(12.6568)  # catalog_flux_jy, not measured_flux_jy
    assert np.all(cat.spectral_index == -0.7) and np.all(cat.ref_freq_hz == 1.4e9)
    deg = np.degrees(cat.ra)
    assert deg.min() > 336 and deg.max() < 353
    assert np.all(np.abs(np.degrees(cat.dec) - 16) < 6)


def _write_csv(path, header, rows):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_with_flux_jy_and_alpha(tmp_path):
    p = _write_csv(tmp_path / "s.csv", "name,ra_deg,dec_deg,flux_jy,alpha",
                   ["A,10.0,20.0,1.5,-0.5", "B,359.5,-30.0,0.25,"])
    cat = read_catalog(p)
    np.testing.assert_allclose(np.degrees(cat.ra), [10.0, 359.5])
    np.testing.assert_allclose(np.degrees(cat.dec), [20.0, -30.0])
    np.testing.assert_allclose(cat.flux_jy, [1.5, 0.25])
    np.testing.assert_allclose(cat.spectral_index, [-0.5, -0.7])  # blank -> default
    np.testing.assert_allclose(cat.flux_at(2.8e9),
                               [1.5 * 2**-0.5, 0.25 * 2**-0.7])
    assert list(cat.name) == ["A", "B"]
    assert cat.flux_at(np.array([1.4e9, 2.8e9])).shape == (2, 2)
    assert np.all(cat.pos_err == 0)  # none given


def test_position_errors_in_arcsec_or_with_a_unit(tmp_path):
    from astropy import units as u
    from astropy.table import Table

    p = _write_csv(tmp_path / "e.csv", "name,ra_deg,dec_deg,flux_jy,pos_err_arcsec",
                   ["A,10.0,20.0,1.5,1.0", "B,11.0,21.0,0.01,"])
    cat = read_catalog(p)
    np.testing.assert_allclose(np.degrees(cat.pos_err) * 3600, [1.0, 0.0])  # blank: 0
    assert np.allclose(cat.select(np.array([1, 0])).pos_err, cat.pos_err[::-1])
    t = Table({"RA": [1.0] * u.deg, "DEC": [2.0] * u.deg, "flux": [1.0] * u.Jy,
               "e_DEJ2000": [0.5] * u.arcmin})  # NVSS from VizieR names it so
    t.write(tmp_path / "n.vot", format="votable")
    assert np.degrees(read_catalog(tmp_path / "n.vot").pos_err[0]) * 60 == \
        pytest.approx(0.5)


@pytest.mark.parametrize("fmt,suffix", [("votable", ".vot"), ("fits", ".fits")])
def test_votable_and_fits(tmp_path, fmt, suffix):
    from astropy import units as u
    from astropy.table import Table

    t = Table()
    t["source_name"] = ["X1", "X2", "X3"]
    t["RA"] = [1.0, 2.0, 3.0] * u.deg
    t["DEC"] = np.radians([10.0, 11.0, 12.0]) * u.rad
    t["flux"] = [100.0, 200.0, 300.0] * u.mJy
    t["spectral_index"] = [-0.1, -0.2, -0.3]
    p = tmp_path / f"cat{suffix}"
    t.write(p, format=fmt)
    cat = read_catalog(p)
    np.testing.assert_allclose(np.degrees(cat.ra), [1, 2, 3])
    np.testing.assert_allclose(np.degrees(cat.dec), [10, 11, 12])
    np.testing.assert_allclose(cat.flux_jy, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(cat.spectral_index, [-0.1, -0.2, -0.3])
    assert list(cat.name) == ["X1", "X2", "X3"]


def test_wrong_columns_name_file_and_column(tmp_path):
    p = _write_csv(tmp_path / "bad.csv", "name,ra_deg,dec_deg,brightness", ["A,1,2,3"])
    with pytest.raises(InputError, match=r"no flux column.*bad\.csv"):
        read_catalog(p)
    p2 = _write_csv(tmp_path / "bad2.csv", "name,x,dec_deg,flux_jy", ["A,1,2,3"])
    with pytest.raises(InputError, match="no RA column"):
        read_catalog(p2)
    p3 = _write_csv(tmp_path / "bad3.csv", "ra_deg,dec_deg,flux_jy", ["1,95,3"])
    with pytest.raises(InputError, match="Dec outside"):
        read_catalog(p3)
    p4 = _write_csv(tmp_path / "bad4.csv", "ra_deg,dec_deg,flux_jy", ["1,5,abc"])
    with pytest.raises(InputError, match="bad4.csv"):
        read_catalog(p4)
    with pytest.raises(InputError, match="unknown catalog format"):
        read_catalog(tmp_path / "cat.parquet")
    with pytest.raises(InputError, match="does not exist"):
        read_catalog(tmp_path / "nothing.csv")


def test_cache_hit_and_invalidation(tmp_path):
    p = _write_csv(tmp_path / "c.csv", "ra_deg,dec_deg,flux_jy", ["1,2,3.0"])
    a = read_catalog(p)
    assert read_catalog(p) is a  # cached
    _write_csv(p, "ra_deg,dec_deg,flux_jy", ["1,2,4.0"])  # same size, new content
    b = read_catalog(p)
    assert b is not a and b.flux_jy[0] == 4.0 and a.flux_jy[0] == 3.0


def test_catalog_checks_and_strip():
    cat = SourceCatalog.from_arrays(ra=[0.1, 0.2, 0.3], dec=[-0.1, 0.0, 0.1],
                                    flux_jy=[1.0, 3.0, 2.0])
    assert len(cat) == 3
    s = cat.strip(-0.05, 0.2)
    assert len(s) == 2 and list(s.flux_jy) == [3.0, 2.0]
    assert list(cat.brightest(2).flux_jy) == [3.0, 2.0]
    with pytest.raises(ValueError):
        cat.ra[0] = 1.0  # read-only: a cached catalog cannot be corrupted
    with pytest.raises(InputError, match="non-finite"):
        SourceCatalog.from_arrays(ra=[0.1], dec=[np.nan], flux_jy=[1.0])
    with pytest.raises(InputError, match="shape"):
        SourceCatalog.from_arrays(ra=[0.1, 0.2], dec=[0.0], flux_jy=[1.0, 1.0])
    with pytest.raises(InputError, match="RA outside"):
        SourceCatalog.from_arrays(ra=[-1.0], dec=[0.0], flux_jy=[1.0])
