"""Survey positions replaced by the VLA calibrator list's where a source is a calibrator."""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.catalogs import (
    SourceCatalog,
    find_calibrator,
    with_calibrator_positions,
)
from dsa110_pipeline.catalogs.astrometry import calibrator_positions

ARCSEC = np.radians(1 / 3600)


def test_a_survey_source_near_a_calibrator_takes_its_position_others_keep_theirs():
    c = find_calibrator("3C286")  # J1331+3030, position code A
    ra = np.array([c.ra + 2.5 * ARCSEC / np.cos(c.dec), c.ra + 0.1, c.ra])
    dec = np.array([c.dec - 1.0 * ARCSEC, c.dec, c.dec + 30 * ARCSEC])
    cat = SourceCatalog.from_arrays(ra, dec, [14.9, 0.5, 0.01], source="survey.csv")
    out = with_calibrator_positions(cat, radius_arcsec=10.0)
    assert out.ra[0] == c.ra and out.dec[0] == c.dec  # 2.7" off: the list's position
    np.testing.assert_array_equal(out.ra[1:], cat.ra[1:])  # 6 deg and 30" away: kept
    np.testing.assert_array_equal(out.dec[1:], cat.dec[1:])
    np.testing.assert_array_equal(out.flux_jy, cat.flux_jy)  # the survey's fluxes stay
    assert out.source == "survey.csv"


def test_positions_match_the_nearest_calibrator_within_the_radius_by_great_circle():
    cal_ra, cal_dec = np.radians([10.0, 10.0]), np.radians([80.0, 80.01])
    # near the pole 0.05 deg of RA is 31" on the sky: outside a 20" radius
    ra = np.radians([10.05, 10.0, 10.0])
    dec = np.radians([80.0, 80.0 + 3 / 3600, 80.01 - 2 / 3600])
    r, d, m = calibrator_positions(ra, dec, cal_ra, cal_dec, 20 * ARCSEC)
    assert m.tolist() == [False, True, True]
    assert r[0] == ra[0] and d[0] == dec[0]
    assert d[1] == cal_dec[0] and d[2] == cal_dec[1]
    r, d, m = calibrator_positions(ra, dec, np.array([]), np.array([]), 20 * ARCSEC)
    assert not m.any() and np.array_equal(r, ra)
