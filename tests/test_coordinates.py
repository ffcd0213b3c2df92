"""The science core's coordinates against independent computations: astropy's sidereal time,
its AltAz frame, and pyuvdata's apparent positions against astropy's HADec meridian."""

from __future__ import annotations

import math

import numpy as np

from dsa110_pipeline import coordinates as co
from dsa110_pipeline import instrument

JD = 2461070.9 + np.arange(0, 24) * 12.884902 / 86400.0  # a group in January 2026


def test_sidereal_time_is_astropys_apparent_sidereal_time():
    from astropy.time import Time

    loc = co.dsa110_site()
    lst = co.local_sidereal_time(JD, loc)
    ref = Time(JD, format="jd", scale="utc").sidereal_time(
        "apparent", longitude=loc.lon).rad
    d = np.angle(np.exp(1j * (lst - ref)))
    assert np.abs(d).max() < 1e-6  # 0.2 mas of hour angle


def test_the_meridian_phase_centre_is_at_hour_angle_zero_in_pyuvdatas_apparent_frame():
    """astropy's HADec (the meridian) and pyuvdata's apparent coordinates and LST agree."""
    loc = co.dsa110_site()
    for dec in (-5.9, 16.15, 52.2, 71.7):
        ra_c, dec_c = co.meridian_phase_center(float(JD[12]), math.radians(dec), loc)
        lst = co.local_sidereal_time(JD[12:13], loc)
        app_ra, app_dec = co.apparent_coordinates(np.array([ra_c]), np.array([dec_c]),
                                                  JD[12:13], lst, loc)
        ha = np.angle(np.exp(1j * (lst[0] - app_ra[0, 0])))
        assert abs(ha) < 5e-6, (dec, ha)
        assert abs(app_dec[0, 0] - math.radians(dec)) < 5e-6, dec


def test_enu_directions_are_astropys_altaz():
    import astropy.units as u
    from astropy.coordinates import AltAz, HADec, SkyCoord
    from astropy.time import Time

    loc = co.dsa110_site()
    t = Time(JD[0], format="jd", scale="utc")
    ha = np.radians([-20.0, -3.0, 0.0, 5.0, 30.0])
    dec = np.radians([-10.0, 16.0, 37.0, 60.0, 85.0])
    hd = SkyCoord(ha=ha * u.rad, dec=dec * u.rad, frame=HADec(obstime=t, location=loc))
    aa = hd.transform_to(AltAz(obstime=t, location=loc))
    alt, az = aa.alt.rad, aa.az.rad
    ref = np.stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], axis=-1)
    enu = co.hadec_to_enu(ha, dec, math.radians(instrument.SITE_LATITUDE_DEG))
    np.testing.assert_allclose(enu, ref, atol=2e-6)  # geodetic vs astronomical latitude
