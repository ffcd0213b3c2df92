"""A listed calibrator counts only where the survey confirms it or cannot say."""

from __future__ import annotations

import numpy as np

from stages.calibration.survey_check import confirmed_by_survey

ARCSEC = np.pi / 180 / 3600


def test_confirmed_absent_and_uncovered_calibrators():
    rng = np.random.default_rng(2)
    dec0 = np.radians(31.0)
    # a survey cut-out of 3 x 3 deg: 400 faint sources, and a 15 Jy calibrator as two
    # entries (an extended source), 10" and 25" from the listed position
    s_ra = np.radians(200.0) + np.radians(rng.uniform(-1.5, 1.5, 400)) / np.cos(dec0)
    s_dec = dec0 + np.radians(rng.uniform(-1.5, 1.5, 400))
    s_flux = rng.uniform(0.003, 0.2, 400)
    cal_a = (np.radians(200.2), dec0 + np.radians(0.3))
    s_ra = np.r_[s_ra, cal_a[0] + 10 * ARCSEC / np.cos(cal_a[1]), cal_a[0]]
    s_dec = np.r_[s_dec, cal_a[1], cal_a[1] + 25 * ARCSEC]
    s_flux = np.r_[s_flux, 9.0, 6.0]
    ra = np.array([cal_a[0], np.radians(199.5),  # listed but not in this sky
                   np.radians(230.0)])           # outside the cut-out: no verdict
    dec = np.array([cal_a[1], dec0 - np.radians(0.4), dec0])
    got = confirmed_by_survey(ra, dec, np.array([16.0, 4.7, 3.0]), s_ra, s_dec, s_flux,
                              radius_rad=60 * ARCSEC, min_fraction=0.25,
                              coverage_rad=np.radians(1.0))
    assert got.tolist() == [True, False, True]
    # a source at the position, but far too faint for the listed flux: not confirmed
    weak = confirmed_by_survey(ra[:1], dec[:1], np.array([16.0]), s_ra[-2:-1], s_dec[-2:-1],
                               np.array([0.5]), radius_rad=60 * ARCSEC, min_fraction=0.25,
                               coverage_rad=np.radians(1.0))
    assert weak.tolist() == [False]
    # no survey at all: nothing can be checked
    assert confirmed_by_survey(ra, dec, np.ones(3), np.zeros(0), np.zeros(0), np.zeros(0),
                               radius_rad=1e-3, min_fraction=0.25,
                               coverage_rad=0.02).all()


def test_in_tonights_sky_reads_the_night_survey_catalog(tmp_path):
    from types import SimpleNamespace

    from stages.calibration.sky import in_tonights_sky

    cat = tmp_path / "survey_catalog.csv"
    cat.write_text("name,ra_deg,dec_deg,flux_jy\nA,202.7846,30.5092,15.7\n"
                   "B,203.5,30.9,0.05\nC,201.9,30.1,0.02\n")
    c286 = SimpleNamespace(name="3C286", ra=np.radians(202.7845), dec=np.radians(30.5091),
                           flux_jy=15.0)
    ghost = SimpleNamespace(name="J1352+3126", ra=np.radians(203.2), dec=np.radians(30.6),
                            flux_jy=4.7)
    assert [c.name for c in in_tonights_sky([c286, ghost], str(cat), 60.0, 0.25)] == \
        ["3C286"]
    assert len(in_tonights_sky([c286, ghost], None, 60.0, 0.25)) == 2  # no catalog
    assert len(in_tonights_sky([c286, ghost], str(cat), None, 0.25)) == 2  # check off
