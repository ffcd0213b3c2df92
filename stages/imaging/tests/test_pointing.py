"""The drift scan's beam-centre track against the simulator's own geometry (pyuvdata's
apparent coordinates and ENU directions: a different code path from astropy's HADec)."""

import math

import numpy as np

from dsa110_pipeline import coordinates as coords
from dsa110_pipeline import instrument
from dsa110_pipeline.instrument import SIDEREAL_RATE
from dsa110_pipeline.projection import radec_to_lmn
from dsa110_pipeline.simulate import geometry as geo
from stages.imaging.drift_beam import component_beams, track_beams
from stages.imaging.pointing import beam_centre_track


def _group(dec_app_deg: float):
    """A 309 s group on the meridian at apparent declination ``dec_app_deg``: MJD seconds,
    the ICRS phase centre (the meridian at mid-time), the site."""
    import astropy.units as u
    from astropy.coordinates import ICRS, HADec, SkyCoord
    from astropy.time import Time

    loc = coords.earth_location(math.radians(instrument.SITE_LATITUDE_DEG),
                             math.radians(instrument.SITE_LONGITUDE_DEG), instrument.SITE_HEIGHT)
    t0 = Time("2026-01-25T13:43:25", scale="utc").mjd * 86400.0
    times = t0 + (np.arange(24) + 0.5) * 12.884902
    t_mid = Time(times.mean() / 86400.0, format="mjd", scale="utc")
    pc = SkyCoord(ha=0 * u.rad, dec=dec_app_deg * u.deg,
                  frame=HADec(obstime=t_mid, location=loc)).transform_to(ICRS())
    return times, float(pc.ra.rad), float(pc.dec.rad), loc


def test_the_beam_along_the_track_is_the_simulators_and_the_icrs_circle_is_not():
    """A source 0.12 deg south of the phase centre at dec +52 (3C295 in its group): the beam
    about the apparent-meridian track matches the simulator's to 1e-4 at every integration;
    about the phase centre's ICRS declination circle it is off by 3e-4 at the ends (the
    precession since J2000 turns the track)."""
    times, ra0, dec0, loc = _group(52.2)
    itrf = np.array([loc.x.value, loc.y.value, loc.z.value])
    track = beam_centre_track(times, ra0, dec0, itrf)
    assert np.hypot(*(0.5 * (track[11] + track[12]))) < math.radians(1 / 3600)  # mid-time
    ra_s, dec_s = ra0, dec0 - math.radians(0.12)
    freqs = np.array([1.3113e9, 1.405e9, 1.4987e9])
    # the simulator: apparent coordinates per time, ENU directions, beam about the pointing
    jd = times / 86400.0 + 2400000.5
    lst = coords.local_sidereal_time(jd, loc)
    app_ra, app_dec = coords.apparent_coordinates(np.array([ra_s]), np.array([dec_s]), jd, lst, loc)
    lat = math.radians(instrument.SITE_LATITUDE_DEG)
    enu = coords.hadec_to_enu(lst[:, None] - app_ra, app_dec, lat)
    pointing = coords.hadec_to_enu(0.0, math.radians(52.2), lat)
    truth = geo.beam_power(enu, pointing, freqs)[:, 0]
    l_s, m_s = radec_to_lmn(np.array([ra_s]), np.array([dec_s]), ra0, dec0)[:, :2].T
    ours = track_beams(l_s, m_s, track, freqs)[:, 0]
    circle = component_beams(l_s, m_s, SIDEREAL_RATE * (times - times.mean()), dec0, freqs)[:, 0]
    assert np.abs(ours / truth - 1).max() < 1e-4
    assert np.abs(circle / truth - 1).max() > 2e-4


def test_a_group_phased_off_the_meridian_keeps_its_hour_angle():
    """Phased to a point one degree west of the meridian at mid-time, the beam centre stays
    at that hour angle: at mid-time it is the phase centre, and it drifts east at about the
    sidereal rate x cos(dec)."""
    times, ra0, dec0, loc = _group(30.0)
    ra_w = ra0 - math.radians(1.0)
    itrf = np.array([loc.x.value, loc.y.value, loc.z.value])
    track = beam_centre_track(times, ra_w, dec0, itrf)
    mid = 0.5 * (track[11] + track[12])
    assert np.hypot(*mid) < math.radians(1 / 3600)
    rate = (track[-1, 0] - track[0, 0]) / (times[-1] - times[0])
    assert abs(rate / (SIDEREAL_RATE * math.cos(dec0)) - 1) < 0.01


def test_a_date_past_the_earth_orientation_predictions_needs_no_download():
    """Imaging on its own (a fresh process that never ran conversion or the simulator) on a
    night years past the bundled IERS table: offline, astropy refuses predictions over 30
    days old unless told otherwise; the track is computed, not a ValueError."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from stages.imaging.pointing import beam_centre_track\n"
            "t = 62000.0 * 86400.0 + np.arange(3) * 12.9\n"  # MJD 62000: 2028
            "tr = beam_centre_track(t, 1.0, 0.8, np.array([-2409e3, -4478e3, 3838e3]))\n"
            "assert np.all(np.isfinite(tr)) and tr.shape == (3, 2), tr\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
